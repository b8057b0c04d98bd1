"""Playground votes -> a human-arena leaderboard: Bradley-Terry scores with bootstrap intervals
(``tpro.eval.arena``), printed as markdown and optionally written as leaderboard.json / .md / .png.

Who is a contestant: a pane's model name and mode, plus its temperature when it sampled, as
``"qwen [direct]"``, ``"qwen [reasoning]"``, ``"qwen [direct, T=0.7]"`` (``pane_identity``). Speculative decoding,
the endpoint and the token budget are left out: EAGLE verification is lossless, so a pane with a draft and one
without answer alike, and the default playground (one local model, draft left, plain right) gives only votes of a
model against itself, which carry no information about strength and are skipped (counted as ``self_votes``).

Votes become battles as arena-hard treats verdicts: left pane = model_a, "left"/"right" a win, "tie" a tie and
"both_bad" a "tie (bothbad)", both counted half a win each way. Each answer's length (characters) and markdown
counts go into the battle, so ``--style-control`` works on votes too.

What this module does not know: the page (which shows ``board``), the servers, how a score is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tpro.config import Config, ConfigError, opt
from tpro.eval.arena import leaderboard, markdown_table, plot, style_controlled, style_features
from tpro.io import atomic_write, write_json
from tpro.playground.store import VoteStore, default_db

WINNER = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}


@dataclass(kw_only=True)
class LeaderboardConfig(Config):
    """``tpro playground leaderboard``: which votes, the anchor, the bootstrap, where the files go."""

    db: str | None = opt(None, f"Votes SQLite file (default: {default_db()})")
    baseline: str | None = opt(
        None,
        "Model that scores 1000 and that win rates are against: a name as the table prints it, or a bare model "
        "name when it has one mode (default: none; scores centred on 1000)",
    )
    rounds: int = opt(100, "Bootstrap rounds for the 95% intervals", min=10, max=10000)
    seed: int = opt(0, "Bootstrap seed (same votes and seed: same intervals)")
    style_control: bool = opt(False, "Hold answer length and markdown equal (style-controlled scores)")
    out: str | None = opt(None, "Directory for leaderboard.json, leaderboard.md and leaderboard.png")


def pane_identity(side: dict) -> str:
    """A pane's contestant name: model, mode (direct | reasoning) and, when it sampled, the temperature."""
    settings = side.get("settings") or {}
    model = side.get("model") or settings.get("model") or side.get("endpoint") or "unknown"
    mode = "reasoning" if settings.get("reasoning") else "direct"
    t = settings.get("temperature") or 0
    return f"{model} [{mode}, T={t:g}]" if t > 0 else f"{model} [{mode}]"


def votes_to_battles(rows) -> list[dict]:
    """Vote rows (``VoteStore.rows()``) -> battles with style features; votes of a contestant against itself are
    left out."""
    battles = []
    for r in rows:
        a, b = pane_identity(r["left"]), pane_identity(r["right"])
        if a == b:
            continue
        sa, sb = style_features(r["left"].get("answer", "")), style_features(r["right"].get("answer", ""))
        battles.append({"question_id": f"vote-{r['id']}", "model_a": a, "model_b": b, "winner": WINNER[r["vote"]],
                        "len_a": sa["len"], "len_b": sb["len"], "md_a": sa["md"], "md_b": sb["md"]})  # fmt: skip
    return battles


def resolve_baseline(name: str | None, models: list[str]) -> str | None:
    """``name`` as a contestant: exact, or the one contestant of that bare model name; else a ConfigError."""
    if name is None or name in models:
        return name
    same = [m for m in models if m.startswith(name + " [")]
    if len(same) == 1:
        return same[0]
    hint = f"{name!r} has several modes: {', '.join(same)}" if same else f"no contestant {name!r}"
    raise ConfigError(f"--baseline: {hint}. Fix: pass one of: {', '.join(sorted(models))}")


def board(rows: list[dict], cfg: LeaderboardConfig, where: str) -> dict:
    """Vote rows (``VoteStore.rows()``) -> {"votes", "self_votes", "baseline", "style_control", "rounds", "seed",
    "style_coefficients", "rows", "markdown"}: what the command prints and the page shows. ConfigError when there
    are no votes or no two different contestants (``where`` names the votes in the message)."""
    if not rows:
        raise ConfigError(f"{where} holds no votes. Fix: vote in `tpro playground` first, or pass another --db")
    battles = votes_to_battles(rows)
    models = list(dict.fromkeys(m for b in battles for m in (b["model_a"], b["model_b"])))
    if len(models) < 2:
        raise ConfigError(
            f"{where}: all {len(rows)} votes compare a model with itself (same model and mode in both panes, e.g. "
            "with and without EAGLE, which answers alike); such votes are skipped. Fix: vote between different "
            "models or modes: give one pane another model or endpoint, or switch its reasoning or temperature"
        )
    baseline = resolve_baseline(cfg.baseline, models)
    table = leaderboard(battles, baseline, cfg.rounds, cfg.seed, cfg.style_control)
    coefs = style_controlled(battles, baseline)[1] if cfg.style_control else {}
    md = markdown_table(table, baseline)
    if coefs:
        md += "\nStyle coefficients (log-odds per RMS unit, positive = that style wins votes): "
        md += ", ".join(f"{k} {v:+.3f}" for k, v in coefs.items()) + "\n"
    return {"votes": len(rows), "self_votes": len(rows) - len(battles), "baseline": baseline,
            "style_control": cfg.style_control, "rounds": cfg.rounds, "seed": cfg.seed,
            "style_coefficients": coefs, "rows": table, "markdown": md}  # fmt: skip


def note(result: dict) -> str:
    """One line under the table: how many votes, how many skipped as a model against itself."""
    n = result["votes"]
    return f"{n} vote{'s' * (n != 1)}, {result['self_votes']} of a model against itself skipped"


def run_leaderboard(cfg: LeaderboardConfig) -> dict:
    """The leaderboard of the votes in ``cfg.db``: ``board``'s dict plus "db" and "files"; writes the files when
    ``cfg.out`` is set."""
    db = Path(cfg.db) if cfg.db else default_db()
    if not db.is_file():
        raise ConfigError(f"no votes file at {db}. Fix: vote in `tpro playground` first, or pass --db PATH")
    result = {"db": str(db), **board(list(VoteStore(db).rows()), cfg, str(db)), "files": []}
    if cfg.out:
        out = Path(cfg.out)
        write_json(out / "leaderboard.json", {k: v for k, v in result.items() if k not in ("markdown", "files")})
        atomic_write(out / "leaderboard.md", result["markdown"])
        battles = result["votes"] - result["self_votes"]
        plot(result["rows"], out / "leaderboard.png", title=f"Playground votes ({battles} battles), 95% intervals")
        result["files"] = [str(out / n) for n in ("leaderboard.json", "leaderboard.md", "leaderboard.png")]
    return result
