"""``tpro eval``: run a math benchmark on the local engine or an endpoint, report runs, list benchmarks, and list
benchmark items found in a training file. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Math benchmarks (T-Math, MGSM, MATH-500, AIME, GSM8K): direct vs reasoning, accuracy and cost.",
    no_args_is_help=True,
)


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@app.command()
def run(
    bench: str = typer.Option(
        "t-math", "--bench", "-b", help="Benchmark name (tpro eval list) or a path to a YAML spec."
    ),
    model: str = typer.Option(None, "--model", "-m", help="Local engine: default | hub id | local dir | .gguf"),
    endpoint: str = typer.Option(
        None,
        "--endpoint",
        "-e",
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (API key from $TPRO_API_KEY if set).",
    ),
    api_model: str = typer.Option(
        None, "--api-model", help="Model name sent to the endpoint (default: its first model)."
    ),
    mode: str = typer.Option("both", "--mode", help="direct | reasoning | both"),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Only the first N items."),
    samples: int = typer.Option(1, "--samples", "-k", min=1, help="Generations per item and mode (avg@K, maj@K)."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Run directory (default runs/eval/BENCH-MODEL). Running again with the same settings resumes it.",
    ),
    path: Path = typer.Option(None, "--path", help="A local JSONL to use instead of the benchmark's source."),
    question_field: str = typer.Option(None, help="Question field name in --path rows."),
    answer_field: str = typer.Option(None, help="Gold answer field name in --path rows."),
    id_field: str = typer.Option(None, help="Id field name in --path rows (default: row numbers)."),
    hub: bool = typer.Option(False, "--hub", help="Load from the Hugging Face hub even when a copy ships with tpro."),
    max_tokens_direct: int = typer.Option(256, min=1, help="Max new tokens in direct mode."),
    max_tokens_reasoning: int = typer.Option(512, min=1, help="Max new tokens in reasoning mode (trace + answer)."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", min=0.0, max=5.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.01, max=1.0),
    top_k: int = typer.Option(0, "--top-k", min=0),
    seed: int = typer.Option(0, help="Sample k uses seed + k (when sampling)."),
    draft: str = typer.Option(
        None, "--draft", help="EAGLE draft dir for the local engine ('default': the shipped head)."
    ),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16 (local engine)"),
    threads: int = typer.Option(None, help="torch CPU threads (local engine)."),
    concurrency: int = typer.Option(4, min=1, help="Endpoint requests in flight."),
    timeout: float = typer.Option(600.0, min=1.0, help="Seconds per endpoint request."),
    retries: int = typer.Option(3, min=0, help="Endpoint retries (with exponential backoff)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="One log line per generation instead of a bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Run (or resume) a benchmark in direct and/or reasoning mode; write items.jsonl, summary, report, plots."""
    from tpro.eval.benchmarks import BenchmarkError
    from tpro.eval.runner import EndpointError, EvalConfig, RunError, run_eval
    from tpro.models.loading import ModelLoadError

    if mode not in ("direct", "reasoning", "both"):
        _fail(f"--mode {mode!r}: choose direct, reasoning or both")
    if model is None and endpoint is None:
        model = "default"
    fields = {k: v for k, v in (("question", question_field), ("answer", answer_field), ("id", id_field)) if v}
    if fields and path is None:
        _fail("--question-field/--answer-field/--id-field apply to --path FILE; give the file too")
    try:
        cfg = EvalConfig(
            bench=bench,
            path=str(path) if path else None,
            fields=fields,
            hub=hub,
            limit=limit,
            modes=["direct", "reasoning"] if mode == "both" else [mode],
            samples=samples,
            max_tokens={"direct": max_tokens_direct, "reasoning": max_tokens_reasoning},
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            model=model,
            endpoint=endpoint,
            api_model=api_model,
            draft=draft,
            dtype=dtype,
            threads=threads,
            concurrency=concurrency,
            timeout_s=timeout,
            retries=retries,
        )
        if samples > 1 and temperature == 0:
            typer.echo("warning: --samples > 1 with --temperature 0 repeats the same greedy answer", err=True)
        if out is None:
            who = Path(model).name if model else (api_model or "endpoint")
            out = Path("runs") / "eval" / f"{Path(bench).stem}-{who}"
        say = lambda s: typer.echo(s, err=True)
        summary = run_eval(cfg, out, progress=not no_progress and not as_json, log=say)
    except (RunError, BenchmarkError, ModelLoadError, EndpointError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        typer.echo((out / "report.md").read_text(encoding="utf-8"))


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories (tpro eval run --out)."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write report.md and plots/ (default: the first run dir "
        "when there is one run; required for several).",
    ),
    recheck: bool = typer.Option(
        False, "--recheck", help="Extract and check the stored answers again with the current checker (no generation)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summaries as JSON."),
):
    """Compare runs and modes: accuracy, tokens, latency, accuracy per 1k tokens; plots."""
    from tpro.eval.report import write_outputs

    if len(run_dirs) > 1 and out is None:
        _fail("several runs: say where the combined report goes with --out DIR")
    try:
        report_path, pngs, summaries = write_outputs(run_dirs, out, recheck)
    except FileNotFoundError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(summaries, ensure_ascii=False, indent=2))
    else:
        typer.echo(report_path.read_text(encoding="utf-8"))
        typer.echo(f"(written to {report_path}; plots: {', '.join(str(p) for p in pngs)})", err=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """The built-in benchmarks: source, language, description."""
    from tpro.eval.benchmarks import list_benchmarks, load_spec

    rows = []
    for name in list_benchmarks():
        s = load_spec(name)
        src = (
            ", ".join(
                filter(
                    None,
                    [
                        ("shipped" if s.source.get("local") else None),
                        (f"hub {s.source['hub']['path']}" if s.source.get("hub") else None),
                    ],
                )
            )
            or "--path"
        )
        rows.append({"name": name, "language": s.language, "source": src, "description": s.description})
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['language']:<4} {r['source']:<36} {r['description']}")


@app.command()
def contamination(
    train_file: Path = typer.Argument(
        ..., help="Training data: JSONL (every string of a row, or --field) or plain text."
    ),
    bench: list[str] = typer.Option(["t-math"], "--bench", "-b", help="Benchmark(s) to look for (repeatable)."),
    n: int = typer.Option(13, "--n", min=1, help="Word n-gram length."),
    field: str = typer.Option(None, "--field", help="Only this field of each JSONL row."),
    as_json: bool = typer.Option(False, "--json", help="Print the overlaps as JSON lines."),
):
    """List benchmark items that appear in a training file (shared normalised word n-grams)."""
    from tpro.eval.benchmarks import BenchmarkError, load_benchmark
    from tpro.eval.contamination import ngram_overlaps, read_training_texts

    try:
        texts = read_training_texts(train_file, field)
        items = [it for b in bench for it in load_benchmark(b)]
    except (FileNotFoundError, ValueError, BenchmarkError) as e:
        _fail(str(e))
    found = ngram_overlaps(texts, items, n=n)
    if as_json:
        for o in found:
            typer.echo(
                json.dumps({"line": o.text_index + 1, "item_id": o.item_id, "ngram": o.ngram}, ensure_ascii=False)
            )
        return
    for o in found:
        typer.echo(f'line {o.text_index + 1}: {o.item_id}  "{o.ngram}"')
    typer.echo(
        f"{len({o.text_index for o in found})} of {len(texts)} training rows overlap "
        f"{len({o.item_id for o in found})} of {len(items)} items ({', '.join(bench)}; n={n})",
        err=True,
    )
