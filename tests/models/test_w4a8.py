"""tpro.models.w4a8: the int4 x int8 VNNI kernel against its plain-PyTorch definition, and in whole tiny models."""

from __future__ import annotations

import pytest
import torch

from tpro.models import load_model, quant, w4a8
from tpro.models.quant import QuantizationError, RowDispatchLinear, minmax_int4, set_dense_above

needs_kernel = pytest.mark.skipif(not w4a8.available(), reason=f"w4a8 kernel: {w4a8.unavailable_reason()}")


def _codes(n=64, k=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    w[3] *= 20  # one channel far larger, as real layers have
    return minmax_int4(w, torch.bfloat16)


# ------------------------------------------------------------------------------------------- pure (any CPU)


def test_pack_puts_each_code_where_the_kernel_reads_it():
    q, scale, zero = _codes(n=80, k=64)  # 80 outputs: two super-tiles of 64, the second padded
    codes, sz, n = w4a8.pack(q, scale, zero)
    assert n == 80 and codes.shape == (2, 8, 64, 4) and codes.dtype == torch.uint8
    assert sz.shape == (2, 2, 4, 2, 16) and sz.dtype == torch.bfloat16
    for o, k in [(0, 0), (5, 3), (17, 4), (31, 63), (20, 39), (70, 12), (79, 63)]:  # output o, input k
        st, lane, block, j = o // 64, o % 64, k // 8, k % 8
        byte = int(codes[st, block, lane, j % 4])
        assert (byte & 0x0F if j < 4 else byte >> 4) == int(q[o, k])
        tile, g = lane // 16, k // 32
        assert sz[st, g, tile, 0, lane % 16] == scale[o, g].to(torch.bfloat16)
        assert sz[st, g, tile, 1, lane % 16] == (zero[o, g].float() - 8 * scale[o, g].float()).bfloat16()
    assert not codes[1, :, 16:].any() and not sz[1, :, 1:].any()  # padding: zero codes and grid


def test_reference_is_the_dequantised_matmul_up_to_int8_activations():
    q, scale, zero = _codes()
    x = torch.randn(5, 96)
    exact = x @ quant.dequantize_int4(q, scale, zero).t()
    ref = w4a8.w4a8_reference(x, q, scale, zero)
    rel = ((ref - exact).norm() / exact.norm()).item()
    assert rel < 0.01, rel  # 8-bit activations per group of 32: ~0.3% here; a wrong zero term gives >50%


# ------------------------------------------------------------------------------------------------- kernel


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 7, 8, 9, 21])
def test_kernel_computes_the_reference(rows, dtype):
    q, scale, zero = _codes(n=80, k=128, seed=rows)
    bias = torch.randn(80)
    lin = w4a8.W4A8Linear(q, scale, zero, bias)
    x = torch.randn(rows, 128).to(dtype)
    got = lin(x)
    assert got.dtype == dtype and got.shape == (rows, 80)
    want = w4a8.w4a8_reference(x, q, scale, zero) + bias
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: the output's rounding
    torch.testing.assert_close(got.float(), want, atol=tol * want.abs().max().item(), rtol=tol)


@needs_kernel
def test_a_row_is_the_same_alone_and_in_any_batch():
    q, scale, zero = _codes(n=48, k=96)
    lin = w4a8.W4A8Linear(q, scale, zero, None)
    x = torch.randn(13, 96, dtype=torch.bfloat16)  # 13 rows: a block of 8, then 5
    full = lin(x)
    for i in range(13):
        assert torch.equal(lin(x[i : i + 1]), full[i : i + 1]), i
    assert torch.equal(lin(x[4:11]), full[4:11])


@needs_kernel
def test_leading_dims_zero_rows_and_compile():
    q, scale, zero = _codes(n=32, k=64)
    lin = w4a8.W4A8Linear(q, scale, zero, torch.randn(32))
    x = torch.randn(2, 3, 64)
    assert lin(x).shape == (2, 3, 32)
    assert torch.equal(lin(x)[1], lin(x[1]))
    assert lin(torch.randn(0, 64)).shape == (0, 32)
    compiled = torch.compile(lambda t: lin(t) * 2, fullgraph=True)
    assert torch.equal(compiled(x), lin(x) * 2)


@needs_kernel
def test_bad_inputs_are_refused_by_the_op():
    q, scale, zero = _codes(n=32, k=64)
    codes, sz, n = w4a8.pack(q, scale, zero)
    with pytest.raises(RuntimeError, match="K mismatch"):
        torch.ops.tpro.w4a8_mm(torch.randn(1, 32), codes, sz, n)
    with pytest.raises(RuntimeError, match="bfloat16"):
        torch.ops.tpro.w4a8_mm(torch.randn(1, 64), codes, sz.float(), n)
    with pytest.raises(RuntimeError, match="last super-tile"):
        torch.ops.tpro.w4a8_mm(torch.randn(1, 64), codes, sz, 65)


# ------------------------------------------------------------------------------------------ whole models


@needs_kernel
def test_tiny_model_in_w4a8_is_its_int4_grid_up_to_activation_rounding(tiny_qwen2_dir, tiny_qwen2):
    ids = torch.tensor([[5, 17, 42, 99, 123, 7, 64, 301, 11, 2]])
    lm = load_model(str(tiny_qwen2_dir), dtype="float32", weights="w4a8", progress=False)
    assert lm.info["weights"] == "w4a8" and lm.info["quant"]["group_size"] == 32
    swapped = [m for m in lm.model.modules() if isinstance(m, RowDispatchLinear)]
    assert len(swapped) == 14 and all(isinstance(m.quant, w4a8.W4A8Linear) for m in swapped)
    with torch.no_grad():
        set_dense_above(lm.model, 0)  # the dense copy: the same int4 grid dequantised, fp32 activations
        dense = lm.model(ids).logits
        set_dense_above(lm.model, None)  # the kernel for every forward
        got = lm.model(ids).logits
        ref = tiny_qwen2.model(ids).logits
    rel = ((got - dense).norm() / dense.norm()).item()
    assert rel < 0.02, rel  # activations in 8 bits per group of 32 (a wrong zero term or scale: > 0.5)
    rel_fp32 = ((got - ref).norm() / ref.norm()).item()
    assert rel_fp32 < 0.15, rel_fp32  # the int4 grid itself, as the int4 format's test allows
    # every position's logits are those of its prefix alone: the kernel's rows do not see each other
    with torch.no_grad():
        assert torch.equal(lm.model(ids[:, :4]).logits[0, -1], got[0, 3])


def test_w4a8_where_it_cannot_run_is_explained(tiny_qwen2_dir, monkeypatch):
    monkeypatch.setattr(w4a8, "_load", lambda: "this CPU has no AVX512-VNNI")
    with pytest.raises(QuantizationError, match="no AVX512-VNNI.*Fix: use --weights int4"):
        quant.check_format("w4a8", "cpu")
    monkeypatch.setattr(quant, "int4_kernel_available", lambda: True)
    assert quant.resolve_weights("auto", "cpu") == "int4"
