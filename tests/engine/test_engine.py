import threading

import pytest
import torch

from tpro.engine import Delta, Done, Engine, SamplingParams

PROMPTS = ["Сколько будет 17*23?", "Привет! Как дела?", "What is the capital of Russia?"]


def hf_greedy(lm, ids, n):
    out = lm.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=lm.tokenizer.pad_token_id
    )
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("which", ["tiny_qwen2", "tiny_qwen3"])
@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_greedy_equals_model_generate(which, mode, request):
    lm = request.getfixturevalue(which)
    eng = Engine.from_loaded(lm)
    eng.eos = set()  # random weights may emit EOS; compare a fixed length, as min_new_tokens does for HF
    for text in PROMPTS:
        p = eng.prompt(text, mode)
        done = eng.complete(p, SamplingParams(max_new_tokens=24))
        assert done.token_ids == hf_greedy(lm, p.input_ids, 24)
        assert done.finish_reason == "length" and done.telemetry.generated_tokens == 24


def test_stream_concatenates_to_final_text(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    events = list(eng.generate("Привет", SamplingParams(max_new_tokens=30, temperature=1.0, seed=3)))
    done = events[-1]
    assert isinstance(done, Done) and all(isinstance(e, Delta) for e in events[:-1])
    assert "".join(e.text for e in events[:-1]) == done.text
    assert sum(len(e.token_ids) for e in events[:-1]) == len(done.token_ids)
    assert done.text == tiny_qwen2.tokenizer.decode(done.token_ids, skip_special_tokens=True)


def test_seed_reproducible_and_different_seeds_differ(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    run = lambda s: eng.complete("Привет", SamplingParams(max_new_tokens=20, temperature=1.0, seed=s)).token_ids
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_eos_stops_with_reason_stop(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    free = Engine.from_loaded(tiny_qwen2)
    free.eos = set()
    ids = free.complete("Привет", SamplingParams(max_new_tokens=20)).token_ids
    k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])  # first new token after the start
    eng.eos = {ids[k]}  # pretend it is EOS
    done = eng.complete("Привет", SamplingParams(max_new_tokens=20))
    assert done.token_ids == ids[:k] and done.finish_reason == "stop"


def test_stop_string_truncates(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    full = eng.complete("Привет", SamplingParams(max_new_tokens=30)).text
    stop = full[10:13]
    assert stop and stop in full
    done = eng.complete("Привет", SamplingParams(max_new_tokens=30, stop=[stop]))
    assert done.text == full[: full.find(stop)] and done.finish_reason == "stop"


def test_cancel_stops_between_steps(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    cancel = threading.Event()
    n = 0
    for ev in eng.generate("Привет", SamplingParams(max_new_tokens=200), cancel=cancel):  # noqa: B007 - the last event is checked below
        n += 1
        if n == 3:
            cancel.set()
    assert ev.finish_reason == "cancelled" and ev.telemetry.generated_tokens < 10


def test_prompt_over_context_is_refused(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    with pytest.raises(ValueError, match="context"):
        eng.complete("слово " * 3000, SamplingParams(max_new_tokens=5))


def test_telemetry_is_filled(tiny_qwen2):
    eng = Engine.from_loaded(tiny_qwen2)
    eng.eos = set()
    t = eng.complete("Привет", SamplingParams(max_new_tokens=12)).telemetry
    assert t.generated_tokens == 12 and t.prompt_tokens > 5 and t.steps == 12
    assert 0 < t.ttft_s <= t.total_s and t.tokens_per_s > 0 and t.acceptance_length == 1.0


@pytest.mark.embedded
def test_embedded_greedy_equals_model_generate(embedded):
    eng = Engine.from_loaded(embedded)
    texts = []
    for text, mode in [("Сколько будет 17*23? Объясни.", "direct"), ("Назови три столицы.", "reasoning")]:
        p = eng.prompt(text, mode)
        done = eng.complete(p, SamplingParams(max_new_tokens=32))
        ref = embedded.model.generate(torch.tensor([p.input_ids]), do_sample=False, max_new_tokens=32)
        ref = [t for t in ref[0, len(p.input_ids) :].tolist() if t not in eng.eos]
        assert done.token_ids == ref
        texts.append(done.text)
    assert any("а" <= ch <= "я" for ch in "".join(texts).lower())  # Russian came out
