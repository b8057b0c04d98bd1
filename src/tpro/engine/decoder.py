"""The decoding-strategy interface, the chunked prompt prefill every decoder shares, and the plain autoregressive
strategy.

A ``Decoder`` turns (model, prompt ids, sampling params) into a stream of ``Step``s. A step holds one or more new
tokens, or none: a token-less step reports prefill progress (``prefilled`` prompt tokens in the cache) between the
chunks of a long prompt, so the caller can show progress, cancel, or schedule other work mid-prompt. The engine
owns everything else (detokenising, stop strings, token budget, EOS, telemetry), so a speculative decoder only has
to implement ``decode``. It does not know about tokenizers or text.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from transformers import DynamicCache

from tpro.engine.sampling import SamplingParams, next_token

# Prompt tokens per prefill forward. A forward over C new tokens after P cached ones holds activations of
# [C, intermediate] (the MLP: 4864 wide for the embedded model) and attention scores of [heads, C, P + C]; the
# chunk bounds them, and the lm_head runs on the last position only. Measured with ``bench/long_prefill.py
# --lengths 2048 --chunks 128,256,512,1024,0`` (embedded model, fp32, 2 threads, AMD EPYC without bf16 units,
# load ~1.8 from other work, 2026-12-03): 110 / 112 / 122 / 120 / 113 tokens/s for chunks of 128 / 256 / 512 /
# 1024 / the whole prompt (an earlier run: 109 / 122 / 127 / 126 / 113), with 38 / 52 / 94 / 155 / 336 MiB of
# peak RSS beyond the 48 MiB KV cache. 512 was the fastest in both runs, at 1/3.5 of a one-forward prefill's
# working memory (which grows with the prompt; the chunk's does not, but for its [heads, C, P + C] scores).
PREFILL_CHUNK = 512


@dataclass
class Step:
    tokens: list[int]  # new tokens, in order; empty for a prefill-progress step
    proposed: int = 0  # draft tokens proposed for this step (speculative decoders)
    accepted: int = 0  # of which the target accepted
    draft_s: float = 0.0  # seconds spent drafting
    verify_s: float = 0.0  # seconds spent in target forwards (a progress step: its prefill chunk's)
    prefilled: int = 0  # a progress step: prompt tokens in the cache after it (0 on token steps)


class Decoder(Protocol):
    name: str

    def decode(
        self,
        model: Any,
        input_ids: torch.Tensor,  # [1, S] prompt
        params: SamplingParams,
        generator: torch.Generator | None,
    ) -> Iterator[Step]:
        """Yield steps until the caller stops iterating (EOS, stop string or budget are the caller's call):
        token-less progress steps while a long prompt is prefilled, then steps with tokens."""
        ...


def kv_bytes_per_token(model) -> int:
    """Bytes of K and V one token occupies over all layers, from the model's config and dtype."""
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * model.dtype.itemsize


def prefill(
    model,
    input_ids: torch.Tensor,  # [1, S]
    cache: DynamicCache,
    chunk: int = PREFILL_CHUNK,
    keep: Literal["logits", "hidden"] = "logits",
) -> Generator[Step, None, tuple[torch.Tensor, float]]:
    """Feed the prompt into ``cache`` (empty or not) ``chunk`` tokens per forward; yield a progress ``Step`` (no
    tokens, ``prefilled``, the chunk's ``verify_s``) after every chunk but the last; return (out, the last chunk's
    seconds): ``keep="logits"``: the last position's logits [1, V], the lm_head run on that row only (a [S, V]
    matrix is 151k floats a token); ``keep="hidden"``: the final hidden states of every prompt position [S, H]
    (EAGLE's head reads them), from the base model (``model.get_decoder()``), no lm_head at all.

    Use it as ``out, last_s = yield from prefill(...)``. With no ``attention_mask`` a chunk of C tokens after P
    cached ones gets positions P..P+C-1 and a causal mask offset by P (transformers derives both from the
    cache's length), so the result equals one forward over the whole prompt up to float rounding."""
    S = input_ids.shape[1]
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    base = model.get_decoder() if keep == "hidden" else None
    none = torch.zeros(0, dtype=torch.long, device=input_ids.device)  # logits_to_keep: no lm_head rows
    hidden: list[torch.Tensor] = []
    out = None
    for a in range(0, S, chunk):
        b = min(S, a + chunk)
        t0 = time.perf_counter()
        ids = input_ids[:, a:b]  # [1, C]
        if base is not None:
            hidden.append(base(input_ids=ids, cache=cache, use_cache=True).last_hidden_state[0])  # [C, H]
        else:
            out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1 if b == S else none).logits
        dt = time.perf_counter() - t0
        if b < S:
            yield Step([], verify_s=dt, prefilled=b)
    if base is not None:
        return torch.cat(hidden), dt  # [S, H]
    return out[:, -1], dt  # [1, V]


class VanillaDecoder:
    """One target forward per token over a ``DynamicCache``: the baseline every other decoder must match.
    ``chunk``: prompt tokens per prefill forward."""

    name = "vanilla"
    chunk = PREFILL_CHUNK  # a class default too: subclasses with their own ``__init__`` need not call ours

    def __init__(self, chunk: int = PREFILL_CHUNK):
        self.chunk = chunk

    @torch.inference_mode()
    def decode(self, model, input_ids, params, generator):
        cache = DynamicCache(config=model.config)
        logits, last_s = yield from prefill(model, input_ids, cache, self.chunk)  # [1, V]
        t0 = time.perf_counter()
        tok = next_token(logits[0], params, generator)  # []
        yield Step([int(tok)], verify_s=last_s + time.perf_counter() - t0)
        while True:
            t0 = time.perf_counter()
            logits = model(input_ids=tok.view(1, 1), cache=cache, use_cache=True).logits  # [1, 1, V]
            tok = next_token(logits[0, -1], params, generator)
            yield Step([int(tok)], verify_s=time.perf_counter() - t0)
