"""The server's continuous batching (``BatchEngine`` behind ``Runner``) on the tiny Qwen2 model, in process.

Requests are made to overlap without timing: the test holds ``engine.lock`` (the scheduler takes it for every step)
until all of them are queued, so they start together; the state the tests wait for is polled, never slept for."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.serve.test_app import _post, _until, chat, metric
from tpro.engine import Engine, SamplingParams
from tpro.serve import ServeConfig, build_app

QUESTIONS = ["Сколько будет 2+2?", "Привет! Как дела?", "What is the capital of Russia?", "Мама мыла раму."]


@pytest.fixture(scope="module")
def endless(tiny_qwen2):
    """An engine that never meets EOS: a request runs to its max_tokens."""
    e = Engine.from_loaded(tiny_qwen2)
    e.eos = set()
    return e


def asgi(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120)


def test_concurrent_requests_decode_together_and_answer_as_alone(engine):
    app = build_app(engine, ServeConfig(max_batch=8))
    runner = app.state.server.runner

    async def main():
        async with asgi(app) as ac:
            with engine.lock:  # the scheduler waits here: all four queue up before the first step
                tasks = [
                    asyncio.create_task(_post(ac, chat(engine.name, q, max_tokens=12 + 4 * i, temperature=0)))
                    for i, q in enumerate(QUESTIONS)
                ]
                await _until(lambda: runner.batch.queued == len(QUESTIONS))
            rs = await asyncio.gather(*tasks)
            return rs, (await ac.get("/metrics")).text

    rs, text = asyncio.run(main())
    for i, (q, r) in enumerate(zip(QUESTIONS, rs)):
        assert r.status_code == 200, r.text
        ref = engine.complete([{"role": "user", "content": q}], SamplingParams(max_new_tokens=12 + 4 * i))
        assert r.json()["choices"][0]["message"]["content"] == ref.answer
        assert r.json()["usage"]["completion_tokens"] == len(ref.token_ids)
    steps = metric(text, "tpro_batch_size_count")
    assert steps > 0 and metric(text, 'tpro_batch_size_bucket{le="1.0"}') < steps  # some steps decoded >1
    assert metric(text, 'tpro_batch_size_bucket{le="2.0"}') < steps  # ... and some all four (or three)
    assert max(r.json()["telemetry"]["batch_size"] for r in rs) > 1
    assert metric(text, "tpro_kv_cache_bytes_per_token") == runner.batch.kv_bytes_per_token > 0
    assert metric(text, "tpro_kv_cache_budget_bytes") == ServeConfig().kv_memory_gb * 2**30
    assert runner.pending == 0 and runner.batch.active == 0


def test_a_client_leaving_frees_its_place_in_the_batch_at_once(endless):
    app = build_app(endless, ServeConfig(max_batch=1, max_queue=0))
    runner = app.state.server.runner

    async def main():
        async with asgi(app) as ac:
            long = asyncio.create_task(_post(ac, chat(endless.name, max_tokens=1900, temperature=0)))
            await _until(lambda: runner.batch.active == 1)
            with endless.lock:  # the engine pauses: the long request surely still holds the only place
                refused = await _post(ac, chat(endless.name, max_tokens=2))
            long.cancel()  # the client gives up mid-generation
            await _until(lambda: runner.pending == 0 and runner.batch.active == 0)
            served = await _post(ac, chat(endless.name, max_tokens=2))
            return refused, served, (await ac.get("/metrics")).text

    refused, served, text = asyncio.run(main())
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
    assert served.status_code == 200
    assert metric(text, 'tpro_requests_total{outcome="cancelled"}') == 1
    assert metric(text, "tpro_generated_tokens_total") < 1900 + 2  # stopped far short of its budget


def test_kv_budget_refuses_what_can_never_fit_and_queues_by_what_fits(endless):
    prompt_tokens = len(endless.prompt(QUESTIONS[0]).input_ids)
    app = build_app(endless, ServeConfig(max_batch=4, max_queue=0))
    per_token = app.state.server.runner.batch.kv_bytes_per_token
    one = (prompt_tokens + 1500) * per_token  # a request asking for 1500 tokens may grow to this
    gb = 1.2 * one / 2**30  # room for one such request, not two, nor one asking for 1900
    app = build_app(endless, ServeConfig(max_batch=4, max_queue=0, kv_memory_gb=gb))
    runner = app.state.server.runner

    async def main():
        async with asgi(app) as ac:
            too_big = await _post(ac, chat(endless.name, QUESTIONS[0], max_tokens=1900))
            long = asyncio.create_task(_post(ac, chat(endless.name, QUESTIONS[0], max_tokens=1500)))
            await _until(lambda: runner.batch.active == 1)
            with endless.lock:  # the engine pauses: the long request surely still runs
                second = await _post(ac, chat(endless.name, QUESTIONS[0], max_tokens=1500))
            small = await _post(ac, chat(endless.name, QUESTIONS[0], max_tokens=4))  # fits beside it
            long.cancel()
            await _until(lambda: runner.pending == 0)
            return too_big, second, small

    too_big, second, small = asyncio.run(main())
    assert too_big.status_code == 413
    err = too_big.json()["error"]
    assert err["code"] == "kv_budget_exceeded" and "--kv-memory-gb" in err["message"] and err["param"] == "max_tokens"
    assert second.status_code == 429 and "KV budget" in second.json()["error"]["message"]
    assert small.status_code == 200
