"""Continuous batching (``tpro.engine.batch``) on the tiny Qwen2 model in fp32: every request's output in a batch
must be the one it gets alone (``Engine.generate``), whoever else is decoding, joining, finishing or leaving.

Events inside the scheduler (a late arrival, a cancel) are triggered from ``on_step``, which runs in the scheduler
thread after a decode step, so each test knows exactly at which step they happen: no timing, no sleeps."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import DynamicCache

from tpro.engine import Done, Engine, SamplingParams, VanillaDecoder
from tpro.engine.batch import BatchEngine, decode_mask, kv_bytes_per_token, peak_tokens, prefill_mask

PROMPTS = [
    "Сколько будет 17*23?",
    "What is the capital of Russia?",
    "Мама мыла раму.",
    "Привет! Как дела? Расскажи, пожалуйста, о себе подробно. " * 6,  # longer than a chunk: prefilled in pieces
]


@pytest.fixture(scope="module")
def eng(tiny_qwen2_dir):
    from tpro.models import load_model

    lm = load_model(str(tiny_qwen2_dir), dtype="float32", progress=False)
    # Random init attends almost uniformly, so a wrong position or a seen padding column would hardly move the
    # argmax; sharpened queries and keys make the tiny model's output depend on both.
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
    e = Engine.from_loaded(lm)
    e.eos = set()  # random weights may emit EOS: every request runs to its own budget
    return e


def alone(eng: Engine, prompt, params: SamplingParams) -> list[int]:
    return eng.complete(prompt, params).token_ids


def last(events) -> Done:
    done = None
    for ev in events:
        done = ev
    return done


def test_greedy_in_a_batch_equals_alone_with_joins_leaves_and_a_cancel(eng):
    budgets = [12, 45, 40, 30]  # finish at different steps
    params = [SamplingParams(max_new_tokens=n) for n in budgets]
    late_params = SamplingParams(max_new_tokens=20)
    refs = [alone(eng, p, sp) for p, sp in zip(PROMPTS, params)]
    late_ref = alone(eng, "Решите уравнение: x^2 - 5x + 6 = 0.", late_params)
    cancel = threading.Event()
    seen: list[int] = []
    late: list = []

    def on_step(batch: int, kv_bytes: int) -> None:  # in the scheduler thread, between two steps
        seen.append(batch)
        if len(seen) == 5:
            late.append(be.submit("Решите уравнение: x^2 - 5x + 6 = 0.", late_params))
        if len(seen) == 8:
            cancel.set()

    be = BatchEngine(eng, max_batch=8, chunk_tokens=32, on_step=on_step)
    with eng.lock:  # the scheduler takes it for every step: all four are queued before the first
        streams = [
            be.submit(p, sp, cancel=cancel if i == 2 else None) for i, (p, sp) in enumerate(zip(PROMPTS, params))
        ]
    dones = [last(s) for s in streams]
    late_done = last(late[0])
    for i in (0, 1, 3):
        assert dones[i].token_ids == refs[i] and dones[i].finish_reason == "length"
    # cancelled after the 8th decode step: a prefix of its own output, far from its budget
    assert dones[2].finish_reason == "cancelled"
    assert 8 <= len(dones[2].token_ids) < 40 and dones[2].token_ids == refs[2][: len(dones[2].token_ids)]
    assert late_done.token_ids == late_ref
    assert max(seen) >= 4  # they really decoded together
    # the long prompt was prefilled in chunks while the short ones decoded, then joined them; so did the late one
    assert dones[3].telemetry.batch_size > 1 and late_done.telemetry.batch_size > 1
    assert dones[3].telemetry.queue_s >= 0 and dones[3].telemetry.ttft_s > 0
    assert dones[3].text == eng.tokenizer.decode(dones[3].token_ids, skip_special_tokens=True)
    assert be.active == 0 and be.queued == 0


def test_stream_is_what_engine_generate_streams(eng):
    params = SamplingParams(max_new_tokens=25, stop=["ра"])
    be = BatchEngine(eng, max_batch=4)
    mine = list(be.submit(PROMPTS[0], params))
    ref = list(eng.generate(PROMPTS[0], params))
    assert [type(e) for e in mine] == [type(e) for e in ref]
    assert "".join(e.text for e in mine[:-1]) == mine[-1].text == ref[-1].text
    assert mine[-1].finish_reason == ref[-1].finish_reason and mine[-1].token_ids == ref[-1].token_ids


def test_seeded_sample_is_the_same_whatever_else_is_in_the_batch(eng):
    seeded = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.9, top_k=50, seed=11)
    be = BatchEngine(eng, max_batch=8)
    solo = be.complete_many([PROMPTS[1]], seeded)[0].token_ids
    others = [
        SamplingParams(max_new_tokens=30),
        SamplingParams(max_new_tokens=10, temperature=0.7, seed=1),
        SamplingParams(max_new_tokens=40, temperature=1.3, top_k=5),  # unseeded
    ]
    crowd = be.complete_many([PROMPTS[1], PROMPTS[0], PROMPTS[3], PROMPTS[2]], [seeded, *others])
    assert crowd[0].token_ids == solo == alone(eng, PROMPTS[1], seeded)
    assert crowd[0].telemetry.batch_size > 1
    assert crowd[2].token_ids == alone(eng, PROMPTS[3], others[1])


def test_samples_of_one_prompt_share_its_prefill(eng):
    be = BatchEngine(eng, max_batch=8)
    params = [SamplingParams(max_new_tokens=16, temperature=1.0, seed=s) for s in range(4)]
    dones = be.complete_many([PROMPTS[3]] * 4, params)
    n_prompt = len(dones[0].prompt.input_ids)
    assert be.prefill_tokens == n_prompt  # prefilled once, not four times
    for d, sp in zip(dones, params):
        assert d.token_ids == alone(eng, PROMPTS[3], sp)
    assert len({tuple(d.token_ids) for d in dones}) > 1  # the copies did not share a sampler


def test_kv_budget_limits_the_batch_and_refuses_what_can_never_fit(eng):
    params = SamplingParams(max_new_tokens=20)
    n_prompt = len(eng.prompt(PROMPTS[0]).input_ids)
    per_seq = BatchEngine(eng).kv_reserve(n_prompt, 20)
    seen: list[int] = []
    be = BatchEngine(eng, max_batch=8, kv_budget=2 * per_seq, on_step=lambda b, kv: seen.append((b, kv)))
    dones = be.complete_many([PROMPTS[0]] * 4, [SamplingParams(max_new_tokens=20, seed=i) for i in range(4)])
    assert all(d.token_ids == alone(eng, PROMPTS[0], params) for d in dones)
    assert max(b for b, _ in seen) == 2  # two fit the budget; the others waited for a row
    assert max(kv for _, kv in seen) <= 2 * per_seq
    with pytest.raises(ValueError, match="over the budget"):
        be.submit(PROMPTS[3], SamplingParams(max_new_tokens=20))


def test_peak_tokens_of_aligned_rows():
    assert peak_tokens([(100, 10)]) == 110
    # a long answer beside a short one: two rows of 110 until the short leaves, then one row growing to 1010
    assert peak_tokens([(100, 10), (10, 1000)]) == 1010
    assert peak_tokens([(100, 500), (10, 1000)]) == 2 * 600  # both live at t=500: two rows of the longer's width
    assert peak_tokens([(50, 0), (50, 0), (50, 0)]) == 150


def test_kv_bytes_per_token_matches_a_real_cache(tiny_qwen2):
    model = tiny_qwen2.model
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.tensor([[5, 6, 7, 8, 9]]), cache=cache, use_cache=True)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert kv_bytes_per_token(model) * 5 == held


def test_masks_hide_padding_and_the_future():
    allowed = decode_mask(torch.tensor([0, 2]), 3, torch.float32)[:, 0, 0] == 0  # [2, 4]
    assert allowed.tolist() == [[True, True, True, True], [False, False, True, True]]
    m = prefill_mask(torch.tensor([1]), 1, 3, torch.float32)[0, 0] == 0  # row padded by 1, columns 1..2
    assert m.tolist() == [[False, True, False], [False, True, True]]
    pad_query = prefill_mask(torch.tensor([2]), 0, 1, torch.float32)[0, 0] == 0
    assert pad_query.tolist() == [[True]]  # a padding query sees only itself: never an all-masked row


class CallbackDecoder(VanillaDecoder):
    """Vanilla tokens under another name (so the engine treats it as a speculative decoder), calling ``hook``
    after its ``at``-th step from inside the scheduler thread."""

    name = "stand-in"

    def __init__(self, at: int, hook):
        self.at, self.hook = at, hook

    def decode(self, model, input_ids, params, generator):
        for i, step in enumerate(super().decode(model, input_ids, params, generator), 1):
            if i == self.at:
                self.hook()
            yield step


def test_a_lone_speculating_request_joins_the_batch_when_another_arrives(eng):
    p_a, p_b = SamplingParams(max_new_tokens=30), SamplingParams(max_new_tokens=20)
    be = BatchEngine(eng, max_batch=4)
    joined: list = []
    dec = CallbackDecoder(at=6, hook=lambda: joined.append(be.submit(PROMPTS[2], p_b)))
    first = last(be.submit(PROMPTS[0], p_a, decoder=dec))
    second = last(joined[0])
    assert first.telemetry.decoder == "stand-in+vanilla"  # ran alone through its decoder, then in the batch
    assert first.token_ids == alone(eng, PROMPTS[0], p_a)
    assert second.token_ids == alone(eng, PROMPTS[2], p_b) and second.telemetry.decoder == "vanilla"


def test_max_batch_1_runs_each_request_alone_through_its_decoder(eng):
    be = BatchEngine(eng, max_batch=1)
    dec = CallbackDecoder(at=0, hook=None)
    dones = be.complete_many(PROMPTS[:3], SamplingParams(max_new_tokens=10), decoder=dec)
    for p, d in zip(PROMPTS, dones):
        assert d.telemetry.decoder == "stand-in" and d.telemetry.batch_size == 1
        assert d.token_ids == alone(eng, p, SamplingParams(max_new_tokens=10))


def test_an_error_in_a_step_reaches_the_stream_and_the_engine_goes_on(eng):
    def boom():
        raise RuntimeError("boom")

    be = BatchEngine(eng, max_batch=1)
    with pytest.raises(RuntimeError, match="boom"):
        last(be.submit(PROMPTS[0], SamplingParams(max_new_tokens=10), decoder=CallbackDecoder(at=2, hook=boom)))
    assert len(last(be.submit(PROMPTS[0], SamplingParams(max_new_tokens=3))).token_ids) == 3


def test_closing_a_stream_early_frees_its_row(eng):
    be = BatchEngine(eng, max_batch=4)
    stream = be.submit(PROMPTS[0], SamplingParams(max_new_tokens=1000))
    next(stream)
    stream.close()  # the consumer left
    other = be.complete_many([PROMPTS[2]], SamplingParams(max_new_tokens=5))[0]
    assert other.finish_reason == "length"
    be.close()
    assert be.active == 0 and be.queued == 0


def test_bad_arguments_are_named(eng):
    be = BatchEngine(eng)
    with pytest.raises(ValueError, match="context"):
        be.submit("слово " * 3000)
    with pytest.raises(ValueError, match="one per prompt"):
        be.complete_many(PROMPTS[:2], [SamplingParams()] * 3)
    with pytest.raises(ValueError, match="max_batch"):
        BatchEngine(eng, max_batch=0)


@pytest.mark.embedded
def test_embedded_greedy_in_a_batch_equals_alone(embedded):
    eng = Engine.from_loaded(embedded)
    prompts = ["Сколько будет 17*23? Объясни.", "Назови три столицы.", "Напиши функцию сложения на Python."]
    params = [SamplingParams(max_new_tokens=n) for n in (24, 16, 32)]
    dones = BatchEngine(eng, max_batch=4).complete_many(prompts, params)
    for p, sp, d in zip(prompts, params, dones):
        assert d.token_ids == eng.complete(p, sp).token_ids
