"""Exact and near-duplicate removal on one machine: a normalised-text hash, and MinHash + LSH (datasketch).

Rows are clustered by union-find over duplicate pairs (exact hash collisions, and LSH candidates whose
estimated Jaccard similarity reaches the threshold), and one row per cluster is kept: the first, or the
best by a score field. The cluster report lists every cluster of two or more rows, why each member joined
it and the kept row. For corpora beyond one machine the same step runs as a datatrove pipeline
(``tpro.data.dedup_datatrove``). Shingles and MinHash (not embeddings) decide here; semantic duplicates are
``tpro.data.tagging``'s job.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from tpro.config import opt
from tpro.data.io import DataError, text_of
from tpro.data.steps import StepConfig, StepRun

_SPACE = re.compile(r"\s+")


@dataclass(kw_only=True)
class DedupConfig(StepConfig):
    """``tpro data dedup``: how rows are compared and which row of a cluster stays."""

    step: ClassVar[str] = "dedup"

    field: str = opt("text", "Text field to compare (chat messages are joined)")
    method: Literal["exact", "near", "both"] = opt(
        "both", "exact (normalised hash) | near (MinHash + LSH) | both", aliases=("--mode",)
    )
    shingle: int = opt(5, "Shingle length (characters or words, see --unit)", min=1)
    unit: Literal["char", "word"] = opt("char", "char | word shingles (char shingles suit short, inflected texts)")
    num_perm: int = opt(128, "MinHash permutations (signature length)", min=16)
    threshold: float = opt(0.7, "Jaccard similarity at which rows are near-duplicates, in (0, 1]", min=0.0, max=1.0)
    keep: Literal["first", "best"] = opt("first", "first | best (highest --score-field) row per cluster")
    score_field: str | None = opt(None, "Numeric field for --keep best (higher is better)")
    seed: int = opt(1, "MinHash permutation seed")
    engine: Literal["datasketch", "datatrove"] = opt(
        "datasketch", "datasketch (in memory) | datatrove (its pipeline, local executor)"
    )
    workers: int = opt(1, "datatrove: parallel tasks", min=1)
    report: str | None = opt(None, "Cluster report (default: OUT.clusters.jsonl)")

    def __post_init__(self):
        super().__post_init__()
        if self.threshold == 0:
            raise DataError("threshold must be in (0, 1], got 0")
        if self.keep == "best" and not self.score_field:
            raise DataError("keep=best needs --score-field (a numeric field; higher is better)")

    def execute(self, run: StepRun) -> list[dict] | None:
        report = self.report or f"{self.out}.clusters.jsonl"
        if self.engine == "datatrove":
            import shutil

            from tpro.data.dedup_datatrove import run_datatrove_dedup

            # The work folder is keyed by inputs + parameters: a rerun after a kill resumes there (datatrove
            # skips completed tasks), a run with other parameters starts clean.
            work = run.out.with_name(f"{run.out.name}.datatrove-{run.manifest.key}")
            with run.bar("datatrove minhash stages", 4) as tick:
                counts = run_datatrove_dedup(
                    self.source, run.out, self, workers=self.workers, report=report, work=work, tick=tick
                )
            shutil.rmtree(work, ignore_errors=True)
            run.counts.update(counts)
            run.record(report, counts["clusters"], "clusters")
            return None  # datatrove wrote OUT
        rows = run.rows()
        with run.bar("dedup", len(rows)) as tick:
            res = dedup(rows, self, tick)
        run.write_side(report, res.clusters, "clusters")
        run.counts.update(res.counts)
        return [rows[i] for i in res.kept]


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, whitespace collapsed: the text whose hash is 'exact'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _SPACE.sub(" ", text).strip()


def exact_key(text: str) -> str:
    return hashlib.sha1(normalize(text).encode()).hexdigest()


def shingles(text: str, n: int, unit: str = "char") -> set[bytes]:
    """Shingles of the normalised text; a text shorter than ``n`` units is its own single shingle."""
    norm = normalize(text)
    if unit == "word":
        toks = norm.split()
        grams = {" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))}
    else:
        grams = {norm[i : i + n] for i in range(max(1, len(norm) - n + 1))}
    return {g.encode() for g in grams}


class MinHasher:
    """MinHash signatures sharing one set of permutations (made once, not per row)."""

    def __init__(self, num_perm: int = 128, seed: int = 1, shingle: int = 5, unit: str = "char"):
        from datasketch import MinHash

        self._template = MinHash(num_perm=num_perm, seed=seed)
        self.num_perm, self.seed, self.shingle, self.unit = num_perm, seed, shingle, unit

    def __call__(self, text: str):
        from datasketch import MinHash

        m = MinHash(
            num_perm=self.num_perm,
            seed=self.seed,
            permutations=self._template.permutations,
            scheme=self._template.scheme,
        )
        m.update_batch(list(shingles(text, self.shingle, self.unit)))
        return m


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]  # path halving
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the root is the cluster's earliest row


@dataclass
class DedupResult:
    kept: list[int]  # indices of kept rows, in input order
    clusters: list[dict]  # clusters of >= 2 rows (the report)
    counts: dict


def dedup(rows: list[dict], cfg: DedupConfig, tick: Callable[[int], None] | None = None) -> DedupResult:
    """Cluster duplicate rows and keep one per cluster. ``tick(n)`` is called as rows are processed."""
    n = len(rows)
    texts = [text_of(r, cfg.field) for r in rows]
    uf = UnionFind(n)
    keys = [exact_key(t) for t in texts]
    if cfg.method in ("exact", "both"):
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            uf.union(first.setdefault(k, i), i)
    hasher, sigs, near_pairs = None, [], 0
    if cfg.method in ("near", "both"):
        from datasketch import MinHashLSH

        hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.shingle, cfg.unit)
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        for i, t in enumerate(texts):
            m = hasher(t)
            sigs.append(m)
            # Query before insert: each candidate pair is seen once. LSH banding lets through pairs below the
            # threshold (and misses a few above it); checking the estimated Jaccard removes the former.
            for j in lsh.query(m):
                if m.jaccard(sigs[j]) >= cfg.threshold:
                    uf.union(j, i)
                    near_pairs += 1
            if cfg.method == "near" or uf.find(i) == i:  # an exact copy adds nothing to the index
                lsh.insert(i, m)
            if tick and (i + 1) % 256 == 0:
                tick(256)
        if tick:
            tick(n % 256)
    elif tick:
        tick(n)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    kept, clusters = [], []
    for idx in members.values():
        keep = idx[0] if cfg.keep == "first" else max(idx, key=lambda i: (_score(rows[i], cfg.score_field), -i))
        kept.append(keep)
        if len(idx) > 1:
            clusters.append(_report(len(clusters), idx, keep, texts, keys, sigs))
    kept.sort()
    counts = {
        "rows_in": n,
        "rows_out": len(kept),
        "removed": n - len(kept),
        "clusters": len(clusters),
        "exact_removed": sum(1 for c in clusters for m in c["members"] if m["reason"] == "exact"),
        "near_removed": sum(1 for c in clusters for m in c["members"] if m["reason"] == "near"),
        "near_pairs": near_pairs,
    }
    return DedupResult(kept, clusters, counts)


def _score(row: dict, field: str) -> float:
    try:
        return float(row[field])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"keep=best needs a numeric {field!r} in every row; got {row.get(field)!r}") from e


def _report(cid: int, idx: list[int], keep: int, texts: list[str], keys: list[str], sigs: list) -> dict:
    out = []
    for i in idx:
        reason = "kept" if i == keep else ("exact" if keys[i] == keys[keep] else "near")
        m = {"index": i, "reason": reason, "text": texts[i][:160]}
        if sigs and i != keep:
            m["jaccard"] = round(float(sigs[i].jaccard(sigs[keep])), 3)
        out.append(m)
    return {"cluster": cid, "size": len(idx), "kept": keep, "members": out}
