"""Start the playground: a local ``tpro serve`` when a pane has no endpoint, then the Streamlit page; stop both on exit.

``run(PlaygroundConfig(...))`` is what ``tpro playground`` does. The local server is a ``tpro serve`` subprocess on
127.0.0.1 and a free port, with a random API key passed through the environment (not visible in ``ps``) and
``--draft`` as given (``auto``: the shipped EAGLE head when there is one); the left pane uses the draft, the right
plain decoding, both on that server.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tpro.config import ConfigError, like, opt
from tpro.options import DRAFT_HELP, ModelOptions, Weights
from tpro.playground.store import default_db


@dataclass(kw_only=True)
class PlaygroundConfig(ModelOptions):
    """``tpro playground``: the two panes' endpoints, the local server (model, dtype, threads, draft), the page."""

    left_url: str | None = opt(None, "Left pane endpoint (OpenAI-compatible); default: the local server")
    left_model: str = opt("", "Left pane model name (default: the endpoint's first model)")
    right_url: str | None = opt(None, "Right pane endpoint; default: the local server")
    right_model: str = opt("", "Right pane model name")
    api_key: str | None = opt(None, "Bearer key for the endpoints given by URL", envvar="TPRO_API_KEY", secret=True)
    draft: str = opt("auto", f"Local server's draft (left pane). {DRAFT_HELP}")
    weights: Weights = like(ModelOptions, "weights", "auto")  # the local server decodes: the fastest measured format
    # the fastest lossless setting by default (issue 17): compiled steps, each pane's request alone so its telemetry
    # is its own speed (a batch would decode both panes plainly together)
    compile: bool = opt(
        True,
        "Local server: compiled decoding (serve --compile) and one request at a time (--max-batch 1); "
        "--no-compile starts at once and batches the panes",
    )
    # the page's initial budget: a side-by-side reading length, not the shared 512 (changeable on the page)
    max_new_tokens: int = opt(
        256, "Initial max tokens of both panes (changeable on the page)", short="-n", min=1, aliases=("--max-tokens",)
    )
    port: int = opt(8501, "Port of the web page (127.0.0.1)", min=1, max=65535)
    db: str | None = opt(None, f"SQLite file for votes (default: {default_db()})")
    browser: bool | None = opt(None, "Open a web browser (default: when a display is available)")
    server_timeout_s: float = opt(
        900.0, "Seconds to wait for the local server to load the model", min=1.0, aliases=("--server-timeout",)
    )


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


def start_local_server(cfg: PlaygroundConfig, log: Path, api_key: str) -> tuple[subprocess.Popen, str]:
    """``tpro serve`` with ``cfg``'s model options and draft on 127.0.0.1 -> (process, base URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "tpro.cli", "serve", "--model", cfg.model, "--dtype", cfg.dtype]
    cmd += ["--weights", cfg.weights, "--threads", str(cfg.threads), "--draft", cfg.draft]
    cmd += ["--port", str(port), "--host", "127.0.0.1"]
    if cfg.compile:
        cmd += ["--compile", "--max-batch", "1"]
    cmd += ["--log-level", "warning"]
    if cfg.rope_scaling:
        cmd += ["--rope-scaling", cfg.rope_scaling]
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


def _local_panes(cfg: PlaygroundConfig, panes: dict) -> tuple[subprocess.Popen, str | None]:
    """Start the local server and point the panes without a URL at it -> (server process, a note for the page)."""
    import httpx

    from tpro.io import cache_dir

    key = secrets.token_urlsafe(16)
    log = cache_dir() / "playground" / "server.log"
    print(f"starting a local server (model {cfg.model}, draft {cfg.draft}); log: {log}", file=sys.stderr)
    server, url = start_local_server(cfg, log, key)
    wait_health(url, server, cfg.server_timeout_s, log)
    info = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]
    note = None
    if not info["tpro"]["speculative"]:
        note = (
            "No EAGLE head is loaded on the local server, so both panes decode plainly. "
            "Train one with `tpro eagle train` and restart with --draft DIR."
        )
    for side, speculative in (("left", True), ("right", False)):
        if not panes[side]["url"]:
            panes[side] = {"url": url, "model": info["id"], "api_key": key, "speculative": speculative}
    print(f"local server ready at {url} ({info['id']}, draft: {info['tpro']['draft']})", file=sys.stderr)
    return server, note


def run(cfg: PlaygroundConfig) -> None:
    """Serve the page until Ctrl-C or SIGTERM (the local server, if started, is stopped with it). A local server
    that fails to start raises ``ConfigError`` with its log's tail."""
    db = Path(cfg.db) if cfg.db else default_db()
    server = page_proc = None
    note = None
    # SIGTERM (a service manager, a test) must run the cleanup below, or the server would be orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        panes = {
            "left": {"url": cfg.left_url, "model": cfg.left_model, "api_key": cfg.api_key},
            "right": {"url": cfg.right_url, "model": cfg.right_model, "api_key": cfg.api_key},
        }
        if not cfg.left_url or not cfg.right_url:
            server, note = _local_panes(cfg, panes)
        for side in panes:
            panes[side]["max_tokens"] = cfg.max_new_tokens  # the OpenAI request field the page sends
        page_cfg = {"left": panes["left"], "right": panes["right"], "db": str(db), "note": note}
        browser = cfg.browser
        if browser is None:
            browser = bool(os.environ.get("DISPLAY") or sys.platform == "darwin")
        cmd = [sys.executable, "-m", "streamlit", "run", str(Path(__file__).with_name("app.py"))]
        cmd += ["--server.port", str(cfg.port), "--server.address", "127.0.0.1"]
        cmd += ["--server.headless", str(not browser).lower(), "--browser.gatherUsageStats", "false"]
        cmd += ["--client.toolbarMode", "minimal", "--", "--config", json.dumps(page_cfg)]
        print(f"playground: http://127.0.0.1:{cfg.port}  (votes: {db}; Ctrl-C to stop)", file=sys.stderr)
        page_proc = subprocess.Popen(cmd)
        page_proc.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        raise ConfigError(str(e)) from e
    finally:
        _stop(page_proc)
        _stop(server)
