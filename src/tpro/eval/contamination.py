"""Decontamination: which benchmark items appear in a training text, by shared word n-grams.

Texts and questions are normalised (Unicode NFKC, case folded, ``ё`` -> ``е``, only ``\\w+`` word runs kept,
so punctuation, LaTeX braces and spacing do not hide a copy) and compared as word n-grams, n = 13 by default
(GPT-3's decontamination setting). A question shorter than n words is matched as a whole when it has at least
``min_words`` words; shorter ones are too generic to say anything. An exact n-gram index (a dict) is enough
here: benchmarks hold hundreds of items; near-duplicate training rows are ``tpro.data``'s business (MinHash).

This module knows nothing about models; ``tpro.data`` uses it to drop contaminated training rows.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tpro.config import Config, opt
from tpro.eval.benchmarks import Item

_WORD_RE = re.compile(r"\w+", re.UNICODE)
NGRAM = 13  # GPT-3's decontamination setting


@dataclass(kw_only=True)
class ContaminationConfig(Config):
    """``tpro eval contamination``: a training file, the benchmarks to look for, the n-gram length."""

    train_file: str = opt(
        help="Training data: JSONL (every string of a row, or --field) or plain text", positional=True
    )
    bench: list[str] = opt(["t-math"], "Benchmark(s) to look for (repeatable)", short="-b")
    ngram: int = opt(NGRAM, "Word n-gram length", min=1, aliases=("--n",))
    field: str | None = opt(None, "Only this field of each JSONL row")


@dataclass(frozen=True)
class Overlap:
    text_index: int
    item_id: str
    ngram: str  # the first shared n-gram, normalised words joined by spaces


def words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    return _WORD_RE.findall(text)


def _grams(ws: list[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(ws) - n + 1):
        yield tuple(ws[i : i + n])


def ngram_overlaps(texts: list[str], items: list[Item], n: int = NGRAM, min_words: int = 8) -> list[Overlap]:
    """One ``Overlap`` per (text, item) pair that shares an n-gram, in text order then item order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # index[length][gram] -> item ids; length is n, or the whole question's length when it is shorter than n
    index: dict[int, dict[tuple[str, ...], list[str]]] = {}
    for it in items:
        ws = words(it.question)
        if len(ws) < min(n, min_words):
            continue
        size = min(n, len(ws))
        for g in _grams(ws, size):
            ids = index.setdefault(size, {}).setdefault(g, [])
            if not ids or ids[-1] != it.id:
                ids.append(it.id)
    order = {it.id: k for k, it in enumerate(items)}
    out: list[Overlap] = []
    for ti, text in enumerate(texts):
        ws = words(text)
        found: dict[str, str] = {}
        for size, grams in index.items():
            for g in _grams(ws, size):
                for item_id in grams.get(g, ()):
                    found.setdefault(item_id, " ".join(g))
        out += [Overlap(ti, i, found[i]) for i in sorted(found, key=order.__getitem__)]
    return out


def _strings(value) -> Iterator[str]:
    """Every string inside a JSON value (a chat's messages, a preference pair's chosen and rejected)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def read_training_texts(path: str | Path, field: str | None = None) -> list[str]:
    """One text per line of a JSONL file (all its strings, or only ``field``), or per line of a plain text file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    texts: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if not s:
                texts.append("")
                continue
            try:
                row = json.loads(s)
            except json.JSONDecodeError:
                texts.append(s)
                continue
            if field is not None and isinstance(row, dict):
                if field not in row:
                    raise ValueError(f"{path}: line {len(texts) + 1} has no field {field!r} (fields: {sorted(row)})")
                row = row[field]
            texts.append("\n".join(_strings(row)))
    return texts
