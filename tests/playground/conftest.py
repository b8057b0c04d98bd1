"""A real ``tpro serve`` on the tiny Qwen2 model, for the playground's client and browser tests."""

from __future__ import annotations

import pytest

from tests.serve.conftest import API_KEY, start_server, stop_server


@pytest.fixture(scope="module")
def tiny_server(tiny_qwen2_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    proc, url = start_server(["--model", str(tiny_qwen2_dir), "--api-key", API_KEY], log)
    yield url
    stop_server(proc)
