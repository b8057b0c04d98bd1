"""Synthetic curation test sets: base documents plus planted exact copies, near duplicates at chosen edit
distances, and benchmark leaks, each row labelled with what was planted (``plant``), so precision and recall
of dedup and decontamination can be measured. Pure functions of their inputs and a seed; knows no files.
"""

from __future__ import annotations

import random

ALPHABET = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяabcdefghijklmnopqrstuvwxyz"


def char_edits(text: str, k: int, rng: random.Random) -> str:
    """``k`` random character edits (substitute, insert or delete) at random positions."""
    s = list(text)
    for _ in range(k):
        op, pos = rng.choice("sid"), rng.randrange(max(1, len(s)))
        if op == "s" and s:
            s[pos] = rng.choice(ALPHABET)
        elif op == "i":
            s.insert(pos, rng.choice(ALPHABET))
        elif s:
            del s[pos]
    return "".join(s)


def surface_copy(text: str, rng: random.Random) -> str:
    """A copy that differs only in case, spacing and punctuation (an 'exact' duplicate after normalisation)."""
    t = text.upper() if rng.random() < 0.5 else text
    return "  " + t.replace(" ", "  ", 1) + rng.choice(["", ".", "!", " ..."])


def plant(
    base: list[str],
    leaks: list[tuple[str, str]] = (),
    *,
    exact_frac: float = 0.1,
    near_frac: float = 0.2,
    edit_fracs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.2),
    leak_edits: int = 2,
    seed: int = 0,
) -> list[dict]:
    """Rows ``{"id", "text", "plant": {...}}``: every base text once (``original``), then for randomly chosen
    bases an ``exact`` copy or a ``near`` copy with ``round(f * len)`` character edits for f in ``edit_fracs``
    (cycled), then each ``(item_id, question)`` in ``leaks`` embedded in a sentence (``leak``, verbatim or
    with ``leak_edits`` edits, alternating). Shuffled with ``seed``; originals stay before their copies."""
    rng = random.Random(seed)
    rows = [{"id": f"doc-{i}", "text": t, "plant": {"kind": "original"}} for i, t in enumerate(base)]
    n = len(base)
    picks = rng.sample(range(n), min(n, int(n * (exact_frac + near_frac))))
    n_exact = int(n * exact_frac)
    copies = []
    for j, i in enumerate(picks):
        if j < n_exact:
            copies.append(
                {"id": f"exact-{j}", "text": surface_copy(base[i], rng), "plant": {"kind": "exact", "of": f"doc-{i}"}}
            )
        else:
            f = edit_fracs[j % len(edit_fracs)]
            k = max(1, round(f * len(base[i])))
            copies.append(
                {
                    "id": f"near-{j}",
                    "text": char_edits(base[i], k, rng),
                    "plant": {"kind": "near", "of": f"doc-{i}", "edits": k, "edit_frac": f},
                }
            )
    for j, (item_id, question) in enumerate(leaks):
        q = question if j % 2 == 0 else char_edits(question, leak_edits, rng)
        copies.append(
            {
                "id": f"leak-{j}",
                "text": f"Задача для тренировки. {q} Решите её и объясните ответ.",
                "plant": {"kind": "leak", "of": item_id, "edits": 0 if j % 2 == 0 else leak_edits},
            }
        )
    rng.shuffle(copies)
    # Copies go after all originals so "keep first" keeps the original: the plants are then the exact answer.
    return rows + copies


def precision_recall(flagged: set[str], planted: set[str]) -> dict:
    tp = len(flagged & planted)
    return {
        "flagged": len(flagged),
        "planted": len(planted),
        "true_positives": tp,
        "precision": round(tp / len(flagged), 4) if flagged else 1.0,
        "recall": round(tp / len(planted), 4) if planted else 1.0,
    }
