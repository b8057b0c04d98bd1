"""Recover a remapped model's quality after the tokenizer swap, under a wall-clock budget (``tpro tokenizer recover``).

``tpro tokenizer remap-model`` gives the swapped ids rows built from their old pieces; the embedded model then loses
~0.75 bits/char on held-out Russian (docs/benchmarks.md). This runs repair stages in order, each on a share of one
time budget:

- ``init``: ``mean`` keeps the remap's rows; ``awedist`` (token distillation, Dobler et al. 2025) fits each new
  token's *input* row so the frozen base model's hidden states after the new token, in real contexts from the
  training text, match its hidden states after the old pieces (MSE; ``fit_rows``). Tokens are fitted most
  frequent first, in groups; tokens never seen keep the mean init.
- ``rows``: only the swapped rows of the input embeddings and ``lm_head`` train, the body frozen (a tied model is
  untied first: ``lm_head`` becomes a copy of the embeddings, and the saved config says so). AdamW steps copies of
  those rows alone (``RowSlices``); other rows are never written, so they stay bit-identical (tested). Under
  DeepSpeed/FSDP a hook zeroes the other rows' gradients *before* AdamW sees them instead (weight decay 0: zero
  moments, zero update). Loss ``ce`` (next token), ``alm`` (likelihood matching against the base model with its
  own tokenizer, below) or ``alm+ce``.
- ``full``: every weight, next-token loss, at a low rate (1e-5).

ALM (Minixhofer et al. 2025, approximate likelihood matching): the same text is tokenized by both tokenizers;
byte offsets where both end a token are shared boundaries; between consecutive ones, the student's summed log-prob
of its tokens and the teacher's of its own are two likelihoods of the same bytes (chain rule). Their loss is the
binary KL between Bernoulli(p_teacher) and Bernoulli(p_student) per chunk (``alm_loss``), ALM's binarised form:
zero with zero gradient when they agree, and it weighs likely chunks most, where a squared log-prob difference
would be dominated by rare, very unlikely chunks.

Budget and ledger: ``--stages init:awedist,rows:alm:0.7,full:0.3`` gives each stage a relative share; stage i ends
when the run's total time passes budget x (shares up to i) / (all shares), so loading and early finishes roll into
the next stage. The total is a ledger of seconds of work saved in the checkpoint (loading, init, training,
checkpointing; not the final evaluation): a killed run resumes from ``OUT/checkpoint`` with the ledger it recorded,
and the work after that checkpoint is lost and uncounted. Learning rates are constant after a short warm-up: a
stage's length is set by time, not steps, and a single-stage run's snapshot at 15 minutes is then nearly a
15-minute run (up to a step).

Control (``--control``): the *unswapped* base model, with its own tokenizer, trained the same way on the same text
(no init stage; the rows stage trains the base's rows of the swapped tokens' *old pieces*, the rows that carry
those words before the swap; ``alm`` becomes ``ce``, since distilling a model into itself is a no-op), so
recovery can be told from adapting to the training text.

Training text (``--train``) is required; nothing is built in. Offline, licence-clean Russian running text a user
can install (checked 2026-12, Debian 12): ``apt-get install manpages-ru`` (source manpages-l10n 4.18.1; ~180 pages,
each with its licence as SPDX, mostly GPL-2.0-or-later or Linux-man-pages-copyleft, some BSD/MIT; translations
GPL-3+; some paragraphs stay English): ``for f in /usr/share/man/ru/man*/*.gz; do zcat $f | groff -man -Tutf8
-P-cbou; done > man-ru.txt``; ``aptitude-doc-ru`` (the aptitude manual in Russian, HTML, GPL-2+). Held-out text
must not overlap it (exact shared lines are an error).

Multi-GPU: the training stages run through accelerate (``accelerate launch -m tpro.tokenizer.recover``; the teacher
is wrapped with TRL's ``prepare_deepspeed``/``prepare_fsdp`` under DeepSpeed/FSDP); ``init:awedist`` runs on one
process only. It knows nothing about how the tokenizer was adapted beyond ``swap.json``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

from tpro.config import ConfigError, opt
from tpro.io import read_jsonl, replace_dir, write_json
from tpro.options import DTYPES, ModelOptions
from tpro.tokenizer.remap import untie

VARIANTS = {"init": ("mean", "awedist"), "rows": ("ce", "alm", "alm+ce"), "full": ("ce",)}
DEFAULT_SHARE = {"mean": 0.0, "awedist": 0.1, "rows": 1.0, "full": 1.0}
# measured on the embedded model (docs/benchmarks.md, issue 14): every weight at 1e-5 recovers held-out Russian
# bits/char within minutes; the swapped rows alone (ce or alm, any rate tried) made it worse
DEFAULT_STAGES = "init:mean,full:ce"
# settings a resumed run must share with the run that wrote the checkpoint (budget, rates, eval may change)
RUN_KEYS = ("model", "base", "control", "stages", "train", "max_lines", "block", "batch", "seed")


@dataclass(kw_only=True)
class RecoverConfig(ModelOptions):
    """``tpro tokenizer recover``: the remapped model, the teacher, the text, the stages and the budget."""

    model: str = opt(
        help="The remapped model directory (from `tpro tokenizer remap-model`: weights, new tokenizer, swap.json).",
        short="-m",
    )
    base: str = opt(
        "",
        "The model before the swap: the teacher (init:awedist, rows:alm) and the model --control trains; empty = the "
        "--model recorded in the remapped directory's tpro_remap.json.",
    )
    train: list[str] = opt(
        help="Russian running text to train on, repeatable: FILE.txt (one text per line) | FILE.jsonl:FIELD[,FIELD] "
        "(dotted paths go into lists: instances.output; a conversation, e.g. FILE.jsonl:messages from `tpro data "
        "sample`, is rendered with the model's chat template) | FILE.jsonl (its text field). Must not overlap --eval."
    )
    out: str = opt(help="Run directory: checkpoint/ (resumable), snapshots/, model/ (the result), recover.json.")
    budget_minutes: float = opt(
        60.0,
        "Wall-clock budget in minutes, counted across restarts (loading, init, training, checkpoints; not the final "
        "evaluation). 0 only when every stage is init (init:awedist then runs to its own caps). Rerunning a finished "
        "run with a larger budget continues its training from the checkpoint.",
        min=0.0,
    )
    stages: str = opt(
        DEFAULT_STAGES,
        "Stages in order, comma-separated, STAGE[:VARIANT][:SHARE]: init:mean|awedist, rows:ce|alm|alm+ce, full:ce. "
        "SHARE is a relative part of the budget (defaults: init:mean 0, init:awedist 0.1, rows 1, full 1).",
    )
    control: bool = opt(
        False,
        "Train the unswapped --base instead, the same way on the same text (no init; rows = the swapped tokens' old "
        "pieces; alm -> ce): tells recovery from adapting to the text.",
    )
    eval: list[str] = opt([], "Held-out text to score bits/char on at the end (formats as --train), repeatable.")
    eval_lines: int = opt(0, "Score only the first N eval texts (0 = all).", min=0)
    max_lines: int = opt(0, "Use only the first N training texts (0 = all).", min=0)
    block: int = opt(256, "Tokens per training sequence (new tokenizer): texts are packed up to this.", min=8)
    batch: int = opt(2, "Sequences per optimizer step and process.", min=1)
    rows_lr: float = opt(
        1e-3, "AdamW rate of the rows stage (pick it with bench/tokenizer_recover.py --sweep-lrs).", min=0
    )
    full_lr: float = opt(1e-5, "AdamW rate of the full stage.", min=0)
    warmup_steps: int = opt(5, "Linear warm-up steps at the start of each training stage, then constant.", min=0)
    grad_clip: float = opt(1.0, "Clip the gradient norm (0 = off).", min=0)
    ce_weight: float = opt(0.5, "Weight of the next-token loss beside ALM in rows:alm+ce.", min=0)
    alm_temperature: float = opt(1.0, "ALM temperature: chunk likelihoods are compared as p^(1/T).", min=1e-3)
    rows_seen_only: bool = opt(
        True,
        "Train only the swapped rows whose token occurs in the training text (others keep their init: AdamW would "
        "turn the softmax's tiny push-down on never-seen tokens into full-size steps).",
    )
    awedist_layers: int = opt(
        0, "init:awedist matches hidden states after this many decoder layers (0 = all; fewer is cheaper).", min=0
    )
    awedist_contexts: int = opt(4, "init:awedist contexts per token at most.", min=1)
    awedist_before: int = opt(16, "init:awedist base tokens of context before the token.", min=0)
    awedist_after: int = opt(4, "init:awedist base tokens after the token whose hidden states are matched.", min=0)
    awedist_epochs: int = opt(3, "init:awedist passes over each group's contexts.", min=1)
    # 3e-3: on the tiny test model (64-wide, 24 tokens x 4 contexts) the MSE fell to 0.12 of the mean init's in 3
    # passes, against 0.28 at 1e-3 and 0.18 at 1e-2; the embedded model's rows have a similar scale (std 0.017)
    awedist_lr: float = opt(3e-3, "init:awedist Adam rate on the input rows.", min=0)
    awedist_group: int = opt(
        64, "init:awedist tokens fitted together (the unit of checkpoints and time checks).", min=1
    )
    awedist_batch: int = opt(16, "init:awedist contexts per gradient step.", min=1)
    max_steps: int = opt(0, "Optimizer steps per training stage at most (0 = until its share of the budget).", min=0)
    save_steps: int = opt(
        20, "Checkpoint every N optimizer steps (init:awedist: token groups) and at stage ends.", min=1
    )
    snapshot_minutes: list[float] = opt(
        [], "Also save the model to snapshots/<M>min when the ledger passes M minutes (repeatable).", min=0
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = opt(
        "auto", "accelerate mixed precision (auto = accelerate's launch config, else none)."
    )
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward (less memory, ~30% slower).")
    seed: int = opt(0, "Seed of the data order.")
    # fp32 by default (as remap-model): "auto" would round an fp32 checkpoint's rows to bf16 on bf16 CPUs.
    dtype: str = opt("float32", ModelOptions.__dataclass_fields__["dtype"].metadata["help"], choices=DTYPES)

    def __post_init__(self):
        super().__post_init__()
        if self.weights != "bf16":
            raise ConfigError(
                f"--weights {self.weights}: recover trains and saves the checkpoint's own weights; drop --weights"
            )
        plan = parse_stages(self.stages)
        if self.budget_minutes == 0 and any(s.name != "init" for s in plan):
            raise ConfigError(
                "--budget-minutes 0 leaves no time to train. Fix: give a budget (e.g. --budget-minutes 60), or run "
                "only an init stage (--stages init:awedist)"
            )


# --- stages and the budget ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str  # init | rows | full
    variant: str  # init: mean | awedist; rows: ce | alm | alm+ce; full: ce
    share: float  # relative part of the budget


def parse_stages(spec: str) -> list[Stage]:
    """``init:awedist,rows:alm:0.7,full:0.3`` -> stages; each name at most once, in the order init, rows, full."""
    plan: list[Stage] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, *rest = part.split(":")
        if name not in VARIANTS:
            raise ConfigError(f"--stages: unknown stage {name!r} in {part!r}; stages are {', '.join(VARIANTS)}")
        variant, share = VARIANTS[name][0], None
        for f in rest:
            try:
                share = float(f)
            except ValueError:
                variant = f
        if variant not in VARIANTS[name]:
            raise ConfigError(f"--stages: {name} takes {' | '.join(VARIANTS[name])}, not {variant!r}")
        if share is None:
            share = DEFAULT_SHARE[variant if name == "init" else name]
        if share < 0 or not math.isfinite(share):
            raise ConfigError(f"--stages: the share of {part!r} must be a number >= 0")
        plan.append(Stage(name, variant, share))
    names = [s.name for s in plan]
    if not plan or names != sorted(set(names), key=list(VARIANTS).index):
        raise ConfigError(
            f"--stages {spec!r}: give each of init, rows, full at most once, in that order "
            "(e.g. init:awedist,rows:alm:0.7,full:0.3)"
        )
    return plan


def stage_ends(plan: list[Stage], budget_s: float) -> list[float]:
    """Ledger time (s) at which each stage must stop: budget x cumulative share / total share."""
    total = sum(s.share for s in plan)
    if budget_s == 0:
        return [math.inf] * len(plan)  # init-only with no budget: init runs to its own caps
    if total == 0:
        return [budget_s] * len(plan)
    return [budget_s * c / total for c in accumulate(s.share for s in plan)]


class Ledger:
    """Seconds of work: what earlier runs saved in the checkpoint plus this process's time since it started."""

    def __init__(self, done_s: float = 0.0):
        self.done_s, self.t0, self.paused = done_s, time.monotonic(), 0.0

    def total(self) -> float:
        return self.done_s + time.monotonic() - self.t0 - self.paused


# --- text -----------------------------------------------------------------------------------------------------


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _pluck(row: Any, path: list[str], render=None) -> list[str]:
    """Strings at a dotted path of a JSON row, walking into lists (``instances.output``); a conversation (a list
    of ``{"role", "content"}``) at the end of the path becomes one text through ``render``."""
    if not path and render is not None and _is_chat(row):
        return [render(row)]
    if isinstance(row, list):
        return [s for r in row for s in _pluck(r, path, render)]
    if not path:
        return [row] if isinstance(row, str) and row.strip() else []
    return _pluck(row.get(path[0]), path[1:], render) if isinstance(row, dict) else []


def read_texts(specs: list[str], limit: int = 0, flag: str = "--train", render=None) -> list[str]:
    """Texts of ``FILE.txt`` (one per non-empty line), ``FILE.jsonl:FIELD[,FIELD]`` or ``FILE.jsonl`` (``text``).
    ``render(messages) -> str`` turns a field holding a conversation (``FILE.jsonl:messages``) into one text, e.g.
    the model's chat template (``chat_renderer``)."""
    texts: list[str] = []
    for spec in specs:
        path_s, _, fields = spec.partition(":") if ".jsonl:" in spec else (spec, "", "")
        path = Path(path_s)
        if not path.is_file():
            raise ConfigError(
                f"{flag} {spec!r}: no such file. Fix: pass a .txt file (one text per line) or .jsonl:FIELD"
            )
        if path.suffix == ".jsonl":
            paths = [f.split(".") for f in (fields or "text").split(",")]
            for row in read_jsonl(path):
                parts = [s for p in paths for s in _pluck(row, p, render)]
                if parts:
                    texts.append("\n".join(parts))
        else:
            texts += [ln.rstrip("\n") for ln in path.open(encoding="utf-8") if ln.strip()]
    if limit:
        texts = texts[:limit]
    if not texts:
        raise ConfigError(f"{flag} {', '.join(specs)}: no text found. Fix: check the files (and the JSONL field name)")
    return texts


def chat_renderer(tokenizer):
    """``messages -> text``: a conversation as the model sees it in training, through its own chat template (the
    remapped directory keeps the base's template), so the swapped model learns the assistant turns it will be asked
    to write, special tokens included."""

    def render(messages: list[dict]) -> str:
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception as e:  # jinja errors name the problem; say which setting to fix
            raise ConfigError(f"a conversation in --train could not be rendered with the chat template: {e}") from e

    return render


# --- alignment of two tokenizations (ALM) ---------------------------------------------------------------------


def token_byte_lengths(tokenizer) -> list[int]:
    """[V]: how many UTF-8 bytes each id stands for (byte-level tokens decoded; added tokens by their text)."""
    from tpro.tokenizer.bpe import token_bytes

    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
    vocab = tokenizer.get_vocab()
    lens = [0] * (max(vocab.values()) + 1)
    for tok, i in vocab.items():
        if i in added:
            lens[i] = len(added[i].encode())
        else:
            try:
                lens[i] = len(token_bytes(tok))
            except KeyError:  # not a byte-level token string
                lens[i] = len(tok.encode())
    return lens


def shared_boundaries(lens_a: list[int], lens_b: list[int]) -> list[int]:
    """Byte offsets where both tokenizations end a token, in order (the last is the end of the text)."""
    ends_b = set(accumulate(lens_b))
    return [e for e in accumulate(lens_a) if e in ends_b]


def chunk_index(lens: list[int], boundaries: list[int]) -> list[int]:
    """Chunk of each token: chunk k holds the bytes after boundaries[k-1] up to boundaries[k]; -1 past the last."""
    out, k = [], 0
    for end in accumulate(lens):
        out.append(k if k < len(boundaries) else -1)
        if k < len(boundaries) and end == boundaries[k]:
            k += 1
    return out


def chunk_logprobs(lp, chunks, n_chunks: int):
    """lp [B, T] per-token log-probs, chunks [B, T] chunk of each token (-1 = none) -> [B, n_chunks] sums."""
    valid = chunks >= 0
    out = lp.new_zeros(lp.shape[0], n_chunks)
    return out.scatter_add(1, chunks.clamp_min(0), lp * valid)


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable at both ends."""
    import torch

    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def alm_loss(student, teacher, mask, temperature: float = 1.0):
    """Binary KL( Bernoulli(p_T) || Bernoulli(p_S) ) per chunk, mean over ``mask``.

    student, teacher: [B, C] chunk log-probs (teacher without gradient); p = exp(logp / temperature).
    KL = p_T (a - b) + (1 - p_T) (log(1 - e^a) - log(1 - e^b)), a = log p_T, b = log p_S; its gradient in b,
    -p_T + (1 - p_T) e^b / (1 - e^b), is 0 at b = a."""
    a = (teacher.detach() / temperature).clamp(max=-1e-6)  # a log-prob of exactly 0 has no "no" side
    b = (student / temperature).clamp(max=-1e-6)
    p = a.exp()
    kl = p * (a - b) + (1 - p) * (_log1mexp(a) - _log1mexp(b))  # [B, C]
    return (kl * mask).sum() / mask.sum().clamp_min(1)


# --- training documents ---------------------------------------------------------------------------------------


@dataclass
class Doc:
    ids: list[int]  # student tokens (no context token)
    teacher_ids: list[int] = field(default_factory=list)  # the teacher's tokens of the same bytes (ALM)
    chunks: list[int] = field(default_factory=list)  # ALM chunk of each student token
    teacher_chunks: list[int] = field(default_factory=list)
    n_chunks: int = 0


def _encode(tok, texts: list[str]) -> list[list[int]]:
    return tok(texts, add_special_tokens=False)["input_ids"]


def make_docs(texts: list[str], tok, block: int, teacher_tok=None) -> list[Doc]:
    """Consecutive texts joined by newlines into documents of at most ``block - 1`` student tokens (a long text is
    cut, at a boundary both tokenizers share when there is a teacher); with a teacher, ALM chunks."""
    cap = block - 1  # the context token takes one position
    groups: list[list[str]] = []
    size = cap + 1
    for text, ids in zip(texts, _encode(tok, texts)):
        if groups and size + 1 + len(ids) <= cap:
            groups[-1].append(text)
            size += 1 + len(ids)
        else:
            groups.append([text])
            size = len(ids)
    joined = ["\n".join(g) for g in groups]
    student = _encode(tok, joined)
    if teacher_tok is None:
        return [Doc(ids[:cap]) for ids in student]
    lens_s, lens_t = token_byte_lengths(tok), token_byte_lengths(teacher_tok)
    docs = []
    for s_ids, t_ids in zip(student, _encode(teacher_tok, joined)):
        ls, lt = [lens_s[i] for i in s_ids], [lens_t[i] for i in t_ids]
        bounds = shared_boundaries(ls, lt) if sum(ls) == sum(lt) else []
        if len(s_ids) > cap:  # cut both at the last shared boundary within the cap
            within = list(accumulate(ls))[cap - 1]
            bounds = [b for b in bounds if b <= within]
            if not bounds:  # none: next-token training only
                docs.append(Doc(s_ids[:cap], chunks=[-1] * cap))
                continue
            s_ids = s_ids[: sum(e <= bounds[-1] for e in accumulate(ls))]
            t_ids = t_ids[: sum(e <= bounds[-1] for e in accumulate(lt))]
            ls, lt = ls[: len(s_ids)], lt[: len(t_ids)]
        if s_ids:
            docs.append(Doc(s_ids, t_ids, chunk_index(ls, bounds), chunk_index(lt, bounds), len(bounds)))
    return docs


def pad(seqs: list[list[int]], value: int = 0):
    """-> (ids [B, T] right-padded with ``value``, mask [B, T])."""
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids, mask


def token_logprobs(model, ids, mask):
    """ids, mask [B, T] -> log p(ids[:, t+1] | ids[:, :t+1]) [B, T-1] (float32)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # [B, T-1, V]
    return logits.gather(-1, ids[:, 1:, None]).squeeze(-1) - logits.logsumexp(-1)


def batch_loss(student, teacher, docs: list[Doc], ctx: tuple[int, int], variant: str, cfg: RecoverConfig, device):
    """The stage loss on ``docs`` -> (loss, ce). ctx: (student, teacher) context token ids."""
    import torch

    ids, mask = pad([[ctx[0]] + d.ids for d in docs])
    ids, mask = ids.to(device), mask.to(device)
    lp = token_logprobs(student, ids, mask)  # [B, T-1]
    tmask = mask[:, 1:].float()
    ce = -(lp * tmask).sum() / tmask.sum()
    if variant == "ce" or not any(d.n_chunks for d in docs):
        return ce, ce
    t_ids, t_mask = pad([[ctx[1]] + d.teacher_ids for d in docs])
    with torch.no_grad():
        tlp = token_logprobs(teacher, t_ids.to(device), t_mask.to(device))
    n = max(d.n_chunks for d in docs)
    s_chunks = pad([d.chunks or [-1] * len(d.ids) for d in docs], -1)[0].to(device)
    t_chunks = pad([d.teacher_chunks or [-1] for d in docs], -1)[0].to(device)
    cmask = torch.arange(n, device=device)[None] < torch.tensor([d.n_chunks for d in docs], device=device)[:, None]
    loss = alm_loss(
        chunk_logprobs(lp, s_chunks, n), chunk_logprobs(tlp, t_chunks, n), cmask.float(), cfg.alm_temperature
    )
    return (loss + cfg.ce_weight * ce if variant == "alm+ce" else loss), ce


# --- init:awedist ---------------------------------------------------------------------------------------------


@dataclass
class Context:
    """One occurrence of a new token, as the base model sees it and as the student sees it."""

    teacher: list[int]  # [ctx] + base ids of the window (the old pieces in place)
    student: list[int]  # the same with the pieces replaced by one placeholder (its row is fitted)
    slot: int  # placeholder position in ``student``
    shift: int  # pieces - 1: student position p >= slot matches teacher position p + shift
    row: int  # which fitted row


def awedist_contexts(texts, base_tok, new_tok, swapped: set[int], cfg: RecoverConfig, ctx: int):
    """-> (ids by frequency in ``texts``, {id: [Context]}) for swapped ids whose span is whole base tokens."""
    from collections import Counter

    lens_b, lens_n = token_byte_lengths(base_tok), token_byte_lengths(new_tok)
    freq: Counter = Counter()
    found: dict[int, list[tuple[list[int], int, int]]] = {}
    for b_ids, n_ids in zip(_encode(base_tok, texts), _encode(new_tok, texts)):
        b_ends = list(accumulate(lens_b[i] for i in b_ids))
        if not b_ends or b_ends[-1] != sum(lens_n[i] for i in n_ids):
            continue
        starts = {e - lens_b[i]: j for j, (e, i) in enumerate(zip(b_ends, b_ids))}
        ends = {e: j for j, e in enumerate(b_ends)}
        for e, i in zip(accumulate(lens_n[i] for i in n_ids), n_ids):
            if i not in swapped:
                continue
            freq[i] += 1
            s = e - lens_n[i]
            if s in starts and e in ends and len(found.get(i, ())) < cfg.awedist_contexts:
                found.setdefault(i, []).append((b_ids, starts[s], ends[e]))
    order = sorted(found, key=lambda i: (-freq[i], i))
    contexts = {}
    for i in order:
        out = []
        for b_ids, a, c in found[i]:
            lo, hi = max(0, a - cfg.awedist_before), min(len(b_ids), c + 1 + cfg.awedist_after)
            out.append(
                Context([ctx] + b_ids[lo:hi], [ctx] + b_ids[lo:a] + [ctx] + b_ids[c + 1 : hi], 1 + a - lo, c - a, 0)
            )
        contexts[i] = out
    return order, contexts


def hidden(body, embeds=None, ids=None, mask=None):
    """Final (normed) hidden states [B, T, d] of ``body``'s decoder, without the lm_head."""
    return body.get_decoder()(input_ids=ids, inputs_embeds=embeds, attention_mask=mask).last_hidden_state


def awedist_targets(body, contexts: list[Context], batch: int):
    """[len(contexts)] tensors [n_i, d]: the base model's hidden states at the teacher positions matched."""
    import torch

    out = []
    for k in range(0, len(contexts), batch):
        part = contexts[k : k + batch]
        ids, mask = pad([c.teacher for c in part])
        with torch.no_grad():
            h = hidden(body, ids=ids.to(body.device), mask=mask.to(body.device))  # [B, T, d]
        out += [h[r, c.slot + c.shift : len(c.teacher)].float().clone() for r, c in enumerate(part)]
    return out


def awedist_sse(body, emb_weight, rows, contexts: list[Context], targets: list):
    """Squared error of the student's hidden states against the targets, with ``rows`` [G, d] at the slots
    -> (sum over matched positions and dimensions, how many values). emb_weight [V, d]: the base input embeddings
    (every other position); gradients reach only ``rows``."""
    import torch

    ids, mask = pad([c.student for c in contexts])
    ids, mask = ids.to(emb_weight.device), mask.to(emb_weight.device)
    B, T = ids.shape
    x = emb_weight.detach()[ids]  # [B, T, d]
    at = (torch.arange(B, device=ids.device), torch.tensor([c.slot for c in contexts], device=ids.device))
    x = x.index_put(at, rows[torch.tensor([c.row for c in contexts], device=ids.device)].to(x.dtype))
    h = hidden(body, embeds=x, mask=mask).float()  # [B, T, d]
    tgt = torch.zeros_like(h)
    cmp = torch.zeros(B, T, device=h.device)  # 1 at the new token's position and after it
    for r, (c, t) in enumerate(zip(contexts, targets)):
        tgt[r, c.slot : c.slot + len(t)] = t
        cmp[r, c.slot : c.slot + len(t)] = 1
    return (((h - tgt) ** 2).sum(-1) * cmp).sum(), cmp.sum() * h.shape[-1]


def awedist_mse(body, emb_weight, rows, contexts: list[Context], targets: list, batch: int = 16) -> float:
    """Mean squared error over all ``contexts`` (no gradient), in batches."""
    import torch

    sse = n = 0.0
    with torch.no_grad():
        for k in range(0, len(contexts), batch):
            a, b = awedist_sse(body, emb_weight, rows, contexts[k : k + batch], targets[k : k + batch])
            sse, n = sse + float(a), n + float(b)
    return sse / n


def fit_rows(body, emb_weight, rows0, contexts: list[Context], targets: list, cfg: RecoverConfig, stop=lambda: False):
    """Adam on the rows [G, d] (from ``rows0``) for ``awedist_epochs`` passes -> (rows, mse before, mse after, steps)."""
    import torch

    rows = rows0.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([rows], lr=cfg.awedist_lr)
    order = list(range(len(contexts)))
    rng = random.Random(cfg.seed)
    before = awedist_mse(body, emb_weight, rows, contexts, targets, cfg.awedist_batch)
    steps = 0
    for _ in range(cfg.awedist_epochs):
        rng.shuffle(order)
        for k in range(0, len(order), cfg.awedist_batch):
            if stop():
                break
            idx = order[k : k + cfg.awedist_batch]
            sse, n = awedist_sse(body, emb_weight, rows, [contexts[i] for i in idx], [targets[i] for i in idx])
            opt.zero_grad()
            (sse / n).backward()
            opt.step()
            steps += 1
    after = awedist_mse(body, emb_weight, rows, contexts, targets, cfg.awedist_batch)
    return rows.detach().to(rows0.dtype), before, after, steps


# --- the model: untying, row masks, optimizer state ------------------------------------------------------------


def mask_rows(model, rows, hooks: bool = True) -> tuple[list, list]:
    """Freeze everything but the input embeddings and lm_head -> (those two weights, hook handles). With ``hooks``
    their gradients are zeroed outside ``rows`` (ids [R]) before any optimizer sees them: with AdamW at weight decay
    0 a zero gradient keeps both moments 0 and the update exactly 0, so the other rows stay bit-identical. That is
    the sharded (DeepSpeed/FSDP) path; elsewhere ``RowSlices`` steps only the rows (cheaper, same result)."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    params, handles = [], []
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    # rows from the modules, not the weights: a ZeRO-3 partitioned weight has shape [0] outside its forward
    for w, n in ((emb.weight, emb.num_embeddings), (head.weight, head.out_features)):
        w.requires_grad_(True)
        params.append(w)
        if hooks:
            keep = torch.zeros(n, 1, dtype=w.dtype, device=w.device)
            keep[rows.to(w.device)] = 1
            handles.append(w.register_hook(lambda g, keep=keep: g * keep))
    return params, handles


class RowSlices:
    """The trained rows as their own small parameters ([R, d] each), so AdamW keeps state for R rows, not V.

    After backward, ``pull`` takes the rows' gradients out of the full (data-parallel averaged) weight gradients;
    after the optimizer step, ``push`` writes the rows back into the weights. Rows outside ``rows`` are never
    written: bit-identical. On this CPU it saved AdamW's ~7 s per step over two [151936, 896] matrices."""

    def __init__(self, weights: list, rows):
        import torch

        self.weights, self.rows = weights, rows
        self.params = [torch.nn.Parameter(w.detach()[rows.to(w.device)].clone()) for w in weights]

    def pull(self) -> None:
        for w, p in zip(self.weights, self.params):
            p.grad = w.grad[self.rows.to(w.device)]  # [R, d]
            w.grad.zero_()  # kept, not freed: re-faulting GBs of fresh pages per step cost seconds on this VM

    def push(self) -> None:
        import torch

        with torch.no_grad():
            for w, p in zip(self.weights, self.params):
                w[self.rows.to(w.device)] = p.to(w.dtype)


def optimizer_tensors(opt) -> tuple[dict, list]:
    """AdamW state as flat tensors {"<param>.<key>": tensor} + param groups (JSON)."""
    sd = opt.state_dict()
    tensors = {
        f"{pid}.{key}": v.detach().cpu().contiguous() for pid, st in sd["state"].items() for key, v in st.items()
    }
    return tensors, sd["param_groups"]


def restore_optimizer(opt, tensors: dict, groups: list) -> None:
    """Inverse of ``optimizer_tensors``."""
    params = [p for g in opt.param_groups for p in g["params"]]
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v.to(params[int(pid)].device)
    opt.load_state_dict({"state": state, "param_groups": groups})


# --- files: inputs, checkpoints, snapshots --------------------------------------------------------------------


def check_model_dir(path: Path, what: str, fix: str, need: tuple[str, ...] = ("config.json",)) -> None:
    """A model directory with ``need`` files and readable safetensors weights, else a ConfigError naming the file."""
    from safetensors import safe_open

    if not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is not a directory. {fix}")
    for name in need:
        if not (path / name).is_file():
            raise ConfigError(f"{what} {str(path)!r} has no {name}. {fix}")
    weights = sorted(path.glob("*.safetensors"))
    if not any(w.name.startswith("model") for w in weights):
        raise ConfigError(f"{what} {str(path)!r} has no model*.safetensors weights. {fix}")
    for w in weights:
        try:
            with safe_open(str(w), "pt"):
                pass
        except Exception as e:  # truncated or garbage: safetensors checks the header against the file size
            raise ConfigError(f"{w} is corrupt or truncated ({e}). {fix}") from e


def resolve_base(cfg: RecoverConfig) -> str:
    """--base, else the model tpro_remap.json says the remapped directory was made from."""
    if cfg.base:
        return cfg.base
    record = Path(cfg.model) / "tpro_remap.json"
    try:
        return json.loads(record.read_text(encoding="utf-8"))["config"]["model"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"the teacher is not known: {record} is missing or unreadable ({e}). Fix: pass --base MODEL (the model "
            "`tpro tokenizer remap-model --model` was given)"
        ) from e


def find_checkpoint(out: Path) -> Path | None:
    """OUT/checkpoint, or the old one a kill left renamed aside between ``replace_dir``'s two renames."""
    if (out / "checkpoint").is_dir():
        return out / "checkpoint"
    old = sorted(out.glob("checkpoint.old*")) if out.is_dir() else []
    return old[-1] if old else None


def read_checkpoint(ckpt: Path, run: dict) -> dict:
    """The checkpoint's state (ledger, stage progress), checked: readable files and the same run settings."""
    fix = f"Fix: delete {ckpt} to start again from --model (the ledger restarts at 0), or restore it from a backup"
    check_model_dir(ckpt, "checkpoint", fix, need=("config.json", "state.json"))
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        state["stages"], state["total_s"]  # noqa: B018 (the keys a resume needs)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{ckpt / 'state.json'} is corrupt ({e}). {fix}") from e
    if (ckpt / "optimizer.safetensors").is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(ckpt / "optimizer.safetensors"), "pt"):
                pass
        except Exception as e:
            raise ConfigError(f"{ckpt / 'optimizer.safetensors'} is corrupt or truncated ({e}). {fix}") from e
    differ = [k for k in RUN_KEYS if state.get("run", {}).get(k) != run[k]]
    if differ:
        k = differ[0]
        raise ConfigError(
            f"{ckpt} is a run with other settings ({k}: {state.get('run', {}).get(k)!r}, now {run[k]!r}). "
            "Fix: rerun with the same settings to resume it, or pass a new --out"
        )
    return state


@dataclass
class Run:
    """What the stages share (state is passed explicitly, never stored on library objects)."""

    cfg: RecoverConfig
    acc: Any
    out: Path
    plan: list[Stage]
    ends: list[float]
    state: dict
    ledger: Ledger
    model: Any  # the student, unwrapped
    tok: Any
    texts: list[str]
    docs: list[Doc]
    rows: Any  # LongTensor [R]: the rows the rows stage trains
    swapped: list[int]
    base: str
    teacher_tok: Any = None
    teacher: Any = None
    wrapped: Any = None  # the student as accelerate prepared it (during a training stage)
    opt_file: Path | None = None  # optimizer state to restore in the stage in progress
    saved: Path | None = None  # a checkpoint directory holding exactly the weights in memory
    progress: Any = None


def save_model_dir(run: Run, dest: Path, extra: dict) -> None:
    """The student as a loadable model directory: safetensors, its tokenizer, swap.json, tpro_recover.json."""
    acc = run.acc
    model = run.model
    from transformers.utils import logging as hf_logging

    state_dict = acc.get_state_dict(run.wrapped) if run.wrapped is not None and acc.num_processes > 1 else None
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per checkpoint would bury the run's own bars
    try:
        model.save_pretrained(dest, state_dict=state_dict, safe_serialization=True, is_main_process=acc.is_main_process)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if acc.is_main_process:
        run.tok.save_pretrained(dest)
        if not run.cfg.control:
            for name in ("swap.json", "tpro_remap.json"):
                if (Path(run.cfg.model) / name).is_file():
                    shutil.copy2(Path(run.cfg.model) / name, dest / name)
        note = "lm_head untied from the input embeddings by tpro tokenizer recover" if run.state["untied"] else ""
        write_json(dest / "tpro_recover.json", {"untied": run.state["untied"], "note": note, **extra}, indent=1)


def save_checkpoint(run: Run, opt=None) -> None:
    """OUT/checkpoint, atomically: the model, the optimizer state (safetensors) and state.json with the ledger."""
    from safetensors.torch import save_file

    acc = run.acc
    tmp = run.out / "checkpoint.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    run.state["total_s"] = round(run.ledger.total(), 2)
    save_model_dir(run, tmp, {"checkpoint": True})
    if acc.is_main_process:
        groups = None
        if opt is not None and acc.distributed_type not in _sharded():
            tensors, groups = optimizer_tensors(opt)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
        write_json(tmp / "state.json", {**run.state, "optimizer_groups": groups}, indent=1)
        replace_dir(tmp, run.out / "checkpoint")
    acc.wait_for_everyone()
    run.opt_file, run.saved = None, run.out / "checkpoint"


def save_final(run: Run, dest: Path, extra: dict) -> None:
    """The result as a model directory: hard links to the checkpoint's weights when they are the weights in memory
    (no second multi-GB write), else a save."""
    import os

    if run.saved is None or run.acc.num_processes > 1:
        save_model_dir(run, dest, extra)
        return
    dest.mkdir(parents=True)
    for f in run.saved.iterdir():
        if f.name in ("optimizer.safetensors", "state.json", "tpro_recover.json") or not f.is_file():
            continue
        try:
            os.link(f, dest / f.name)
        except OSError:  # another file system
            shutil.copy2(f, dest / f.name)
    note = "lm_head untied from the input embeddings by tpro tokenizer recover" if run.state["untied"] else ""
    write_json(dest / "tpro_recover.json", {"untied": run.state["untied"], "note": note, **extra}, indent=1)


def take_snapshots(run: Run, where: str) -> None:
    """snapshots/<M>min for each --snapshot-minutes mark the ledger has passed (their save time is not counted)."""
    for m in run.cfg.snapshot_minutes:
        label = f"{m:g}min"
        total = run.ledger.total()
        if label in run.state["snapshots"] or total < m * 60:
            continue
        t0 = time.monotonic()
        dest, tmp = run.out / "snapshots" / label, run.out / "snapshots" / f"{label}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model_dir(run, tmp, {"snapshot_minutes": m, "total_s": round(total, 1), "at": where})
        if run.acc.is_main_process:
            replace_dir(tmp, dest)
        run.state["snapshots"][label] = {"dir": str(dest), "total_s": round(total, 1), "at": where}
        run.ledger.paused += time.monotonic() - t0


def _sharded() -> tuple:
    from accelerate.utils import DistributedType

    return (DistributedType.DEEPSPEED, DistributedType.FSDP)


def _agree(acc, flag: bool) -> bool:
    """True on every process when it is true on any (ranks must stop at the same step)."""
    if acc.num_processes == 1:
        return flag
    import torch

    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), "max").item())


# --- the stages -----------------------------------------------------------------------------------------------


def _task(run: Run, i: int, start: float):
    """A progress line for stage i, measured in seconds of its budget (None without a bar)."""
    if run.progress is None:
        return None
    s = run.plan[i]
    total = None if math.isinf(run.ends[i]) else max(run.ends[i] - start, 0.0)
    return run.progress.add_task(f"{s.name}:{s.variant}", total=total, info="")


def load_body(base: str, cfg: RecoverConfig):
    """The base model for init:awedist: all decoder layers, or only the first ``awedist_layers``."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from tpro.models.dense import use_onednn
    from tpro.train.common import model_path

    kw = {"num_hidden_layers": cfg.awedist_layers} if cfg.awedist_layers else {}
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the truncated load reports the later layers' weights as unexpected
    try:
        body = AutoModelForCausalLM.from_pretrained(model_path(base), dtype=getattr(torch, cfg.dtype), **kw)
    finally:
        hf_logging.set_verbosity(level)
    body.requires_grad_(False).eval()
    use_onednn(body)  # the no-grad target passes run on oneDNN where it is faster; fits fall back to F.linear
    return body


def run_awedist(run: Run, i: int) -> None:
    """init:awedist: fit the input rows of swapped tokens, most frequent first, in groups, until its time is up."""
    import gc
    from dataclasses import replace

    import torch

    from tpro.models.bpc import context_token_id

    cfg, st, state = run.cfg, run.state["stages"][i], run.state
    if run.acc.num_processes > 1:
        raise ConfigError("init:awedist runs on one process: run it without `accelerate launch`")
    if _no_time(run, i):
        return
    body = load_body(run.base, cfg)
    order, contexts = awedist_contexts(
        run.texts, run.teacher_tok, run.tok, set(run.swapped), cfg, context_token_id(run.teacher_tok)
    )
    if untie(run.model):  # awedist fits input rows; a tied lm_head keeps the init it had
        state["untied"] = True
        run.saved = None
    emb, base_emb = run.model.get_input_embeddings().weight, body.get_input_embeddings().weight
    groups = [order[k : k + cfg.awedist_group] for k in range(0, len(order), cfg.awedist_group)]
    st.update(tokens_with_contexts=len(order), groups=len(groups))
    start, e0 = run.ledger.total(), st["elapsed_s"]
    task = _task(run, i, start)
    stopped = "done"
    for g in range(state["awedist_groups"], len(groups)):
        if run.ledger.total() >= run.ends[i]:
            stopped = "budget"
            break
        ids = groups[g]
        ctxs = [replace(c, row=r) for r, t in enumerate(ids) for c in contexts[t]]
        targets = awedist_targets(body, ctxs, cfg.awedist_batch)
        rows, before, after, steps = fit_rows(
            body, base_emb, emb[ids], ctxs, targets, cfg, stop=lambda: run.ledger.total() >= run.ends[i]
        )
        with torch.no_grad():
            emb[torch.tensor(ids)] = rows.to(emb.dtype)
        run.saved = None
        state["awedist_groups"] = g + 1
        total = run.ledger.total()
        st.update(
            steps=st["steps"] + steps, fitted=st.get("fitted", 0) + len(ids), elapsed_s=round(e0 + total - start, 2)
        )
        st["tokens"] += sum(len(c.student) for c in ctxs)  # context tokens, once per pass
        st["losses"].append([g + 1, round(before, 6), round(after, 6), round(total, 1)])
        if task is not None:
            run.progress.update(task, completed=total - start, info=f"group {g + 1}/{len(groups)} mse {after:.4f}")
        take_snapshots(run, f"init group {g + 1}")
        if (g + 1) % cfg.save_steps == 0 and g + 1 < len(groups):
            save_checkpoint(run)
    st.update(done=True, stopped=stopped)
    del body
    gc.collect()
    save_checkpoint(run)


def _no_time(run: Run, i: int) -> bool:
    """A stage whose end mark has passed before it started is done at once (nothing changed: no checkpoint)."""
    st = run.state["stages"][i]
    if st["steps"] or not _agree(run.acc, run.ledger.total() >= run.ends[i]):
        return False
    st.update(done=True, stopped="budget (no time left)")
    return True


def next_docs(run: Run) -> list[Doc]:
    """This process's share of the next global batch; the cursor walks a seeded permutation per epoch."""
    n, world = len(run.docs), run.acc.num_processes
    epoch, pos = run.state["cursor"]
    picked: list[int] = []
    while len(picked) < run.cfg.batch * world:
        order = random.Random(run.cfg.seed * 1_000_003 + epoch).sample(range(n), n)
        take = order[pos : pos + run.cfg.batch * world - len(picked)]
        picked += take
        pos += len(take)
        if pos >= n:
            epoch, pos = epoch + 1, 0
    run.state["cursor"] = [epoch, pos]
    return [run.docs[j] for j in picked[run.acc.process_index :: world]]


def train_step(run: Run, opt, params, variant: str, lr: float, step: int, ctx: tuple[int, int], slices=None):
    """One optimizer step on the next batch -> (loss, next-token loss). ``slices``: the rows stage's ``RowSlices``
    (``params`` are then its row parameters)."""
    acc, cfg = run.acc, run.cfg
    for g in opt.param_groups:
        g["lr"] = lr * min(1.0, (step + 1) / (cfg.warmup_steps + 1))
    docs = next_docs(run)
    with acc.autocast():
        loss, ce = batch_loss(run.wrapped, run.teacher, docs, ctx, variant, cfg, acc.device)
    acc.backward(loss)
    if slices is not None:
        slices.pull()
    if cfg.grad_clip:
        acc.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=False)  # keep the gradient buffers: fresh GBs per step page-fault for seconds here
    if slices is not None:
        slices.push()
    run.saved = None
    run.state["stages"][run.state["stage"]]["tokens"] += sum(len(d.ids) for d in docs) * acc.num_processes
    return loss.item(), ce.item()


def _prepare_teacher(run: Run):
    """The base model with its own tokenizer, on the accelerator (TRL's helpers shard it under DeepSpeed/FSDP)."""
    from accelerate.utils import DistributedType

    from tpro.models import load_model

    cfg, acc = run.cfg, run.acc
    lm = load_model(
        run.base, dtype=cfg.dtype, threads=cfg.threads or None, progress=False, rope_scaling=cfg.rope_scaling
    )
    teacher = lm.model.requires_grad_(False).eval()
    if acc.distributed_type == DistributedType.DEEPSPEED:
        from trl.models.utils import prepare_deepspeed

        return prepare_deepspeed(teacher, acc)
    if acc.distributed_type == DistributedType.FSDP:
        from trl.models.utils import prepare_fsdp

        return prepare_fsdp(teacher, acc)
    return teacher.to(acc.device)


def run_training(run: Run, i: int) -> None:
    """rows / full: AdamW steps until the stage's end mark (or --max-steps), checkpointing every --save-steps."""
    import torch
    from accelerate.utils import DistributedType
    from safetensors.torch import load_file

    from tpro.models.bpc import context_token_id

    cfg, acc, stage, st, state = run.cfg, run.acc, run.plan[i], run.state["stages"][i], run.state
    if _no_time(run, i):
        return
    variant = "ce" if cfg.control else stage.variant
    handles, slices = [], None
    if stage.name == "rows":
        if untie(run.model):
            state["untied"] = True
            run.saved = None
        sharded = acc.distributed_type in _sharded()
        params, handles = mask_rows(run.model, run.rows, hooks=sharded)
        if not sharded:  # AdamW over the R rows only
            slices = RowSlices(params, run.rows)
            params = slices.params
        lr = cfg.rows_lr
    else:
        params, lr = list(run.model.requires_grad_(True).parameters()), cfg.full_lr
    st["lr"] = lr
    if cfg.gradient_checkpointing:
        run.model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if run.opt_file is not None and st["steps"]:
        restore_optimizer(opt, load_file(str(run.opt_file)), state["optimizer_groups"])
    if variant != "ce" and run.teacher is None:
        run.teacher = _prepare_teacher(run)
    elif variant == "ce":
        run.teacher = None  # a next-token stage does not need it: free its memory for the optimizer states
    if acc.distributed_type == DistributedType.DEEPSPEED:
        acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch
    run.model.train()
    if run.wrapped is not None:  # the previous stage's wrapper (kept until now for a sharded final save)
        run.wrapped = None
        acc.free_memory()
    run.wrapped, opt = acc.prepare(run.model, opt)
    ctx = (context_token_id(run.tok), context_token_id(run.teacher_tok) if run.teacher_tok is not None else 0)
    start, e0 = run.ledger.total(), st["elapsed_s"]
    task = _task(run, i, start)
    stopped, step_s = "budget", 0.0
    try:
        while True:
            if cfg.max_steps and st["steps"] >= cfg.max_steps:
                stopped = "max_steps"
                break
            # stop when the next step (as long as the last one) would end past the mark
            if _agree(acc, run.ledger.total() + step_s >= run.ends[i]):
                break
            t_step = time.monotonic()
            loss, ce = train_step(run, opt, params, variant, lr, st["steps"], ctx, slices)
            step_s = time.monotonic() - t_step
            st["steps"] += 1
            total = run.ledger.total()
            st["elapsed_s"] = round(e0 + total - start, 2)
            st["losses"].append([st["steps"], round(loss, 5), round(ce, 5), round(total, 1)])
            if task is not None:
                info = f"step {st['steps']} loss {loss:.4f}" + (f" ce {ce:.4f}" if variant != "ce" else "")
                run.progress.update(task, completed=total - start, info=info)
            take_snapshots(run, f"{stage.name} step {st['steps']}")
            if st["steps"] % cfg.save_steps == 0:
                save_checkpoint(run, opt)
        st.update(done=True, stopped=stopped)
        save_checkpoint(run, opt)
    finally:
        for h in handles:
            h.remove()
        run.model.eval()
        if cfg.gradient_checkpointing:
            run.model.gradient_checkpointing_disable()


# --- the command ----------------------------------------------------------------------------------------------


def trainable_rows(cfg: RecoverConfig, swap: list[dict], docs: list[Doc], base_tok) -> list[int]:
    """Swapped ids (control: the base ids of their old pieces), only those in the training text if asked."""
    if cfg.control:
        texts = [r["added_text"] for r in swap if r.get("added_text")]
        rows = sorted({i for ids in _encode(base_tok, texts) for i in ids})
    else:
        rows = sorted(r["id"] for r in swap)
    if cfg.rows_seen_only:
        seen = {i for d in docs for i in d.ids}
        rows = [i for i in rows if i in seen]
    return rows


def extend_budget(state: dict, plan: list[Stage], ends: list[float], total_s: float) -> list[int]:
    """Reopen training stages that stopped on the budget when a rerun gives them more (a larger
    --budget-minutes): the same run continues from its checkpoint, as after a kill. -> the reopened indices."""
    reopened = []
    for i, (stage, st) in enumerate(zip(plan, state["stages"])):
        if stage.name != "init" and st["done"] and str(st["stopped"]).startswith("budget") and total_s < ends[i]:
            st.update(done=False, stopped=None)
            reopened.append(i)
    return reopened


def fresh_state(plan: list[Stage], run_keys: dict) -> dict:
    stages = [
        {"name": s.name, "variant": s.variant, "share": s.share, "done": False, "stopped": None, "steps": 0,
         "tokens": 0, "elapsed_s": 0.0, "losses": []}
        for s in plan
    ]  # fmt: skip
    return {"version": 1, "run": run_keys, "total_s": 0.0, "restarts": 0, "stage": 0, "stages": stages,
            "cursor": [0, 0], "awedist_groups": 0, "snapshots": {}, "untied": False}  # fmt: skip


def evaluate(run: Run, texts: list[str]) -> dict:
    """Bits per character of the result on the held-out texts (tokenizer-independent)."""
    from tpro.models.bpc import bits_per_char

    t0 = time.perf_counter()
    bpc = bits_per_char(run.model.eval(), run.tok, texts, max_length=1024, batch_tokens=1024)
    tokens = sum(len(ids) for ids in _encode(run.tok, texts))
    chars = sum(map(len, texts))
    return {"files": run.cfg.eval, "texts": len(texts), "chars": chars, "tokens": tokens,
            "chars_per_token": round(chars / tokens, 4), "bpc": bpc, "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip


def recover(cfg: RecoverConfig, show_progress: bool = True) -> dict:
    """Run the stages of ``cfg`` (resuming OUT/checkpoint when there is one); write OUT/model and OUT/recover.json."""
    from contextlib import nullcontext

    import torch
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from tpro.models import load_model
    from tpro.train.common import model_path

    t_start = time.perf_counter()
    plan, out = parse_stages(cfg.stages), Path(cfg.out)
    fix = "Fix: pass the output directory of `tpro tokenizer remap-model` (re-run it if a file is damaged)"
    check_model_dir(Path(cfg.model), "--model", fix, need=("config.json", "tokenizer.json", "swap.json"))
    swap = json.loads((Path(cfg.model) / "swap.json").read_text(encoding="utf-8"))
    alm = not cfg.control and any(s.variant in ("alm", "alm+ce") for s in plan)
    needs_base = cfg.control or alm or any(s.variant == "awedist" for s in plan)
    base = resolve_base(cfg) if needs_base else cfg.base
    render = chat_renderer(AutoTokenizer.from_pretrained(cfg.model))
    texts = read_texts(cfg.train, cfg.max_lines, render=render)
    eval_texts = read_texts(cfg.eval, cfg.eval_lines, "--eval", render) if cfg.eval else []
    shared = set(texts) & set(eval_texts)
    if shared:
        raise ConfigError(
            f"{len(shared)} --eval texts are also in --train (e.g. {next(iter(shared))[:60]!r}): the evaluation "
            "would not be held out. Fix: train and evaluate on different text"
        )
    run_keys = {k: getattr(cfg, k) for k in RUN_KEYS} | {"base": base}
    ckpt = find_checkpoint(out)
    state = read_checkpoint(ckpt, run_keys) if ckpt else fresh_state(plan, run_keys)

    acc = Accelerator(mixed_precision=None if cfg.mixed_precision == "auto" else cfg.mixed_precision,
                      cpu=not torch.cuda.is_available())  # fmt: skip
    main = acc.is_main_process
    ledger = Ledger(state["total_s"])
    if ckpt:
        state["restarts"] += 1
    spec = str(ckpt) if ckpt else (base if cfg.control else cfg.model)
    lm = load_model(spec, dtype=cfg.dtype, threads=cfg.threads or None, progress=show_progress and main,
                    rope_scaling=cfg.rope_scaling, device=str(acc.device))  # fmt: skip
    teacher_tok = AutoTokenizer.from_pretrained(model_path(base)) if needs_base else None
    docs = make_docs(texts, lm.tokenizer, cfg.block, teacher_tok if alm else None)
    rows = trainable_rows(cfg, swap, docs, teacher_tok)
    if not rows and any(s.name == "rows" for s in plan):
        raise ConfigError(
            f"no {'old piece' if cfg.control else 'swapped token'} of {cfg.model}'s swap.json occurs in --train: the "
            "rows stage has nothing to train. Fix: train on Russian running text (or pass --no-rows-seen-only)"
        )
    run = Run(cfg=cfg, acc=acc, out=out, plan=plan, ends=stage_ends(plan, cfg.budget_minutes * 60), state=state,
              ledger=ledger, model=lm.model, tok=lm.tokenizer, texts=texts, docs=docs, rows=torch.tensor(rows),
              swapped=[r["id"] for r in swap], base=base, teacher_tok=teacher_tok,
              opt_file=ckpt / "optimizer.safetensors" if ckpt and (ckpt / "optimizer.safetensors").is_file() else None,
              saved=ckpt)  # fmt: skip
    extend_budget(state, plan, run.ends, ledger.total())
    if show_progress and main:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        run.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                TextColumn("{task.fields[info]}"), console=Console(stderr=True))  # fmt: skip
    with run.progress or nullcontext():
        for i, stage in enumerate(plan):
            st = state["stages"][i]
            if st["done"]:
                continue
            state["stage"] = i
            if stage.name == "init" and (cfg.control or stage.variant == "mean"):
                st.update(done=True, stopped="control: no init" if cfg.control else "kept the remap's rows")
            elif stage.name == "init":
                run_awedist(run, i)
            else:
                run_training(run, i)
    # the work in the result: the ledger of the checkpoint that holds it, else the ledger now
    total = state["total_s"] if run.saved is not None else run.ledger.total()
    summary = {
        "model": cfg.model, "base": base, "control": cfg.control, "swapped": len(swap), "trainable_rows": len(rows),
        "untied": state["untied"], "budget_s": cfg.budget_minutes * 60, "total_s": round(total, 1),
        "restarts": state["restarts"],
        "stages": [{**st, "end_s": None if math.isinf(e) else round(e, 1)} for st, e in zip(state["stages"], run.ends)],
        "snapshots": state["snapshots"],
        "train": {"files": cfg.train, "texts": len(texts), "docs": len(docs), "tokens": sum(len(d.ids) for d in docs)},
        "final_dir": str(out / "model"), "config": cfg.to_dict(),
    }  # fmt: skip
    tmp = out / "model.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    save_final(run, tmp, {k: summary[k] for k in ("base", "control", "stages", "total_s")})
    if main:
        replace_dir(tmp, out / "model")
        if acc.num_processes > 1 and eval_texts:  # a sharded model scores on every rank, not here
            summary["eval"] = {"skipped": f"multi-process run: score it with `tpro model bpc FILE -m {out / 'model'}`"}
        else:
            summary["eval"] = evaluate(run, eval_texts) if eval_texts else None
        summary["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_json(out / "recover.json", summary, indent=1)
    acc.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> dict:
    """``python -m tpro.tokenizer.recover`` / ``accelerate launch -m tpro.tokenizer.recover``: the CLI command."""
    import click

    from tpro.tokenizer.cli import app

    try:
        result = app.commands["recover"].main(args=argv, prog_name="tpro tokenizer recover", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        raise SystemExit(e.exit_code) from e
    if isinstance(result, int):
        raise SystemExit(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
