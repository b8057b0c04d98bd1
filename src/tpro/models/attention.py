"""Attention for compiled decoding steps on a CPU: SDPA everywhere, except inside a ``torch.compile`` graph over
a few query rows (a decode step, a draft tree's verify), where it is two matmuls and a softmax that inductor fuses.

Why: in a compiled one-token step of the embedded model over a 256-slot static cache, PyTorch's CPU flash-attention
kernel (what SDPA runs when compiled) took ~325 us a layer, 7.3 of a 31 ms int4 step (2 threads, AVX-512 EPYC,
``torch.profiler``, 2026-12-04); transformers' eager attention in the same graph made the step 21.0 ms instead of
24.8. Eager attention everywhere would cost the prefill (a [heads, C, P + C] score matrix per chunk, materialised),
so this function keeps SDPA for everything but compiled graphs over at most ``SMALL_QUERY`` rows. It registers under
transformers' public ``AttentionInterface`` / ``AttentionMaskInterface`` (with SDPA's boolean masks), so models
stay unforked; ``use_decode_attention(model)`` switches a model that runs SDPA to it (identical outside compiled
graphs, equal up to float rounding inside: tests compare tokens in fp32).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "tpro_decode"
SMALL_QUERY = 64  # query rows up to which a compiled graph takes the matmul path (trees are <= 32 nodes)


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, Hq, q, D]
    key: torch.Tensor,  # [B, Hkv, K, D]
    value: torch.Tensor,  # [B, Hkv, K, D]
    attention_mask: torch.Tensor | None,  # None | bool [B, 1, q, K] (True = attend) | additive float [B, 1, q, K]
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    B, Hq, q, D = query.shape
    Hkv, K = key.shape[1], key.shape[2]
    if not torch.compiler.is_compiling() or q > SMALL_QUERY or attention_mask is None or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    g = Hq // Hkv  # query heads per KV head (GQA): grouped by a view, no repeat of K and V
    scale = scaling if scaling is not None else D**-0.5
    scores = query.reshape(B, Hkv, g * q, D) @ key.transpose(-1, -2)  # [B, Hkv, g*q, K]
    scores = scores.view(B, Hkv, g, q, K).float() * scale
    mask = attention_mask[:, :, None]  # [B, 1, 1, q, K]
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(B, Hkv, g * q, K)
    out = (probs @ value).view(B, Hq, q, D)  # [B, Hq, q, D]
    return out.transpose(1, 2).contiguous(), None  # [B, q, Hq, D], as SDPA's wrapper returns


AttentionInterface.register(NAME, decode_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_decode_attention(model) -> None:
    """Switch a model running SDPA to ``decode_attention`` (others, e.g. eager or flash, are left alone)."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(NAME)
