"""MinHash deduplication as a datatrove pipeline: the same step as ``tpro.data.dedup`` for corpora beyond one
machine, run here with ``LocalPipelineExecutor``.

datatrove's four MinHash stages: (1) signatures per shard, (2) bucket matching (one task per LSH band),
(3) clustering (union-find, one task), (4) filtering each shard, writing kept rows and, separately, removed
rows with their cluster id (the cluster report is built from those). Bands and rows per band come from the
same threshold -> (b, r) choice datasketch's ``MinHashLSH`` makes, so both engines aim at the same
similarity; datatrove shingles *words* (``--unit word``) and keeps one row per cluster of its own choosing
(no ``keep=best``). Each executor skips tasks it already completed (its logging folder records them), so a
killed run resumes.

On a cluster, the same stage lists run under ``datatrove.executor.SlurmPipelineExecutor`` (``tasks``,
``time``, ``partition``, ``logging_dir`` on shared storage, ``depends=`` chaining the four stages) or
``RayPipelineExecutor``, with ``s3://``/``hf://`` folders in place of local paths; see README "Data curation".

datatrove starts processes with spawn/forkserver: a script calling this must guard its entry point with
``if __name__ == "__main__":`` (the ``tpro`` console script does).
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from tpro.data.dedup import DedupConfig
from tpro.data.io import DataError, read_rows, text_of, write_rows
from tpro.io import read_jsonl

ROW = "_tpro_row"  # original row index, carried through datatrove as the document id


def _to_row(writer, document, field: str) -> dict:
    # A datatrove Document back to the user's row: metadata holds every other field of the original row.
    row = {k: v for k, v in document.metadata.items() if k not in ("file_path", "minhash_cluster_id")}
    row[field] = document.text
    row[ROW] = int(document.id)
    if "minhash_cluster_id" in document.metadata:
        row["_cluster"] = document.metadata["minhash_cluster_id"]
    return row


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) as datasketch's MinHashLSH picks them for this threshold and signature length."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def build_stages(
    shards: str | Path, work: str | Path, cfg: DedupConfig, workers: int = 1, language: str = "en", make_executor=None
):
    """The four datatrove executors, in order. ``shards``/``work``: local paths, or any fsspec URL datatrove
    takes (``s3://``...). ``make_executor(pipeline, tasks, name)`` builds each executor (default: a
    ``LocalPipelineExecutor`` with ``workers`` processes); pass one that returns ``SlurmPipelineExecutor`` /
    ``RayPipelineExecutor`` to run the same stages on a cluster (README, "Data curation")."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    bands, rows = lsh_bands(cfg.threshold, cfg.num_perm)
    # norm_numbers off: "3 + 4" and "5 + 6" must not become the same math problem.
    mh = MinhashConfig(
        n_grams=cfg.shingle,
        num_buckets=bands,
        hashes_per_bucket=rows,
        seed=cfg.seed,
        norm_config=TextNormConfig(norm_numbers=False),
        hash_config=HashConfig(precision=64),
    )
    work = str(work).rstrip("/")
    n_shards = max(1, workers) if "://" in str(shards) else len(list(Path(shards).glob("*.jsonl")))

    def reader():
        return JsonlReader(
            str(shards), text_key=cfg.field, id_key=ROW, add_file_path=False, compression=None, glob_pattern="*.jsonl"
        )

    def writer(folder):
        return JsonlWriter(
            f"{work}/{folder}",
            output_filename="${rank}.jsonl",
            compression=None,
            adapter=partial(_to_row, field=cfg.field),
        )

    def local(pipeline, tasks, name):
        return LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=f"{work}/logs/{name}"
        )

    ex = make_executor or local
    return [
        ex([reader(), MinhashDedupSignature(f"{work}/sigs", config=mh, language=language)], n_shards, "1-sigs"),
        ex([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=mh)], bands, "2-buckets"),
        ex([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=mh, save_cluster_id=True)], 1, "3-cluster"),
        ex(
            [
                reader(),
                MinhashDedupFilter(f"{work}/remove", exclusion_writer=writer("removed"), load_cluster_ids=True),
                writer("kept"),
            ],
            n_shards,
            "4-filter",
        ),
    ]


def run_datatrove_dedup(
    source: str,
    out: str | Path,
    cfg: DedupConfig,
    *,
    workers: int = 1,
    report: str | Path | None = None,
    work: str | Path | None = None,
    language: str = "en",
    tick=None,
) -> dict:
    """Deduplicate ``source`` into ``out`` through datatrove; returns counts like ``dedup``'s."""
    if cfg.unit != "word":
        raise DataError("the datatrove engine shingles words: pass --unit word (and --shingle in words)")
    if cfg.keep != "first" or cfg.method == "exact":
        raise DataError(
            "the datatrove engine runs near-duplicate MinHash with its own keep rule: "
            "use --method near/both and --keep first"
        )
    out = Path(out)
    work = Path(work) if work else out.with_name(out.name + ".datatrove")
    shards = work / "input"
    rows = read_rows(source)
    if not (shards / "done").is_file():  # shards are the executors' input; rewritten only if never finished
        shutil.rmtree(shards, ignore_errors=True)
        n = max(1, workers)
        for s in range(n):
            part = [{**r, cfg.field: text_of(r, cfg.field), ROW: str(i)} for i, r in enumerate(rows) if i % n == s]
            write_rows(shards / f"{s:05d}.jsonl", part)
        (shards / "done").write_text("")
    for stage in build_stages(shards, work, cfg, workers, language):
        stage.run()
        if tick:
            tick(1)
    kept = _read_dir(work / "kept")
    removed = _read_dir(work / "removed")
    clusters: dict[int, list[dict]] = {}
    for r in kept + removed:
        if r.get("_cluster", -1) != -1:
            clusters.setdefault(r["_cluster"], []).append(r)
    kept_ids = {r[ROW] for r in kept}
    report_rows = []
    for _, members in sorted(clusters.items()):
        members.sort(key=lambda r: r[ROW])
        keep = next(r[ROW] for r in members if r[ROW] in kept_ids)
        report_rows.append(
            {
                "cluster": len(report_rows),
                "size": len(members),
                "kept": keep,
                "members": [
                    {"index": r[ROW], "reason": "kept" if r[ROW] == keep else "near", "text": str(r[cfg.field])[:160]}
                    for r in members
                ],
            }
        )
    write_rows(out, [_strip(r) for r in sorted(kept, key=lambda r: r[ROW])])
    if report:
        write_rows(report, report_rows)
    return {
        "rows_in": len(rows),
        "rows_out": len(kept),
        "removed": len(removed),
        "clusters": len(report_rows),
        "bands": lsh_bands(cfg.threshold, cfg.num_perm)[0],
        "rows_per_band": lsh_bands(cfg.threshold, cfg.num_perm)[1],
    }


def _read_dir(folder: Path) -> list[dict]:
    return [row for p in sorted(folder.glob("*.jsonl")) for row in read_jsonl(p)]


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in (ROW, "_cluster")}
