"""``tpro tokenizer adapt|check|report|remap-model|recover``: commands generated from the configs of ``tpro.tokenizer``.

Each command's options are its config's fields (``AdaptConfig``, ``CheckConfig``, ``ReportConfig``,
``RemapConfig``, ``RecoverConfig``); heavy imports (tokenizers, transformers, torch) happen inside the commands. Bad input ends
with ``error: ...`` on stderr and exit code 2; a failed ``check`` exits 1.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import click

from tpro.config import command, fail, group, json_flag

app = group(
    "Cyrillic-dense tokenizer: adapt a byte-level BPE, check it, report density, remap a model, recover its quality."
)


@contextmanager
def _user_errors():
    """Missing files, bad corpora, unloadable models: ``error: ...`` and exit 2 (ConfigError is a ValueError)."""
    from tpro.models.loading import ModelLoadError

    try:
        yield
    except (ModelLoadError, ValueError, FileNotFoundError) as e:
        fail(str(e))


@command(
    "tpro.tokenizer.adapt:AdaptConfig",
    group=app,
    extra=[json_flag("Print the report as JSON."), click.Option(["--quiet"], is_flag=True, help="No progress bars.")],
)
def adapt(cfg, as_json: bool = False, quiet: bool = False):
    """Swap low-value tokens of a byte-level BPE for Cyrillic ones (ids of kept tokens unchanged).

    Writes OUT/tokenizer.json, tokenizer_config.json (+ chat template files), swap.json and report.json.
    """
    from tpro.tokenizer.adapt import adapt as run

    with _user_errors():
        report = run(cfg, show_progress=not quiet)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
        return
    click.echo(
        f"swapped {report['swapped']} tokens; reachable fraction {report['reachable_fraction']:.1%}; "
        f"{report['seconds']['total']:.0f} s -> {cfg.out}"
    )
    for name, d in report["density_on_corpus"].items():
        click.echo(f"  tokens per chunk on {name}: {d['base']:.3f} -> {d['adapted']:.3f}")
    for m in report["missing_sources"]:
        click.echo(f"  missing (--allow-missing), not in this tokenizer: {m}")


@command("tpro.tokenizer.check:CheckConfig", group=app, extra=[json_flag("Print results as JSON.")])
def check(cfg, as_json: bool = False):
    """Round trip (hypothesis), reachability, kept ids, loading, chat template. Exit 1 if any check fails."""
    from tpro.tokenizer.check import check as run

    with _user_errors():
        checks = run(cfg)
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], ensure_ascii=False, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table("check", "result", "detail")
        for c in checks:
            t.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail)
        Console().print(t)
    if not all(c.ok for c in checks):
        raise SystemExit(1)


@command(
    "tpro.tokenizer.density:ReportConfig",
    group=app,
    extra=[json_flag("Print JSON instead of the markdown table.")],
)
def report(cfg, as_json: bool = False):
    """Tokens per word, share of words in 1 and <=2 tokens, chars per token; per text and tokenizer.

    A word is a maximal run of letters/marks/digits (regex [^\\W_]+); tokens per word counts every token of the
    line (spaces and punctuation included) over the words in it.
    """
    from tpro.tokenizer.density import report as run
    from tpro.tokenizer.density import to_json, to_markdown

    with _user_errors():
        rows = run(cfg)
    click.echo(to_json(rows) if as_json else to_markdown(rows))


@command(
    "tpro.tokenizer.remap:RemapConfig", name="remap-model", group=app, extra=[json_flag("Print the summary as JSON.")]
)
def remap_model(cfg, as_json: bool = False):
    """Re-initialise the embedding and lm_head rows of swapped ids; kept rows stay bit-identical.

    Writes OUT as a safetensors checkpoint with the adapted tokenizer (and tpro_remap.json).
    """
    from tpro.tokenizer.remap import remap as run

    with _user_errors():
        stats = run(cfg, show_progress=not as_json)
    click.echo(
        json.dumps(stats)
        if as_json
        else f"remapped {stats['swapped']} rows ({cfg.method}, fitted {stats['fitted']}, tied={stats['tied']}) "
        f"-> {cfg.out}"
    )


@command(
    "tpro.tokenizer.recover:RecoverConfig",
    group=app,
    extra=[json_flag("Print recover.json."), click.Option(["--quiet"], is_flag=True, help="No progress bars.")],
)
def recover(cfg, as_json: bool = False, quiet: bool = False):
    """Recover a remapped model's quality under a time budget: init, swapped rows, then all weights.

    Stages (--stages init:mean|awedist,rows:ce|alm|alm+ce[:SHARE],full[:SHARE]) share --budget-minutes, counted
    across restarts: rerun the same command to resume OUT/checkpoint. Writes OUT/model (loadable by
    `tpro generate --model`), OUT/recover.json and, with --eval, bits/char on held-out text. --control trains the
    unswapped base the same way. Multi-GPU: accelerate launch -m tpro.tokenizer.recover --config ...
    """
    from tpro.tokenizer.recover import recover as run

    with _user_errors():
        summary = run(cfg, show_progress=not quiet)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=1))
        return summary
    from rich.console import Console
    from rich.table import Table

    t = Table("stage", "stopped", "steps", "tokens", "minutes", "last loss")
    for s in summary["stages"]:
        last = s["losses"][-1] if s["losses"] else None
        loss = "" if last is None else f"{last[2 if s['name'] == 'init' else 1]:.4f}"
        t.add_row(f"{s['name']}:{s['variant']}", str(s["stopped"]), str(s["steps"]), str(s["tokens"]),
                  f"{s['elapsed_s'] / 60:.1f}", loss)  # fmt: skip
    Console().print(t)
    ev = summary["eval"]
    bpc = f"; {ev['bpc']:.4f} bits/char on {ev['texts']} held-out texts" if ev else ""
    click.echo(f"{summary['total_s'] / 60:.1f} of {summary['budget_s'] / 60:g} minutes{bpc} -> {summary['final_dir']}")
    return summary
