"""``tpro eagle``: build draft-head data, train a head, export it for SGLang, inspect a head."""

from __future__ import annotations

from dataclasses import dataclass

import click

from tpro.config import Config, ConfigError, command, group, opt

app = group("EAGLE draft heads: build data, train, export for SGLang.")


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _run(fn, *args, **kw):
    """``fn(...)``, its bad-input errors (missing files, unreadable shards, a model that does not load) -> exit 2."""
    from tpro.models.loading import ModelLoadError

    try:
        return fn(*args, **kw)
    except (ValueError, FileNotFoundError, ModelLoadError) as e:
        raise ConfigError(str(e)) from e


@command("tpro.eagle.data:DataConfig", name="build-data", group=app)
def build_data(cfg):
    """Self-distil the target on a prompt set (or teacher-force reference answers) and cache its features as
    safetensors shards in --out (resumable: rerun after a kill)."""
    from tpro.eagle.data import build_data as run

    _run(run, cfg, log=_echo)


@command(
    "tpro.eagle.train:TrainConfig",
    group=app,
    extra=[click.Option(["--progress/--no-progress"], default=True, help="A progress bar, or log lines.")],
)
def train(cfg, progress: bool = True):
    """Train a draft head on cached features (EAGLE losses, AdamW, cosine schedule) into --out: head.safetensors,
    head_config.json, train_log.jsonl and a checkpoint (rerun to resume). Prints the head directory."""
    from tpro.eagle.train import train as run

    click.echo(str(_run(run, cfg, progress=progress, log=_echo)))


@command("tpro.eagle.export:ExportConfig", group=app)
def export(cfg):
    """Export HEAD_DIR so SGLang serves it with --speculative-algorithm EAGLE: model.safetensors, config.json,
    hot_token_map.pt and a README with the command, in --out. Prints the directory."""
    from tpro.eagle.export import export_sglang

    click.echo(str(_run(export_sglang, cfg.head_dir, cfg.out, cfg.model, rope_scaling=cfg.rope_scaling)))


@dataclass(kw_only=True)
class InfoConfig(Config):
    head_dir: str = opt("default", "Head directory, or 'default' for the shipped head", positional=True)


@command(InfoConfig, group=app)
def info(cfg: InfoConfig):
    """Print a head's config and training record (HEAD_DIR/head_config.json) as JSON."""
    import json

    from tpro.eagle import default_head_dir
    from tpro.eagle.head import read_head_config

    d = default_head_dir() if cfg.head_dir == "default" else cfg.head_dir
    if d is None:
        raise ConfigError("no head is shipped for the default model in this install")
    click.echo(json.dumps(_run(read_head_config, d), indent=2, ensure_ascii=False))
