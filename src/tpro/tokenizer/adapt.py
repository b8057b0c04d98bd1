"""Swap low-value tokens of a byte-level BPE vocabulary for Cyrillic ones, keeping its size and every kept id.

The recipe (T-pro 2.0, section on the tokenizer):
1. **Score** every base token by log-smoothed frequency on a keep mix (English, code, math and the Cyrillic
   corpus itself): ``score(t) = sum_d w_d * log(1 + 1e6 * p_d(t))`` with ``p_d`` the token's share of domain d's
   tokens. The log keeps one domain from dominating; +1 smooths zero counts.
2. **Remove** the lowest-scoring tokens. BPE builds each token from two others by one merge, so a token needed by
   a kept token's merge chain must stay: each token inherits the highest score among the tokens built from it
   (``eff``), and removal walks ``(eff, -merge rank)`` upwards, which removes a token only together with (after)
   everything built on it. The merges that make a removed token go with it; merges that use it make removed
   tokens, so the cascade is closed by construction. Never removed: the byte alphabet, added/special tokens,
   tokens no merge makes, and (by default) pure-ASCII tokens, so English, code and digits tokenize as before, and
   tokens carrying a Cyrillic letter outside the Russian alphabet, so no other Cyrillic language loses a token.
3. **Candidates**: a BPE trained on the Cyrillic corpus with the base normalizer and pre-tokenizer (the
   ``tokenizers`` trainer): its merges that make a token the base lacks, taken in the trainer's own merge order
   (``--rank merge-order``, the default). BPE merges greedily by pair count on the weighted corpus, so a merge's
   place is its marginal saving given everything merged before it, which is what choosing a set needs. The
   alternative ``--rank saved`` (tokens saved = uses in the trained segmentation x (base pieces - 1)) undervalues
   a piece whose uses the trainer's longer tokens absorb, although most of those longer tokens are never chosen:
   on held-out UD text it left Russian 4% and Macedonian 6% denser than merge order (docs/benchmarks.md). A
   candidate waits until its trainer parents are available (kept or chosen), so chains are chosen bottom-up.
4. **Reachability**: new merges go after all base merges (lowest priority, so kept text keeps its tokenization).
   Pass by pass, a candidate whose text currently encodes to exactly two pieces gets the merge of those pieces;
   passes repeat until none is added (longer tokens become two pieces once shorter ones are reachable). Then every
   candidate is re-encoded; any that does not come out as itself is dropped and the merges recomputed. Dropped
   candidates are replaced from the queue until the freed ids are full.
5. **Ids**: new tokens take the freed ids (ascending, in the order chosen). Vocabulary size is unchanged.

The output depends only on the inputs: every ordering is a sort with a total tie-break or follows the corpus
order, never set or hash order, so two runs write byte-identical tokenizer.json and swap.json.

It knows nothing about models (``remap.py``) or held-out evaluation (``density.py``).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tpro.config import Config, ConfigError, opt
from tpro.io import replace_dir
from tpro.tokenizer.bpe import TOKENIZER_FILES, BaseBPE, load_base, token_bytes, token_text
from tpro.tokenizer.corpus import (
    DEFAULT_CYRILLIC,
    DEFAULT_KEEP,
    PROFILES,
    default_cyrillic_specs,
    language_weights,
    load_corpus,
    split_weight,
)

# A candidate is a run of Cyrillic letters (with combining marks and apostrophe-free), optionally after one space:
# exactly the shape of a word piece under GPT-2/Qwen/Llama-3 pre-tokenizers. No digits, punctuation or Latin, so
# code and numbers cannot change.
CYRILLIC_PIECE = re.compile(r" ?[\u0400-\u04FF\u0500-\u052F\u0300-\u036F]+")

# The Russian alphabet. Any other Cyrillic letter (і ї є ґ ў ђ ј љ њ ћ џ ѓ ќ ѕ ә ө ү ң һ җ ғ қ ұ ҙ ҫ ҡ ӣ ӯ ҳ ҷ ...)
# belongs to another language, and a base token carrying one is that language's: protected like ASCII, so no
# Cyrillic language loses a token. Unprotected, a language with no word list scores ~0 on the keep mix and loses
# them first; issue 14 measured Bashkir +12.7% and Tatar +2.4% tokens/word against the base. In Qwen2.5/Qwen3's
# vocabulary these are ~150 tokens, mostly single letters ('ҙ', 'ә'): removing one splits its letter into two
# byte tokens everywhere.
RUSSIAN_LETTERS = frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")
CYRILLIC_BLOCKS = re.compile("[\u0400-\u052f\u1c80-\u1c8f\ua640-\ua69f]")


@dataclass(kw_only=True)
class AdaptConfig(Config):
    """``tpro tokenizer adapt``: the base tokenizer, how many tokens to swap, the corpora and the trainer budget."""

    base: str = opt(help="Base tokenizer: tokenizer.json, a directory holding one, or a hub id.")
    out: str = opt(help="Output directory (tokenizer.json, tokenizer_config.json, swap.json, report.json).")
    swap: int = opt(34_000, "How many tokens to replace (T-pro 2.0: 34000 of Qwen3's ~151k).", min=1)
    corpus: list[str] = opt(
        [],
        "Cyrillic source, repeatable: wordfreq:LANG[:N], hunspell:LANG (stems), hunspell-forms:LANG (stems and "
        "their suffix forms), FILE.txt, FILE.jsonl:FIELD, "
        "FILE.tsv (word<TAB>count), hf:NAME[:CONFIG]:SPLIT:FIELD; suffix @WEIGHT (x the language's weight for "
        "word lists). Default (none given), the same on every machine: " + ", ".join(DEFAULT_CYRILLIC) + ".",
    )
    profile: str = opt(
        "ru-first",
        "Language weights of the Cyrillic corpus: ru-first (ru 3.3, mn 0.25, the others 1: Russian gets the most new "
        "tokens) or even (every language 1).",
        choices=tuple(PROFILES),
    )
    lang_weights: list[str] = opt(
        [], "LANG=WEIGHT[,LANG=WEIGHT...], repeatable: override the profile's weight of a language, e.g. ru=4,kk=1.5."
    )
    allow_missing: bool = opt(
        False,
        "Adapt without corpus sources that are not installed (e.g. a hunspell list), naming them, instead of "
        "stopping: the tokenizer then differs from the default one.",
    )
    keep_corpus: list[str] = opt(
        [],
        "Keep-mix source (same forms, plus `code` and `math`), repeatable. Default (none given): "
        + ", ".join(DEFAULT_KEEP)
        + "; the Cyrillic corpus is always part of the keep mix.",
    )
    cyrillic_keep_weight: float = opt(1.0, "Weight of the Cyrillic corpus inside the keep mix.", min=0.0)
    protect_ascii: bool = opt(True, "Never remove pure-ASCII tokens (English, code and digits tokenize as before).")
    protect_cyrillic: bool = opt(
        True, "Never remove tokens carrying a Cyrillic letter outside the Russian alphabet (і ў ә ң ...)."
    )
    candidate_factor: float = opt(
        2.5, "Trainer vocabulary = byte alphabet + the base's Cyrillic pieces + factor * swap.", min=0.0
    )
    trainer_words: int = opt(
        4_000_000, "Word occurrences fed to the Cyrillic BPE trainer (corpus weights scaled to this).", min=1
    )
    trainer_chunks: int = opt(
        300_000, "Distinct chunks fed to the trainer (the most frequent; the rest add little).", min=1
    )
    rank: Literal["merge-order", "saved"] = opt(
        "merge-order",
        "Order of the candidates: merge-order (the Cyrillic trainer's own merge order: each merge's marginal saving) "
        "or saved (uses in the trained segmentation x base pieces saved; the older default, less dense).",
    )
    max_passes: int = opt(12, "Reachability passes per round.", min=1)
    max_rounds: int = opt(8, "Drop-and-refill rounds.", min=1)


# ---------------------------------------------------------------------------------------------- scoring


def token_usage(tok, chunks: Counter, progress=None, task=None, batch: int = 20_000) -> Counter:
    """Weighted count of each token id when ``chunks`` (chunk -> weight) are encoded with ``tok``."""
    usage: Counter = Counter()
    items = list(chunks.items())
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        encs = tok.encode_batch([c for c, _ in part], add_special_tokens=False)
        for (_, w), e in zip(part, encs):
            for t in e.ids:
                usage[t] += w
        if progress is not None:
            progress.advance(task, len(part))
    return usage


def log_smoothed_scores(usages: list[tuple[Counter, float]]) -> Counter:
    """score(t) = sum_d w_d * log(1 + 1e6 * p_d(t)), p_d = token t's share of domain d's tokens."""
    score: Counter = Counter()
    for usage, w in usages:
        total = sum(usage.values()) or 1.0
        for t, c in usage.items():
            score[t] += w * math.log1p(1e6 * c / total)
    return score


def carries_other_cyrillic(token: str) -> bool:
    """Does the byte-level ``token`` carry a Cyrillic letter outside the Russian alphabet?"""
    b = token_bytes(token)
    text = b.decode("utf-8", errors="ignore")
    if any(c.isalpha() and c not in RUSSIAN_LETTERS for c in CYRILLIC_BLOCKS.findall(text)):
        return True
    # A merge may end a token halfway through a letter: lead bytes 0xD2 and 0xD3 start U+0480-U+04FF, where no
    # Russian letter is (Russian's lead bytes 0xD0/0xD1 are shared with і ї є ў ..., so those stay undecided).
    return b[-1] in (0xD2, 0xD3)


def removal_order(
    base: BaseBPE, score: Counter, protect_ascii: bool, protect_cyrillic: bool = True
) -> tuple[list[str], dict[str, float]]:
    """Removable tokens, least valuable first; closed under "built from": a prefix never strands a kept merge."""
    made_at = {a + b: r for r, (a, b) in enumerate(base.merges)}
    protected = set(base.added)
    eff: dict[str, float] = {}
    for tok, i in base.vocab.items():
        if (
            tok in protected
            or tok not in made_at
            or (protect_ascii and max(token_bytes(tok)) < 128)
            or (protect_cyrillic and carries_other_cyrillic(tok))
        ):
            eff[tok] = math.inf
        else:
            eff[tok] = score.get(i, 0.0)
    # Children are made by later merges, so walking merges backwards finalises a child's eff before its parents.
    for a, b in reversed(base.merges):
        c = a + b
        if c in eff:
            if a in eff:
                eff[a] = max(eff[a], eff[c])
            if b in eff:
                eff[b] = max(eff[b], eff[c])
    order = sorted((t for t in eff if eff[t] < math.inf), key=lambda t: (eff[t], -made_at[t]))
    return order, eff


# ------------------------------------------------------------------------------------------- candidates


def train_cyrillic_bpe(base: BaseBPE, corpus: Counter, vocab_size: int, n_words: int, n_chunks: int):
    """A byte-level BPE trained with the base tokenizer's normalizer and pre-tokenizer on the weighted corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    ref = base.build()
    tok = Tokenizer(models.BPE())
    if ref.normalizer is not None:
        tok.normalizer = ref.normalizer
    tok.pre_tokenizer = ref.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=2,
    )
    # Training time grows with distinct words (2.5M for the full default corpus took >15 min on a shared
    # 2-core machine); the most frequent 300k carry nearly all of the weight.
    items = corpus.most_common(n_chunks)
    scale = n_words / (sum(w for _, w in items) or 1.0)

    def lines():
        # The trainer only takes text: a chunk with weight w becomes round(w * scale) copies (at least one),
        # joined by newlines (the pre-tokenizer cuts them apart again).
        for chunk, w in items:
            n = max(1, round(w * scale))
            while n > 0:
                k = min(n, 5000)
                yield "\n".join([chunk] * k)
                n -= k

    tok.train_from_iterator(lines(), trainer)
    return tok


def rank_candidates(
    base: BaseBPE, trained, corpus: Counter, base_tok
) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """-> (candidate -> tokens saved on the corpus, candidate -> its trainer merge parents, candidate -> its
    place in the trainer's merge order, 0 first)."""
    model = json.loads(trained.to_str())["model"]
    raw = model["merges"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw]
    usage_ids = token_usage(trained, corpus)
    id_to_tok = {i: t for t, i in model["vocab"].items()}
    usage = {id_to_tok[i]: c for i, c in usage_ids.items()}
    parents: dict[str, tuple[str, str]] = {}
    rank: dict[str, int] = {}
    texts: list[tuple[str, str]] = []
    for r, (a, b) in enumerate(merges):
        z = a + b
        if z in base.vocab or z in base.added:
            continue
        text = token_text(z)
        if text is None or not CYRILLIC_PIECE.fullmatch(text):
            continue
        parents[z] = (a, b)
        rank[z] = r
        texts.append((z, text))
    encs = base_tok.encode_batch([t for _, t in texts], add_special_tokens=False)
    saved = {}
    for (z, _), e in zip(texts, encs):
        s = usage.get(z, 0.0) * (len(e.ids) - 1)
        if s > 0:
            saved[z] = s
    return saved, {z: p for z, p in parents.items() if z in saved}, {z: rank[z] for z in saved}


class CandidateQueue:
    """Candidates by priority (highest first), each released once its trainer parents are kept or chosen."""

    def __init__(self, priority: dict[str, float], parents: dict[str, tuple[str, str]], available: set[str]):
        self.priority, self.parents, self.available = priority, parents, set(available)
        self.children: dict[str, list[str]] = {}
        self.heap: list[tuple[float, str]] = []
        for z, (a, b) in parents.items():
            for p in (a,) if a == b else (a, b):
                self.children.setdefault(p, []).append(z)
            if self._ready(z):
                self.heap.append((-priority[z], z))
        heapq.heapify(self.heap)
        self.pushed = {z for _, z in self.heap}

    def _ready(self, z: str) -> bool:
        # A parent that is not itself a candidate (e.g. a piece of a UTF-8 character the base lacks) can never be
        # added, so it does not block; reachability decides.
        return all(p in self.available or p not in self.priority for p in self.parents[z])

    def pop(self) -> str | None:
        if not self.heap:
            return None
        _, z = heapq.heappop(self.heap)
        self.available.add(z)
        for c in self.children.get(z, ()):
            if c not in self.pushed and self._ready(c):
                self.pushed.add(c)
                heapq.heappush(self.heap, (-self.priority[c], c))
        return z

    def __len__(self) -> int:
        return len(self.heap)


# ---------------------------------------------------------------------------------------- reachability


def add_reaching_merges(base, kept_vocab, kept_merges, cands, max_passes, on_pass=None):
    """Merges after the kept ones that make each candidate come out of encoding its own text.

    -> (new merges, reachable candidates in input order, unreachable candidates, new merges added per pass).
    """
    cands = list(cands)
    while True:
        vocab = dict(kept_vocab)
        nxt = max(max(kept_vocab.values()), max(base.added.values(), default=0)) + 1
        for k, z in enumerate(cands):
            vocab[z] = nxt + k  # provisional ids; the final ones are assigned by the caller
        new: list[tuple[str, str]] = []
        todo, passes = list(cands), []
        for _ in range(max_passes):
            tk = base.build(vocab, kept_merges + new)
            encs = tk.encode_batch([token_text(z) for z in todo], add_special_tokens=False)
            still, added = [], 0
            for z, e in zip(todo, encs):
                if e.tokens == [z]:
                    continue
                if len(e.tokens) == 2 and e.tokens[0] + e.tokens[1] == z:
                    new.append((e.tokens[0], e.tokens[1]))
                    added += 1
                else:
                    still.append(z)
            passes.append(added)
            if on_pass is not None:
                on_pass(len(passes), added)
            todo = still
            if not added:
                break
        # Verify: merges from later passes or other candidates may have changed an earlier one's segmentation.
        tk = base.build(vocab, kept_merges + new)
        encs = tk.encode_batch([token_text(z) for z in cands], add_special_tokens=False)
        bad = {z for z, e in zip(cands, encs) if e.tokens != [z]}
        stuck = set(todo)
        if bad <= stuck:
            ok = [z for z in cands if z not in bad]
            keep_new = [m for m in new if m[0] + m[1] not in bad]
            return keep_new, ok, [z for z in cands if z in bad], passes
        cands = [z for z in cands if z not in bad]  # drop the broken ones and recompute from scratch


# ------------------------------------------------------------------------------------------------- main


def warn(prog, message: str) -> None:
    """A warning on stderr (through the progress console when there is one, so bars do not garble it)."""
    if prog is not None:
        prog.console.log(f"warning: {message}")
    else:
        print(f"warning: {message}", file=sys.stderr)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )


def adapt(cfg: AdaptConfig, show_progress: bool = True) -> dict:
    """Run the whole adaptation and write ``cfg.out``; returns the report (also written as report.json)."""
    from contextlib import nullcontext

    t0 = time.perf_counter()
    base = load_base(cfg.base)
    base_tok = base.build()
    pre = base_tok.pre_tokenizer.pre_tokenize_str
    corpus_specs = cfg.corpus or default_cyrillic_specs()
    keep_specs = cfg.keep_corpus or list(DEFAULT_KEEP)
    lang_w = language_weights(cfg.profile, cfg.lang_weights)
    timings: dict[str, float] = {}
    prog = _progress() if show_progress else None
    with prog or nullcontext():

        def stage(name, total=None):
            if prog is None:
                return None
            prog.console.log(name)  # a plain line too, so logs of background runs show the stage
            return prog.add_task(name, total=total)

        last = [t0]

        def done(task, name):
            now = time.perf_counter()
            timings[name] = round(now - last[0], 2)
            last[0] = now
            if prog is not None:
                prog.update(task, completed=prog.tasks[task].total or 1, total=prog.tasks[task].total or 1)

        task = stage("reading corpora")
        cyr_corpus = load_corpus(corpus_specs, pre, lang_w, cfg.allow_missing)
        keep_corpora = [(spec, load_corpus([spec], pre, allow_missing=cfg.allow_missing)) for spec in keep_specs]
        missing = cyr_corpus.missing + [m for _, c in keep_corpora for m in c.missing]
        for m in missing:
            warn(prog, f"--allow-missing: adapting without {m}")
        for lang in sorted(set(lang_w) - {s.language for s in cyr_corpus.sources} - set(PROFILES[cfg.profile])):
            warn(prog, f"--lang-weights names {lang!r}, but no Cyrillic corpus source is in that language")
        cyr = cyr_corpus.counts
        keep_domains = [(spec, c.counts) for spec, c in keep_corpora]
        sources = [{"role": "cyrillic", **s.record()} for s in cyr_corpus.sources]
        sources += [{"role": "keep", **s.record()} for _, c in keep_corpora for s in c.sources]
        done(task, "corpora")
        if not cyr:
            raise ConfigError("the Cyrillic corpus is empty. Fix: check the --corpus sources")

        domains = keep_domains + [("cyrillic", Counter({k: v * cfg.cyrillic_keep_weight for k, v in cyr.items()}))]
        task = stage("scoring base tokens on the keep mix", total=sum(len(c) for _, c in domains))
        usages = [(token_usage(base_tok, c, prog, task), split_weight(spec)[1]) for spec, c in domains]
        score = log_smoothed_scores(usages)
        order, eff = removal_order(base, score, cfg.protect_ascii, cfg.protect_cyrillic)
        n_protected_cyr = sum(1 for t in base.vocab if cfg.protect_cyrillic and carries_other_cyrillic(t))
        done(task, "scoring")
        if len(order) < cfg.swap:
            raise ConfigError(
                f"only {len(order)} tokens are removable; lower --swap (or lift protection: --no-protect-ascii, "
                "--no-protect-cyrillic)"
            )

        task = stage("training the Cyrillic BPE")
        # The trainer relearns the Cyrillic pieces the base already has (Qwen: ~7k) before it finds new ones, so
        # its vocabulary is the byte alphabet + those + factor * swap.
        n_cyr = sum(1 for t in base.vocab if (x := token_text(t)) is not None and CYRILLIC_PIECE.fullmatch(x))
        size = 256 + n_cyr + int(cfg.candidate_factor * cfg.swap) + 64
        trained = train_cyrillic_bpe(base, cyr, size, cfg.trainer_words, cfg.trainer_chunks)
        done(task, "train_bpe")

        task = stage(f"ranking candidates ({cfg.rank})")
        removed = set(order[: cfg.swap])
        kept_vocab = {t: i for t, i in base.vocab.items() if t not in removed}
        kept_merges = [m for m in base.merges if m[0] + m[1] not in removed]
        saved, parents, merge_rank = rank_candidates(base, trained, cyr, base_tok)
        priority = saved if cfg.rank == "saved" else {z: -float(r) for z, r in merge_rank.items()}
        queue = CandidateQueue(priority, parents, set(kept_vocab))
        done(task, "rank")

        task = stage("reachability (merges added per pass)", total=cfg.swap)
        chosen: list[str] = []
        new_merges: list[tuple[str, str]] = []
        rounds = []
        dropped: list[str] = []
        success = 1.0
        for _ in range(cfg.max_rounds):
            # Ask for the deficit divided by the last round's success rate, so few rounds fill the freed ids.
            want = len(chosen) + math.ceil((cfg.swap - len(chosen)) / max(success, 0.2))
            while len(chosen) < want and len(queue):
                chosen.append(queue.pop())
            tried = len(chosen)
            new_merges, chosen, bad, passes = add_reaching_merges(base, kept_vocab, kept_merges, chosen, cfg.max_passes)
            dropped += bad
            rounds.append({"candidates": tried, "reachable": len(chosen), "merges_per_pass": passes})
            if prog is not None:
                prog.console.log(f"round {len(rounds)}: {len(chosen)}/{tried} reachable, merges per pass {passes}")
            if prog is not None:
                prog.update(task, completed=len(chosen))
            success = (
                len(chosen) / max(1, tried)
                if not rounds[:-1]
                else ((len(chosen) - rounds[-2]["reachable"]) / max(1, tried - rounds[-2]["reachable"]))
            )
            if len(chosen) >= cfg.swap or not len(queue):
                break
        if len(chosen) > cfg.swap:  # over-asked: keep the best `swap` and recompute their merges
            new_merges, chosen, bad, passes = add_reaching_merges(
                base, kept_vocab, kept_merges, chosen[: cfg.swap], cfg.max_passes
            )
            dropped += bad
            rounds.append(
                {
                    "candidates": cfg.swap,
                    "reachable": len(chosen),
                    "merges_per_pass": passes,
                    "note": "trimmed to --swap",
                }
            )
        # Fewer reachable candidates than requested: remove fewer tokens (the most valuable removals come back,
        # which keeps removal closed) and recompute merges against the larger kept vocabulary.
        while len(chosen) < len(removed):
            removed = set(order[: len(chosen)])
            kept_vocab = {t: i for t, i in base.vocab.items() if t not in removed}
            kept_merges = [m for m in base.merges if m[0] + m[1] not in removed]
            new_merges, chosen, bad, passes = add_reaching_merges(base, kept_vocab, kept_merges, chosen, cfg.max_passes)
            dropped += bad
            rounds.append(
                {
                    "candidates": len(chosen) + len(bad),
                    "reachable": len(chosen),
                    "merges_per_pass": passes,
                    "note": "shortfall: fewer removals",
                }
            )
        done(task, "reachability")

        task = stage("writing")
        freed = sorted(base.vocab[t] for t in removed)
        added_ids = dict(zip(chosen, freed))
        new_vocab = dict(kept_vocab)
        new_vocab.update(added_ids)
        assert len(new_vocab) == len(base.vocab) and set(new_vocab.values()) == set(base.vocab.values())
        id_to_removed = {base.vocab[t]: t for t in removed}
        swap = [
            {
                "id": i,
                "removed": id_to_removed[i],
                "removed_text": token_text(id_to_removed[i]),
                "removed_score": round(eff[id_to_removed[i]], 4),
                "added": z,
                "added_text": token_text(z),
                "tokens_saved": round(saved[z], 6),
            }
            for z, i in added_ids.items()
        ]
        tried_total = len(chosen) + len(set(dropped))
        report = {
            "base": cfg.base,
            "config": cfg.to_dict(),
            "corpus": corpus_specs,
            "keep_corpus": keep_specs,
            "profile": cfg.profile,
            "language_weights": lang_w,
            "corpus_sources": sources,
            "missing_sources": missing,
            "protected_other_cyrillic": n_protected_cyr,
            "vocab_size": base.vocab_size,
            "swapped": len(chosen),
            "removable_tokens": len(order),
            "candidates_ranked": len(saved),
            "candidates_tried": tried_total,
            "reachable_fraction": round(len(chosen) / max(1, tried_total), 4),
            "rounds": rounds,
            "merges_added": len(new_merges),
            "merges_removed": len(base.merges) - len(kept_merges),
        }
        new_json = base.to_json(new_vocab, kept_merges + new_merges)
        from tokenizers import Tokenizer

        new_tok = Tokenizer.from_str(json.dumps(new_json, ensure_ascii=False))
        report["density_on_corpus"] = corpus_density(
            base_tok, new_tok, [(s, cyr if s == "cyrillic" else c) for s, c in [("cyrillic", cyr), *keep_domains]]
        )
        report["seconds"] = timings
        timings["total"] = round(time.perf_counter() - t0, 2)
        write_output(Path(cfg.out), base, new_json, swap, report)
        done(task, "write")
    return report


def corpus_density(base_tok, new_tok, domains) -> dict:
    """Weighted tokens per chunk on each (in-sample) corpus: a sanity figure, not the held-out benchmark."""
    out = {}
    for name, counts in domains:
        items = list(counts.most_common(50_000))
        w = sum(v for _, v in items) or 1.0
        res = {}
        for label, tk in (("base", base_tok), ("adapted", new_tok)):
            encs = tk.encode_batch([c for c, _ in items], add_special_tokens=False)
            res[label] = round(sum(len(e.ids) * v for e, (_, v) in zip(encs, items)) / w, 4)
        out[name] = res
    return out


def write_output(out: Path, base: BaseBPE, new_json: dict, swap: list[dict], report: dict) -> None:
    """tokenizer.json, tokenizer_config.json (+ chat template files), swap.json, report.json; atomically."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "tokenizer.json").write_text(json.dumps(new_json, ensure_ascii=False), encoding="utf-8")
        if base.directory is not None:
            for name in TOKENIZER_FILES:
                if (base.directory / name).is_file():
                    shutil.copy2(base.directory / name, tmp / name)
        if not (tmp / "tokenizer_config.json").is_file():
            (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
        (tmp / "swap.json").write_text(json.dumps(swap, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:  # a failed write (disk full, interrupt) leaves neither half a directory nor a temp one
        shutil.rmtree(tmp, ignore_errors=True)
        raise
