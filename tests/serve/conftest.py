"""Fixtures for the server tests: engines over the tiny Qwen2 model, a decoder slowed down per step (to hold
the engine busy for overload, timeout and disconnect tests without a big model), a stand-in draft decoder
(to test per-request routing before a real EAGLE head exists), and a real ``tpro serve`` over a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tpro.engine import Engine, VanillaDecoder

API_KEY = "test-key-123"


class SlowDecoder(VanillaDecoder):
    """The vanilla decoder plus a fixed sleep per step: a busy engine on demand."""

    name = "slow"

    def __init__(self, delay_s: float = 0.05):
        self.delay_s = delay_s

    def decode(self, model, input_ids, params, generator):
        for step in super().decode(model, input_ids, params, generator):
            time.sleep(self.delay_s)
            yield step


class StandInDraft(VanillaDecoder):
    """Vanilla tokens reported as a speculative decoder would (one proposal per step, accepted): lets the
    server's per-request ``speculative`` switch be tested without a trained head."""

    name = "stand-in-draft"

    def decode(self, model, input_ids, params, generator):
        for step in super().decode(model, input_ids, params, generator):
            step.proposed, step.accepted = 1, 0
            yield step


@pytest.fixture(scope="session")
def engine(tiny_qwen2):
    return Engine.from_loaded(tiny_qwen2)


@pytest.fixture(scope="session")
def slow_engine(tiny_qwen2):
    return Engine(tiny_qwen2.model, tiny_qwen2.tokenizer, decoder=SlowDecoder(), name=tiny_qwen2.name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log_path, wait_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start ``tpro serve ARGS`` on a free port; return (process, base URL) once /health answers."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tpro.cli",
            "serve",
            "--port",
            str(port),
            "--threads",
            "1",
            "--log-level",
            "warning",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tpro serve exited with {proc.returncode}:\n{open(log_path).read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"tpro serve did not answer /health in {wait_s}s:\n{open(log_path).read()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def live_server(tiny_qwen2_dir, tmp_path_factory):
    """A real ``tpro serve`` on the tiny model: API key on, one at a time (--max-batch 1), one request may queue
    behind the running one."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    args = ["--model", str(tiny_qwen2_dir), "--api-key", API_KEY, "--max-queue", "1", "--max-batch", "1"]
    proc, url = start_server([*args, "--timeout", "120"], log)
    yield url
    stop_server(proc)
