"""The compiled decoder (``tpro.engine.compiled``) against the eager vanilla loop on the tiny Qwen2 model in fp32:
the same tokens, greedy and seeded sampling, across a chunked prefill and two cache lengths; a failing compile
falls back to eager steps with the same tokens."""

from __future__ import annotations

import pytest
import torch

from tpro.engine import Engine, SamplingParams
from tpro.engine.compiled import CompiledDecoder, cache_length

PROMPTS = ["Сколько будет 17*23?", "Привет! Как дела? Расскажи, пожалуйста, о себе подробно. " * 4]


@pytest.fixture(scope="module")
def eng(tiny_qwen2):
    e = Engine.from_loaded(tiny_qwen2)
    e.eos = set()  # random weights may emit EOS: every request runs to its budget
    return e


def test_cache_length_rounds_up_to_a_power_of_two_within_the_context():
    assert cache_length(100, 28, 64, None) == 256  # needs 129
    assert cache_length(100, 27, 64, 2048) == 128
    assert cache_length(10, 5, 64, 2048) == 64  # never below the smallest
    assert cache_length(100, 27, 64, 120) == 128  # never less than the request needs
    assert cache_length(1000, 100, 1024, 1500) == 1500  # capped by the context


def test_greedy_and_seeded_sampling_equal_the_eager_loop(eng):
    dec = CompiledDecoder(chunk=16, smallest=64)  # the long prompt is prefilled in chunks
    runs = ((PROMPTS[0], 20), (PROMPTS[1], 30), (PROMPTS[0], 70), (PROMPTS[0], 21))
    for prompt, n in runs:
        p = SamplingParams(max_new_tokens=n)
        assert eng.complete(prompt, p, decoder=dec).token_ids == eng.complete(prompt, p).token_ids
    limit = eng.model.config.max_position_embeddings
    lengths = {cache_length(len(eng.prompt(p).input_ids), n, 64, limit) for p, n in runs}
    assert len(lengths) >= 2 and set(dec.compile_s) == lengths  # one graph per length; the 4th reused the 1st's
    seeded = SamplingParams(max_new_tokens=24, temperature=0.9, top_p=0.95, seed=5)
    got = eng.complete(PROMPTS[0], seeded, decoder=dec)
    assert got.token_ids == eng.complete(PROMPTS[0], seeded).token_ids
    assert got.telemetry.decoder == "vanilla-compiled" and not dec.eager


def test_a_failing_compile_decodes_eagerly_with_the_same_tokens(eng, monkeypatch, caplog):
    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    dec = CompiledDecoder(smallest=64)
    p = SamplingParams(max_new_tokens=12)
    assert eng.complete(PROMPTS[0], p, decoder=dec).token_ids == eng.complete(PROMPTS[0], p).token_ids
    assert dec.eager and "decoding eagerly" in caplog.text


def test_warm_up_compiles_ahead_and_the_request_reuses_it(eng):
    dec = CompiledDecoder(smallest=64)
    p = SamplingParams(max_new_tokens=10)
    length = cache_length(len(eng.prompt(PROMPTS[0]).input_ids), 10, 64, eng.model.config.max_position_embeddings)
    assert set(dec.warm_up(eng.model, [length])) == {length}
    from torch._dynamo.utils import counters

    before = (dict(dec.compile_s), counters["stats"]["unique_graphs"])
    assert eng.complete(PROMPTS[0], p, decoder=dec).token_ids == eng.complete(PROMPTS[0], p).token_ids
    # no second compile: the warmed graph (and its reset cache) served the request, without a guard failure
    after = (dec.compile_s, counters["stats"]["unique_graphs"])
    assert after == before
