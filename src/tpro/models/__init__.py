"""Models layer: load a causal LM + tokenizer from a hub id, a local directory, a GGUF file or the
embedded default; chat prompts in T-pro's two modes (direct, reasoning); the reasoning/answer parser.

It knows nothing about decoding: that is ``tpro.engine``.
"""

from tpro.models.chat import ChatPrompt, build_prompt, supports_enable_thinking
from tpro.models.loading import LoadedModel, load_model, resolve_dtype
from tpro.models.reasoning import ReasoningStream, split_reasoning
from tpro.options import Mode

__all__ = [
    "ChatPrompt",
    "LoadedModel",
    "Mode",
    "ReasoningStream",
    "build_prompt",
    "load_model",
    "resolve_dtype",
    "split_reasoning",
    "supports_enable_thinking",
]
