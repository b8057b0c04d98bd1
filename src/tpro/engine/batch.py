"""Continuous batching: many requests decode together, one forward per step for all of them.

``BatchEngine(engine).submit(prompt, params)`` streams the same ``Delta``s and ``Done`` as ``Engine.generate``, so a
caller swaps one for the other; ``complete_many`` is the helper for batch users (evaluation, data generation).
Each sequence keeps its own prompt, ``SamplingParams`` (its own ``torch.Generator``), stop strings, budget, stream,
cancel event and telemetry: the per-request bookkeeping is ``tpro.engine.engine.Request``, the same object the
single-sequence path uses. This module knows caches, masks and scheduling; nothing about HTTP or chat templates.

The scheduler is one thread looping over a waiting queue and the running rows. Each step:
  1. drop cancelled sequences (a disconnected client frees its row within one step);
  2. admit waiting sequences, first come first served, while rows (``max_batch``) and the KV budget allow, as
     one *prefill group*; sequences with the same prompt share one prefilled row (K samples of a prompt pay one
     prefill), copied when the group joins;
  3. prefill one chunk of the group, at most ``chunk_tokens`` tokens, so a long prompt delays the running rows by
     one chunk per step, never by its whole prefill; after the last chunk each member samples its first token
     and the group joins the running rows;
  4. one decode forward over all running rows, one token each; finished rows leave at once.

KV layout ("aligned rows"): the running sequences are the rows of one ``DynamicCache`` [B, H, W, D], left-padded
so every row ends at column W; row b's tokens are columns starts[b]..W-1. A decode step feeds each row's last
sampled token at its own position (W - starts[b]) with a 4-D mask hiding the padding: transformers' public inputs
(cache object, 4-D ``attention_mask``, ``position_ids``), the same ones the EAGLE verifier uses. Joining pads the
narrower side on the left and concatenates rows; leaving selects rows and trims columns that only padding still
occupies. So the cache holds B x max(length) tokens, and the KV budget bounds the most that will come to before
the rows finish (``peak_tokens``): a sequence joins only if that fits. (A join briefly holds a second copy of the
rows it moves.)

Speculation with batching (policy measured, see ``SPECULATE_ALONE``): a request whose decoder speculates (EAGLE,
the model-free suffix drafter) runs through that ``Decoder`` while it is alone, as ``Engine.generate`` would; once
another request arrives it joins the batch (its context re-prefilled once, the sampled tokens kept) and decodes
plainly. ``max_batch=1`` runs every request alone through its decoder, one after another: the old server.

Why not transformers' ``ContinuousBatchingManager`` / ``generate_batch`` (5.24, evaluated on CPU with the tiny
Qwen2 model): it runs, greedy output matched ``generate``, it streams per-token ids and takes requests late, but
  - sampling is one ``torch.multinomial`` over the whole batch with the global RNG, in its own thread: there is no
    per-request ``torch.Generator``, so a seed cannot fix a request's text (the same seed twice, alone, gave two
    different texts), and ``do_sample`` is per manager (greedy and sampled requests cannot share one);
  - the distribution comes from its own logits processors (per-request temperature/top-k/top-p only when the
    manager's generation config enabled them at creation), not from ``tpro.engine.sampling.logits_to_probs``, the
    one definition our speculative verifier must reproduce;
  - ``cancel_request`` drops a request without a final output: iterating a streaming request cancelled mid-way
    never returned (we stopped it after 60 s);
  - it has no place for a per-request ``Decoder`` (EAGLE), and ``generate_batch`` with its default sizing took
    72 s for 2 prompts x 12 tokens on the tiny model (the paged cache is sized from memory at start).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from tpro.engine.decoder import Decoder, Step, kv_bytes_per_token
from tpro.engine.engine import Delta, Done, Engine, Request
from tpro.engine.sampling import SamplingParams, next_token
from tpro.models.chat import ChatPrompt

# The policy, measured on the embedded model (fp32 = ``--dtype auto`` on this 2-core AVX2 machine, 2 threads, 64
# new tokens, greedy; 2026-12-03): one sequence alone decodes at 5.4 tokens/s with ``Engine.generate``, 4.7 with
# the shipped EAGLE head (0.87x: in fp32 the verify forward over its tree costs too much; docs/benchmarks.md has
# EAGLE at 1.09x overall, 1.46x on math, in bf16), 5.0 as a batch of one. Batched, all sequences together:
# 4.9 tokens/s for 2 (MKL's fp32 matmul on this CPU costs as much per row for 2 rows as for 1: 2.2 vs 1.1 ms for a
# 896x4864 layer), 8.0 for 4, 16 for 8, 23 for 16, 35 for 32 (decode steps alone: 18-20, 30, 41-48 at 8, 16, 32;
# 58-62 at 48). So a second sequence is never better served by speculating the first: in bf16, where a forward
# over 16 tokens costs ~1.5x one, two rows cost ~1.05x one, above EAGLE's best gain. Speculate only alone.
SPECULATE_ALONE = True
# A prefill group may pad its rows to at most this multiple of its real tokens (prompts of unlike lengths wait for
# the next group instead of inflating this one).
PAD_WASTE = 1.5


# Engines with a scheduler thread: closed at exit, so the thread never dies inside a torch op while the interpreter
# tears down (seen as "terminate called without an active exception" when a script ended right after its results).
_LIVE: weakref.WeakSet = weakref.WeakSet()
atexit.register(lambda: [be.close() for be in list(_LIVE)])


# ---- masks and positions (pure) ---------------------------------------------------------------------------------


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask (True = attend) -> additive float mask of the same shape (0 or the dtype's minimum)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def decode_mask(starts: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """starts [B] (first real column of each row), width W -> [B, 1, 1, W + 1]: each row's new token sees its own
    columns and itself, never another row's padding."""
    cols = torch.arange(width + 1, device=starts.device)
    return additive(cols[None] >= starts[:, None], dtype)[:, None, None]


def prefill_mask(pads: torch.Tensor, a: int, b: int, dtype: torch.dtype) -> torch.Tensor:
    """pads [G] (left padding of each row), chunk columns a..b-1 -> [G, 1, b - a, b]: causal over real columns.
    A padding query also sees itself, so no row is all masked (its output is never read)."""
    q = torch.arange(a, b, device=pads.device)[:, None]  # [C, 1]
    k = torch.arange(b, device=pads.device)[None]  # [1, b]
    allowed = ((k <= q)[None] & (k[None] >= pads[:, None, None])) | (k == q)[None]  # [G, C, b]
    return additive(allowed, dtype)[:, None]


# ---- the KV cache as aligned rows ---------------------------------------------------------------------------------


def pad_left(cache: DynamicCache, n: int) -> None:
    """Prepend n empty columns to every row: [B, H, W, D] -> [B, H, n + W, D]."""
    if n:
        for layer in cache.layers:
            layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, n, 0))
            layer.values = torch.nn.functional.pad(layer.values, (0, 0, n, 0))


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep (or repeat) rows: [B, H, W, D] -> [len(rows), H, W, D]."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, rows)
        layer.values = layer.values.index_select(0, rows)


def trim_left(cache: DynamicCache, n: int) -> None:
    """Drop the first n columns (padding in every row)."""
    if n:
        for layer in cache.layers:
            layer.keys = layer.keys[:, :, n:]
            layer.values = layer.values[:, :, n:]


def cat_rows(cache: DynamicCache, other: DynamicCache) -> None:
    """Append other's rows (same width) to cache's."""
    for layer, more in zip(cache.layers, other.layers, strict=True):
        layer.keys = torch.cat([layer.keys, more.keys])
        layer.values = torch.cat([layer.values, more.values])


def peak_tokens(rows: list[tuple[int, int]]) -> int:
    """rows: (tokens cached now, tokens still to come) per sequence -> the most cache slots (rows x width) the
    aligned layout will hold until they have all finished, if nobody else joins. At step t the width is the
    longest live row, cached + t; a row lives while t <= its tokens to come. The product grows within a span of
    steps and drops when a row leaves, so its peaks are at t = 0 and just before each leave."""
    peak = 0
    for t in {0, *(r for _, r in rows)}:
        live = [c + t for c, r in rows if r >= t]
        peak = max(peak, len(live) * max(live))
    return peak


@dataclass(eq=False)
class Seq:
    """One submitted request inside the scheduler."""

    req: Request
    decoder: Decoder  # the request's decoder: used while it runs alone (``lane``), else the batch decodes plainly
    generator: torch.Generator | None
    submitted: float  # perf_counter() at submit
    context: list[int]  # ids to prefill: the prompt, or prompt + tokens so far when it leaves the lane
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    pending: int | None = None  # the last sampled token: streamed, not yet in the cache
    steps: Iterator[Step] | None = None  # its decoder's stream while it runs in the lane
    prefill_s: float = 0.0  # prefill forwards of its group, reported with its first token (telemetry's prefill_s)
    group: threading.Event | None = None  # a cancel event shared with other requests (``submit_many``)

    def cancelled(self) -> bool:
        """The request's own cancel (its stream closed, its client gone) or its group's."""
        if self.group is not None and self.group.is_set():
            self.req.cancel.set()
        return self.req.cancelled()

    @property
    def kv_tokens(self) -> tuple[int, int]:
        """(tokens its cache row holds, or will once prefilled; tokens still to come)."""
        n_out = len(self.req.out_ids)
        return len(self.req.prompt.input_ids) + max(0, n_out - 1), self.req.budget - n_out


@dataclass(eq=False)
class Rows:
    """Sequences as the rows of one left-padded ``DynamicCache`` (see the module docstring)."""

    seqs: list[Seq]
    starts: torch.Tensor  # [B] first real column of each row
    cache: DynamicCache
    width: int  # W: columns in the cache

    def keep(self, keep: list[bool]) -> None:
        idx = torch.tensor([i for i, k in enumerate(keep) if k], dtype=torch.long, device=self.starts.device)
        select_rows(self.cache, idx)
        self.seqs = [s for s, k in zip(self.seqs, keep) if k]
        self.starts = self.starts[idx]
        cut = int(self.starts.min()) if self.seqs else 0  # columns that are padding in every remaining row
        trim_left(self.cache, cut)
        self.starts, self.width = self.starts - cut, self.width - cut

    def join(self, other: Rows) -> None:
        w = max(self.width, other.width)
        pad_left(self.cache, w - self.width)
        pad_left(other.cache, w - other.width)
        cat_rows(self.cache, other.cache)
        self.starts = torch.cat([self.starts + w - self.width, other.starts + w - other.width])
        self.seqs, self.width = self.seqs + other.seqs, w


@dataclass(eq=False)
class Prefill:
    """A group being prefilled chunk by chunk: one row per distinct context, left-padded to a common width."""

    members: list[Seq]
    row_of: list[int]  # member -> row
    ids: torch.Tensor  # [G, P] contexts, left-padded
    pads: torch.Tensor  # [G]
    cache: DynamicCache
    done: int = 0  # columns prefilled so far


class BatchEngine:
    """Continuous batching over an ``Engine``'s model (see the module docstring). Thread-safe: ``submit`` from any
    thread; one scheduler thread runs while there is work and holds ``engine.lock`` for each step.

    ``max_batch``: sequences decoding together (1: one at a time, each through its own decoder);
    ``chunk_tokens``: prompt tokens prefilled per step; ``kv_budget``: bytes of KV cache the batch may hold
    (None: no limit); ``on_step(batch, kv_bytes)``: called in the scheduler thread after each decode step, a
    lone request's decoder steps with tokens included (metrics, tests).
    """

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 32,
        chunk_tokens: int = 256,
        kv_budget: int | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ):
        if max_batch < 1 or chunk_tokens < 1:
            raise ValueError(f"max_batch and chunk_tokens must be >= 1, got {max_batch} and {chunk_tokens}")
        model = engine.model
        if max_batch > 1 and any(DynamicCache(config=model.config).is_sliding):
            raise ValueError(
                "batched decoding needs full-attention layers; this model has sliding-window layers: use max_batch=1"
            )
        self.engine, self.model = engine, model
        self.max_batch, self.chunk_tokens, self.kv_budget, self.on_step = max_batch, chunk_tokens, kv_budget, on_step
        self.kv_bytes_per_token = kv_bytes_per_token(model)
        self._cv = threading.Condition()
        self._waiting: deque[Seq] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        # owned by the scheduler thread
        self._rows: Rows | None = None
        self._prefill: Prefill | None = None
        self._lane: Seq | None = None
        self._active = 0  # rows + prefilling members + lane, after the last step
        self._kv_bytes = 0
        self.prefill_tokens = 0  # prompt tokens prefilled in groups so far (a shared prompt counts once)

    # ---- the API ----------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Submitted sequences waiting for a row."""
        with self._cv:
            return len(self._waiting)

    @property
    def active(self) -> int:
        """Sequences holding a row (decoding, prefilling or running alone), as of the last step."""
        return self._active

    @property
    def kv_bytes(self) -> int:
        """KV cache bytes held by the batch, as of the last step."""
        return self._kv_bytes

    def kv_reserve(self, prompt_tokens: int, max_new_tokens: int) -> int:
        """Bytes one sequence's cache may grow to: what ``kv_budget`` must at least hold to run it."""
        return (prompt_tokens + max_new_tokens) * self.kv_bytes_per_token

    def submit(
        self,
        prompt: ChatPrompt | str | list[dict],
        params: SamplingParams | None = None,
        *,
        mode: str = "direct",
        decoder: Decoder | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta | Done]:
        """Queue a request; -> its stream of ``Delta``s, then one ``Done`` (as ``Engine.generate``). Raises
        ``ValueError`` at once for a prompt over the context or one that alone exceeds ``kv_budget``.
        ``decoder``: used while the request runs alone (default: the engine's). ``cancel``: set it to stop the
        request within a step; closing the stream early does the same."""
        return self._stream(self._submit(prompt, params, mode, decoder, cancel))

    def submit_many(
        self,
        prompts: Sequence[ChatPrompt | str | list[dict]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        mode: str = "direct",
        decoder: Decoder | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Iterator[Delta | Done]]:
        """Queue ``prompts`` at once, in order; -> one stream each (as ``submit``). ``params``: one for all or one
        per prompt (K samples of a prompt: repeat it with K seeds; the repeats share one prefill). Every prompt is
        checked before any is queued. ``cancel`` (shared by all): set it to stop every one of them; a stream that
        is never iterated otherwise runs to its end."""
        plist = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(plist)} SamplingParams; pass one, or one per prompt")
        seqs = [self._seq(p, sp, mode, decoder, None) for p, sp in zip(prompts, plist)]  # all checked first
        for s in seqs:  # each keeps its own event too: one stream closing must not stop the others
            s.group = cancel
        self._enqueue(seqs)
        return [self._stream(s) for s in seqs]

    def complete_many(
        self,
        prompts: Sequence[ChatPrompt | str | list[dict]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        mode: str = "direct",
        decoder: Decoder | None = None,
    ) -> list[Done]:
        """Run ``prompts`` together; -> their ``Done``s in order (``submit_many`` to the end)."""
        cancel = threading.Event()
        streams = self.submit_many(prompts, params, mode=mode, decoder=decoder, cancel=cancel)
        try:
            return [last_event(s) for s in streams]
        finally:  # an error half-way: stop the rest (a no-op once all are done)
            cancel.set()

    def close(self) -> None:
        """Cancel everything and stop the scheduler."""
        with self._cv:
            self._closed = True
            for s in [*self._waiting, *self._in_flight()]:
                s.req.cancel.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)

    # ---- submission -------------------------------------------------------------------------------------------

    def _submit(self, prompt, params, mode, decoder, cancel) -> Seq:
        seq = self._seq(prompt, params, mode, decoder, cancel)
        self._enqueue([seq])
        return seq

    def _seq(self, prompt, params, mode, decoder, cancel) -> Seq:
        req = self.engine.request(prompt, params, mode=mode, decoder="vanilla", cancel=cancel)
        need = self.kv_reserve(len(req.prompt.input_ids), req.budget)
        if self.kv_budget is not None and need > self.kv_budget:
            raise ValueError(
                f"the request needs up to {need / 2**20:.1f} MiB of KV cache ({len(req.prompt.input_ids)} prompt "
                f"tokens + {req.budget} new), over the budget of {self.kv_budget / 2**20:.1f} MiB; lower "
                "max_new_tokens, shorten the prompt or raise the KV budget"
            )
        gen = req.params.generator(self.model.device)
        return Seq(req, decoder or self.engine.decoder, gen, time.perf_counter(), list(req.prompt.input_ids))

    def _enqueue(self, seqs: list[Seq]) -> None:
        """Queue ``seqs`` at once (so the scheduler sees them together) and make sure the scheduler runs."""
        with self._cv:
            if self._closed:
                raise RuntimeError("this BatchEngine is closed")
            self._waiting.extend(seqs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tpro-batch", daemon=True)
                self._thread.start()
                _LIVE.add(self)

    @staticmethod
    def _stream(seq: Seq) -> Iterator[Delta | Done]:
        try:
            while True:
                ev = seq.events.get()
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
                if isinstance(ev, Done):
                    return
        finally:  # the consumer left early: free the row (a no-op after Done)
            seq.req.cancel.set()

    # ---- the scheduler ----------------------------------------------------------------------------------------

    def _in_flight(self) -> list[Seq]:
        rows, prefill, lane = self._rows, self._prefill, self._lane  # one read each: ``close`` calls this too
        return [*(rows.seqs if rows else []), *(prefill.members if prefill else []), *([lane] if lane else [])]

    def _run(self) -> None:
        while True:
            with self._cv:
                if not (self._waiting or self._rows or self._prefill or self._lane):
                    self._thread, self._active, self._kv_bytes = None, 0, 0
                    return
            with self.engine.lock, torch.inference_mode():
                try:
                    self._step()
                except Exception as e:  # noqa: BLE001 - handed to every stream, which raises it; the engine goes on
                    with self._cv:
                        failed = [*self._in_flight(), *self._waiting]
                        self._waiting.clear()
                    for s in failed:
                        s.events.put(e)
                    self._rows = self._prefill = self._lane = None
            self._account()

    def _step(self) -> None:
        self._drop_cancelled()
        self._schedule()
        if self._lane is not None:
            self._lane_step()
            return
        if self._prefill is not None:
            self._prefill_step()
        if self._rows is not None:
            self._decode_step()

    def _account(self) -> None:
        per, kv = self.kv_bytes_per_token, 0
        if self._rows is not None:
            kv += len(self._rows.seqs) * self._rows.width * per
        if self._prefill is not None:
            kv += self._prefill.ids.shape[0] * self._prefill.done * per
        if self._lane is not None:
            kv += (len(self._lane.context) + len(self._lane.req.out_ids)) * per
        self._kv_bytes = kv
        self._active = (
            (len(self._rows.seqs) if self._rows else 0)
            + (len(self._prefill.members) if self._prefill else 0)
            + (self._lane is not None)
        )

    def _finish(self, seq: Seq) -> None:
        for ev in seq.req.close():
            seq.events.put(ev)

    def _drop_cancelled(self) -> None:
        with self._cv:
            gone = [s for s in self._waiting if s.cancelled()]
            for s in gone:
                self._waiting.remove(s)
        for s in gone:
            s.req.tel.queue_s = time.perf_counter() - s.submitted
            self._finish(s)
        if self._lane is not None and self._lane.cancelled():
            if self._lane.steps is not None:
                self._lane.steps.close()
            self._finish(self._lane)
            self._lane = None
        if self._prefill is not None:
            pf = self._prefill
            keep = [not s.cancelled() for s in pf.members]
            for s, k in zip(pf.members, keep):
                if not k:
                    self._finish(s)
            pf.members = [s for s, k in zip(pf.members, keep) if k]
            pf.row_of = [r for r, k in zip(pf.row_of, keep) if k]
            if not pf.members:
                self._prefill = None
        if self._rows is not None:
            keep = [not s.cancelled() for s in self._rows.seqs]
            if not all(keep):
                for s, k in zip(self._rows.seqs, keep):
                    if not k:
                        self._finish(s)
                self._end_rows(keep)

    def _end_rows(self, keep: list[bool]) -> None:
        if any(keep):
            self._rows.keep(keep)
        else:
            self._rows = None

    def _schedule(self) -> None:
        with self._cv:
            if self._lane is not None:
                if self.max_batch == 1 or not self._waiting:
                    return
                self._leave_lane()  # someone else arrived: the lone speculating sequence joins the batch
            elif self._rows is None and self._prefill is None and self._waiting:
                head = self._waiting[0]
                alone = len(self._waiting) == 1 and SPECULATE_ALONE and head.decoder.name != "vanilla"
                if self.max_batch == 1 or alone:
                    self._lane = self._waiting.popleft()
                    return
            if self._prefill is None and self._waiting:
                self._prefill = self._group(self._waiting)

    def _leave_lane(self) -> None:
        s, self._lane = self._lane, None
        if s.steps is not None:
            s.steps.close()
            s.steps = None
        s.req.tel.decoder += "+vanilla"
        if s.req.out_ids:  # the decoder's tokens stay; the last one is fed by the first batched step
            s.context = list(s.req.prompt.input_ids) + s.req.out_ids[:-1]
            s.pending = s.req.out_ids[-1]
        self._waiting.appendleft(s)

    def _group(self, waiting: deque[Seq]) -> Prefill | None:
        """Take sequences off the front of the queue while rows, the KV budget and the padding allow."""
        running = self._rows.seqs if self._rows else []
        members: list[Seq] = []
        contexts: dict[tuple, int] = {}  # shared context -> row
        real = width = 0
        while waiting and len(running) + len(members) < self.max_batch:
            s = waiting[0]
            key = tuple(s.context) if s.pending is None else (id(s),)  # a sequence with a pending token has its own
            new_row = key not in contexts
            w = max(width, len(s.context))
            if members and new_row and (len(contexts) + 1) * w > PAD_WASTE * (real + len(s.context)):
                break
            every = running + members + [s]
            if self.kv_budget is not None and (
                peak_tokens([x.kv_tokens for x in every]) * self.kv_bytes_per_token > self.kv_budget
            ):
                break
            members.append(waiting.popleft())
            if new_row:
                contexts[key] = len(contexts)
                real, width = real + len(s.context), w
        if not members:
            return None
        self.prefill_tokens += real
        now = time.perf_counter()
        for s in members:
            if s.req.t0 is None:
                s.req.start()
                s.req.tel.queue_s = now - s.submitted
        rows: list[list[int]] = [[] for _ in contexts]
        row_of = []
        for s in members:
            r = contexts[tuple(s.context) if s.pending is None else (id(s),)]
            rows[r] = s.context
            row_of.append(r)
        dev = self.model.device
        pads = torch.tensor([width - len(c) for c in rows], device=dev)
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=dev)
        for r, c in enumerate(rows):
            ids[r, width - len(c) :] = torch.tensor(c, device=dev)
        return Prefill(members, row_of, ids, pads, DynamicCache(config=self.model.config))

    def _prefill_step(self) -> None:
        pf = self._prefill
        g, width = pf.ids.shape
        a = pf.done
        b = min(width, a + max(1, self.chunk_tokens // g))
        last = b == width
        pos = (torch.arange(a, b, device=pf.ids.device)[None] - pf.pads[:, None]).clamp(min=0)  # [G, C]
        t0 = time.perf_counter()
        out = self.model(
            input_ids=pf.ids[:, a:b],
            attention_mask=prefill_mask(pf.pads, a, b, self.model.dtype),
            position_ids=pos,
            cache=pf.cache,
            use_cache=True,
            # the last position's logits on the last chunk only; no lm_head work before (151k-wide rows)
            logits_to_keep=1 if last else torch.zeros(0, dtype=torch.long, device=pf.ids.device),
        )
        pf.done = b
        dt = time.perf_counter() - t0
        for s in pf.members:
            s.prefill_s += dt
        if not last:
            for s, r in zip(pf.members, pf.row_of):  # progress (no time: the first token's step carries it all)
                if s.pending is None:
                    s.req.push(Step([], prefilled=max(0, b - int(pf.pads[r]))))
            return
        self._prefill = None
        logits = out.logits[:, -1]  # [G, V]: left padding puts every row's last token in the last column
        row_of = torch.tensor(pf.row_of, device=pf.pads.device)
        select_rows(pf.cache, row_of)  # a shared prompt's row, copied for each of its members
        rows = Rows(list(pf.members), pf.pads[row_of], pf.cache, width)
        for s, r in zip(pf.members, pf.row_of):
            if s.pending is None:  # not a sequence coming from the lane, whose last token is already sampled
                s.pending = int(next_token(logits[r], s.req.params, s.generator))
                self._push(s, Step([s.pending], verify_s=s.prefill_s), len(pf.members))
        keep = [not s.req.ended for s in rows.seqs]
        for s in rows.seqs:
            if s.req.ended:
                self._finish(s)
        if any(keep):
            if not all(keep):
                rows.keep(keep)
            if self._rows is None:
                self._rows = rows
            else:
                self._rows.join(rows)

    def _decode_step(self) -> None:
        rows = self._rows
        dev = rows.starts.device
        tokens = torch.tensor([[s.pending] for s in rows.seqs], device=dev)  # [B, 1]
        t0 = time.perf_counter()
        logits = self.model(
            input_ids=tokens,
            attention_mask=decode_mask(rows.starts, rows.width, self.model.dtype),
            position_ids=(rows.width - rows.starts)[:, None],
            cache=rows.cache,
            use_cache=True,
        ).logits[:, -1]  # [B, V]
        rows.width += 1
        dt = time.perf_counter() - t0
        n = len(rows.seqs)
        for i, s in enumerate(rows.seqs):
            s.pending = int(next_token(logits[i], s.req.params, s.generator))
            self._push(s, Step([s.pending], verify_s=dt), n)
        keep = [not s.req.ended for s in rows.seqs]
        for s in rows.seqs:
            if s.req.ended:
                self._finish(s)
        if not all(keep):
            self._end_rows(keep)
        if self.on_step is not None:
            self._account()
            self.on_step(n, self._kv_bytes)

    def _lane_step(self) -> None:
        s = self._lane
        if s.steps is None:
            s.req.start()
            s.req.tel.queue_s = s.req.t0 - s.submitted
            s.req.tel.decoder = s.decoder.name
            ids = torch.tensor([s.context], device=self.model.device)
            s.steps = s.decoder.decode(self.model, ids, s.req.params, s.generator)
        step = next(s.steps)  # a token-less step is one chunk of a long prompt: the queue is seen between chunks
        self._push(s, step, 1)
        if s.req.ended:
            s.steps.close()
            self._finish(s)
            self._lane = None
        if self.on_step is not None and step.tokens:
            self._account()
            self.on_step(1, self._kv_bytes)

    @staticmethod
    def _push(seq: Seq, step: Step, batch: int) -> None:
        if (delta := seq.req.push(step, batch)) is not None:
            seq.events.put(delta)


def last_event(events: Iterator[Delta | Done]) -> Done:
    """Drain a request's stream; -> its ``Done``."""
    done = None
    for ev in events:
        done = ev
    assert isinstance(done, Done)
    return done
