"""Shared inputs for the data-curation benchmarks: short documents from the Universal Dependencies sentences
in ../shared/data/ud (ru, be, kk, ky, tt, mk, bxr), read only by benchmarks and never at run time."""

from __future__ import annotations

import random
from pathlib import Path

UD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud"


def ud_sentences(min_chars: int = 40) -> list[str]:
    seen, out = set(), []
    for p in sorted(UD.glob("*.txt")):
        for line in p.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if len(s) >= min_chars and s not in seen:
                seen.add(s)
                out.append(s)
    return out


def short_docs(n: int, seed: int = 0) -> list[str]:
    """``n`` short documents of two random UD sentences each (~150-300 characters)."""
    sents = ud_sentences()
    rng = random.Random(seed)
    return [f"{rng.choice(sents)} {rng.choice(sents)}" for _ in range(n)]
