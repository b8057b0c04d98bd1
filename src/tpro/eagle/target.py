"""The target model's side of EAGLE decoding: its KV cache, the prompt prefill, the tree verification forward and
the compaction to the accepted path. Two implementations with one interface:

- ``EagerTarget``: a ``DynamicCache`` and eager forwards (any tree size; the cache grows and is compacted by
  index_select).
- ``CompiledTarget``: a ``StaticCache`` and the verify forward through ``torch.compile`` (fullgraph), one graph per
  tree-size bucket. On a 2-core CPU a decode step of the embedded model is mostly the ~1,200 small ops between
  its matmuls, which inductor fuses (``tpro.engine.compiled``, issue 17); a verify forward is the same forward
  over N rows. Static shapes need a fixed N, so a tree of N nodes runs in the smallest bucket >= N, padded with
  nodes that see only the prefix and themselves and whose outputs are dropped; the decoder's planner knows the
  buckets (``cost_ms`` is a step function of N) and so fills a bucket rather than pad it.

The verify forward: nodes [N] (node 0 = the root, the last committed token) at positions n + depth, written to
cache slots n..n+N-1, each seeing the committed prefix, its ancestors and itself (a 4-D additive mask, one of
transformers' public inputs). ``commit(path)`` keeps slots n + path (ascending, path[0] = 0) as n..n+len-1.
One request at a time per target (the decoder's state lives here between ``begin`` and the last ``commit``).
"""

from __future__ import annotations

import logging
import time

import torch
from transformers import DynamicCache, StaticCache

from tpro.eagle import tree
from tpro.engine.compiled import allow_graphs, cache_length
from tpro.engine.decoder import prefill
from tpro.models.attention import use_decode_attention
from tpro.models.rope import context_length

log = logging.getLogger(__name__)


class EagerTarget:
    """Eager forwards over a ``DynamicCache`` (the reference: any tree size, no compile). Each ``begin`` returns a
    session of its own, so requests may interleave."""

    name = "eager"
    buckets: tuple[int, ...] | None = None  # any size costs what it costs (no padding)

    def begin(self, model, input_ids, max_new_tokens: int, chunk: int):
        """Prefill the prompt (yields progress steps); -> (every prompt position's final hidden state [S, H], the
        request's session: ``verify``, ``commit``, ``room``, ``n``, ``last_s``)."""
        session = EagerTarget()
        session.model, session.base, session.lm_head = model, model.get_decoder(), model.get_output_embeddings()
        session.cache = DynamicCache(config=model.config)
        hid, session.last_s = yield from prefill(model, input_ids, session.cache, chunk, keep="hidden")
        session.n = input_ids.shape[1]  # committed tokens in the cache (the root is committed but not in it)
        return hid, session

    def room(self) -> int:
        """The most tree nodes (root included) the next verify may hold."""
        return 1 << 30

    def verify(self, tokens, depth, anc):
        """tokens, depth [N], anc [N, N] -> (hidden [N, H], logits [N, V] float32)."""
        mask = tree.tree_attention_mask(anc, self.n, self.model.dtype)  # [1, 1, N, n + N]
        out = self.base(
            input_ids=tokens[None],
            attention_mask=mask,
            position_ids=(self.n + depth)[None],
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state[0]  # [N, H]
        return out, self.lm_head(out).float()

    def commit(self, path: torch.Tensor) -> None:
        """path [P] accepted node indices (ascending, path[0] = 0): keep the prefix and those nodes."""
        dev = path.device
        tree.keep_cache_positions(self.cache, torch.cat([torch.arange(self.n, device=dev), self.n + path]))
        self.n += path.numel()

    @torch.inference_mode()
    def measure(self, model, sizes=(1, 4, 8, 16, 32), prefix: int = 64, repeats: int = 3):
        """((N, ms), ...): this target's verify cost on this machine, now (``measure_verify_ms``)."""
        from tpro.eagle.decoder import measure_verify_ms

        return measure_verify_ms(model, sizes, prefix, repeats)


# tree sizes with a graph: an int4 forward over 1 / 2 / 4 / 8 / 16 rows took 21 / 25 / 34 / 60 / 98 ms compiled
# (embedded model, 2 threads, AVX-512 EPYC, 2026-12-04), so trees past 8 nodes never paid there
BUCKETS = (1, 2, 4, 8)


class CompiledTarget:
    """Static-cache verification through ``torch.compile``; tokens equal ``EagerTarget``'s (greedy, fp32; tested).

    ``buckets``: the tree sizes (root included) that get a graph, ascending, starting at 1 (the no-draft step);
    each graph costs one compile (tens of seconds on a 2-core CPU, then inductor's on-disk cache). ``smallest``:
    the shortest static cache (``tpro.engine.compiled.cache_length``). If compiling fails the target says so once
    and runs the same padded forwards eagerly."""

    name = "compiled"

    def __init__(self, buckets: tuple[int, ...] = BUCKETS, smallest: int = 256):
        if not buckets or buckets[0] != 1 or list(buckets) != sorted(set(buckets)):
            raise ValueError(f"buckets must be ascending, distinct and start at 1, got {buckets}")
        self.buckets, self.smallest = tuple(buckets), smallest
        allow_graphs()
        self._caches: dict[tuple[int, int], StaticCache] = {}  # (id(model), length) -> cache
        self._graphs: dict[tuple[int, int, int], object] = {}  # (id(model), length, bucket) -> compiled step
        self.compile_s: dict[tuple[int, int], float] = {}  # (length, bucket) -> seconds of its first call
        self.eager = False

    def _length(self, model, prompt_tokens: int, max_new_tokens: int) -> int:
        # the budget plus the largest tree: a step may verify a full bucket when one token of budget is left
        return cache_length(
            prompt_tokens, max_new_tokens + self.buckets[-1], self.smallest, context_length(model.config)
        )

    def _cache(self, model, length: int) -> StaticCache:
        key = (id(model), length)
        if key not in self._caches:
            self._caches[key] = StaticCache(config=model.config, max_cache_len=length)
        return self._caches[key]

    def _graph(self, model, length: int, bucket: int):
        key = (id(model), length, bucket)
        if key not in self._graphs:
            use_decode_attention(model)  # SDPA outside compiled graphs, fused matmul attention inside
            cache, base, lm_head = self._cache(model, length), model.get_decoder(), model.get_output_embeddings()

            def step(ids, pos, mask):  # ids, pos [1, B], mask [1, 1, B, L] -> hidden [B, H], logits [B, V]
                h = base(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
                h = h.last_hidden_state[0]
                return h, lm_head(h).float()

            # fullgraph, as in tpro.engine.compiled: a graph break would make dynamo recompile per layer and, past
            # its recompile limit, run slower than eager
            self._graphs[key] = torch.compile(step, dynamic=False, fullgraph=True), step
        return self._graphs[key]

    def begin(self, model, input_ids, max_new_tokens: int, chunk: int):
        """As ``EagerTarget.begin``; the session is the target itself: its static caches are shared by the
        requests of one size, so one request at a time (as ``tpro.engine.compiled.CompiledDecoder``)."""
        self.model = model
        S = input_ids.shape[1]
        self.length = self._length(model, S, max_new_tokens)
        self.cache = self._cache(model, self.length)
        self.cache.reset()
        hid, self.last_s = yield from prefill(model, input_ids, self.cache, chunk, keep="hidden")
        self.n = S
        return hid, self

    def room(self) -> int:
        """The largest bucket whose padded tree still fits the static cache after the committed tokens."""
        return max((b for b in self.buckets if self.n + b <= self.length), default=0)

    def bucket(self, n: int) -> int:
        for b in self.buckets:
            if b >= n:
                return b
        raise ValueError(f"a tree of {n} nodes is larger than the largest bucket ({self.buckets[-1]})")

    def _inputs(self, tokens, depth, anc):
        N, B, L, n, dev = tokens.shape[0], self.bucket(tokens.shape[0]), self.length, self.n, tokens.device
        if n + B > L:
            raise RuntimeError(f"compiled verify: {n} + {B} tokens exceed the static cache ({L}); raise max_new_tokens")
        ids = torch.zeros(1, B, dtype=torch.long, device=dev)
        ids[0, :N] = tokens
        pos = torch.full((1, B), n, dtype=torch.long, device=dev)
        pos[0, :N] += depth
        allowed = torch.eye(B, dtype=torch.bool, device=dev)  # padding nodes: the prefix and themselves
        allowed[:N, :N] = anc
        dtype = self.model.dtype
        mask = torch.full((B, L), torch.finfo(dtype).min, dtype=dtype, device=dev)
        mask[:, :n] = 0
        mask[:, n : n + B].masked_fill_(allowed, 0)
        return B, ids, pos, mask[None, None]

    def verify(self, tokens, depth, anc):
        N = tokens.shape[0]
        B, ids, pos, mask = self._inputs(tokens, depth, anc)
        compiled, eager = self._graph(self.model, self.length, B)
        if self.eager:
            h, logits = eager(ids, pos, mask)
        else:
            key = (self.length, B)
            t0 = time.perf_counter()
            try:
                h, logits = compiled(ids, pos, mask)
            except Exception as e:  # noqa: BLE001 -- any compile failure: say so once, verify eagerly from here
                log.warning("torch.compile failed (%s: %s); verifying eagerly from here", type(e).__name__, e)
                self.eager = True
                self._set_length(self.n)  # a failed trace may have run part of the forward
                h, logits = eager(ids, pos, mask)
            if key not in self.compile_s:
                self.compile_s[key] = round(time.perf_counter() - t0, 1)
        return h[:N], logits[:N]

    def _set_length(self, n: int) -> None:
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(n)

    def commit(self, path: torch.Tensor) -> None:
        n, P = self.n, path.numel()
        dst = torch.arange(n, n + P, device=path.device)
        for layer in self.cache.layers:  # in place: the compiled graphs hold these tensors
            layer.keys.index_copy_(2, dst, layer.keys.index_select(2, n + path))
            layer.values.index_copy_(2, dst, layer.values.index_select(2, n + path))
        self.n = n + P
        self._set_length(self.n)

    @torch.inference_mode()
    def warm_up(self, model, prompt_tokens: int, max_new_tokens: int) -> dict[tuple[int, int], float]:
        """Compile every bucket's graph for this request size now (a server before its first request, a benchmark
        before timing): a dummy prompt of ``prompt_tokens``, one verify per bucket. -> ``compile_s``."""
        dev = model.device
        ids = torch.zeros(1, prompt_tokens, dtype=torch.long, device=dev)
        steps = self.begin(model, ids, max_new_tokens, chunk=max(1, prompt_tokens))
        for _ in steps:  # one chunk: nothing is yielded
            pass
        for b in self.buckets:
            chain = torch.ones(b, b, dtype=torch.bool, device=dev).tril()
            self.verify(torch.zeros(b, dtype=torch.long, device=dev), torch.arange(b, device=dev), chain)
            self._set_length(self.n)
        self.cache.reset()
        return self.compile_s

    @torch.inference_mode()
    def measure(self, model, prefix: int = 64, repeats: int = 5, max_new_tokens: int = 128):
        """((B, ms), ...) per bucket: the compiled verify's cost on this machine, now (after ``warm_up`` for this
        request size, or it compiles first). The fastest of ``repeats`` calls: right after compiling, inductor's
        worker processes still share the cores for a while (measured: a 1-row median of 40 ms, then 21)."""
        dev = model.device
        g = torch.Generator().manual_seed(0)
        vocab = int(model.config.vocab_size)
        steps = self.begin(model, torch.randint(vocab, (1, prefix), generator=g).to(dev), max_new_tokens, prefix)
        for _ in steps:
            pass
        curve = []
        for b in self.buckets:
            chain = torch.ones(b, b, dtype=torch.bool, device=dev).tril()
            toks = torch.randint(vocab, (b,), generator=g).to(dev)
            times = []
            for _ in range(repeats + 1):  # the first may compile
                t0 = time.perf_counter()
                self.verify(toks, torch.arange(b, device=dev), chain)
                times.append(1000 * (time.perf_counter() - t0))
                self._set_length(self.n)
            curve.append((b, round(min(times[1:]), 2)))
        self.cache.reset()
        return tuple(curve)
