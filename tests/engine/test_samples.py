"""tpro.engine.samples: K seeded answers per prompt, the same after a kill and resume."""

from __future__ import annotations

from tpro.engine import Engine, SamplingParams
from tpro.engine.samples import read_progress, sample_answers, sample_seed

PROMPTS = ["Привет", "Сколько будет 2+2?", "Кто ты?"]


def test_seed_rule():
    assert sample_seed(0, 0, 0) == 0 and sample_seed(5, 2, 3) == 2008


def test_seeded_and_resumable(tiny_qwen2, tmp_path):
    eng = Engine.from_loaded(tiny_qwen2)
    params = SamplingParams(max_new_tokens=6, temperature=1.0, seed=7)
    full = sample_answers(eng, PROMPTS, 3, params, show_progress=False)
    assert [len(s) for s in full] == [3, 3, 3]
    # samples of one prompt differ from each other (different seeds), and a second run repeats them exactly
    assert len({s["text"] for s in full[0]}) > 1
    assert sample_answers(eng, PROMPTS, 3, params, show_progress=False) == full
    # prompt i's samples do not depend on which other prompts are in the run
    assert sample_answers(eng, PROMPTS[:1], 3, params, show_progress=False)[0] == full[0]

    # a run killed after the first prompt, with a torn line behind it, resumes to the same samples
    path = tmp_path / "progress.jsonl"
    seen = []
    sample_answers(eng, PROMPTS[:1], 3, params, progress_path=path, show_progress=False)
    with path.open("a") as f:
        f.write('{"index": 1, "samp')
    assert list(read_progress(path)) == [0]
    out = sample_answers(
        eng, PROMPTS, 3, params, progress_path=path, show_progress=False, on_prompt=lambda i, s: seen.append(i)
    )
    assert out == full and seen == [1, 2]
    assert sorted(read_progress(path)) == [0, 1, 2]


def test_batched_sampling_draws_what_one_at_a_time_draws(tiny_qwen2, tmp_path):
    """``batch`` > 1 decodes the samples together (sharing each prompt's prefill) and gives the same samples as
    one at a time, resumes from the same progress file, and writes prompts in order."""
    eng = Engine.from_loaded(tiny_qwen2)
    prompts = PROMPTS * 3  # more prompts than the queue window of a batch of 4
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=5)
    seq = sample_answers(eng, prompts, 3, params, show_progress=False)
    assert sample_answers(eng, prompts, 3, params, show_progress=False, batch=4) == seq

    path = tmp_path / "progress.jsonl"
    sample_answers(eng, prompts[:2], 3, params, progress_path=path, show_progress=False, batch=4)
    seen = []
    out = sample_answers(
        eng, prompts, 3, params, progress_path=path, show_progress=False, batch=4, on_prompt=lambda i, s: seen.append(i)
    )
    assert out == seq and seen == list(range(2, len(prompts)))
