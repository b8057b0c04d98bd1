"""The page's leaderboard section, run by Streamlit's AppTest on a real SQLite file (no server, no browser): the
message before any vote and with self-votes only, then the same table as ``tpro playground leaderboard``,
recomputed after a new vote, with win rates once a baseline is chosen."""

from __future__ import annotations

from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from tests.playground.test_leaderboard import pane
from tpro.playground.cli import app
from tpro.playground.store import VoteStore


def section(db: str) -> None:  # the script AppTest runs (its source, so imports inside)
    from tpro.playground.app import leaderboard_section
    from tpro.playground.store import VoteStore

    leaderboard_section(db, VoteStore(db).count())


def run(db) -> AppTest:
    at = AppTest.from_function(section, args=(str(db),), default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def test_leaderboard_section(tmp_path):
    db = tmp_path / "votes.sqlite"
    store = VoteStore(db)
    at = run(db)
    assert at.expander[0].label == "Leaderboard (human arena)"
    assert "No votes yet" in at.info[0].value

    store.add("left", pane("m", spec=True), pane("m", spec=False), "s", 1)  # the default playground: m vs m
    at = run(db)
    msg = at.info[0].value
    assert "compare a model with itself" in msg and "such votes are skipped" in msg and "temperature" in msg
    assert not at.markdown

    for i, vote in enumerate(["left", "tie", "both_bad", "right", "left"]):
        store.add(vote, pane("m"), pane("m", temperature=0.7), "s", 2 + i)
    at = run(db)
    assert not at.info
    table = at.markdown[0].value
    cli = CliRunner().invoke(app, ["leaderboard", "--db", str(db)])
    assert cli.exit_code == 0, cli.output
    assert table == cli.stdout.strip()  # same votes, rounds and seed: the page shows what the command prints
    assert "m [direct]" in table and "m [direct, T=0.7]" in table and "win rate" not in table
    assert at.caption[0].value.startswith("6 votes, 1 of a model against itself skipped")
    assert at.selectbox[0].options == ["(none)", *[r.split("|")[2].strip() for r in table.splitlines()[2:]]]

    store.add("left", pane("m"), pane("m", temperature=0.7), "s", 9)  # a new vote: recomputed, not the cached board
    at = run(db)
    assert at.caption[0].value.startswith("7 votes")
    assert [int(r.split("|")[-2]) for r in at.markdown[0].value.splitlines()[2:]] == [6, 6]

    at.selectbox[0].select("m [direct]").run()
    table = at.markdown[0].value
    assert "| win rate vs m [direct] (95% CI) |" in table and "| 1000 | -0 / +0 | 50.0% (50.0–50.0) |" in table
