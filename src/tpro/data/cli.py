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

app = typer.Typer(help="Data curation: dedup, decontaminate, tag, balance, reward-filter, difficulty.",
                  no_args_is_help=True, rich_markup_mode=None)

IN = typer.Argument(..., help="input: .jsonl, .parquet, a datasets directory, or hf:<name>[:split]")
OUT = typer.Option(..., "--out", "-o", help="output file (.jsonl or .parquet); a manifest goes beside it")
JSON = typer.Option(False, "--json", help="print the counts as JSON on stdout")
FORCE = typer.Option(False, "--force", help="rerun even if the output's manifest says it is up to date")


@app.callback()
def _group():
    """Data curation steps; each writes OUT plus OUT.manifest.json."""


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


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
        cfg = DedupConfig(field=field, mode=mode, shingle=shingle, unit=unit, num_perm=num_perm,
                          threshold=threshold, keep=keep, score_field=score_field, seed=seed)
        report = report or out.with_name(out.name + ".clusters.jsonl")
        m = Manifest.start("dedup", {**config_dict(cfg), "engine": engine}, [source])
        if _skip_if_done(out, m, force, as_json):
            return
        if engine == "datatrove":
            from tpro.data.dedup_datatrove import run_datatrove_dedup

            import shutil

            # The work folder is keyed by inputs + parameters: a rerun after a kill resumes there (datatrove
            # skips completed tasks), a run with other parameters starts clean.
            work = out.with_name(f"{out.name}.datatrove-{m.key}")
            with _progress() as p:
                task = p.add_task("datatrove minhash stages", total=4)
                counts = run_datatrove_dedup(source, out, cfg, workers=workers, report=report, work=work,
                                             tick=lambda k: p.advance(task, k))
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
    bench: list[str] = typer.Option(["t-math", "math-500"], "--bench",
                                    help="benchmark spec name, or name=path.jsonl (repeatable); see `tpro eval list`"),
    ngram: int = typer.Option(13, help="word n-gram length for the n-gram detector (0 = off)"),
    containment: float = typer.Option(0.8, help="MinHash containment of a question in a row to flag it (0 = off)"),
    shingle: int = typer.Option(5, help="character shingle length for MinHash"),
    num_perm: int = typer.Option(128, help="MinHash permutations"),
    report: Path = typer.Option(None, help="removal report (default: OUT.removed.jsonl)"),
    as_json: bool = JSON,
    force: bool = FORCE,
):
    """Drop rows that contain a benchmark question (n-gram overlap or MinHash containment); say why."""
    from tpro.data.decontam import DecontamConfig, decontaminate as run, load_items
    from tpro.data.dedup import config_dict
    from tpro.data.io import write_rows
    from tpro.data.manifest import Manifest

    with _cli_errors():
        cfg = DecontamConfig(field=field, benchmarks=list(bench), ngram=ngram, containment=containment,
                             shingle=shingle, num_perm=num_perm)
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
        m.counts = {"rows_in": len(rows), "rows_out": len(kept), "removed": len(removed),
                    "benchmark_items": len(items), "removed_by_method": by_method}
        m.add_output(out, len(kept))
        m.add_output(report, len(removed), role="removed")
        m.write(out)
        _report(out, m.counts, as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
