"""The playground in a real browser: ``tpro playground`` (which starts its own ``tpro serve``) driven through
Debian chromium by Playwright. Raises the right pane's temperature (so the panes are two contestants), types a
prompt, waits for both panes to stream their answers with telemetry, votes, checks the vote row in the SQLite file,
asks a follow-up (multi-turn), votes again, exports the pairs, checks that ``tpro playground leaderboard`` ranks
the two contestants with intervals and that the page's leaderboard shows the same table, and saves a screenshot.

Also a script, to regenerate the docs screenshot on the embedded model with its EAGLE head:
    python -m tests.playground.test_browser --model default --out docs/img/playground.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import free_port
from tpro.playground.store import VoteStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROMPT = "Сколько будет 17 × 23? Ответь кратко."


def launch_playground(model: str, db: Path, log: Path, max_tokens: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tpro.cli",
        "playground",
        "--model",
        model,
        "--port",
        str(port),
        "--db",
        str(db),
        "--no-browser",
        "--threads",
        "1",
        "--max-tokens",
        str(max_tokens),
    ]
    # A session of its own, so the page and the server it starts can be stopped together.
    proc = subprocess.Popen(
        cmd,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tpro playground exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/_stcore/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the playground did not come up:\n{log.read_text()[-3000:]}")


def stop_playground(proc: subprocess.Popen) -> None:
    proc.terminate()  # the launcher stops its page and its server on SIGTERM
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def send_and_wait(page, prompt: str, n_turn: int, timeout_ms: int) -> list[str]:
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill(prompt)
    box.press("Enter")
    # Both panes finished when the vote row for this turn appears; until then they stream.
    page.get_by_text("Which answer is better?").wait_for(timeout=timeout_ms)
    captions = [
        c for c in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts() if c.startswith("telemetry:")
    ]
    assert len(captions) == 2 * n_turn, captions
    return captions


def expander(page, title: str):
    return page.locator('[data-testid="stExpander"]').filter(has_text=title)


def raise_right_temperature(page, timeout_ms: int) -> None:
    """One slider step (0.05) up on the right pane's temperature, by keyboard; done when its header says so."""
    pane = expander(page, "Right pane")
    pane.locator("summary").click()
    thumb = pane.get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowRight")
    page.get_by_text("T=0.05").wait_for(timeout=timeout_ms)


def leaderboard_rows(page, timeout_ms: int) -> list[list[str]]:
    """Open the page's leaderboard and read its table: one list of cells per contestant."""
    from playwright.sync_api import expect

    board = expander(page, "Leaderboard (human arena)")
    expect(board).to_have_count(1, timeout=timeout_ms)  # the previous run's stale copy gone: this run is done
    board.locator("summary").click()
    board.locator("table").wait_for(timeout=timeout_ms)
    return [r.split("\t") for r in board.locator("tbody tr").all_inner_texts()]


def drive(url: str, screenshot: Path, timeout_ms: int = 60_000, follow_up: bool = True, contest: bool = False) -> dict:
    """``contest``: make the panes two contestants first and read the page's leaderboard after the votes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=timeout_ms)
        if contest:
            raise_right_temperature(page, timeout_ms)
        first = send_and_wait(page, PROMPT, 1, timeout_ms)
        page.screenshot(path=str(screenshot), full_page=True)
        page.get_by_role("button", name="← Left is better").click()
        page.get_by_text("Vote saved").wait_for(timeout=timeout_ms)
        second = None
        if follow_up:
            second = send_and_wait(page, "А 17 × 24?", 2, timeout_ms)
            page.get_by_role("button", name="Tie").click()
            page.get_by_text("Vote saved").wait_for(timeout=timeout_ms)
        board = leaderboard_rows(page, timeout_ms) if contest else None
        browser.close()
    return {"first": first, "second": second, "board": board}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
    reason="Debian chromium is not installed (apt-get install chromium)",
)
def test_playground_in_browser(tiny_qwen2_dir, tmp_path):
    db = tmp_path / "votes.sqlite"
    proc, url = launch_playground(str(tiny_qwen2_dir), db, tmp_path / "playground.log", max_tokens=48)
    try:
        shot = tmp_path / "playground.png"
        captions = drive(url, shot, contest=True)
    finally:
        stop_playground(proc)
    # telemetry under both answers, from the server (tokens, speed, decoder) and the client (end to end)
    for line in captions["first"]:
        assert "tokens" in line and "tok/s" in line and "TTFT" in line and "end to end" in line
    assert shot.stat().st_size > 20_000
    rows = list(VoteStore(db).rows())
    assert [r["vote"] for r in rows] == ["left", "tie"]
    first, second = rows
    for side in ("left", "right"):
        assert first[side]["messages"][0] == {"role": "user", "content": PROMPT}
        assert first[side]["answer"] and first[side]["telemetry"]["generated_tokens"] > 0
        # the follow-up carried the conversation: user, this pane's answer, user, answer
        assert [m["role"] for m in second[side]["messages"]] == ["user", "assistant", "user", "assistant"]
        assert second[side]["messages"][1]["content"] == first[side]["answer"]
    # the no-argument layout: left pane EAGLE when a draft is loaded, right pane plain decoding, raised to T=0.05
    assert first["right"]["settings"]["speculative"] in (False, None)
    assert (first["left"]["settings"]["temperature"], first["right"]["settings"]["temperature"]) == (0, 0.05)
    out = tmp_path / "pairs.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "tpro.cli", "playground", "export-prefs", str(out), "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pairs"] == 1
    pair = json.loads(out.read_text())
    assert pair["chosen"][0]["content"] == first["left"]["answer"]

    # the votes are battles of two contestants: the left pane won one and tied one
    r = subprocess.run(
        [sys.executable, "-m", "tpro.cli", "playground", "leaderboard", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    board = json.loads(r.stdout)
    model = first["left"]["model"]
    assert (board["votes"], board["self_votes"]) == (2, 0)
    assert [x["model"] for x in board["rows"]] == [f"{model} [direct]", f"{model} [direct, T=0.05]"]
    assert all(x["lower"] <= x["score"] <= x["upper"] and x["battles"] == 2 for x in board["rows"])
    assert board["rows"][0]["upper"] > board["rows"][0]["lower"]  # an interval, not a point
    # the page's leaderboard, refreshed by the votes: the command's table (same rounds and seed)
    assert captions["board"] == [
        [str(i), x["model"], f"{x['score']:.0f}", f"-{x['score'] - x['lower']:.0f} / +{x['upper'] - x['score']:.0f}",
         str(x["battles"])]
        for i, x in enumerate(board["rows"], 1)
    ]  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Drive the playground in chromium and save a screenshot.")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default="docs/img/playground.png")
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"tpro-shot-{os.getpid()}"
    workdir.mkdir(parents=True)
    proc, url = launch_playground(args.model, workdir / "votes.sqlite", workdir / "playground.log", args.max_tokens)
    try:
        print(drive(url, Path(args.out), timeout_ms=900_000, follow_up=False))
    finally:
        stop_playground(proc)
