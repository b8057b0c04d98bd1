"""``tpro.models.attention.decode_attention``: inside a compiled graph, the matmul path equals SDPA (GQA, boolean
and additive masks, one row and a tree's rows); outside it is SDPA itself; a model switched to it keeps its logits."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from tpro.models.attention import NAME, decode_attention, use_decode_attention


class _Attn(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True
    training = False


@pytest.mark.parametrize("q", [1, 5])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_compiled_matmul_path_equals_sdpa(q, kind):
    g = torch.Generator().manual_seed(q)
    B, Hkv, K, D = 1, 2, 40, 16
    query = torch.randn(B, 3 * Hkv, q, D, generator=g)
    key, value = torch.randn(B, Hkv, K, D, generator=g), torch.randn(B, Hkv, K, D, generator=g)
    allowed = torch.rand(B, 1, q, K, generator=g) > 0.3
    allowed[..., 0] = True  # every row sees something
    mask = (
        allowed if kind == "bool" else torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    )
    module = _Attn()
    ref, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    calls = []

    def run(qq, kk, vv, mm):
        calls.append(torch.compiler.is_compiling())
        return decode_attention(module, qq, kk, vv, mm, scaling=0.25)[0]

    got = torch.compile(run, fullgraph=True, dynamic=False)(query, key, value, mask)
    assert calls == [True]  # traced: the matmul path
    assert got.shape == ref.shape == (B, q, 3 * Hkv, D)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    eager, _ = decode_attention(module, query, key, value, mask, scaling=0.25)  # not compiling: SDPA itself
    assert torch.equal(eager, ref)


def test_switching_a_model_keeps_its_logits(tiny_qwen3_dir):
    from tpro.models import load_model

    lm = load_model(str(tiny_qwen3_dir), dtype="float32", progress=False)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        ref = lm.model(input_ids=ids).logits
        use_decode_attention(lm.model)
        assert lm.model.config._attn_implementation == NAME
        torch.testing.assert_close(lm.model(input_ids=ids).logits, ref)
