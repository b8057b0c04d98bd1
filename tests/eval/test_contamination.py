"""Decontamination by normalised word n-grams."""

from __future__ import annotations

import json

from tpro.eval.benchmarks import Item, load_benchmark
from tpro.eval.contamination import Overlap, ngram_overlaps, read_training_texts, words


def test_normalisation():
    assert words("Ёжик, \\frac{1}{2} — ПРИВЕТ!") == ["ежик", "frac", "1", "2", "привет"]


def test_finds_copied_items_despite_case_and_punctuation():
    items = load_benchmark("t-math", limit=5)
    q = items[2].question
    texts = [
        "Совсем другой текст о погоде и природе, без задач.",
        "Вот задача: " + q.upper().replace(",", " ;") + " Решение: ...",
        items[0].question[:40],  # too short to share 13 words
    ]
    found = ngram_overlaps(texts, items, n=13)
    assert [(o.text_index, o.item_id) for o in found] == [(1, items[2].id)]
    assert len(found[0].ngram.split()) == 13 and found[0].ngram.split()[0] in words(q)


def test_short_items_match_whole_and_tiny_items_are_ignored():
    items = [Item("a", "Сколько будет два плюс два умножить на три?", "8"), Item("b", "2+2?", "4")]
    texts = ["Реши: сколько будет два плюс два умножить на три? Ответ 8", "2+2?"]
    assert ngram_overlaps(texts, items, n=13) == [Overlap(0, "a", "сколько будет два плюс два умножить на три")]


def test_one_overlap_per_pair_in_item_order():
    items = [Item("x", " ".join(f"w{i}" for i in range(30)), "1"), Item("y", " ".join(f"v{i}" for i in range(30)), "2")]
    text = items[1].question + " " + items[0].question + " " + items[0].question
    found = ngram_overlaps([text], items, n=5)
    assert [o.item_id for o in found] == ["x", "y"]


def test_read_training_texts(tmp_path):
    p = tmp_path / "train.jsonl"
    rows = [
        {"prompt": [{"role": "user", "content": "вопрос"}], "chosen": [{"role": "assistant", "content": "да"}]},
        {"text": "просто текст"},
    ]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\nnot json line\n", encoding="utf-8")
    assert read_training_texts(p) == ["user\nвопрос\nassistant\nда", "просто текст", "not json line"]
