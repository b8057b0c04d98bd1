"""Votes in SQLite: round trip, validation, and no lost rows under concurrent writers (processes)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from tpro.playground.store import VoteStore


def side(answer: str, model: str = "m") -> dict:
    return {
        "endpoint": "http://x",
        "model": model,
        "settings": {"temperature": 0.0},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
        "answer": answer,
        "reasoning": "",
        "telemetry": {"tokens_per_s": 1.0},
    }


def test_round_trip_and_wal(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    vid = store.add("left", side("a"), side("б"), session="s1", turn=1)
    rows = list(store.rows())
    assert [r["id"] for r in rows] == [vid]
    assert rows[0]["vote"] == "left" and rows[0]["left"]["answer"] == "a" and rows[0]["right"]["answer"] == "б"
    mode = sqlite3.connect(tmp_path / "v.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_rejects_unknown_vote(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    with pytest.raises(ValueError, match="vote must be one of"):
        store.add("maybe", side("a"), side("b"), "s", 1)
    assert store.count() == 0


def _writer(path: str, worker: int, n: int) -> None:
    store = VoteStore(path)
    for i in range(n):
        store.add(("left", "right", "tie", "both_bad")[i % 4], side(f"{worker}-{i}"), side("r"), f"w{worker}", i)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "v.sqlite")
    workers, n = 6, 40
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = list(VoteStore(path).rows())
    assert len(rows) == workers * n
    assert {r["left"]["answer"] for r in rows} == {f"{w}-{i}" for w in range(workers) for i in range(n)}
