"""``tpro bench decode``: EAGLE vs our vanilla loop vs ``model.generate`` (and prompt lookup) vs llama.cpp, per domain."""

from __future__ import annotations

import click

from tpro.config import ConfigError, command, group, json_flag

app = group("Decode benchmarks: EAGLE vs vanilla vs model.generate vs llama.cpp, per domain.")


@command("tpro.bench.decode:BenchConfig", group=app, extra=[json_flag("Print the JSON result instead of the table.")])
def decode(cfg, as_json: bool = False):
    """Measure decode tokens/s per domain, speedups, acceptance length and the draft/verify split; prints a
    markdown table (with --out: decode.json, decode.md and decode.png there). The llama.cpp row needs its binding
    (bash bench/build_llama_cpp.sh) and is skipped with a note without it."""
    import json

    from tpro.bench.decode import markdown, run_bench
    from tpro.eagle import DraftUnavailable
    from tpro.models.loading import ModelLoadError

    try:
        result = run_bench(cfg, log=lambda s: click.echo(s, err=True))
    except (ValueError, FileNotFoundError, ModelLoadError, DraftUnavailable) as e:
        raise ConfigError(str(e)) from e
    click.echo(
        json.dumps(result, indent=2, ensure_ascii=False) if as_json else markdown(result["summary"], result["notes"])
    )
