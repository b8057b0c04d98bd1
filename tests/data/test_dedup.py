import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpro.data.dedup import DedupConfig, dedup, normalize, shingles
from tpro.data.io import DataError
from tpro.data.synth import plant, precision_recall

from .conftest import random_docs


def test_normalize_ignores_case_spacing_and_punctuation():
    assert normalize("  Привет,   МИР!\n") == normalize("привет мир") == "привет мир"
    assert normalize("3 + 4") != normalize("5 + 6")


def test_shingles_of_short_text_are_the_text():
    assert shingles("ab", 5) == {b"ab"}
    assert len(shingles("one two three four", 2, "word")) == 3


def removed_ids(rows, res):
    kept = {rows[i]["id"] for i in res.kept}
    return {r["id"] for r in rows} - kept


def test_planted_duplicates_are_found_and_originals_kept():
    rows = plant(random_docs(300), exact_frac=0.1, near_frac=0.2, edit_fracs=(0.01, 0.03), seed=1)
    planted = {r["id"] for r in rows if r["plant"]["kind"] != "original"}
    one_pct = {r["id"] for r in rows if r["plant"].get("edit_frac") == 0.01}
    # ~150-char texts, 5-char shingles: 1% edits (2 edits) keep Jaccard ~0.9; 3% (5 edits) ~0.6-0.75.
    strict = removed_ids(rows, dedup(rows, DedupConfig(threshold=0.7)))
    assert precision_recall(strict, planted)["precision"] == 1.0 and one_pct <= strict
    res = dedup(rows, DedupConfig(threshold=0.5))
    pr = precision_recall(removed_ids(rows, res), planted)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0, pr
    assert all(rows[i]["plant"]["kind"] == "original" for i in res.kept)  # keep=first keeps the originals
    # 30 surface copies, plus any "near" copy whose edits only touched punctuation (equal after normalising)
    assert res.counts["exact_removed"] >= 30 and res.counts["exact_removed"] + res.counts["near_removed"] == 90
    member = next(m for c in res.clusters for m in c["members"] if m["reason"] == "near")
    assert 0.5 <= member["jaccard"] < 1.0


def test_exact_mode_leaves_near_duplicates():
    rows = plant(random_docs(100), exact_frac=0.1, near_frac=0.1, edit_fracs=(0.03,), seed=2)
    res = dedup(rows, DedupConfig(method="exact"))
    assert {rows[i]["plant"]["kind"] for i in range(len(rows)) if i not in set(res.kept)} == {"exact"}
    assert res.counts["removed"] == 10


def test_keep_best_keeps_the_highest_score_in_each_cluster():
    rows = [
        {"text": "один и тот же текст", "s": 1},
        {"text": "Один и тот же текст!", "s": 5},
        {"text": "совсем другой текст", "s": 0},
    ]
    res = dedup(rows, DedupConfig(keep="best", score_field="s"))
    assert res.kept == [1, 2]
    assert res.clusters[0]["kept"] == 1 and res.clusters[0]["size"] == 2
    with pytest.raises(DataError, match="score-field"):
        DedupConfig(keep="best")


def test_word_shingles_and_chat_fields():
    rows = [{"m": [{"role": "user", "content": w}]} for w in random_docs(20, seed=3)]
    rows.append({"m": [{"role": "user", "content": rows[0]["m"][0]["content"].upper()}]})
    res = dedup(rows, DedupConfig(field="m", unit="word", shingle=3))
    assert res.kept == list(range(20))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet="абв гд.,!AБ", min_size=0, max_size=30), min_size=1, max_size=25),
    st.sampled_from(["exact", "near", "both"]),
)
def test_dedup_invariants(texts, mode):
    rows = [{"text": t} for t in texts]
    res = dedup(rows, DedupConfig(method=mode, threshold=0.6, num_perm=32))
    assert res.kept == sorted(set(res.kept)) and set(res.kept) <= set(range(len(rows)))
    # every row is kept or sits in exactly one cluster with a kept row
    assert len(res.kept) + sum(c["size"] - 1 for c in res.clusters) == len(rows)
    assert all(c["kept"] in res.kept for c in res.clusters)
    if mode != "near":  # no two kept rows are equal after normalisation
        norms = [normalize(texts[i]) for i in res.kept]
        assert len(norms) == len(set(norms))
