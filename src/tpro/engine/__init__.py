"""Generation engine: a KV-cache decode loop over any transformers causal LM, streaming text deltas and
per-request telemetry, with a pluggable decoding strategy (``Decoder``), one sequence at a time (``Engine``) or
many decoding together (``BatchEngine``, continuous batching). Knows chat prompts through ``tpro.models`` but
nothing about HTTP, evaluation or drafting.

Names are imported on first use (PEP 562), so ``tpro.engine.cli`` can show its ``--help`` without torch."""

import importlib

_WHERE = {
    "BatchEngine": "batch",
    "Decoder": "decoder",
    "Step": "decoder",
    "VanillaDecoder": "decoder",
    "Delta": "engine",
    "Done": "engine",
    "Engine": "engine",
    "Request": "engine",
    "SamplingParams": "sampling",
    "logits_to_probs": "sampling",
    "Telemetry": "telemetry",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'tpro.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tpro.engine.{_WHERE[name]}"), name)
