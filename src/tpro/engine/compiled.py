"""Plain decoding with the one-token step compiled by ``torch.compile`` over a ``StaticCache``.

On a CPU a decode step of a small model is mostly not matrix work: of a ~41 ms int4 step of the embedded model on
2 cores, the linear layers take ~23 ms and the ~1,200 small ops between them (norms, rotary, residuals, cache
updates) and Python dispatch the rest (docs/benchmarks.md, issue 17). Inductor fuses those ops into a few
generated C++ loops; measured there, the step drops to ~29 ms with the same tokens. This is transformers'
documented compiled-decoding setup (a ``StaticCache`` so every step has the same shapes, ``torch.compile`` of the
forward); what is ours is only the engine glue: the prompt is prefilled eagerly in chunks (its shapes vary), then
each step calls the compiled forward with explicit positions.

Shapes: one compiled graph per cache length. The length is the prompt plus the token budget rounded up to a power
of two (at least ``smallest``), so requests of similar sizes share one graph (and its cache tensors, reset per
request) and a longer request compiles once more (tens of seconds on a CPU, then cached on disk by inductor).
Attention reads the whole static cache, masked, so the slack costs: a 57-token prompt with 128 new tokens decoded
at 34-37 tokens/s over a 256-slot cache and at 30 over 1024 slots (eager: 25-26; int4, 2 threads, AMX machine).
If compiling fails (no C++ compiler for inductor, an op dynamo cannot trace, such as w8a8's fbgemm call), the
decoder says so once and runs the same steps eagerly."""

from __future__ import annotations

import logging
import time

import torch
from transformers import StaticCache

from tpro.engine.decoder import PREFILL_CHUNK, Step, VanillaDecoder, prefill
from tpro.engine.sampling import next_token
from tpro.models.attention import use_decode_attention
from tpro.models.rope import context_length

log = logging.getLogger(__name__)


def cache_length(prompt_tokens: int, max_new_tokens: int, smallest: int, limit: int | None) -> int:
    """Prompt + budget (+1: the last token's own forward) rounded up to a power of two, at least ``smallest``, at
    most ``limit`` (the model's context) but never less than what the request needs."""
    need = prompt_tokens + max_new_tokens + 1
    length = max(smallest, 1 << (need - 1).bit_length())
    return max(need, min(length, limit)) if limit else length


def allow_graphs(n: int = 64) -> None:
    """Let dynamo keep ``n`` graphs per code object. Every compiled step here is one closure's code compiled once
    per (model, cache length[, tree bucket]); past dynamo's default of 8 it stops compiling that code and runs it
    eagerly (measured: the 9th graph of a test session fell back), which silently undoes the whole point."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, n)


class CompiledDecoder(VanillaDecoder):
    """``VanillaDecoder``'s tokens (the same model, greedy token-identical in fp32; tested) with compiled steps.
    ``smallest``: the shortest cache (fewer graphs for short requests; see the module docstring for the cost)."""

    name = "vanilla-compiled"

    def __init__(self, chunk: int = PREFILL_CHUNK, smallest: int = 256):
        super().__init__(chunk)
        if smallest < 1:
            raise ValueError(f"smallest must be >= 1, got {smallest}")
        self.smallest = smallest
        allow_graphs()
        self._graphs: dict[tuple[int, int], tuple[StaticCache, object]] = {}  # (id(model), length) -> cache, step
        self.eager = False  # compiling failed once: plain eager steps from then on
        self.compile_s: dict[int, float] = {}  # length -> seconds the first (compiling) step took

    def _graph(self, model, length: int):
        key = (id(model), length)
        if key not in self._graphs:
            use_decode_attention(model)  # SDPA outside compiled graphs, fused matmul attention inside
            cache = StaticCache(config=model.config, max_cache_len=length)

            def step(tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # tok [1, 1], pos [1] -> logits [1, V]
                out = model(input_ids=tok, position_ids=pos[None], cache_position=pos, cache=cache, use_cache=True)
                return out.logits[:, -1]

            # fullgraph: one graph for the whole step or an error (then eager steps). A graph break would leave
            # dynamo compiling the pieces per layer, guarded on each layer's index: past its recompile limit (8
            # per code object, shared by every model in the process) it silently ran slower than eager (measured:
            # int4 15 tok/s compiled vs 23 eager once a w8a8 model, whose fbgemm op breaks the graph, was compiled)
            self._graphs[key] = (cache, torch.compile(step, dynamic=False, fullgraph=True))
        cache, compiled = self._graphs[key]
        cache.reset()
        return cache, compiled

    @torch.inference_mode()
    def warm_up(self, model, lengths) -> dict[int, float]:
        """Compile the graphs for these cache lengths now (a server before its first request): one step on a
        dummy token each, the cache reset after. -> ``compile_s``."""
        for length in lengths:
            cache, compiled = self._graph(model, length)
            if length in self.compile_s or self.eager:
                continue
            t0 = time.perf_counter()
            zero = torch.zeros(1, 1, dtype=torch.long, device=model.device)
            # an eager one-token "prefill" first, as in a request: the cache's tensors are created lazily at their
            # first update, and a graph traced before that would be guarded on the uninitialised state (measured:
            # the first real request then compiled again, 23 s, inside its timed decode)
            model(input_ids=zero, cache=cache, use_cache=True)
            try:
                compiled(zero, torch.ones(1, dtype=torch.long, device=model.device))
            except Exception as e:  # noqa: BLE001 -- as in decode: say so once, decode eagerly
                log.warning("torch.compile failed (%s: %s); decoding eagerly", type(e).__name__, e)
                self.eager = True
            self.compile_s[length] = round(time.perf_counter() - t0, 1)
            cache.reset()
        return self.compile_s

    def _eager_step(self, model, cache, tok, pos) -> torch.Tensor:
        out = model(input_ids=tok, position_ids=pos[None], cache_position=pos, cache=cache, use_cache=True)
        return out.logits[:, -1]

    @torch.inference_mode()
    def decode(self, model, input_ids, params, generator):
        S = input_ids.shape[1]
        length = cache_length(S, params.max_new_tokens, self.smallest, context_length(model.config))
        cache, compiled = self._graph(model, length)
        logits, last_s = yield from prefill(model, input_ids, cache, self.chunk)  # [1, V]
        t0 = time.perf_counter()
        tok = next_token(logits[0], params, generator).view(1, 1)  # [1, 1]
        yield Step([int(tok)], verify_s=last_s + time.perf_counter() - t0)
        pos = S
        while True:
            if pos >= length:  # the engine stops at the budget first; a caller that does not gets a clear error
                raise RuntimeError(f"{self.name}: the static cache holds {length} tokens; raise max_new_tokens")
            t0 = time.perf_counter()
            p = torch.tensor([pos], device=input_ids.device)
            if self.eager:
                logits = self._eager_step(model, cache, tok, p)
            else:
                first = length not in self.compile_s
                try:
                    logits = compiled(tok, p)
                except Exception as e:  # noqa: BLE001 -- any compile failure: say so once, keep decoding eagerly
                    log.warning("torch.compile failed (%s: %s); decoding eagerly from here", type(e).__name__, e)
                    self.eager = True
                    logits = self._eager_step(model, cache, tok, p)
                if first:
                    self.compile_s[length] = round(time.perf_counter() - t0, 1)
            tok = next_token(logits[0], params, generator).view(1, 1)
            pos += 1
            yield Step([int(tok)], verify_s=time.perf_counter() - t0)
