"""``tpro serve`` as a real process on a real socket (uvicorn), tiny Qwen2 model, API key on, --max-queue 1."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.serve.conftest import API_KEY
from tests.serve.test_app import metric

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def model_name(url: str) -> str:
    return httpx.get(url + "/v1/models", headers=AUTH).json()["data"][0]["id"]


def body(url: str, **kw) -> dict:
    return {"model": model_name(url), "messages": [{"role": "user", "content": "Расскажи о Москве."}], **kw}


def wait_idle(url: str, timeout_s: float = 60.0) -> None:
    """Until the server reports nothing running or queued (the generation thread has ended)."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(url + "/health").json()["queue"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(url + "/health").json()["queue"] == 0


def test_api_key_over_socket(live_server):
    assert httpx.get(live_server + "/health").status_code == 200
    r = httpx.post(live_server + "/v1/chat/completions", json={"model": "x", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(live_server + "/metrics").status_code == 401
    assert httpx.get(live_server + "/metrics", headers=AUTH).status_code == 200


def test_streaming_over_socket_arrives_in_pieces(live_server):
    req = body(live_server, max_tokens=30, temperature=0, stream=True)
    chunks = []
    with httpx.stream("POST", live_server + "/v1/chat/completions", json=req, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    assert chunks[-1] == "[DONE]"
    parsed = [json.loads(c) for c in chunks[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in parsed if c["choices"])
    final = parsed[-1]
    assert final["choices"][0]["finish_reason"] == "length"
    assert final["usage"]["completion_tokens"] == 30
    assert len(parsed) > 5  # streamed token by token, not one blob
    full = httpx.post(
        live_server + "/v1/chat/completions", json={**req, "stream": False}, headers=AUTH, timeout=60
    ).json()
    assert content == full["choices"][0]["message"]["content"]


def test_bad_json_over_socket_then_still_serving(live_server):
    r = httpx.post(
        live_server + "/v1/chat/completions",
        content=b'{"model": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    ok = httpx.post(
        live_server + "/v1/chat/completions", json=body(live_server, max_tokens=3), headers=AUTH, timeout=60
    )
    assert ok.status_code == 200


def test_disconnect_stops_generation(live_server):
    wait_idle(live_server)
    before = metric(httpx.get(live_server + "/metrics", headers=AUTH).text, "tpro_generated_tokens_total")
    req = body(live_server, max_tokens=1500, temperature=0, stream=True)
    with httpx.stream("POST", live_server + "/v1/chat/completions", json=req, headers=AUTH, timeout=60) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 5:
                break  # leaving the block closes the connection mid-stream
    wait_idle(live_server)
    text = httpx.get(live_server + "/metrics", headers=AUTH).text
    generated = metric(text, "tpro_generated_tokens_total") - before
    assert metric(text, 'tpro_requests_total{outcome="cancelled"}') >= 1
    # The tiny model never stops on its own within 1500 greedy tokens (it has no learnt EOS): stopping far
    # short of the budget means the disconnect cancelled it.
    assert 3 <= generated < 1000


def test_overload_over_socket_429_then_recovers(live_server):
    """--max-queue 1: one running, one queued, the third is told to come back later; nothing hangs."""
    wait_idle(live_server)
    long_req = body(live_server, max_tokens=1500, temperature=0, stream=True)
    short_req = body(live_server, max_tokens=3)

    async def main():
        async with httpx.AsyncClient(base_url=live_server, headers=AUTH, timeout=60) as ac:
            async with ac.stream("POST", "/v1/chat/completions", json=long_req) as running:
                assert running.status_code == 200
                lines = running.aiter_lines()
                await anext(lines)  # the long request is generating now
                queued = asyncio.create_task(ac.post("/v1/chat/completions", json=short_req))
                for _ in range(100):  # until the server has admitted it into the queue
                    if (await ac.get("/health")).json()["queue"] == 2:
                        break
                    await asyncio.sleep(0.05)
                rejected = await ac.post("/v1/chat/completions", json=short_req)
            # the long stream is closed here (client gone): the queued request runs next
            served = await asyncio.wait_for(queued, 60)
            return rejected, served

    rejected, served = asyncio.run(main())
    assert rejected.status_code == 429
    assert int(rejected.headers["Retry-After"]) >= 1
    assert rejected.json()["error"]["type"] == "server_overloaded"
    assert served.status_code == 200
    wait_idle(live_server)
    again = httpx.post(live_server + "/v1/chat/completions", json=short_req, headers=AUTH, timeout=60)
    assert again.status_code == 200


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["--draft", "/no/such/head"], "could not load the EAGLE draft"),
        (["--model", "/no/such/model"], "does not exist"),
    ],
)
def test_cli_fails_clearly(args, phrase, tiny_qwen2_dir):
    from click.testing import CliRunner

    from tpro.serve.cli import app

    r = CliRunner().invoke(app, ["--model", str(tiny_qwen2_dir), *args])
    assert r.exit_code == 2
    assert phrase in r.output


def test_serve_compile_warms_up_then_answers_as_eager(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    """``tpro serve --compile --draft DIR`` compiles the decode step and the draft's verify at startup; then a
    request alone decodes through the compiled step, a speculative one through the compiled verify, and both get
    the eager server's greedy answer (fp32, the checkpoint's weights: no rounding differences)."""
    from tests.serve.conftest import start_server, stop_server
    from tpro.eagle.head import init_head, save_head

    save_head(init_head(tiny_qwen2.model, seed=1), tmp_path / "head")
    args = ["--model", str(tiny_qwen2_dir), "--api-key", API_KEY, "--max-batch", "1", "--dtype", "float32"]
    args += ["--draft", str(tmp_path / "head"), "--weights", "bf16"]
    answers, logs = [], []
    for extra in ([], ["--compile"]):
        logs.append(tmp_path / f"server{len(extra)}.log")
        proc, url = start_server([*args, *extra], logs[-1])
        try:
            for spec in (False, True):
                req = body(url, max_tokens=12, temperature=0) | {"speculative": spec}
                r = httpx.post(url + "/v1/chat/completions", json=req, headers=AUTH, timeout=120)
                answers.append((r.json()["choices"][0]["message"]["content"], r.json()["telemetry"]["decoder"]))
        finally:
            stop_server(proc)
    assert len({text for text, _ in answers}) == 1
    assert [d for _, d in answers] == ["vanilla", "eagle", "vanilla-compiled", "eagle-compiled"]
    assert "compiling the decode step" in logs[1].read_text() and "compiling" not in logs[0].read_text()
    assert "compiled the draft's verify" in logs[1].read_text()
