"""Chunked prefill (``tpro.engine.decoder.prefill``): the same logits, hidden states, cache and greedy text as one
forward over the prompt; progress steps and ``on_prefill``; prefill and KV-cache telemetry in both engines."""

import threading

import pytest
import torch
from transformers import DynamicCache

from tpro.engine import BatchEngine, Engine, SamplingParams, VanillaDecoder
from tpro.engine.decoder import kv_bytes_per_token, prefill

LONG = "Длинный вопрос о погоде в Москве и Казани. " * 3  # ~300 prompt tokens with the tiny models' template


def drain(gen):
    """Run a ``prefill`` generator to its end -> (its progress steps, its return value)."""
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            return steps, stop.value


def kv_arithmetic(model, tokens: int) -> int:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 2 * model.dtype.itemsize * tokens


@pytest.mark.parametrize("which", ["tiny_qwen2", "tiny_qwen3"])
@torch.inference_mode()
def test_chunked_prefill_equals_one_forward(which, request):
    model = request.getfixturevalue(which).model
    ids = torch.randint(model.config.vocab_size, (1, 60), generator=torch.Generator().manual_seed(0))
    ref_cache = DynamicCache(config=model.config)
    ref = model(input_ids=ids, cache=ref_cache, use_cache=True).logits[:, -1]  # [1, V]
    ref_hidden = model.get_decoder()(input_ids=ids).last_hidden_state[0]  # [S, H]
    for chunk in (7, 59, 60, 512):
        cache = DynamicCache(config=model.config)
        steps, (logits, last_s) = drain(prefill(model, ids, cache, chunk))
        torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
        assert logits.shape == (1, model.config.vocab_size) and last_s > 0
        assert [s.prefilled for s in steps] == list(range(chunk, 60, chunk))  # after every chunk but the last
        assert all(not s.tokens and s.verify_s > 0 for s in steps)
        assert cache.get_seq_length() == 60
        for got, want in zip(cache.layers, ref_cache.layers, strict=True):
            torch.testing.assert_close(got.keys, want.keys, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got.values, want.values, atol=1e-5, rtol=1e-5)
        _, (hidden, _) = drain(prefill(model, ids, DynamicCache(config=model.config), chunk, keep="hidden"))
        torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)


def test_prefill_into_a_filled_cache_continues_its_positions(tiny_qwen2):
    """A chunk after cached tokens (here: a whole earlier prompt) attends to them causally at positions P.."""
    model = tiny_qwen2.model
    ids = torch.randint(model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(input_ids=ids).logits[:, -1]
        cache = DynamicCache(config=model.config)
        drain(prefill(model, ids[:, :13], cache, 5))
        _, (logits, _) = drain(prefill(model, ids[:, 13:], cache, 6))
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="chunk"):
        drain(prefill(model, ids, DynamicCache(config=model.config), 0))


@pytest.mark.parametrize("which", ["tiny_qwen2", "tiny_qwen3"])
def test_greedy_text_does_not_depend_on_the_chunk(which, request):
    lm = request.getfixturevalue(which)
    eng = Engine.from_loaded(lm)
    eng.eos = set()
    p = SamplingParams(max_new_tokens=16)
    prompt = eng.prompt(LONG)
    assert len(prompt.input_ids) > 10 * 7  # many chunks
    whole = eng.complete(prompt, p, decoder=VanillaDecoder(chunk=10**6))
    ref = lm.model.generate(torch.tensor([prompt.input_ids]), do_sample=False, max_new_tokens=16, min_new_tokens=16)
    assert whole.token_ids == ref[0, len(prompt.input_ids) :].tolist()
    for chunk in (7, 64):
        got = eng.complete(prompt, p, decoder=VanillaDecoder(chunk=chunk))
        assert got.token_ids == whole.token_ids
        assert got.telemetry.steps == 16  # progress steps are not decoder steps
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, seed=5)
    assert (
        eng.complete(prompt, sampled, decoder=VanillaDecoder(chunk=7)).token_ids
        == eng.complete(prompt, sampled, decoder=VanillaDecoder(chunk=10**6)).token_ids
    )


def test_on_prefill_reports_increasing_progress_up_to_the_prompt(tiny_qwen2):
    eng = Engine(tiny_qwen2.model, tiny_qwen2.tokenizer, decoder=VanillaDecoder(chunk=7))
    eng.eos = set()
    prompt = eng.prompt(LONG)
    n = len(prompt.input_ids)
    calls: list[tuple[int, int]] = []
    events = list(eng.generate(prompt, SamplingParams(max_new_tokens=5), on_prefill=lambda d, t: calls.append((d, t))))
    assert [d for d, _ in calls] == [*range(7, n, 7), n]  # each chunk, then the whole prompt with the first token
    assert {t for _, t in calls} == {n}
    assert sum(not e.token_ids for e in events[:-1]) <= 1  # no Delta for a progress step (one: the held-back tail)
    # a prompt that fits one chunk: one call, with the first token
    calls.clear()
    eng.complete(
        prompt, SamplingParams(max_new_tokens=3), decoder=VanillaDecoder(), on_prefill=lambda *a: calls.append(a)
    )
    assert len(calls) == 1 and calls[0][0] == calls[0][1]


def test_cancel_stops_between_prefill_chunks(tiny_qwen2):
    eng = Engine(tiny_qwen2.model, tiny_qwen2.tokenizer, decoder=VanillaDecoder(chunk=7))
    cancel = threading.Event()
    calls = []

    def on_prefill(done, total):
        calls.append(done)
        if done >= 21:
            cancel.set()

    done = eng.complete(LONG, SamplingParams(max_new_tokens=5), cancel=cancel, on_prefill=on_prefill)
    assert done.finish_reason == "cancelled" and done.token_ids == [] and calls == [7, 14, 21]
    t = done.telemetry
    assert t.steps == 0 and t.ttft_s == 0 and t.kv_tokens == 21  # the cache held three chunks when it stopped
    assert t.prefill_s > 0  # three chunks' forwards


def test_prefill_and_kv_telemetry(tiny_qwen2):
    model = tiny_qwen2.model
    eng = Engine(model, tiny_qwen2.tokenizer, decoder=VanillaDecoder(chunk=7))
    eng.eos = set()
    t = eng.complete(LONG, SamplingParams(max_new_tokens=12)).telemetry
    assert kv_bytes_per_token(model) == kv_arithmetic(model, 1)
    assert t.kv_tokens == t.prompt_tokens + 12 - 1  # the last token was sampled, never fed
    assert t.kv_mib == kv_arithmetic(model, t.kv_tokens) / 2**20
    assert t.kv_mib_per_1k_tokens == kv_arithmetic(model, 1000) / 2**20
    assert 0 < t.prefill_s <= t.ttft_s <= t.total_s and t.prefill_s <= t.verify_s
    assert t.prefill_tokens_per_s == pytest.approx(t.prompt_tokens / t.prefill_s)
    d = t.to_dict()
    assert {"prefill_s", "prefill_tokens_per_s", "kv_tokens", "kv_mib", "kv_mib_per_1k_tokens"} <= set(d)
    # EOS counts: the cache held the last token before it
    eos = Engine(model, tiny_qwen2.tokenizer)
    ids = eng.complete(LONG, SamplingParams(max_new_tokens=12)).token_ids
    k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])
    eos.eos = {ids[k]}
    t = eos.complete(LONG, SamplingParams(max_new_tokens=12)).telemetry
    assert t.generated_tokens == k and t.kv_tokens == t.prompt_tokens + k


def test_batch_engine_reports_prefill_and_kv(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    p = SamplingParams(max_new_tokens=6)
    be = BatchEngine(eng, max_batch=4, chunk_tokens=16)
    try:
        dones = be.complete_many([LONG, "Привет"], p)
        for d in dones:
            t = d.telemetry
            assert d.token_ids == eng.complete(d.prompt, p).token_ids
            assert t.steps == 6 and 0 < t.prefill_s <= t.ttft_s and t.prefill_tokens_per_s > 0
            assert t.kv_tokens == t.prompt_tokens + 5 and t.kv_mib == kv_arithmetic(eng.model, t.kv_tokens) / 2**20
    finally:
        be.close()


def test_a_lone_chunked_decoder_in_the_batch_engine(tiny_qwen2):
    """max_batch=1 runs the request through its decoder: progress steps pass through the scheduler (one chunk per
    scheduler step) without counting as steps or reaching ``on_step``."""
    eng = Engine(tiny_qwen2.model, tiny_qwen2.tokenizer, decoder=VanillaDecoder(chunk=7))
    eng.eos = set()
    p = SamplingParams(max_new_tokens=6)
    seen = []
    be = BatchEngine(eng, max_batch=1, on_step=lambda b, kv: seen.append(b))
    try:
        d = be.complete_many([LONG], p)[0]
    finally:
        be.close()
    assert d.token_ids == eng.complete(LONG, p, decoder=VanillaDecoder(chunk=10**6)).token_ids
    assert d.telemetry.steps == 6 and seen == [1] * 6 and d.telemetry.prefill_s > 0
