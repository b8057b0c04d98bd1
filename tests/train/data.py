"""Tiny training sets written by the tests (Russian and English, both chat modes); small enough to overfit."""

from __future__ import annotations

import json
from pathlib import Path

QA = [
    ("Сколько будет 2+2?", "2+2=4", "Ответ: 4"),
    ("Столица России?", "Столица России это Москва", "Москва"),
    ("Сколько будет 17*23?", "17*23=391", "Ответ: 391"),
    ("Привет! Как дела?", "", "Спасибо, всё хорошо."),
    ("What is 5+5?", "5+5=10", "The answer is 10"),
    ("Решите уравнение x^2 - 5x + 6 = 0.", "Корни 2 и 3", "x = 2 или x = 3"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sft_rows(n: int = 24) -> list[dict]:
    """Conversations; odd rows with a reasoning trace (reasoning mode), even rows direct."""
    rows = []
    for i in range(n):
        q, r, a = QA[i % len(QA)]
        content = f"<think>{r}</think>{a}" if (r and i % 2) else a
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": content}]})
    return rows


def pair_rows(n: int = 24) -> list[dict]:
    """Preference pairs: the right answer vs a fixed wrong one (learnable by a tiny model in a few steps)."""
    rows = []
    for i in range(n):
        q, _, a = QA[i % len(QA)]
        rows.append(
            {
                "prompt": [{"role": "user", "content": q}],
                "chosen": [{"role": "assistant", "content": a}],
                "rejected": [{"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}],
                "meta": {"source": "test"},
            }
        )
    return rows


def text_lines() -> str:
    return (
        "\n".join(
            [
                "Мама мыла раму. Папа читает газету.",
                "Москва является столицей России.",
                "Дети играют во дворе после школы.",
                "Найдите сумму первых ста натуральных чисел.",
            ]
            * 4
        )
        + "\n"
    )
