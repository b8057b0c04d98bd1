"""Votes -> DPO pairs (TRL conversational preference format), and the export-prefs command."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tpro.playground.cli import app
from tpro.playground.export import vote_to_pair
from tpro.playground.store import VoteStore


def side(history: list[str], answer: str, reasoning: str = "", model: str = "m") -> dict:
    msgs = []
    for i, text in enumerate(history):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    msgs.append({"role": "assistant", "content": answer})
    return {
        "endpoint": "http://x",
        "model": model,
        "settings": {"reasoning": bool(reasoning)},
        "messages": msgs,
        "answer": answer,
        "reasoning": reasoning,
        "telemetry": {},
    }


def fill(store: VoteStore) -> None:
    store.add("left", side(["2+2?"], "4", "2 and 2", model="eagle"), side(["2+2?"], "5", model="base"), "s", 1)
    store.add(
        "right",
        side(["hi", "hello", "how are you?"], "meh"),
        side(["hi", "hey!", "how are you?"], "fine, thanks"),
        "s",
        2,
    )
    store.add("tie", side(["a"], "x"), side(["a"], "y"), "s", 3)
    store.add("both_bad", side(["a"], "x"), side(["a"], "y"), "s", 4)


def test_pairs_from_votes(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    fill(store)
    pairs = [vote_to_pair(r) for r in store.rows()]
    assert pairs[2] is None and pairs[3] is None  # tie, both bad
    p = pairs[0]
    assert p["prompt"] == [{"role": "user", "content": "2+2?"}]
    assert p["chosen"] == [{"role": "assistant", "content": "4"}]
    assert p["rejected"] == [{"role": "assistant", "content": "5"}]
    assert p["meta"]["chosen_model"] == "eagle" and p["meta"]["chosen_reasoning"] == "2 and 2"
    assert p["meta"]["histories_differ"] is False
    q = pairs[1]  # the right pane won: its own history is the prompt
    assert [m["content"] for m in q["prompt"]] == ["hi", "hey!", "how are you?"]
    assert q["chosen"][0]["content"] == "fine, thanks" and q["rejected"][0]["content"] == "meh"
    assert q["meta"]["histories_differ"] is True
    with_r = vote_to_pair(next(store.rows()), with_reasoning=True)
    assert with_r["chosen"][0]["content"] == "<think>\n2 and 2\n</think>\n\n4"


def test_export_prefs_command(tmp_path):
    db = tmp_path / "v.sqlite"
    fill(VoteStore(db))
    out = tmp_path / "prefs" / "pairs.jsonl"
    r = CliRunner().invoke(app, ["export-prefs", str(out), "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"votes": 4, "pairs": 2, "skipped": 2, "out": str(out)}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2
    for pair in lines:
        assert set(pair) == {"prompt", "chosen", "rejected", "meta"}
        assert pair["prompt"][-1]["role"] == "user"
        assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    assert not list(out.parent.glob("*.tmp*"))  # written atomically


def test_export_prefs_without_votes_fails_clearly(tmp_path):
    r = CliRunner().invoke(app, ["export-prefs", str(tmp_path / "o.jsonl"), "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 2
    assert "no votes file" in r.output
