import random

from tpro.data.decontam import DecontamConfig, containment, decontaminate, load_items
from tpro.data.synth import char_edits, plant, precision_recall
from tpro.eval.benchmarks import Item

from .conftest import random_docs


def test_containment_from_jaccard():
    # Q inside X: |Q|=10, |X|=40 -> J = 10/40, containment 1.
    assert containment(10 / 40, 10, 40) == 1.0
    assert abs(containment(5 / 45, 10, 40) - 0.5) < 1e-9


def test_leaks_are_removed_with_reasons_and_clean_rows_kept():
    items = [Item(f"b:{i}", q, "1") for i, q in enumerate(random_docs(30, words=25, seed=9))]
    leaks = [(it.id, it.question) for it in items[:10]]
    rows = plant(random_docs(200, seed=10), leaks, exact_frac=0, near_frac=0, leak_edits=3)
    kept, report = decontaminate(rows, items, DecontamConfig())
    planted = {r["id"] for r in rows if r["plant"]["kind"] == "leak"}
    pr = precision_recall({r["id"] for r in report}, planted)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0, pr
    assert len(kept) == 200
    edited = next(r for r in report if rows[r["index"]]["plant"]["edits"] == 3)
    methods = {x["method"] for x in edited["reasons"]}
    assert "minhash" in methods and edited["reasons"][0]["item"] == rows[edited["index"]]["plant"]["of"]
    # A question with a typo every few words shares no 13-gram, but MinHash containment still finds it.
    q = items[20].question
    typo = " ".join(w[:-1] + "ъ" if k % 6 == 0 else w for k, w in enumerate(q.split()))
    only_ngram = decontaminate([{"text": typo}], items, DecontamConfig(containment=0))[1]
    both = decontaminate([{"text": typo}], items, DecontamConfig(containment=0.5))[1]
    assert only_ngram == [] and both[0]["reasons"][0]["method"] == "minhash"


def test_real_benchmark_specs_are_the_reference():
    items = load_items(["t-math"])
    assert items[0].id.startswith("t-math:") and len(items) > 300
    rows = [{"text": "Вот задача: " + items[5].question}, {"text": "Совершенно посторонний текст про погоду."}]
    kept, report = decontaminate(rows, items, DecontamConfig())
    assert kept == [1] and report[0]["reasons"][0]["item"] == items[5].id
    assert char_edits("abc", 0, random.Random(0)) == "abc"
