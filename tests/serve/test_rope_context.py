"""The server's context limit follows ``--rope-scaling``: on a tiny Qwen2 told it was trained on 64 tokens, a prompt
of ~100 tokens is refused unscaled and answered with ``yarn:4``; past 4 x 64 it is refused again with a clear 400."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.models.test_rope import ORIG, short_context_copy
from tpro.engine import Engine
from tpro.models import load_model
from tpro.serve import build_app

WORD = "Мама мыла раму. "


@pytest.fixture(scope="module")
def short_dir(tiny_qwen2_dir, tmp_path_factory):
    return short_context_copy(tiny_qwen2_dir, tmp_path_factory.mktemp("short") / "qwen2")


def _engine(path, rope_scaling=None) -> Engine:
    return Engine.from_loaded(load_model(str(path), dtype="float32", progress=False, rope_scaling=rope_scaling))


def _content(engine: Engine, lo: int, hi: int) -> tuple[str, int]:
    """A user message whose chat prompt takes between lo and hi tokens, and that count."""
    for k in range(1, 200):
        n = len(engine.prompt([{"role": "user", "content": WORD * k}], "direct").input_ids)
        if lo < n < hi:
            return WORD * k, n
    raise AssertionError(f"no prompt of {lo}..{hi} tokens")


def _ask(client, engine, content: str):
    body = {"model": engine.name, "messages": [{"role": "user", "content": content}], "max_tokens": 2}
    return client.post("/v1/chat/completions", json=body)


def test_scaled_context_grows_and_overlong_prompts_still_get_a_clear_400(short_dir):
    plain, scaled = _engine(short_dir), _engine(short_dir, f"yarn:4:{ORIG}")
    assert plain.context_length == ORIG and scaled.context_length == 4 * ORIG
    middle, n_middle = _content(plain, ORIG + 10, 2 * ORIG)  # past the original context, well within the scaled
    too_long, n_long = _content(plain, 4 * ORIG + 10, 6 * ORIG)

    with TestClient(build_app(plain)) as client:
        r = _ask(client, plain, middle)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert f"maximum context length is {ORIG} tokens" in r.json()["error"]["message"]

    with TestClient(build_app(scaled)) as client:
        assert client.get("/v1/models").json()["data"][0]["max_model_len"] == 4 * ORIG
        r = _ask(client, scaled, middle)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == n_middle > ORIG
        r = _ask(client, scaled, too_long)
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "context_length_exceeded" and err["param"] == "messages"
        assert f"maximum context length is {4 * ORIG} tokens and the messages take {n_long}" in err["message"]
