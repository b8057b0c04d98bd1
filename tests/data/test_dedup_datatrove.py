import pytest

from tpro.data.dedup import DedupConfig
from tpro.data.dedup_datatrove import lsh_bands, run_datatrove_dedup
from tpro.data.io import DataError, read_rows, write_rows
from tpro.data.synth import plant

from .conftest import random_docs


@pytest.mark.slow  # four executors with worker processes: ~20 s alone, ~40 s on a busy CPU
def test_datatrove_pipeline_removes_planted_copies(tmp_path):
    rows = plant(random_docs(80, words=30), exact_frac=0.1, near_frac=0.1, edit_fracs=(0.01,), seed=4)
    src = tmp_path / "in.jsonl"
    write_rows(src, rows)
    cfg = DedupConfig(unit="word", shingle=3, threshold=0.5)
    counts = run_datatrove_dedup(
        str(src), tmp_path / "out.jsonl", cfg, workers=2, report=tmp_path / "rep.jsonl", work=tmp_path / "work"
    )
    out = read_rows(tmp_path / "out.jsonl")
    assert counts["rows_in"] == 96 and counts["rows_out"] == len(out)
    removed = {r["id"] for r in rows} - {r["id"] for r in out}
    # datatrove keeps one row per cluster of its own choosing: of each planted pair exactly one goes.
    pairs = [(r["id"], r["plant"]["of"]) for r in rows if r["plant"]["kind"] != "original"]
    assert len(pairs) == 16 and all(len({a, b} & removed) == 1 for a, b in pairs)
    assert len(removed) == 16
    assert out[0] == next(r for r in rows if r["id"] == out[0]["id"])  # rows come back whole, in input order
    assert [r["id"] for r in out] == [r["id"] for r in rows if r["id"] not in removed]
    report = read_rows(tmp_path / "rep.jsonl")
    assert len(report) == 16 and all(c["size"] == 2 for c in report)
    got = sorted(tuple(sorted(rows[m["index"]]["id"] for m in c["members"])) for c in report)
    assert got == sorted(tuple(sorted(p)) for p in pairs)
    assert lsh_bands(0.5, 128) == (counts["bands"], counts["rows_per_band"])


def test_datatrove_needs_word_shingles(tmp_path):
    with pytest.raises(DataError, match="--unit word"):
        run_datatrove_dedup("x", tmp_path / "o.jsonl", DedupConfig())
