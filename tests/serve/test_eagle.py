"""The server with a real EAGLE draft (``tpro.eagle``): a head for the tiny Qwen2 model, initialised (not
trained) and saved to disk, loaded through ``tpro serve``'s draft resolution. Greedy answers must be the same
with and without speculation (lossless verification), and telemetry must show the draft at work."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tpro.eagle import DraftUnavailable, resolve_draft
from tpro.engine import Engine
from tpro.serve import build_app

eagle_head = pytest.importorskip("tpro.eagle.head")


@pytest.fixture(scope="module")
def head_dir(tiny_qwen2, tmp_path_factory):
    head = eagle_head.init_head(tiny_qwen2.model, name="tiny-qwen2", seed=1)
    return eagle_head.save_head(head, tmp_path_factory.mktemp("head"))


def test_resolve_draft(tiny_qwen2, head_dir):
    decoder, line = resolve_draft(str(head_dir), tiny_qwen2)
    assert decoder.name == "eagle" and str(head_dir) in line
    assert resolve_draft("none", tiny_qwen2) == (None, "draft: none (plain decoding)")
    # "auto" never fails: the shipped head belongs to the embedded model, not to this one
    assert resolve_draft("auto", tiny_qwen2)[0] is None
    with pytest.raises(DraftUnavailable, match="could not load the EAGLE draft"):
        resolve_draft(str(head_dir / "missing"), tiny_qwen2)


def test_speculative_is_lossless_through_the_server(tiny_qwen2, head_dir):
    decoder, _ = resolve_draft(str(head_dir), tiny_qwen2)
    with TestClient(build_app(Engine.from_loaded(tiny_qwen2), draft=decoder)) as c:
        assert c.get("/v1/models").json()["data"][0]["tpro"] == {"speculative": True, "draft": "eagle"}
        req = {
            "model": tiny_qwen2.name,
            "messages": [{"role": "user", "content": "Сколько будет 2+2?"}],
            "max_tokens": 40,
            "temperature": 0,
        }
        on = c.post("/v1/chat/completions", json=req).json()
        off = c.post("/v1/chat/completions", json={**req, "speculative": False}).json()
        assert on["choices"][0]["message"]["content"] == off["choices"][0]["message"]["content"]
        assert on["usage"] == off["usage"]
        tel = on["telemetry"]
        assert tel["decoder"] == "eagle" and tel["draft_proposed"] > 0
        assert tel["acceptance_length"] >= 1.0
        assert off["telemetry"]["decoder"] == "vanilla" and off["telemetry"]["draft_proposed"] == 0
