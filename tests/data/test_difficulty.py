import pytest

from tpro.data.difficulty import DifficultyConfig, histogram, in_band, sample_problem, select
from tpro.data.io import DataError


class SeedEngine:
    """A stand-in engine whose answer is right when the sampling seed is even (isolates selection logic)."""

    def __init__(self):
        self.seeds = []

    def complete(self, messages, params, mode="direct"):
        from types import SimpleNamespace

        self.seeds.append(params.seed)
        assert params.temperature > 0
        ok = params.seed % 2 == 0 or messages[0]["content"].startswith("easy")
        return SimpleNamespace(answer=f"\\boxed{{{'7' if ok else '8'}}}", text="", token_ids=[1, 2])


def test_pass_rates_band_and_per_problem_seeds():
    rows = [
        {"question": "easy one", "answer": "7"},
        {"question": "hard", "answer": "7"},
        {"question": "hard", "answer": "9"},
    ]
    eng = SeedEngine()
    cfg = DifficultyConfig(samples=4, seed=10, low=0.25, high=0.75)
    kept, results = select(rows, eng, cfg)
    assert [r["pass_rate"] for r in results] == [1.0, 0.5, 0.0]
    assert kept == [1]
    assert eng.seeds == [10 + 1000 * i + j for i in range(3) for j in range(4)]
    assert results[1]["correct"] == [True, False, True, False] and results[1]["extracted"][0] == "7"


def test_resume_reuses_finished_rows():
    rows = [{"question": "hard", "answer": "7"}] * 3
    eng, seen = SeedEngine(), []
    done = {0: {"pass_rate": 1.0, "correct": [True] * 4}}
    kept, results = select(
        rows, eng, DifficultyConfig(low=0.0, high=1.0), done=done, on_result=lambda i, r: seen.append(i)
    )
    assert results[0] is done[0] and seen == [1, 2] and len(eng.seeds) == 8


def test_histogram_and_band():
    assert histogram([0.0, 0.5, 0.5, 1.0], 2) == {"0/2": 1, "1/2": 2, "2/2": 1}
    cfg = DifficultyConfig(low=0.25, high=0.75)
    assert in_band(0.25, cfg) and in_band(0.75, cfg) and not in_band(1.0, cfg)
    with pytest.raises(DataError):
        DifficultyConfig(temperature=0)
    with pytest.raises(DataError):
        DifficultyConfig(low=0.9, high=0.1)


def test_real_engine_samples_are_reproducible(tiny_qwen2):
    from tpro.engine import Engine

    engine = Engine.from_loaded(tiny_qwen2)
    cfg = DifficultyConfig(samples=3, max_new_tokens=6)
    a = sample_problem(engine, "Сколько будет 2+2?", "4", cfg, 5)
    b = sample_problem(engine, "Сколько будет 2+2?", "4", cfg, 5)
    assert a == b and len(a["correct"]) == 3 and a["pass_rate"] in (0, 1 / 3, 2 / 3, 1)
