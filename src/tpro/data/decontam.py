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

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from tpro.config import opt
from tpro.data.dedup import MinHasher, shingles
from tpro.data.io import DataError, text_of
from tpro.data.steps import StepConfig, StepRun


@dataclass(kw_only=True)
class DecontamConfig(StepConfig):
    """``tpro data decontaminate``: which benchmarks, and the two detectors' settings."""

    step: ClassVar[str] = "decontaminate"

    field: str = opt("text", "Text field to check (chat messages are joined)")
    benchmarks: list[str] = opt(
        ["t-math", "math-500"],
        "Benchmark spec name, or name=path.jsonl (repeatable); see `tpro eval list`",
        aliases=("--bench",),
    )
    ngram: int = opt(13, "Word n-gram length for the n-gram detector (0 = off)", min=0)
    containment: float = opt(
        0.8, "MinHash: share of a question's shingles found in a row to flag it (0 = off)", min=0.0, max=1.0
    )
    shingle: int = opt(5, "Character shingle length for MinHash", min=1)
    num_perm: int = opt(128, "MinHash permutations", min=16)
    min_chars: int = opt(40, "Questions shorter than this are too generic for MinHash containment", min=0)
    seed: int = opt(1, "MinHash permutation seed")
    report: str | None = opt(None, "Removal report (default: OUT.removed.jsonl)")

    def __post_init__(self):
        super().__post_init__()
        if self.ngram == 0 and self.containment == 0:
            raise DataError("both detectors are off: set --ngram or --containment")

    def inputs(self) -> list[str]:
        return [self.source, *(b.partition("=")[2] for b in self.benchmarks if "=" in b)]

    def execute(self, run: StepRun) -> list[dict]:
        rows = run.rows()
        items = load_items(self.benchmarks)
        with run.bar("decontaminate", len(rows)) as tick:
            kept, removed = decontaminate(rows, items, self, tick)
        run.write_side(self.report or f"{self.out}.removed.jsonl", removed, "removed")
        by_method = Counter(m for r in removed for m in {x["method"] for x in r["reasons"]})
        run.counts.update(
            rows_in=len(rows),
            rows_out=len(kept),
            removed=len(removed),
            benchmark_items=len(items),
            removed_by_method=dict(by_method),
        )
        return [rows[i] for i in kept]


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
