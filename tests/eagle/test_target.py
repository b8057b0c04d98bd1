"""The compiled verify target (``tpro.eagle.target.CompiledTarget``) against the eager one on the tiny models in
fp32: the same tree outputs, the same greedy tokens (EAGLE tree alone and hybrid with the suffix drafter), the
same seeded samples; padding to a bucket changes nothing; a failing compile verifies eagerly with the same tokens."""

from __future__ import annotations

import pytest
import torch

from tests.eagle.test_decoder import PROMPTS, REPETITIVE
from tpro.eagle import policy, tree
from tpro.eagle.decoder import EagleConfig, EagleDecoder
from tpro.eagle.head import init_head
from tpro.eagle.target import CompiledTarget, EagerTarget
from tpro.engine import Engine, SamplingParams
from tpro.models import load_model, w4a8
from tpro.models.quant import set_dense_above


def _begin(target, model, prompt, max_new=16):
    steps = target.begin(model, prompt, max_new, chunk=4)  # a prompt of several chunks
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def test_verify_and_commit_equal_the_eager_target(tiny_qwen2):
    """A 5-node tree in a bucket of 8 (3 padding nodes), a commit of a 3-node path, then a second tree: hidden
    states and logits equal the DynamicCache path's."""
    model = tiny_qwen2.model
    prompt = torch.tensor([[5, 17, 42, 8, 99, 3, 64]])
    (h_e, eager), (h_c, comp) = (_begin(t, model, prompt) for t in (EagerTarget(), CompiledTarget((1, 2, 8), 32)))
    torch.testing.assert_close(h_c, h_e, atol=1e-5, rtol=1e-5)
    parents = torch.tensor([-1, 0, 0, 1, 3])
    tokens, depth, anc = torch.tensor([7, 11, 13, 21, 34]), tree.depths(parents), tree.ancestors(parents)
    for t in (eager, comp):
        t.out = t.verify(tokens, depth, anc)
    assert comp.out[0].shape == eager.out[0].shape == (5, model.config.hidden_size)
    for a, b in zip(comp.out, eager.out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    path = torch.tensor([0, 1, 3])
    for t in (eager, comp):
        t.commit(path)
        assert t.n == 10
        t.out = t.verify(torch.tensor([50, 60]), torch.tensor([0, 1]), tree.ancestors(torch.tensor([-1, 0])))
    for a, b in zip(comp.out, eager.out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # the reference for both: the full sequence, uncached
    seq = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 7, 11, 21, 50, 60]])
    torch.testing.assert_close(comp.out[1][-1], model(input_ids=seq).logits[0, -1], atol=1e-4, rtol=1e-4)
    assert set(comp.compile_s) == {(32, 8), (32, 2)}  # one graph per bucket used
    comp.n = comp.length - 5  # 5 free slots: a tree must fit its padded bucket, so 2, not 5
    assert comp.room() == 2


def test_eager_sessions_of_one_target_interleave(tiny_qwen2):
    """Each request gets its own eager session: a second prompt begun mid-request leaves the first's cache alone."""
    model, target = tiny_qwen2.model, EagerTarget()
    one = torch.tensor([[5, 17, 42, 8]])
    _, a = _begin(target, model, one)
    _, b = _begin(target, model, torch.tensor([[9, 9, 9, 9, 9, 9]]))
    chain = tree.ancestors(torch.tensor([-1, 0]))
    _, logits = a.verify(torch.tensor([7, 11]), torch.tensor([0, 1]), chain)
    ref = model(input_ids=torch.tensor([[5, 17, 42, 8, 7, 11]])).logits[0, -1]
    torch.testing.assert_close(logits[-1], ref, atol=1e-4, rtol=1e-4)
    assert (a.n, b.n) == (4, 6)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_greedy_compiled_eagle_is_token_identical(arch, request):
    lm = request.getfixturevalue(f"tiny_{arch}")
    head = request.getfixturevalue(f"{arch}_head")
    eng = Engine.from_loaded(lm)
    eng.eos = set()  # random weights may emit EOS: run to the budget, filling the static cache
    target = CompiledTarget(buckets=(1, 4, 16), smallest=64)
    p = SamplingParams(max_new_tokens=40)
    for cfg in (EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=11), EagleConfig(suffix=False)):
        dec = EagleDecoder(head, cfg, target=target)
        assert dec.name == "eagle-compiled"
        for prompt in REPETITIVE[:1] + PROMPTS[:1]:
            got = eng.complete(prompt, p, decoder=dec)
            assert got.token_ids == eng.complete(prompt, p).token_ids
            assert got.telemetry.decoder == "eagle-compiled"
    assert not target.eager and {b for _, b in target.compile_s} <= {1, 4, 16}


def test_seeded_sampling_equals_the_eager_target(tiny_qwen2, qwen2_head):
    eng = Engine.from_loaded(tiny_qwen2)
    p = SamplingParams(max_new_tokens=30, temperature=0.9, top_p=0.95, seed=7)
    cfg = EagleConfig(depth=2, top_k=3, total_tokens=6)
    ref = eng.complete(REPETITIVE[1], p, decoder=EagleDecoder(qwen2_head, cfg))
    comp = EagleDecoder(qwen2_head, cfg, target=CompiledTarget(buckets=(1, 2, 4, 8), smallest=64))
    assert eng.complete(REPETITIVE[1], p, decoder=comp).token_ids == ref.token_ids


def test_a_failing_compile_verifies_eagerly_with_the_same_tokens(tiny_qwen2, qwen2_head, monkeypatch, caplog):
    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    eng = Engine.from_loaded(tiny_qwen2)
    target = CompiledTarget(buckets=(1, 4, 8), smallest=64)
    dec = EagleDecoder(qwen2_head, EagleConfig(depth=2, top_k=2, total_tokens=4), target=target)
    p = SamplingParams(max_new_tokens=16)
    assert eng.complete(PROMPTS[1], p, decoder=dec).token_ids == eng.complete(PROMPTS[1], p).token_ids
    assert target.eager and "verifying eagerly" in caplog.text


def test_buckets_make_the_cost_a_step_function_and_the_planner_fills_them():
    curve = ((1, 10.0), (4, 13.0), (8, 20.0))
    got = policy.cost_ms(curve, torch.tensor([1, 2, 3, 4, 5, 8, 9]), buckets=(1, 4, 8))
    assert got.tolist() == [10.0, 13.0, 13.0, 13.0, 20.0, 20.0, 21.75]  # beyond the largest: the raw size
    values = torch.tensor([0.9, 0.5, 0.3, 0.2, 0.1, 0.1, 0.05])  # best first
    n = tree.best_size(values, policy.cost_ms(curve, 1 + torch.arange(8), buckets=(1, 4, 8)))
    assert n + 1 == 4  # a full bucket of 4 (3 drafts), not 2 or 3 tokens in it
    with pytest.raises(ValueError, match="start at 1"):
        CompiledTarget(buckets=(2, 4))


def test_warm_up_then_measure_compiles_nothing_more(tiny_qwen2):
    target = CompiledTarget(buckets=(1, 2, 4), smallest=64)
    model = tiny_qwen2.model
    compiled = target.warm_up(model, prompt_tokens=20, max_new_tokens=16)
    assert {b for _, b in compiled} == {1, 2, 4}
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    curve = target.measure(model, prefix=20, max_new_tokens=16)
    assert [b for b, _ in curve] == [1, 2, 4] and all(ms > 0 for _, ms in curve)
    assert counters["stats"]["unique_graphs"] == graphs


def test_load_decoder_with_a_compiled_target_calibrates_its_buckets(tiny_qwen2, qwen2_head, tmp_path):
    from tpro.eagle import load_decoder
    from tpro.eagle.head import save_head

    save_head(qwen2_head, tmp_path / "head")
    target = CompiledTarget(buckets=(1, 2, 4), smallest=64)
    dec = load_decoder(tmp_path / "head", tiny_qwen2, target=target)
    assert dec.target is target and [b for b, _ in dec.cfg.verify_ms] == [1, 2, 4]  # measured, compiled
    assert EagleConfig.for_model(tiny_qwen2.model, "int4", compiled=True).total_tokens == 1  # measured default
    assert EagleConfig.for_model(tiny_qwen2.model, "int4").total_tokens == 8  # eager: unchanged
    w4 = EagleConfig.for_model(tiny_qwen2.model, "w4a8", compiled=True)
    assert (w4.depth, w4.top_k, w4.total_tokens) == (2, 2, 4) and w4.verify_ms == policy.VERIFY_MS["w4a8"]


@pytest.mark.skipif(not w4a8.available(), reason=f"w4a8 kernel: {w4a8.unavailable_reason()}")
def test_w4a8_target_speculates_token_identically_to_its_plain_greedy(tiny_qwen2_dir):
    """The w4a8 kernel computes each row alone, so a tree's verify gives the tokens plain decoding would, eager and
    compiled (its op inside the compiled graph)."""
    lm = load_model(str(tiny_qwen2_dir), dtype="float32", weights="w4a8", progress=False)
    set_dense_above(lm.model, None)  # the kernel at any tree size
    head = init_head(lm.model, seed=1)
    eng = Engine.from_loaded(lm)
    eng.eos = set()
    p = SamplingParams(max_new_tokens=32)
    cfg = EagleConfig(depth=3, top_k=3, total_tokens=8)
    for target in (EagerTarget(), CompiledTarget(buckets=(1, 4, 8), smallest=64)):
        for prompt in REPETITIVE[:1] + PROMPTS[:1]:
            got = eng.complete(prompt, p, decoder=EagleDecoder(head, cfg, target=target))
            assert got.token_ids == eng.complete(prompt, p).token_ids
    assert not target.eager
