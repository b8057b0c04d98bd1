"""The decoding-strategy interface and the plain autoregressive strategy.

A ``Decoder`` turns (model, prompt ids, sampling params) into a stream of ``Step``s, each holding one or
more new tokens. The engine owns everything else (detokenising, stop strings, token budget, EOS, telemetry),
so a speculative decoder only has to implement ``decode``. It does not know about tokenizers or text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import DynamicCache

from tpro.engine.sampling import SamplingParams, next_token


@dataclass
class Step:
    tokens: list[int]  # new tokens, in order (>= 1)
    proposed: int = 0  # draft tokens proposed for this step (speculative decoders)
    accepted: int = 0  # of which the target accepted
    draft_s: float = 0.0  # seconds spent drafting
    verify_s: float = 0.0  # seconds spent in target forwards


class Decoder(Protocol):
    name: str

    def decode(
        self,
        model: Any,
        input_ids: torch.Tensor,  # [1, S] prompt
        params: SamplingParams,
        generator: torch.Generator | None,
    ) -> Iterator[Step]:
        """Yield steps until the caller stops iterating (EOS, stop string or budget are the caller's call)."""
        ...


class VanillaDecoder:
    """One target forward per token over a ``DynamicCache``: the baseline every other decoder must match."""

    name = "vanilla"

    @torch.inference_mode()
    def decode(self, model, input_ids, params, generator):
        cache = DynamicCache(config=model.config)
        t0 = time.perf_counter()
        # logits_to_keep=1: the prefill only needs the last position's logits (151k-wide rows are costly)
        logits = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1).logits  # [1, 1, V]
        tok = next_token(logits[0, -1], params, generator)  # []
        yield Step([int(tok)], verify_s=time.perf_counter() - t0)
        while True:
            t0 = time.perf_counter()
            logits = model(input_ids=tok.view(1, 1), cache=cache, use_cache=True).logits  # [1, 1, V]
            tok = next_token(logits[0, -1], params, generator)
            yield Step([int(tok)], verify_s=time.perf_counter() - t0)
