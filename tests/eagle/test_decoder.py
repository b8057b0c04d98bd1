"""The EAGLE decoder against the vanilla loop: greedy token-identical, sampling equal in distribution."""

import pytest
import torch

from tests.eagle.conftest import OracleDecoder
from tests.eagle.test_tree import chi_square_p
from tpro.eagle import policy, tree
from tpro.eagle.decoder import EagleConfig, EagleDecoder
from tpro.engine import Engine, SamplingParams
from tpro.engine.sampling import logits_to_probs

PROMPTS = ["Привет! Как дела?", "Решите уравнение: x^2 - 5x + 6 = 0.", "def add(a, b):"]


def test_tree_forward_equals_sequential_decoding(tiny_qwen2):
    """Verification through public inputs: a 4-D tree mask + per-node positions over a DynamicCache."""
    from transformers import DynamicCache

    model = tiny_qwen2.model
    prefix = torch.tensor([[5, 17, 42, 8, 99]])
    parents = torch.tensor([-1, 0, 0, 1, 3])
    tokens = torch.tensor([7, 11, 13, 21, 34])
    cache = DynamicCache(config=model.config)
    model(input_ids=prefix, cache=cache, use_cache=True)
    anc = tree.ancestors(parents)
    out = model(
        input_ids=tokens[None],
        cache=cache,
        use_cache=True,
        attention_mask=tree.tree_attention_mask(anc, 5, model.dtype),
        position_ids=(5 + tree.depths(parents))[None],
    ).logits[0]
    for i in range(5):
        path = anc[i].nonzero().flatten()
        seq = torch.cat([prefix[0], tokens[path]])
        ref = model(input_ids=seq[None]).logits[0, -1]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        EagleConfig(depth=1, top_k=1, total_tokens=1),
        EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=7),  # prompts of 58-70 tokens: 9-10 chunks
        EagleConfig(depth=6, top_k=8, total_tokens=40, prefill_chunk=16),
    ],
)
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_greedy_random_head_is_token_identical(arch, cfg, request):
    lm = request.getfixturevalue(f"tiny_{arch}")
    head = request.getfixturevalue(f"{arch}_head")
    eng = Engine.from_loaded(lm)
    p = SamplingParams(max_new_tokens=40)
    for prompt in PROMPTS[:2]:
        ref = eng.complete(prompt, p)
        got = eng.complete(prompt, p, decoder=EagleDecoder(head, cfg))
        assert got.token_ids == ref.token_ids
        assert got.telemetry.steps < len(got.token_ids) + 1


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_greedy_oracle_draft_accepts_long_paths_and_stays_identical(arch, request):
    lm = request.getfixturevalue(f"tiny_{arch}")
    eng = Engine.from_loaded(lm)
    p = SamplingParams(max_new_tokens=48)
    for prompt in PROMPTS:
        ref = eng.complete(prompt, p)
        dec = OracleDecoder(request.getfixturevalue(f"{arch}_head"), depth=4, width=3)
        dec.cfg.prefill_chunk = 9  # the prompt and the head's catch-up on it in several chunks
        got = eng.complete(prompt, p, decoder=dec)
        assert got.token_ids == ref.token_ids
        if got.finish_reason == "length":
            # every accepted path is the full argmax chain: 4 drafted + 1 bonus token per verify step
            assert got.telemetry.acceptance_length > 4.0


def test_chunked_prefill_streams_progress_and_stays_identical(tiny_qwen2, qwen2_head):
    """A prompt of many chunks: progress steps first (the prompt tokens in the cache after each chunk but the
    last), then the same greedy tokens as the vanilla loop and EAGLE with the prompt in one forward."""
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    p = SamplingParams(max_new_tokens=24)
    ids = torch.tensor([eng.prompt(REPETITIVE[0] + " " + PROMPTS[1]).input_ids])  # [1, S]
    S = ids.shape[1]
    assert S > 100
    ref = eng.complete(eng.prompt(REPETITIVE[0] + " " + PROMPTS[1]), p)
    whole = EagleDecoder(qwen2_head, EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=10**6))
    chunked = EagleDecoder(qwen2_head, EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=13))
    for dec in (whole, chunked):
        steps = dec.decode(tiny_qwen2.model, ids, p, None)
        seen, out = [], []
        while len(out) < 24:
            step = next(steps)
            seen.append(step)
            out += step.tokens
        steps.close()
        progress = [s.prefilled for s in seen if not s.tokens]
        assert progress == (list(range(13, S, 13)) if dec is chunked else [])
        assert all(s.tokens for s in seen[len(progress) :])  # progress comes first, only
        assert out[:24] == ref.token_ids
        dec.forget()  # the same drafts again
        done = eng.complete(ref.prompt, p, decoder=dec)
        assert done.token_ids == ref.token_ids and done.telemetry.prefill_s > 0
        assert done.telemetry.steps == len(seen) - len(progress)


def test_the_heads_catch_up_in_chunks_equals_one_forward(tiny_qwen2, qwen2_head):
    """After a long prompt the head's first catch-up reads every prompt position: in ``prefill_chunk`` pieces it
    must leave the same head cache and draw the same tree (greedy equality alone would not notice worse drafts)."""
    from transformers import DynamicCache

    model = tiny_qwen2.model
    ids = torch.randint(model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(3))
    root = 11
    out = []
    with torch.inference_mode():
        feats = model.get_decoder()(input_ids=ids).last_hidden_state[0]  # [S, H]: f_t
        pend = torch.cat([ids[0, 1:], torch.tensor([root])])  # x_{t+1}
        for chunk in (10**6, 7):
            cfg = EagleConfig(depth=3, top_k=4, total_tokens=10, suffix=False, prefill_chunk=chunk)
            hcache = DynamicCache()
            out.append((EagleDecoder(qwen2_head, cfg).draft(model, hcache, pend, feats, 0, root), hcache))
    (a, ca), (b, cb) = out
    assert a.tokens.tolist() == b.tokens.tolist() and a.parents.tolist() == b.parents.tolist()
    torch.testing.assert_close(a.value, b.value, atol=1e-5, rtol=1e-5)
    assert ca.get_seq_length() == cb.get_seq_length() == 40
    torch.testing.assert_close(ca.layers[0].keys, cb.layers[0].keys, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ca.layers[0].values, cb.layers[0].values, atol=1e-5, rtol=1e-5)


def test_sampling_first_two_tokens_follow_the_target(tiny_qwen2, qwen2_head):
    """Joint law of (x_n, x_{n+1}) from EAGLE sampling equals the target's p(x_n) p(x_{n+1} | x_n).

    The oracle draft proposes the target's top-3 at each level, so acceptance and rejection both happen; the
    check is a chi-square over the 3 x 3 joint (top_k=3 sampling)."""
    model = tiny_qwen2.model
    eng = Engine.from_loaded(tiny_qwen2)
    chat = eng.prompt("Привет! Как дела?")
    ids = torch.tensor([chat.input_ids])
    params = SamplingParams(max_new_tokens=2, temperature=1.3, top_k=3)
    with torch.no_grad():
        p1 = logits_to_probs(model(input_ids=ids).logits[0, -1], 1.3, 3)
        firsts = p1.nonzero().flatten().tolist()
        joint = {}
        for a in firsts:
            p2 = logits_to_probs(model(input_ids=torch.cat([ids, torch.tensor([[a]])], 1)).logits[0, -1], 1.3, 3)
            for b in p2.nonzero().flatten().tolist():
                joint[(a, b)] = float(p1[a] * p2[b])
    keys = sorted(joint)
    counts = torch.zeros(len(keys))
    dec = OracleDecoder(qwen2_head, depth=2, width=2)
    g = torch.Generator().manual_seed(0)
    n_accepts = 0
    for _ in range(700):
        steps = dec.decode(model, ids, params, g)
        first = next(steps)
        second = next(steps)
        steps.close()
        n_accepts += second.accepted > 0
        counts[keys.index((first.tokens[0], second.tokens[0]))] += 1
    assert 50 < n_accepts < 650, "the test must see both accepted and rejected drafts"
    assert chi_square_p(counts, torch.tensor([joint[k] for k in keys])) > 1e-3


REPETITIVE = [
    "раз два три четыре раз два три четыре раз два три четыре раз два три четыре раз два три",
    "def f(x): return x + 1\ndef g(x): return x + 1\ndef h(x): return x + 1\ndef k(x): return",
]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_greedy_hybrid_is_token_identical_and_the_suffix_drafter_fires(arch, request):
    """A random head accepts almost nothing, so what is accepted here is the suffix drafter's: tiny random models
    loop in greedy decoding, and the loops and the repeated prompts are drafted from the text."""
    lm = request.getfixturevalue(f"tiny_{arch}")
    eng = Engine.from_loaded(lm)
    p = SamplingParams(max_new_tokens=48)
    cfg = EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=11)
    dec = EagleDecoder(request.getfixturevalue(f"{arch}_head"), cfg)
    assert dec.cfg.suffix  # the default
    accepted = 0
    for prompt in REPETITIVE + PROMPTS[:1]:
        ref = eng.complete(prompt, p)
        got = eng.complete(prompt, p, decoder=dec)
        assert got.token_ids == ref.token_ids
        accepted += got.telemetry.draft_accepted
    assert accepted >= 20


def test_earlier_answers_draft_a_repeated_request(tiny_qwen2, qwen2_head):
    """The decoder keeps its answers: the same request again is drafted from the first answer (greedy: the same
    text), so it takes fewer steps, with the same tokens; with the cache off it does not."""
    eng = Engine.from_loaded(tiny_qwen2)
    p = SamplingParams(max_new_tokens=40)
    for answers, faster in ((8, True), (0, False)):
        dec = EagleDecoder(qwen2_head, EagleConfig(depth=2, top_k=2, total_tokens=4, suffix_answers=answers))
        a = eng.complete(PROMPTS[1], p, decoder=dec)
        b = eng.complete(PROMPTS[1], p, decoder=dec)
        assert a.token_ids == b.token_ids == eng.complete(PROMPTS[1], p).token_ids
        assert (b.telemetry.steps < a.telemetry.steps) == faster
        if faster:
            assert b.telemetry.acceptance_length > 4.0
            dec.forget()
            assert eng.complete(PROMPTS[1], p, decoder=dec).telemetry.steps == a.telemetry.steps


def test_suffix_off_is_the_eagle_tree_alone(tiny_qwen2, qwen2_head):
    eng = Engine.from_loaded(tiny_qwen2)
    dec = EagleDecoder(qwen2_head, EagleConfig(depth=3, top_k=4, total_tokens=10, suffix=False))
    got = eng.complete(REPETITIVE[0], SamplingParams(max_new_tokens=24), decoder=dec)
    assert got.token_ids == eng.complete(REPETITIVE[0], SamplingParams(max_new_tokens=24)).token_ids
    assert got.telemetry.draft_proposed == 10 * (got.telemetry.steps - 1)  # every step: the full EAGLE tree
    assert not dec.suffix.seqs  # nothing cached


def test_sampling_merged_tree_first_two_tokens_follow_the_target(tiny_qwen2, qwen2_head, monkeypatch):
    """As above, with the suffix drafter's chains merged into the oracle's tree at every step (the head is forced
    to run so both drafters propose): a prompt of one repeated phrase makes the suffix drafter fire."""
    monkeypatch.setattr(policy, "run_eagle", lambda *a: True)
    model = tiny_qwen2.model
    chat = Engine.from_loaded(tiny_qwen2).prompt(REPETITIVE[0])
    ids = torch.tensor([chat.input_ids])
    params = SamplingParams(max_new_tokens=2, temperature=1.3, top_k=3)
    with torch.no_grad():
        p1 = logits_to_probs(model(input_ids=ids).logits[0, -1], 1.3, 3)
        joint = {}
        for a in p1.nonzero().flatten().tolist():
            p2 = logits_to_probs(model(input_ids=torch.cat([ids, torch.tensor([[a]])], 1)).logits[0, -1], 1.3, 3)
            for b in p2.nonzero().flatten().tolist():
                joint[(a, b)] = float(p1[a] * p2[b])
    keys = sorted(joint)
    counts = torch.zeros(len(keys))
    dec = OracleDecoder(qwen2_head, depth=2, width=2, suffix=True)
    g = torch.Generator().manual_seed(0)
    merged = n_accepts = 0
    for _ in range(700):
        steps = dec.decode(model, ids, params, g)
        first = next(steps)
        second = next(steps)
        steps.close()
        n_accepts += second.accepted > 0
        merged += second.proposed > 4  # the oracle's 4 nodes plus suffix nodes
        counts[keys.index((first.tokens[0], second.tokens[0]))] += 1
    assert merged > 100, "the test must see merged trees"
    assert 50 < n_accepts < 650, "the test must see both accepted and rejected drafts"
    assert chi_square_p(counts, torch.tensor([joint[k] for k in keys])) > 1e-3


def test_sampling_random_head_runs_and_respects_top_k(tiny_qwen3, qwen3_head):
    eng = Engine.from_loaded(tiny_qwen3)
    dec = EagleDecoder(qwen3_head, EagleConfig(depth=3, top_k=3, total_tokens=8))
    a = eng.complete(PROMPTS[0], SamplingParams(max_new_tokens=30, temperature=0.8, top_p=0.9, seed=3), decoder=dec)
    b = eng.complete(PROMPTS[0], SamplingParams(max_new_tokens=30, temperature=0.8, top_p=0.9, seed=3), decoder=dec)
    assert a.token_ids == b.token_ids  # seeded: reproducible
    assert len(a.token_ids) > 0


def test_load_decoder_contract(tiny_qwen2, qwen2_head, tmp_path):
    from tpro.eagle import default_head_dir, load_decoder
    from tpro.eagle.head import save_head
    from tpro.engine.decoder import Step

    save_head(qwen2_head, tmp_path / "h")
    dec = load_decoder(tmp_path / "h", tiny_qwen2, depth=2)
    assert dec.name == "eagle" and dec.cfg.depth == 2
    ids = torch.tensor([Engine.from_loaded(tiny_qwen2).prompt("Привет").input_ids])
    steps = dec.decode(tiny_qwen2.model, ids, SamplingParams(), None)
    assert all(isinstance(next(steps), Step) for _ in range(3))
    d = default_head_dir()
    assert d is None or ((d / "head.safetensors").is_file() and (d / "head_config.json").is_file())


def test_costs_are_measured_on_this_machine_unless_told(tiny_qwen2, qwen2_head, tmp_path, monkeypatch):
    from tpro.eagle import decoder as decoder_mod
    from tpro.eagle import load_decoder, policy
    from tpro.eagle.head import save_head

    curve = decoder_mod.measure_verify_ms(tiny_qwen2.model, sizes=(1, 3), prefix=5, repeats=2)
    assert [n for n, _ in curve] == [1, 3] and all(ms > 0 for _, ms in curve)
    save_head(qwen2_head, tmp_path / "h")
    assert load_decoder(tmp_path / "h", tiny_qwen2, calibrate=False).measure_level_ms(tiny_qwen2.model) > 0
    table = load_decoder(tmp_path / "h", tiny_qwen2, calibrate=False).cfg
    assert table.verify_ms == policy.verify_curve("fp32")
    # the measured curve and head level replace the tables
    monkeypatch.setattr(decoder_mod, "measure_verify_ms", lambda model: ((1, 12.0), (8, 30.0)))
    monkeypatch.setattr(decoder_mod.EagleDecoder, "measure_level_ms", lambda self, model: 1.5)
    cfg = load_decoder(tmp_path / "h", tiny_qwen2).cfg
    assert cfg.verify_ms == ((1, 12.0), (8, 30.0)) and cfg.level_ms == 1.5
    given = ((1, 5.0), (2, 6.0))  # an explicit curve is kept
    assert load_decoder(tmp_path / "h", tiny_qwen2, verify_ms=given).cfg.verify_ms == given


def test_load_decoder_rejects_a_head_for_another_target(tiny_qwen2, tmp_path):
    from tpro.eagle import load_decoder
    from tpro.eagle.head import init_head, save_head
    from tpro.models import load_model
    from tpro.models.tiny import make_tiny_model

    other = load_model(str(make_tiny_model(tmp_path / "wide", hidden_size=96)), progress=False)
    save_head(init_head(other.model), tmp_path / "h")
    with pytest.raises(ValueError, match="hidden_size=96"):
        load_decoder(tmp_path / "h", tiny_qwen2)


@pytest.mark.embedded
def test_embedded_greedy_is_token_identical(embedded):
    """The real model (fp32) with the shipped head if there is one, else an untrained head on a 16k FR-Spec vocab;
    the hybrid default (head + suffix drafter), on plain prompts and one that asks for repetition."""
    from tpro.eagle import default_head_dir, load_decoder
    from tpro.eagle.head import init_head

    torch.set_num_threads(2)  # big matmuls: the second core helps here
    eng = Engine.from_loaded(embedded)
    shipped = default_head_dir() is not None
    if shipped:
        dec = load_decoder("default", embedded)
    else:
        dec = EagleDecoder(init_head(embedded.model, torch.arange(16384)), EagleConfig.for_model(embedded.model))
    assert dec.cfg.suffix
    assert [n for n, _ in dec.cfg.verify_ms] == (
        [1, 4, 8, 16, 32] if shipped else [n for n, _ in policy.VERIFY_MS["fp32"]]
    )
    p = SamplingParams(max_new_tokens=32)
    for q in (
        "Сколько будет 17 умножить на 23? Ответь кратко.",
        "В классе 12 мальчиков и 15 девочек. Сколько всего учеников в классе?",
    ):
        ref = eng.complete(q, p)
        got = eng.complete(q, p, decoder=dec)
        assert got.token_ids == ref.token_ids
    if shipped:
        # the shipped head drafts the target: 1.94 measured on this prompt (an untrained head gets ~1.0)
        assert got.telemetry.acceptance_length >= 1.5
    # copying: the answer repeats the prompt's list, which the suffix drafter proposes whatever the head
    q = "Перепиши этот список без изменений: яблоко, груша, слива, вишня, персик, абрикос, виноград, малина."
    ref = eng.complete(q, p)
    got = eng.complete(q, p, decoder=dec)
    assert got.token_ids == ref.token_ids
    assert got.telemetry.acceptance_length >= 2.0


def test_a_quantized_target_gets_a_quantized_head(tiny_qwen2_dir, qwen2_head, tmp_path):
    """w8a8 target: the head's layers and hot lm_head rows are quantized too (cheaper draft levels); its
    drafts stay close to the float head's, and decoding through the engine still works."""
    from tpro.eagle import load_decoder
    from tpro.eagle.head import save_head
    from tpro.models import load_model, quant

    if not quant.kernel_available("w8a8"):
        pytest.skip("no fbgemm dynamic int8 kernel here")
    lm = load_model(str(tiny_qwen2_dir), weights="w8a8", progress=False)
    save_head(qwen2_head, tmp_path / "h")
    plain = load_decoder(tmp_path / "h", lm, calibrate=False)  # built, then quantized by load_decoder
    assert isinstance(plain.head.fc, quant.DynamicInt8Linear)
    assert isinstance(plain.head.hot_logits, quant.DynamicInt8Linear)
    from tpro.eagle.head import load_head

    ref = load_head(tmp_path / "h", lm.model, dtype=lm.model.dtype)  # the same head, float
    h = torch.randn(3, ref.cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    got, want = plain.head.logits(h), ref.logits(h)
    assert ((got - want).norm() / want.norm()).item() < 0.05
    engine = Engine.from_loaded(lm, decoder=plain)
    done = engine.complete(engine.prompt("Привет"), SamplingParams(max_new_tokens=8))
    assert done.telemetry.generated_tokens > 0 and done.telemetry.steps > 0
