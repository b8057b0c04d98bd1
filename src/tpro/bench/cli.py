"""``tpro bench decode``: EAGLE vs our vanilla loop vs ``model.generate`` (and prompt lookup), per domain."""

from __future__ import annotations

import typer

app = typer.Typer(help="Decode benchmarks: EAGLE vs vanilla vs model.generate, per domain.", no_args_is_help=True)


@app.callback()
def _group():
    """Decode benchmarks."""


@app.command()
def decode(
    target: str = typer.Option("default", "--target", "-m", help="Target model spec."),
    draft: str = typer.Option(
        None, "--draft", "-d", help="EAGLE head dir, or 'default' for the shipped head; omit for baselines only."
    ),
    prompts: str = typer.Option(None, help="JSONL with 'prompt' and 'domain' (default: the held-out Russian prompts)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", min=1),
    temperature: list[float] = typer.Option(
        [0.0], "--temperature", "-t", help="Repeatable: every value runs in this one process."
    ),
    reasoning: bool = typer.Option(False, "--reasoning", help="Prompts in reasoning mode."),
    per_domain: int = typer.Option(2, min=0, help="Prompts per domain (0 = all)."),
    baseline_dtype: str = typer.Option("bfloat16", help="dtype of the prompt-lookup row and the vanilla loop."),
    generate_dtype: list[str] = typer.Option(
        ["float32", "bfloat16"],
        "--generate-dtype",
        help="Repeatable: model.generate runs in each; speedups use the fastest.",
    ),
    eagle_dtype: str = typer.Option("bfloat16", help="dtype of the target EAGLE verifies with."),
    prompt_lookup: int = typer.Option(10, min=1, help="prompt_lookup_num_tokens for the pld row."),
    methods: str = typer.Option("generate,pld,vanilla,eagle", help="Comma-separated rows to run."),
    depth: int = typer.Option(None, min=1, help="EAGLE tree depth (default by dtype)."),
    top_k: int = typer.Option(None, min=1, help="EAGLE children per node."),
    total_tokens: int = typer.Option(None, min=1, help="EAGLE nodes verified per step."),
    out: str = typer.Option(None, "--out", "-o", help="Write decode.json, decode.md and decode.png here."),
    threads: int = typer.Option(0, min=0),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result instead of the table."),
):
    """Measure decode tokens/s per domain, speedups, acceptance length and the draft/verify split."""
    import json
    from pathlib import Path

    from tpro.bench.decode import BenchConfig, markdown, run_bench, write_outputs
    from tpro.models.loading import ModelLoadError

    for t in temperature:
        if not 0.0 <= t <= 5.0:
            typer.echo(f"error: --temperature {t} is outside [0, 5]", err=True)
            raise typer.Exit(2)
    cfg = BenchConfig(
        target=target,
        draft=draft,
        prompts=prompts or "",
        max_new_tokens=max_new_tokens,
        temperatures=list(temperature),
        reasoning=reasoning,
        per_domain=per_domain,
        baseline_dtype=baseline_dtype,
        eagle_dtype=eagle_dtype,
        generate_dtypes=list(generate_dtype),
        prompt_lookup=prompt_lookup,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        depth=depth,
        top_k=top_k,
        total_tokens=total_tokens,
        seed=seed,
        threads=threads,
    )
    try:
        partial = (lambda r: write_outputs(r, Path(out))) if out else None
        result = run_bench(cfg, log=lambda s: typer.echo(s, err=True), on_result=partial)
    except (ValueError, FileNotFoundError, ModelLoadError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if out:
        write_outputs(result, Path(out))
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else markdown(result["summary"]))
