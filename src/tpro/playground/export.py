"""Votes -> DPO preference pairs in TRL's conversational format (one JSON object per line):
``{"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...], "meta": {...}}``.

A "left"/"right" vote gives one pair: the winner's answer is chosen, the loser's rejected. The prompt is the
winner's conversation before its last answer (in a multi-turn chat the two panes' earlier answers differ;
``meta.histories_differ`` says when). "tie" and "both_bad" give no pair. Reasoning traces go in ``meta``, or
into the content as ``<think>…</think>`` with ``with_reasoning``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tpro.config import Config, ConfigError, opt
from tpro.io import write_jsonl
from tpro.playground.store import VoteStore, default_db


@dataclass(kw_only=True)
class ExportConfig(Config):
    """``tpro playground export-prefs``: which votes, where the pairs go, how answers are written."""

    out: str = opt(help="Output JSONL: one TRL conversational preference pair per line", positional=True)
    db: str | None = opt(None, f"Votes SQLite file (default: {default_db()})")
    with_reasoning: bool = opt(False, "Put reasoning traces in the content as <think>…</think>")


def _content(side: dict, with_reasoning: bool) -> str:
    if with_reasoning and side.get("reasoning"):
        return f"<think>\n{side['reasoning']}\n</think>\n\n{side.get('answer', '')}"
    return side.get("answer", "")


def vote_to_pair(row: dict, with_reasoning: bool = False) -> dict | None:
    """One vote row (``VoteStore.rows()``) -> a preference pair, or None for tie / both bad."""
    if row["vote"] not in ("left", "right"):
        return None
    win, lose = (row["left"], row["right"]) if row["vote"] == "left" else (row["right"], row["left"])
    prompt = [{"role": m["role"], "content": m["content"]} for m in win["messages"][:-1]]
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": _content(win, with_reasoning)}],
        "rejected": [{"role": "assistant", "content": _content(lose, with_reasoning)}],
        "meta": {
            "vote_id": row["id"],
            "created_at": row["created_at"],
            "vote": row["vote"],
            "chosen_model": win.get("model"),
            "rejected_model": lose.get("model"),
            "chosen_settings": win.get("settings"),
            "rejected_settings": lose.get("settings"),
            "chosen_reasoning": win.get("reasoning", ""),
            "rejected_reasoning": lose.get("reasoning", ""),
            "histories_differ": win["messages"][:-1] != lose["messages"][:-1],
        },
    }


def export_pairs(rows: Iterable[dict], out: str | Path, with_reasoning: bool = False) -> dict:
    """Write pairs to ``out`` atomically; -> counts {"votes", "pairs", "skipped", "out"}."""
    rows = list(rows)
    pairs = [p for p in (vote_to_pair(r, with_reasoning) for r in rows) if p is not None]
    write_jsonl(out, pairs)
    return {"votes": len(rows), "pairs": len(pairs), "skipped": len(rows) - len(pairs), "out": str(out)}


def export_votes(cfg: ExportConfig) -> dict:
    """The votes in ``cfg.db`` (default: ``default_db()``) -> pairs in ``cfg.out``; -> counts as ``export_pairs``."""
    db = Path(cfg.db) if cfg.db else default_db()
    if not db.is_file():
        raise ConfigError(f"no votes file at {db}. Fix: vote in `tpro playground` first, or pass --db PATH")
    return export_pairs(VoteStore(db).rows(), cfg.out, with_reasoning=cfg.with_reasoning)
