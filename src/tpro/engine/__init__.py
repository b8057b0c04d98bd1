"""Generation engine: a KV-cache decode loop over any transformers causal LM, streaming text deltas and
per-request telemetry, with a pluggable decoding strategy (``Decoder``). Knows chat prompts through
``tpro.models`` but nothing about HTTP, evaluation or drafting."""

from tpro.engine.decoder import Decoder, Step, VanillaDecoder
from tpro.engine.engine import Delta, Done, Engine
from tpro.engine.sampling import SamplingParams, logits_to_probs
from tpro.engine.telemetry import Telemetry

__all__ = ["Decoder", "Delta", "Done", "Engine", "SamplingParams", "Step", "Telemetry", "VanillaDecoder", "logits_to_probs"]
