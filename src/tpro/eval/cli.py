"""``tpro eval``: run a benchmark (math, or multiple choice) on the local engine or an endpoint, report runs, list
benchmarks, and list benchmark items found in a training file. Each verb's options come from its config dataclass (``EvalConfig``,
``ReportConfig``, ``ContaminationConfig``); heavy imports happen inside the commands."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from tpro.config import Config, command, fail, group, json_flag, opt

app = group(
    "Math benchmarks (T-Math, MGSM, MATH-500, AIME, GSM8K): direct vs reasoning, accuracy and cost; multiple choice "
    "(ruMMLU-Pro, MERA, any JSONL) by generated letter or log-likelihood; long-context retrieval in Russian; a judged "
    "pairwise arena with Bradley-Terry scores."
)


def _dump(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


@command("tpro.eval.runner:EvalConfig", group=app, extra=[json_flag("Print the summary as JSON.")])
def run(cfg, as_json: bool = False):
    """Run (or resume) a benchmark in direct and/or reasoning mode; write items.jsonl, summary, report, plots."""
    from tpro.eval.benchmarks import BenchmarkError
    from tpro.eval.runner import EndpointError, run_eval
    from tpro.io import JSONLError
    from tpro.models.loading import ModelLoadError

    try:
        summary = run_eval(cfg, progress=cfg.progress and not as_json, log=lambda s: click.echo(s, err=True))
    except (BenchmarkError, ModelLoadError, EndpointError, JSONLError, FileNotFoundError) as e:
        fail(str(e))
    if as_json:
        return _dump(summary)
    click.echo((cfg.run_dir() / "report.md").read_text(encoding="utf-8"))


@command("tpro.eval.long:LongConfig", name="long", group=app, extra=[json_flag("Print the summary as JSON.")])
def long_(cfg, as_json: bool = False):
    """Long-context retrieval in Russian: needles at several depths of long documents; accuracy per length x depth."""
    from tpro.eval.long import run_long
    from tpro.eval.runner import EndpointError
    from tpro.models.loading import ModelLoadError

    try:
        summary = run_long(cfg, progress=cfg.progress and not as_json, log=lambda s: click.echo(s, err=True))
    except (ModelLoadError, EndpointError, FileNotFoundError, UnicodeDecodeError) as e:
        fail(str(e))
    if as_json:
        return _dump(summary)
    click.echo((cfg.run_dir() / "report.md").read_text(encoding="utf-8"))


@command("tpro.eval.arena_run:ArenaConfig", name="arena", group=app, extra=[json_flag("Print the summary as JSON.")])
def arena(cfg, as_json: bool = False):
    """Judged arena (the Arena-Hard method): answers, pairwise judge verdicts in both orders, Bradley-Terry board."""
    from tpro.eval.arena import ArenaError
    from tpro.eval.arena_run import run_arena
    from tpro.eval.runner import EndpointError
    from tpro.models.loading import ModelLoadError

    try:
        summary = run_arena(cfg, progress=cfg.progress and not as_json, log=lambda s: click.echo(s, err=True))
    except (ArenaError, ModelLoadError, EndpointError, FileNotFoundError, UnicodeDecodeError) as e:
        fail(str(e))
    if as_json:
        return _dump({k: v for k, v in summary.items() if k != "markdown"})
    click.echo(summary["markdown"])


@command("tpro.eval.report:ReportConfig", group=app, extra=[json_flag("Print the summaries as JSON.")])
def report(cfg, as_json: bool = False):
    """Compare runs and modes: accuracy, tokens, latency, accuracy per 1k tokens; math, multiple-choice and arena
    runs of several models in one table across benchmarks; plots."""
    from tpro.eval.report import write_outputs

    if not cfg.run_dirs:
        fail("give one or more run directories (tpro eval run --out DIR, tpro eval arena --out DIR)")
    if len(cfg.run_dirs) > 1 and cfg.out is None:
        fail("several runs: say where the combined report goes with --out DIR")
    try:
        report_path, pngs, summaries = write_outputs(cfg.run_dirs, cfg.out, cfg.recheck)
    except FileNotFoundError as e:
        fail(str(e))
    if as_json:
        return _dump(summaries)
    click.echo(report_path.read_text(encoding="utf-8"))
    click.echo(f"(written to {report_path}; plots: {', '.join(str(p) for p in pngs)})", err=True)


@dataclass(kw_only=True)
class ListConfig(Config):
    """``tpro eval list``."""

    language: str | None = opt(None, "Only benchmarks in this language (ru | en)")


@command(ListConfig, name="list", group=app, extra=[json_flag("Print JSON.")])
def list_(cfg: ListConfig, as_json: bool = False):
    """The built-in benchmarks: source, language, description."""
    from tpro.eval.benchmarks import describe_benchmarks

    rows = describe_benchmarks(cfg.language)
    if as_json:
        return _dump(rows)
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['language']:<4} {r['source']:<36} {r['description']}")


@command(
    "tpro.eval.contamination:ContaminationConfig", group=app, extra=[json_flag("Print the overlaps as JSON lines.")]
)
def contamination(cfg, as_json: bool = False):
    """List benchmark items that appear in a training file (shared normalised word n-grams)."""
    from tpro.eval.benchmarks import BenchmarkError, load_benchmark
    from tpro.eval.contamination import ngram_overlaps, read_training_texts

    try:
        texts = read_training_texts(cfg.train_file, cfg.field)
        items = [it for b in cfg.bench for it in load_benchmark(b)]
    except (FileNotFoundError, ValueError, BenchmarkError) as e:
        fail(str(e))
    found = ngram_overlaps(texts, items, n=cfg.ngram)
    for o in found:
        line = {"line": o.text_index + 1, "item_id": o.item_id, "ngram": o.ngram}
        click.echo(
            json.dumps(line, ensure_ascii=False) if as_json else f'line {o.text_index + 1}: {o.item_id}  "{o.ngram}"'
        )
    if not as_json:
        click.echo(
            f"{len({o.text_index for o in found})} of {len(texts)} training rows overlap "
            f"{len({o.item_id for o in found})} of {len(items)} items ({', '.join(cfg.bench)}; n={cfg.ngram})",
            err=True,
        )
