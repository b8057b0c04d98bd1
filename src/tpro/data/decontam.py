"""Benchmark decontamination: drop training rows in which a benchmark question appears, exactly or nearly.

Two detectors, each row's reasons reported:
- **n-gram**: ``tpro.eval.contamination.ngram_overlaps`` (shared 13-word n-grams, the evaluation harness's
  own definition; not duplicated here);
- **MinHash containment**: how much of a question's character shingles lie inside the row, estimated from
  MinHash signatures and found with datasketch's ``MinHashLSHEnsemble`` (LSH for *containment*, not Jaccard:
  a leaked question is usually a small part of a longer training row, so Jaccard would hide it). It catches
  copies with typos or changed numbers/spacing that break every 13-gram of a short question.

The reference sets are the evaluation harness's benchmark specs (``tpro.eval.benchmarks.load_benchmark``).
This module does not decide what a benchmark is nor how answers are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

from tpro.data.dedup import MinHasher, shingles
from tpro.data.io import DataError, text_of


@dataclass
class DecontamConfig:
    field: str = "text"  # the text field checked (chat messages are joined)
    benchmarks: list[str] = dc_field(default_factory=lambda: ["t-math", "math-500"])  # name or name=path.jsonl
    ngram: int = 13  # word n-gram length for the n-gram detector; 0 turns it off
    containment: float = 0.8  # MinHash: share of a question's shingles found in a row to flag it; 0 = off
    shingle: int = 5  # character shingles for MinHash
    num_perm: int = 128
    min_chars: int = 40  # questions shorter than this are too generic for MinHash containment
    seed: int = 1

    def __post_init__(self):
        if self.ngram < 0 or not 0.0 <= self.containment <= 1.0:
            raise DataError("ngram must be >= 0 and containment in [0, 1]")
        if self.ngram == 0 and self.containment == 0:
            raise DataError("both detectors are off: set --ngram or --containment")


def load_items(specs: list[str]):
    """``name`` or ``name=path`` -> benchmark items with ids prefixed by the benchmark name."""
    from tpro.eval.benchmarks import BenchmarkError, Item, load_benchmark

    items = []
    for spec in specs:
        name, _, path = spec.partition("=")
        try:
            loaded = load_benchmark(name, path or None)
        except BenchmarkError as e:
            raise DataError(f"{e} (here: --bench {name}=path/to/{name}.jsonl)") from e
        for it in loaded:
            items.append(Item(f"{name}:{it.id}", it.question, it.answer, it.meta))
    if not items:
        raise DataError(f"benchmarks {specs} have no items")
    return items


def find_contamination(
    texts: list[str], items: list, cfg: DecontamConfig, tick: Callable[[int], None] | None = None
) -> dict[int, list[dict]]:
    """Row index -> reasons (``{"method", "item", ...}``) for every contaminated row."""
    from tpro.eval.contamination import ngram_overlaps

    hits: dict[int, list[dict]] = {}
    if cfg.ngram:
        for ov in ngram_overlaps(texts, items, n=cfg.ngram):
            hits.setdefault(ov.text_index, []).append({"method": "ngram", "item": ov.item_id, "ngram": ov.ngram})
    if tick:
        tick(len(texts) // 2)
    if cfg.containment:
        from datasketch import MinHashLSHEnsemble

        hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.shingle, "char")
        sizes = [len(shingles(t, cfg.shingle)) for t in texts]
        sigs = [hasher(t) for t in texts]
        # The ensemble partitions indexed sets by size so a small query can be checked for containment in
        # much larger rows; num_part=16 is datasketch's default and suits size ranges of a few orders.
        lsh = MinHashLSHEnsemble(threshold=cfg.containment, num_perm=cfg.num_perm, num_part=16)
        lsh.index((i, s, n) for i, (s, n) in enumerate(zip(sigs, sizes)))
        for it in items:
            if len(it.question) < cfg.min_chars:
                continue
            q = hasher(it.question)
            q_size = len(shingles(it.question, cfg.shingle))
            for i in lsh.query(q, q_size):
                c = containment(q.jaccard(sigs[i]), q_size, sizes[i])
                if c >= cfg.containment:
                    hits.setdefault(i, []).append({"method": "minhash", "item": it.id, "containment": round(c, 3)})
    if tick:
        tick(len(texts) - len(texts) // 2)
    return hits


def containment(jaccard: float, q_size: int, x_size: int) -> float:
    """|Q ∩ X| / |Q| from J = |Q ∩ X| / |Q ∪ X|: |Q ∩ X| = J (|Q| + |X|) / (1 + J)."""
    return min(1.0, jaccard * (q_size + x_size) / ((1.0 + jaccard) * max(1, q_size)))


def decontaminate(rows: list[dict], items: list, cfg: DecontamConfig, tick=None) -> tuple[list[int], list[dict]]:
    """-> (kept row indices, removal report rows ``{"index", "id", "text", "reasons"}``)."""
    texts = [text_of(r, cfg.field) for r in rows]
    hits = find_contamination(texts, items, cfg, tick)
    report = [{"index": i, "id": rows[i].get("id"), "text": texts[i][:200], "reasons": hits[i]} for i in sorted(hits)]
    return [i for i in range(len(rows)) if i not in hits], report
