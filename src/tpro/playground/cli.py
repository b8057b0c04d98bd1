"""``tpro playground``: start the side-by-side page (and, with no endpoint given, a local ``tpro serve``);
``tpro playground export-prefs OUT.jsonl``: votes -> DPO pairs.

With no arguments: a local server on the embedded default with its EAGLE head when one is shipped
(``--draft auto``), bound to 127.0.0.1 with a random API key; the left pane uses EAGLE, the right plain
decoding, both on that server. ``--left-url``/``--right-url`` point a pane anywhere OpenAI-compatible.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Side-by-side web playground; export votes as DPO pairs.")


def default_db() -> Path:
    """Votes are the user's data, not cache: ``$XDG_DATA_HOME/tpro`` (default ``~/.local/share/tpro``)."""
    root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tpro"
    return root / "playground-votes.sqlite"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, proc: subprocess.Popen | None, timeout_s: float, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"the local server exited with code {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"no answer from {url}/health after {timeout_s:.0f}s")


def start_local_server(
    model: str, draft: str, log: Path, api_key: str, threads: int | None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tpro.cli",
        "serve",
        "--model",
        model,
        "--draft",
        draft,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TPRO_API_KEY=api_key)  # through the environment: not visible in `ps`
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@app.callback(invoke_without_command=True)
def playground(
    ctx: typer.Context,
    left_url: str = typer.Option(None, help="Left pane endpoint (OpenAI-compatible); default: the local server."),
    left_model: str = typer.Option("", help="Left pane model name (default: the endpoint's first model)."),
    right_url: str = typer.Option(None, help="Right pane endpoint; default: the local server."),
    right_model: str = typer.Option("", help="Right pane model name."),
    api_key: str = typer.Option(None, envvar="TPRO_API_KEY", help="Bearer key for the endpoints given by URL."),
    model: str = typer.Option("default", help="Model spec for the local server (when a pane has no URL)."),
    draft: str = typer.Option("auto", help="Draft for the local server: auto | default | DIR | none."),
    threads: int = typer.Option(None, help="torch threads of the local server."),
    max_tokens: int = typer.Option(256, min=1, help="Initial max tokens of both panes (changeable on the page)."),
    port: int = typer.Option(8501, help="Port of the web page (127.0.0.1)."),
    db: Path = typer.Option(None, help=f"SQLite file for votes (default: {default_db()})."),
    browser: bool = typer.Option(
        None, "--browser/--no-browser", help="Open a web browser (default: when a display is available)."
    ),
    server_timeout: float = typer.Option(900.0, help="Seconds to wait for the local server to load the model."),
):
    """Open the side-by-side playground. With no arguments: a local server on the embedded default model,
    left pane with EAGLE (when a head is shipped), right pane with plain decoding."""
    if ctx.invoked_subcommand:
        return
    from tpro.io import cache_dir

    db = db or default_db()
    server = page_proc = None
    note = None
    # SIGTERM (a service manager, a test) must run the cleanup below, or the server would be orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        panes = {
            "left": {"url": left_url, "model": left_model, "api_key": api_key},
            "right": {"url": right_url, "model": right_model, "api_key": api_key},
        }
        if not left_url or not right_url:
            key = secrets.token_urlsafe(16)
            log = cache_dir() / "playground" / "server.log"
            typer.echo(f"starting a local server (model {model}, draft {draft}); log: {log}", err=True)
            server, url = start_local_server(model, draft, log, key, threads)
            wait_health(url, server, server_timeout, log)
            import httpx

            info = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]
            has_draft = info["tpro"]["speculative"]
            if not has_draft:
                note = (
                    "No EAGLE head is loaded on the local server, so both panes decode plainly. "
                    "Train one with `tpro eagle train` and restart with --draft DIR."
                )
            for side, speculative in (("left", True), ("right", False)):
                if not panes[side]["url"]:
                    panes[side] = {"url": url, "model": info["id"], "api_key": key, "speculative": speculative}
            typer.echo(f"local server ready at {url} ({info['id']}, draft: {info['tpro']['draft']})", err=True)
        for side in panes:
            panes[side]["max_tokens"] = max_tokens
        config = {"left": panes["left"], "right": panes["right"], "db": str(db), "note": note}
        page = Path(__file__).with_name("app.py")
        if browser is None:
            browser = bool(os.environ.get("DISPLAY") or sys.platform == "darwin")
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(page),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            str(not browser).lower(),
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "minimal",
            "--",
            "--config",
            json.dumps(config),
        ]
        typer.echo(f"playground: http://127.0.0.1:{port}  (votes: {db}; Ctrl-C to stop)", err=True)
        page_proc = subprocess.Popen(cmd)
        page_proc.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    finally:
        _stop(page_proc)
        _stop(server)


@app.command("export-prefs")
def export_prefs(
    out: Path = typer.Argument(..., help="Output JSONL: one TRL conversational preference pair per line."),
    db: Path = typer.Option(None, help=f"Votes SQLite file (default: {default_db()})."),
    with_reasoning: bool = typer.Option(False, help="Put reasoning traces in the content as <think>…</think>."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
):
    """Turn playground votes into DPO pairs (left/right votes; ties and 'both bad' are skipped)."""
    from tpro.playground.export import export_pairs
    from tpro.playground.store import VoteStore

    db = db or default_db()
    if not db.is_file():
        typer.echo(f"error: no votes file at {db}. Fix: vote in `tpro playground` first, or pass --db PATH", err=True)
        raise typer.Exit(2)
    counts = export_pairs(VoteStore(db).rows(), out, with_reasoning=with_reasoning)
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(
            f"{counts['pairs']} pairs from {counts['votes']} votes ({counts['skipped']} ties or both bad) -> {out}"
        )
