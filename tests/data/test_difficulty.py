import pytest

from tpro.data.difficulty import DifficultyConfig, histogram, in_band, select
from tpro.data.io import DataError
from tpro.engine.samples import sample_seed


class SeedEngine:
    """A stand-in engine whose answer is right when the sampling seed is even (isolates selection logic)."""

    def __init__(self):
        self.seeds = []

    def complete(self, messages, params, mode="direct"):
        from types import SimpleNamespace

        self.seeds.append(params.seed)
        assert params.temperature > 0
        ok = params.seed % 2 == 0 or messages[0]["content"].startswith("easy")
        answer = f"\\boxed{{{'7' if ok else '8'}}}"
        return SimpleNamespace(answer=answer, text=answer, reasoning=None, token_ids=[1, 2], finish_reason="stop")


def test_pass_rates_band_and_per_problem_seeds():
    rows = [
        {"question": "easy one", "answer": "7"},
        {"question": "hard", "answer": "7"},
        {"question": "hard", "answer": "9"},
    ]
    eng = SeedEngine()
    cfg = DifficultyConfig(samples=4, seed=10, band="0.25,0.75", batch=1)  # the stand-in has no model
    kept, results = select(rows, eng, cfg)
    assert [r["pass_rate"] for r in results] == [1.0, 0.5, 0.0]
    assert kept == [1]
    # the one seed rule of tpro.engine.samples: seed + 1000 * i + j
    assert (
        eng.seeds
        == [sample_seed(10, i, j) for i in range(3) for j in range(4)]
        == [10 + 1000 * i + j for i in range(3) for j in range(4)]
    )
    assert results[1]["correct"] == [True, False, True, False] and results[1]["extracted"][0] == "7"


def test_resume_reuses_finished_rows(tmp_path):
    rows = [{"question": "hard", "answer": "7"}] * 3
    progress = tmp_path / "p.jsonl"
    cfg = DifficultyConfig(band="0,1", batch=1)
    first, seen = SeedEngine(), []
    _, full = select(rows, first, cfg, progress_path=progress)
    lines = progress.read_text().splitlines()
    progress.write_text(lines[0] + "\n" + lines[1][:20])  # a kill after row 0, mid-write of row 1
    again = SeedEngine()
    _, resumed = select(rows, again, cfg, progress_path=progress, on_prompt=lambda i, s: seen.append(i))
    assert resumed == full and seen == [1, 2] and len(again.seeds) == 8


def test_histogram_and_band():
    assert histogram([0.0, 0.5, 0.5, 1.0], 2) == {"0/2": 1, "1/2": 2, "2/2": 1}
    cfg = DifficultyConfig(band="0.25,0.75")
    assert (cfg.low, cfg.high) == (0.25, 0.75)
    assert in_band(0.25, cfg) and in_band(0.75, cfg) and not in_band(1.0, cfg)
    assert DifficultyConfig().temperature == 0.7 and DifficultyConfig().seed == 0  # the recipe's defaults
    with pytest.raises(DataError):
        DifficultyConfig(temperature=0)
    with pytest.raises(DataError, match="band"):
        DifficultyConfig(band="0.9,0.1")
    with pytest.raises(DataError, match="LOW,HIGH"):
        DifficultyConfig(band="half")


def test_real_engine_samples_are_reproducible(tiny_qwen2):
    from tpro.engine import Engine

    engine = Engine.from_loaded(tiny_qwen2)
    cfg = DifficultyConfig(samples=3, max_new_tokens=6, band="0,1")
    rows = [{"question": "Сколько будет 2+2?", "answer": "4"}]
    _, a = select(rows, engine, cfg)
    _, b = select(rows, engine, cfg)
    assert a == b and len(a[0]["correct"]) == 3 and a[0]["pass_rate"] in (0, 1 / 3, 2 / 3, 1)
