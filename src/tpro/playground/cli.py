"""``tpro playground``: the side-by-side page (``tpro.playground.launch``: with no endpoint given, a local
``tpro serve --draft auto`` for both panes); ``tpro playground export-prefs OUT.jsonl``: votes -> DPO pairs;
``tpro playground leaderboard``: votes -> Bradley-Terry scores with intervals (``tpro.playground.leaderboard``).

The bare stage name is a command of its own (options from ``PlaygroundConfig``) and a group of verbs (each from its
config), so ``tpro playground --port 8600`` and ``tpro playground export-prefs out.jsonl`` both work.
"""

from __future__ import annotations

import json

import click

from tpro.config import ConfigCommand, command, fail, json_flag
from tpro.playground.export import ExportConfig, export_votes
from tpro.playground.launch import PlaygroundConfig, run


class ConfigGroup(ConfigCommand, click.Group):
    """A ``ConfigCommand`` that also has verbs: run when no verb is given, its options parsed before a verb."""

    def __init__(self, name, config, run, **kw):
        super().__init__(name, config, run, invoke_without_command=True, **kw)

    def _invoke(self, **kw):
        if click.get_current_context().invoked_subcommand:
            return None
        return super()._invoke(**kw)


def playground(cfg: PlaygroundConfig):
    """Open the side-by-side playground. With no arguments: a local server on the embedded default model,
    left pane with EAGLE (when a head is shipped), right pane with plain decoding."""
    run(cfg)


app = ConfigGroup("playground", PlaygroundConfig, playground, help=playground.__doc__)


@command(ExportConfig, group=app, extra=[json_flag("Print the counts as JSON.")])
def export_prefs(cfg: ExportConfig, as_json: bool = False):
    """Turn playground votes into DPO pairs (left/right votes; ties and 'both bad' are skipped)."""
    counts = export_votes(cfg)
    if as_json:
        click.echo(json.dumps(counts))
    else:
        click.echo(
            f"{counts['pairs']} pairs from {counts['votes']} votes ({counts['skipped']} ties or both bad) -> {cfg.out}"
        )


@command(
    "tpro.playground.leaderboard:LeaderboardConfig",
    group=app,
    extra=[json_flag("Print the leaderboard as JSON.")],
)
def leaderboard(cfg, as_json: bool = False):
    """Rank the voted models: Bradley-Terry scores with 95% bootstrap intervals (ties and 'both bad' count half a
    win each way), win rates against --baseline; --out DIR writes leaderboard.json, .md and .png."""
    from tpro.eval.arena import ArenaError
    from tpro.playground.leaderboard import note, run_leaderboard

    try:
        result = run_leaderboard(cfg)
    except ArenaError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "markdown"}, ensure_ascii=False, indent=2))
        return
    click.echo(result["markdown"], nl=False)
    click.echo(note(result) + (f"; written to {', '.join(result['files'])}" if result["files"] else ""), err=True)
