"""Votes -> DPO preference pairs in TRL's conversational format (one JSON object per line):
``{"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...], "meta": {...}}``.

A "left"/"right" vote gives one pair: the winner's answer is chosen, the loser's rejected. The prompt is the
winner's conversation before its last answer (in a multi-turn chat the two panes' earlier answers differ;
``meta.histories_differ`` says when). "tie" and "both_bad" give no pair. Reasoning traces go in ``meta``, or
into the content as ``<think>…</think>`` with ``with_reasoning``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


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
    """Write pairs to ``out`` atomically (tmp + rename); -> counts {"votes", "pairs", "skipped"}."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    votes = pairs = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            votes += 1
            pair = vote_to_pair(row, with_reasoning)
            if pair is not None:
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
                pairs += 1
    os.replace(tmp, out)
    return {"votes": votes, "pairs": pairs, "skipped": votes - pairs, "out": str(out)}
