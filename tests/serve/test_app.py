"""The server in-process (FastAPI TestClient / httpx over ASGI) on the tiny Qwen2 model."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import SlowDecoder, StandInDraft
from tpro.engine import Engine, SamplingParams
from tpro.serve import ServeConfig, build_app


def chat(name: str, content: str = "Сколько будет 2+2?", **kw) -> dict:
    return {"model": name, "messages": [{"role": "user", "content": content}], **kw}


def sse_events(lines) -> list:
    """Parse SSE 'data:' lines -> list of decoded JSON objects, with the literal '[DONE]' kept as a string."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture(scope="module")
def client(engine):
    # As a context manager: one event loop for the app's whole life, as under uvicorn (a bare TestClient
    # starts a loop per request, and the server's queue lives on one loop).
    with TestClient(build_app(engine)) as c:
        yield c


def test_models_and_health(client, engine):
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [engine.name]
    assert models["data"][0]["max_model_len"] == engine.context_length
    assert models["data"][0]["tpro"] == {"speculative": False, "draft": None}
    assert client.get("/health").json()["status"] == "ok"


def test_non_streaming_equals_engine_greedy(client, engine):
    r = client.post("/v1/chat/completions", json=chat(engine.name, max_tokens=24, temperature=0))
    assert r.status_code == 200
    body = r.json()
    ref = engine.complete([{"role": "user", "content": "Сколько будет 2+2?"}], SamplingParams(max_new_tokens=24))
    choice = body["choices"][0]
    assert body["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == ref.answer
    assert choice["finish_reason"] == ("length" if ref.finish_reason == "length" else "stop")
    assert body["usage"] == {
        "prompt_tokens": len(ref.prompt.input_ids),
        "completion_tokens": len(ref.token_ids),
        "total_tokens": len(ref.prompt.input_ids) + len(ref.token_ids),
    }
    tel = body["telemetry"]
    assert tel["generated_tokens"] == len(ref.token_ids)
    for key in ("ttft_s", "tokens_per_s", "words_per_s", "acceptance_length", "draft_proposed", "draft_accepted"):
        assert key in tel
    assert tel["decoder"] == "vanilla"


def test_seeded_sampling_is_reproducible(client, engine):
    req = chat(engine.name, max_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    a, b = (client.post("/v1/chat/completions", json=req).json() for _ in range(2))
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_streaming_reasoning_apart_and_equal_to_non_streaming(client, engine):
    req = chat(
        engine.name, max_tokens=40, temperature=0, chat_template_kwargs={"enable_thinking": True}, stop=["\n\n\n"]
    )
    full = client.post("/v1/chat/completions", json=req).json()
    with client.stream(
        "POST", "/v1/chat/completions", json={**req, "stream": True, "stream_options": {"include_usage": True}}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks[1:] if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    msg = full["choices"][0]["message"]
    # The prompt opened <think> (reasoning mode on a model without enable_thinking): the output is the trace.
    assert reasoning.strip() == (msg["reasoning_content"] or "")
    assert content.strip() == msg["content"]
    assert reasoning.strip()
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert final["usage"] == full["usage"]
    assert final["telemetry"]["generated_tokens"] == full["usage"]["completion_tokens"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == full["usage"]


def test_multi_turn_and_developer_role(client, engine):
    msgs = [
        {"role": "developer", "content": "Отвечай кратко."},
        {"role": "user", "content": "Привет"},
        {"role": "assistant", "content": "Здравствуйте!", "reasoning_content": "greet back"},
        {"role": "user", "content": [{"type": "text", "text": "Как дела?"}]},
    ]
    r = client.post("/v1/chat/completions", json={"model": engine.name, "messages": msgs, "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 20


LONG = "слово " * 3000  # well over the tiny model's 2048-token context

# (request body or raw bytes, expected status, expected "param", a phrase the message must contain)
BAD = [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2, 3]", 400, None, "JSON object"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model", "Field required"),
    ({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "model", "does not exist"),
    ({"model": "{name}", "messages": []}, 400, "messages", "at least 1"),
    ({"model": "{name}", "messages": "hi"}, 400, "messages", "valid list"),
    ({"model": "{name}", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role", "user"),
    ({"model": "{name}", "messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content", ""),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
        400,
        "temperature",
        "number",
    ),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e9},
        400,
        "temperature",
        "less than or equal to 2",
    ),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "temperature": -1},
        400,
        "temperature",
        "greater than or equal",
    ),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 400, "top_p", "greater"),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens", ""),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"},
        400,
        "max_tokens",
        "integer",
    ),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**12},
        400,
        "max_tokens",
        "maximum context length",
    ),
    ({"model": "{name}", "messages": [{"role": "user", "content": LONG}]}, 400, "messages", "maximum context length"),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "n": 3}, 400, "n", "n=1"),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream", "bool"),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "stop": [""] * 17}, 400, "stop", "16"),
    (
        {"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "speculative": True},
        400,
        "speculative",
        "no draft",
    ),
    ({"model": "{name}", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400, "logprobs", ""),
    (
        {
            "model": "{name}",
            "messages": [{"role": "user", "content": "hi"}],
            "chat_template_kwargs": {"enable_thinking": "maybe"},
        },
        400,
        "chat_template_kwargs.enable_thinking",
        "bool",
    ),
]


@pytest.mark.parametrize("body,status,param,phrase", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_gets_openai_error_and_server_keeps_serving(client, engine, body, status, param, phrase):
    if isinstance(body, bytes):
        r = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        body = json.loads(json.dumps(body).replace("{name}", engine.name))
        r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param
    assert phrase in err["message"]
    ok = client.post("/v1/chat/completions", json=chat(engine.name, max_tokens=2))
    assert ok.status_code == 200


def test_unknown_route_is_openai_error(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_api_key_required_everywhere_but_health(engine):
    with TestClient(build_app(engine, ServeConfig(api_key="s3cret"))) as c:
        assert c.get("/health").status_code == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/metrics"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/openapi.json"),
        ]:
            r = c.request(method, path, json=chat(engine.name, max_tokens=2))
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=auth).status_code == 200
        assert c.post("/v1/chat/completions", json=chat(engine.name, max_tokens=2), headers=auth).status_code == 200


def test_speculative_switch_per_request(engine):
    with TestClient(build_app(engine, draft=StandInDraft())) as c:
        assert c.get("/v1/models").json()["data"][0]["tpro"] == {"speculative": True, "draft": "stand-in-draft"}
        on = c.post("/v1/chat/completions", json=chat(engine.name, max_tokens=8, temperature=0)).json()
        off = c.post(
            "/v1/chat/completions", json=chat(engine.name, max_tokens=8, temperature=0, speculative=False)
        ).json()
        assert on["telemetry"]["decoder"] == "stand-in-draft" and on["telemetry"]["draft_proposed"] > 0
        assert off["telemetry"]["decoder"] == "vanilla" and off["telemetry"]["draft_proposed"] == 0
        assert on["choices"][0]["message"]["content"] == off["choices"][0]["message"]["content"]
        metrics = c.get("/metrics").text
        assert "tpro_acceptance_length_count 1.0" in metrics


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_outcomes_and_tokens(engine):
    with TestClient(build_app(engine)) as c:
        c.post("/v1/chat/completions", json=chat(engine.name, max_tokens=5, temperature=0))
        c.post("/v1/chat/completions", json=chat("nope"))
        text = c.get("/metrics").text
        assert metric(text, 'tpro_requests_total{outcome="ok"}') == 1
        assert metric(text, 'tpro_requests_total{outcome="invalid"}') == 1
        assert 1 <= metric(text, "tpro_generated_tokens_total") <= 5
        assert metric(text, "tpro_request_seconds_count") == 1


async def _post(ac: httpx.AsyncClient, body: dict) -> httpx.Response:
    return await ac.post("/v1/chat/completions", json=body)


def test_overload_answers_429_with_retry_after_and_nothing_hangs(slow_engine):
    app = build_app(slow_engine, ServeConfig(max_queue=1, max_batch=1))  # one at a time, as before batching

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as ac:
            body = chat(slow_engine.name, max_tokens=40, temperature=0)  # ~2 s each: all 5 arrive meanwhile
            return await asyncio.wait_for(asyncio.gather(*[_post(ac, body) for _ in range(5)]), 120)

    rs = asyncio.run(main())
    codes = sorted(r.status_code for r in rs)
    # one running + one queued are served; the other three are turned away at once
    assert codes == [200, 200, 429, 429, 429]
    for r in rs:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "queue_full"
    assert app.state.server.runner.pending == 0


def test_timeout_cancels_generation(tiny_qwen2):
    eng = Engine(tiny_qwen2.model, tiny_qwen2.tokenizer, decoder=SlowDecoder(0.02), name=tiny_qwen2.name)
    with TestClient(build_app(eng, ServeConfig(timeout_s=1.5))) as c:
        r = c.post("/v1/chat/completions", json=chat(eng.name, max_tokens=1000, temperature=0))
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "request_timeout"
        # greedy: a sampled stream can draw <|im_end|> from the random tiny model and finish before the timeout
        with c.stream(
            "POST", "/v1/chat/completions", json=chat(eng.name, max_tokens=1000, temperature=0, stream=True)
        ) as s:
            events = sse_events(s.iter_lines())
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "request_timeout"
        text = c.get("/metrics").text
        assert metric(text, 'tpro_requests_total{outcome="timeout"}') == 2
        # cancelled, not run to the budget: 1.5 s at >= 20 ms a step leaves at most ~75 steps of 1000 each
        assert metric(text, "tpro_generated_tokens_total") < 500


async def _until(cond, timeout_s: float = 30.0) -> None:
    """Poll ``cond()`` (a state the server reaches on its own) instead of sleeping a guessed time."""
    for _ in range(int(timeout_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_client_leaving_while_queued_frees_its_place(slow_engine):
    app = build_app(slow_engine, ServeConfig(max_queue=1, max_batch=1))
    runner = app.state.server.runner

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as ac:
            long = chat(slow_engine.name, max_tokens=60, temperature=0)  # ~3 s at 50 ms a step
            first = asyncio.create_task(_post(ac, long))
            await _until(lambda: runner.pending == 1)
            queued = asyncio.create_task(_post(ac, chat(slow_engine.name, max_tokens=2)))
            await _until(lambda: runner.pending == 2)
            assert not first.done()
            queued.cancel()  # the queued client gives up
            await _until(lambda: runner.pending == 1)  # its place is free, the running request goes on
            assert not first.done()
            again = await _post(ac, chat(slow_engine.name, max_tokens=2))
            return await first, again

    first, again = asyncio.run(main())
    assert first.status_code == 200 and first.json()["usage"]["completion_tokens"] == 60
    assert again.status_code == 200
    assert runner.pending == 0


def test_request_that_would_time_out_in_the_queue_is_refused_at_once(slow_engine):
    app = build_app(slow_engine, ServeConfig(max_queue=10, timeout_s=30, max_batch=1))
    runner = app.state.server.runner

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as ac:
            body = chat(slow_engine.name, max_tokens=20, temperature=0)
            warm = await _post(ac, body)  # the server measures how long a request takes (~1 s here)
            assert runner.avg_s is not None and runner.avg_s < 30
            runner.avg_s = 20.0  # as if requests took 20 s: two would need 40 s > the 30 s timeout
            running = asyncio.create_task(_post(ac, body))
            await _until(lambda: runner.pending == 1)
            refused = await _post(ac, body)
            return warm, await running, refused

    warm, running, refused = asyncio.run(main())
    assert warm.status_code == 200 and running.status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_too_slow" and "timeout" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
