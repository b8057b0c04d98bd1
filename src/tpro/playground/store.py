"""Votes in SQLite: one row per vote, with the full context of both panes, safe under concurrent users.

WAL journal (readers never block the writer), a busy timeout (writers wait for each other instead of failing),
a connection per call (Streamlit serves each user from its own thread) and one short transaction per vote:
concurrent writers from many threads or processes lose nothing (tested with processes).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

VOTES = ("left", "right", "tie", "both_bad")


def default_db() -> Path:
    """Votes are the user's data, not cache: ``$XDG_DATA_HOME/tpro`` (default ``~/.local/share/tpro``)."""
    root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tpro"
    return root / "playground-votes.sqlite"


SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    session TEXT NOT NULL,
    turn INTEGER NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('left', 'right', 'tie', 'both_bad')),
    left_json TEXT NOT NULL,
    right_json TEXT NOT NULL
)
"""


class VoteStore:
    """``add(vote, left, right, session, turn)``; each side is a dict: endpoint, model, settings, messages (the
    pane's whole conversation, its answer last), answer, reasoning, telemetry."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)  # timeout = SQLite's busy wait for the write lock

    def add(self, vote: str, left: dict, right: dict, session: str, turn: int) -> int:
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
        row = (
            uuid.uuid4().hex,
            datetime.now(UTC).isoformat(timespec="seconds"),
            session,
            turn,
            vote,
            json.dumps(left, ensure_ascii=False),
            json.dumps(right, ensure_ascii=False),
        )
        with closing(self._connect()) as db, db:  # `with db`: one transaction, committed or rolled back
            cur = db.execute(
                "INSERT INTO votes (uid, created_at, session, turn, vote, left_json, right_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid)

    def count(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    def rows(self) -> Iterator[dict]:
        with closing(self._connect()) as db:
            cur = db.execute("SELECT id, created_at, session, turn, vote, left_json, right_json FROM votes ORDER BY id")
            for id_, created, session, turn, vote, left, right in cur:
                yield {
                    "id": id_,
                    "created_at": created,
                    "session": session,
                    "turn": turn,
                    "vote": vote,
                    "left": json.loads(left),
                    "right": json.loads(right),
                }
