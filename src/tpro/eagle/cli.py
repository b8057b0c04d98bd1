"""``tpro eagle``: build draft-head data, train a head, export it for SGLang, inspect a head."""

from __future__ import annotations

import dataclasses

import typer

app = typer.Typer(help="EAGLE draft heads: build data, train, export for SGLang.", no_args_is_help=True)


@app.callback()
def _group():
    """EAGLE draft heads: build data, train, export for SGLang."""


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@app.command("build-data")
def build_data(
    out: str = typer.Option(..., "--out", "-o", help="Shard directory (created; rerun to resume)."),
    target: str = typer.Option("default", "--target", "-m", help="Target model spec."),
    prompts: str = typer.Option(None, help="Prompt JSONL (default: the shipped train prompts)."),
    source: str = typer.Option("generate", help="generate (self-distillation) | reference (teacher-forced reference answers)."),
    modes: str = typer.Option("alternate", help="direct | reasoning | alternate | both"),
    batch_size: int = typer.Option(16, min=1),
    max_new_tokens: int = typer.Option(256, min=1),
    max_length: int = typer.Option(768, min=8),
    temperature: float = typer.Option(0.0, min=0.0),
    dtype: str = typer.Option("bfloat16"),
    limit: int = typer.Option(0, min=0, help="First N prompts only (0 = all)."),
    threads: int = typer.Option(0, min=0),
    seed: int = typer.Option(0),
):
    """Self-distil the target on a prompt set (or teacher-force reference text) and cache features as shards."""
    from tpro.eagle.data import DataConfig, build_data as run

    cfg = DataConfig(target=target, out=out, source=source, modes=modes, batch_size=batch_size,
                     max_new_tokens=max_new_tokens, max_length=max_length, temperature=temperature, dtype=dtype,
                     limit=limit, threads=threads, seed=seed)
    if prompts:
        cfg.prompts = prompts
    try:
        run(cfg, log=lambda s: typer.echo(s, err=True))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
