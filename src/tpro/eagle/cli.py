"""``tpro eagle``: build draft-head data, train a head, export it for SGLang, inspect a head."""

from __future__ import annotations

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
    source: str = typer.Option(
        "generate", help="generate (self-distillation) | reference (teacher-forced reference answers)."
    ),
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
    from tpro.eagle.data import DataConfig
    from tpro.eagle.data import build_data as run
    from tpro.models.loading import ModelLoadError

    cfg = DataConfig(
        target=target,
        out=out,
        source=source,
        modes=modes,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_length=max_length,
        temperature=temperature,
        dtype=dtype,
        limit=limit,
        threads=threads,
        seed=seed,
    )
    if prompts:
        cfg.prompts = prompts
    try:
        run(cfg, log=lambda s: typer.echo(s, err=True))
    except (ValueError, FileNotFoundError, ModelLoadError) as e:
        _fail(str(e))


@app.command()
def train(
    data: list[str] = typer.Option(..., "--data", "-d", help="Shard directory from build-data (repeatable)."),
    out: str = typer.Option(..., "--out", "-o", help="Head directory (rerun to resume from its checkpoint)."),
    target: str = typer.Option("default", "--target", "-m", help="Target model spec (the one the data came from)."),
    hot_vocab: int = typer.Option(16384, min=0, help="FR-Spec draft vocabulary size (0 = full vocabulary)."),
    epochs: float = typer.Option(2.0, min=0.0),
    steps: int = typer.Option(0, min=0, help="Total optimizer steps (overrides --epochs when > 0)."),
    batch_size: int = typer.Option(2, min=1),
    max_length: int = typer.Option(768, min=8),
    window: int = typer.Option(384, min=0, help="Random window of tokens per sequence per step (0 = whole sequence)."),
    lr: float = typer.Option(5e-4, min=0.0),
    warmup: int = typer.Option(30, min=0),
    w_cls: float = typer.Option(0.1, min=0.0, help="Weight of the distribution (CE to the target) term."),
    unroll: int = typer.Option(
        1, min=1, max=8, help="Train draft depths 1..N on the head's own features (training-time test; cost ~N x)."
    ),
    noise: float = typer.Option(0.1, min=0.0),
    cls_fraction: float = typer.Option(
        0.25, min=0.0, max=1.0, help="Share of answer positions the CE term is computed on."
    ),
    mixed_precision: str = typer.Option("bf16", help="bf16 | no"),
    save_every: int = typer.Option(100, min=1),
    seed: int = typer.Option(0),
    threads: int = typer.Option(0, min=0),
    no_progress: bool = typer.Option(False, "--no-progress", help="Log lines instead of a progress bar."),
):
    """Train a draft head on cached features (EAGLE losses, AdamW, cosine schedule, resumable)."""
    from tpro.eagle.train import TrainConfig
    from tpro.eagle.train import train as run
    from tpro.models.loading import ModelLoadError

    cfg = TrainConfig(
        target=target,
        data=list(data),
        out=out,
        hot_vocab=hot_vocab,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        max_length=max_length,
        window=window,
        lr=lr,
        warmup=warmup,
        w_cls=w_cls,
        noise=noise,
        cls_fraction=cls_fraction,
        unroll=unroll,
        mixed_precision=mixed_precision,
        save_every=save_every,
        seed=seed,
        threads=threads,
    )
    try:
        path = run(cfg, progress=not no_progress, log=lambda s: typer.echo(s, err=True))
    except (ValueError, FileNotFoundError, ModelLoadError) as e:
        _fail(str(e))
    typer.echo(str(path))


@app.command()
def export(
    head_dir: str = typer.Argument(..., help="Head directory (head.safetensors + head_config.json)."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory."),
    fmt: str = typer.Option(
        "sglang", "--format", help="sglang (LlamaForCausalLMEagle checkpoint + FR-Spec token map)."
    ),
    target: str = typer.Option("default", "--target", "-m", help="Target model spec (for embed_tokens and config)."),
):
    """Export a head so SGLang serves it with --speculative-algorithm EAGLE."""
    from tpro.eagle.export import export_sglang

    if fmt != "sglang":
        _fail(f"unknown --format {fmt!r}; supported: sglang")
    try:
        path = export_sglang(head_dir, out, target)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(str(path))


@app.command()
def info(head_dir: str = typer.Argument("default", help="Head directory, or 'default' for the shipped head.")):
    """Print a head's config and training record as JSON."""
    import json

    from tpro.eagle import default_head_dir
    from tpro.eagle.head import read_head_config

    d = default_head_dir() if head_dir == "default" else head_dir
    if d is None:
        _fail("no head is shipped for the default model in this install")
    try:
        typer.echo(json.dumps(read_head_config(d), indent=2, ensure_ascii=False))
    except FileNotFoundError as e:
        _fail(str(e))
