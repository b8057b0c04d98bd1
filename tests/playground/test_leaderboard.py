"""Votes -> a human-arena leaderboard: pane identities, vote -> battle mapping, and ``tpro playground leaderboard``
on a real SQLite file written through ``VoteStore``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tpro.config import ConfigError
from tpro.playground.cli import app
from tpro.playground.leaderboard import pane_identity, resolve_baseline, votes_to_battles
from tpro.playground.store import VoteStore

runner = CliRunner()


def pane(model: str, answer: str = "ответ", reasoning: bool = False, temperature: float = 0.0, spec=None) -> dict:
    settings = {"url": "http://x", "model": model, "reasoning": reasoning, "temperature": temperature,
                "max_tokens": 256, "speculative": spec}  # fmt: skip
    return {"endpoint": "http://x", "model": model, "settings": settings,
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
            "answer": answer, "reasoning": "", "telemetry": {}}  # fmt: skip


def test_pane_identity():
    assert pane_identity(pane("qwen")) == "qwen [direct]"
    assert pane_identity(pane("qwen", reasoning=True)) == "qwen [reasoning]"
    assert pane_identity(pane("qwen", temperature=0.7)) == "qwen [direct, T=0.7]"
    assert pane_identity(pane("qwen", spec=True)) == pane_identity(pane("qwen", spec=False))  # lossless: one model
    assert pane_identity({"endpoint": "http://y", "model": "", "settings": {}}) == "http://y [direct]"


def test_votes_to_battles():
    rows = [
        {"id": 1, "vote": "left", "left": pane("a", "## Да\n- **x**"), "right": pane("b", "нет")},
        {"id": 2, "vote": "right", "left": pane("a"), "right": pane("a", reasoning=True)},
        {"id": 3, "vote": "tie", "left": pane("b"), "right": pane("a")},
        {"id": 4, "vote": "both_bad", "left": pane("a"), "right": pane("b")},
        {"id": 5, "vote": "left", "left": pane("a", spec=True), "right": pane("a", spec=False)},  # self: skipped
    ]
    got = votes_to_battles(rows)
    assert [(b["question_id"], b["model_a"], b["model_b"], b["winner"]) for b in got] == [
        ("vote-1", "a [direct]", "b [direct]", "model_a"),
        ("vote-2", "a [direct]", "a [reasoning]", "model_b"),
        ("vote-3", "b [direct]", "a [direct]", "tie"),
        ("vote-4", "a [direct]", "b [direct]", "tie (bothbad)"),
    ]
    assert (got[0]["len_a"], got[0]["len_b"]) == (len("## Да\n- **x**"), 3)
    assert got[0]["md_a"] == {"headers": 1, "lists": 1, "bold": 1}


def test_resolve_baseline():
    models = ["big [direct]", "big [reasoning]", "small [direct]"]
    assert resolve_baseline(None, models) is None
    assert resolve_baseline("big [reasoning]", models) == "big [reasoning]"
    assert resolve_baseline("small", models) == "small [direct]"
    with pytest.raises(ConfigError, match="'big' has several modes"):
        resolve_baseline("big", models)
    with pytest.raises(ConfigError, match="no contestant 'tiny'. Fix: pass one of: big"):
        resolve_baseline("tiny", models)


def fill(store: VoteStore, seed: int = 0) -> None:
    """Votes between three contestants of known order: big [reasoning] > big [direct] > small [direct]; a few ties,
    both-bad votes and self votes (EAGLE vs plain decoding)."""
    rng = np.random.default_rng(seed)
    strength = {"big_r": 1200, "big": 1050, "small": 850}
    make = {"big_r": lambda: pane("big", "## Ответ\n- a\n- b", reasoning=True), "big": lambda: pane("big", "ответ"),
            "small": lambda: pane("small", "хм")}  # fmt: skip
    names = list(strength)
    for turn in range(90):
        i, j = rng.choice(3, 2, replace=False)
        a, b = names[i], names[j]
        p = 1 / (1 + 10 ** ((strength[b] - strength[a]) / 400))
        u = rng.random()
        vote = "tie" if u < 0.08 else "both_bad" if u < 0.12 else ("left" if rng.random() < p else "right")
        store.add(vote, make[a](), make[b](), session="s", turn=turn)
    for turn in range(3):
        store.add("left", pane("big", spec=True), pane("big", spec=False), session="s", turn=100 + turn)


def test_cli_leaderboard_on_sqlite(tmp_path):
    db = tmp_path / "votes.sqlite"
    fill(VoteStore(db))

    r = runner.invoke(app, ["leaderboard", "--db", str(db), "--baseline", "small", "--rounds", "20"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("| # | model | score | 95% CI | win rate vs small [direct] (95% CI) | battles |")
    assert [ln.split("|")[2].strip() for ln in lines[2:5]] == ["big [reasoning]", "big [direct]", "small [direct]"]
    assert "| 1000 | -0 / +0 | 50.0% (50.0–50.0) |" in lines[4]
    assert "93 votes, 3 of a model against itself skipped" in r.stderr

    out = tmp_path / "board"
    r = runner.invoke(app, ["leaderboard", "--db", str(db), "--rounds", "20", "--seed", "3", "--json",
                            "--out", str(out), "--style-control"])  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["votes"] == 93 and res["self_votes"] == 3 and res["baseline"] is None and res["style_control"]
    assert set(res["style_coefficients"]) >= {"length"}
    rows = res["rows"]
    assert sum(x["battles"] for x in rows) == 2 * 90
    assert all(x["lower"] <= x["score"] <= x["upper"] and x["win_rate"] is None for x in rows)
    assert np.mean([x["score"] for x in rows]) == pytest.approx(1000)  # no baseline: centred
    assert {p.name for p in out.iterdir()} == {"leaderboard.json", "leaderboard.md", "leaderboard.png"}
    saved = json.loads((out / "leaderboard.json").read_text())
    assert saved["rows"] == rows and saved["seed"] == 3
    assert (out / "leaderboard.md").read_text().startswith("| # | model | score | 95% CI | raw BT |")
    assert (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    again = json.loads(runner.invoke(app, ["leaderboard", "--db", str(db), "--rounds", "20", "--seed", "3",
                                           "--json", "--style-control"]).stdout)  # fmt: skip
    assert again["rows"] == rows  # deterministic by seed


def test_cli_errors(tmp_path):
    r = runner.invoke(app, ["leaderboard", "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 2 and "no votes file at" in r.stderr and "Fix:" in r.stderr

    empty = tmp_path / "empty.sqlite"
    VoteStore(empty)
    r = runner.invoke(app, ["leaderboard", "--db", str(empty)])
    assert r.exit_code == 2 and "holds no votes" in r.stderr

    same = tmp_path / "same.sqlite"
    store = VoteStore(same)
    store.add("left", pane("m", spec=True), pane("m", spec=False), "s", 1)
    r = runner.invoke(app, ["leaderboard", "--db", str(same)])
    assert r.exit_code == 2 and "compare a model with itself" in r.stderr

    db = tmp_path / "v.sqlite"
    store = VoteStore(db)
    store.add("left", pane("a"), pane("b"), "s", 1)
    r = runner.invoke(app, ["leaderboard", "--db", str(db), "--baseline", "zzz"])
    assert r.exit_code == 2 and "no contestant 'zzz'" in r.stderr and "a [direct], b [direct]" in r.stderr
    r = runner.invoke(app, ["leaderboard", "--db", str(db), "--rounds", "1"])
    assert r.exit_code == 2 and "--rounds" in r.stderr
