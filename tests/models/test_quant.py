"""tpro.models.quant: int4/int8 weight-only layers on PyTorch's CPU kernels, the GGUF grid, the row dispatch, and
``--weights`` through ``load_model``."""

from __future__ import annotations

import math

import pytest
import torch

from tpro.models import load_model, quant
from tpro.models.loading import ModelLoadError
from tpro.models.quant import (
    DynamicInt8Linear,
    Int4Linear,
    Int8Linear,
    RowDispatchLinear,
    absmax_int8,
    dequantize_int4,
    minmax_int4,
    pack_nibbles,
    quantize_model,
    set_dense_above,
    unpack_nibbles,
)

needs_int4 = pytest.mark.skipif(not quant.int4_kernel_available(), reason="no CPU int4 kernel in this PyTorch")
needs_int8 = pytest.mark.skipif(not quant.int8_kernel_available(), reason="no CPU int8 kernel in this PyTorch")
needs_w8a8 = pytest.mark.skipif(not quant.kernel_available("w8a8"), reason="no fbgemm dynamic int8 kernel here")


def _weight(n=48, k=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    w[3, :32] = 0.7  # a constant group: scale 0 must not divide by zero
    return w, torch.randn(n, generator=g) * 0.1


# ------------------------------------------------------------------------------------------------ the grids


def test_minmax_int4_is_the_nearest_point_of_each_groups_range():
    w, _ = _weight()
    q, scale, zero = minmax_int4(w, torch.float32)
    assert q.dtype == torch.int32 and int(q.min()) >= 0 and int(q.max()) <= 15
    assert scale.shape == zero.shape == (48, 3)
    deq = dequantize_int4(q, scale, zero)
    groups = w.reshape(48, 3, 32)
    err = (deq - w).abs().reshape(48, 3, 32)
    assert bool((err <= scale[..., None] / 2 + 1e-6).all())  # nearest grid point
    # min-max: each group's extremes are on the grid (q = 0 at the minimum, 15 at the maximum)
    torch.testing.assert_close(deq.reshape(48, 3, 32).amin(-1), groups.amin(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        deq.reshape(48, 3, 32).amax(-1)[torch.arange(48) != 3], groups.amax(-1)[torch.arange(48) != 3]
    )
    assert torch.equal(deq[3, :32], w[3, :32])


def test_nibbles_round_trip():
    q = torch.randint(0, 16, (16, 64), dtype=torch.int32)
    codes = pack_nibbles(q)
    assert codes.shape == (16, 32) and codes.dtype == torch.uint8
    assert torch.equal(unpack_nibbles(codes), q)


@needs_int4
def test_int4_kernel_dequantises_as_q_minus_8_times_scale_plus_zero():
    """The convention the GGUF mapping relies on, checked on the real kernel: identity rows in, weight out."""
    w, _ = _weight()
    q, scale, zero = minmax_int4(w, torch.float32)
    mod = Int4Linear(q, scale, zero, None, torch.float32)
    got = mod(torch.eye(96)).t()  # [N, K]
    torch.testing.assert_close(got, dequantize_int4(q, scale, zero), atol=1e-6, rtol=0)


@needs_int4
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_int4_linear_matches_float_matmul_of_its_weight(dtype, tol):
    w, b = _weight()
    q, scale, zero = minmax_int4(w, dtype)
    mod = Int4Linear(q, scale, zero, b, dtype)
    x = torch.randn(2, 5, 96).to(dtype)
    ref = x.float() @ dequantize_int4(q, scale, zero).t() + b.to(dtype).float()
    y = mod(x)
    assert y.shape == (2, 5, 48) and y.dtype == dtype
    torch.testing.assert_close(y.float(), ref, atol=tol * ref.abs().max().item(), rtol=0)


@needs_int8
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_int8_linear_matches_float_matmul_of_its_weight(dtype, tol):
    w, b = _weight()
    q, scale = absmax_int8(w, dtype)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    deq = q.float() * scale.float()[:, None]
    assert bool(((deq - w).abs() <= scale.float()[:, None] / 2 + 1e-6).all())
    mod = Int8Linear(q, scale, b, dtype)
    x = torch.randn(3, 96).to(dtype)
    ref = x.float() @ deq.t() + b.to(dtype).float()
    torch.testing.assert_close(mod(x).float(), ref, atol=tol * ref.abs().max().item(), rtol=0)


# ------------------------------------------------------------------------------------------- row dispatch


@needs_int4
@needs_w8a8
def test_dynamic_int8_linear_is_its_weight_times_rows_quantized_alone():
    w, b = _weight(k=128)
    q, scale = absmax_int8(w, torch.float32, quant.W8A8_WEIGHT_MAX)
    assert q.abs().max() == quant.W8A8_WEIGHT_MAX
    mod = DynamicInt8Linear(q, scale, b)
    torch.testing.assert_close(mod.weight, q.float() * scale[:, None])  # unpacked from fbgemm's layout
    g = torch.Generator().manual_seed(1)
    # rows of very different scales, one all zero: each is quantized on its own range
    x = torch.randn(6, 128, generator=g) * torch.tensor([1e-3, 0.1, 1.0, 10.0, 300.0, 0.0])[:, None]
    y = mod(x)
    want = x @ (q.float() * scale[:, None]).t() + b
    # 8-bit activations per row, 7-bit weights: the error of each row is a small share of that row's size (with
    # full-range int8 weights AVX2's saturating pair sums made it 0.3-1.9 here)
    err = (y - want).norm(dim=-1) / (x @ mod.weight.t()).norm(dim=-1).clamp_min(1e-12)
    assert (err[:5] < 0.03).all(), err
    torch.testing.assert_close(y[5], b.expand_as(y[5]))
    # a row's output is bit-identical alone and in any batch (so batching and verification trees change nothing)
    alone = torch.cat([mod(x[i : i + 1]) for i in range(6)])
    assert torch.equal(alone, y)
    assert torch.equal(mod(x[[4, 2]]), y[[4, 2]])
    # a one-range-per-batch quantization (fbgemm's own) would fail that: a 300x row beside a 0.1x row
    plain = torch.ao.nn.quantized.dynamic.Linear(128, 48)
    plain.set_weight_bias(torch.quantize_per_tensor(mod.weight, float(scale.max()), 0, torch.qint8), b)
    assert not torch.equal(plain(x[[1, 4]])[0], plain(x[[1]])[0])
    assert mod(x.bfloat16()).dtype == torch.bfloat16


def test_row_dispatch_picks_by_rows():
    """A dense copy that differs from the quantized weight shows which path a forward took."""
    w, b = _weight()
    q, scale, zero = minmax_int4(w, torch.float32)
    mod = RowDispatchLinear(Int4Linear(q, scale, zero, b, torch.float32), torch.zeros(48, 96), max_quant_rows=8)
    took_dense = lambda x: torch.equal(mod(x), b.expand(*x.shape[:-1], 48))  # zero weight: only the bias
    assert not took_dense(torch.randn(1, 1, 96))  # one decode step
    assert not took_dense(torch.randn(1, 8, 96)) and not took_dense(torch.randn(2, 4, 96))  # 8 rows in all
    assert took_dense(torch.randn(1, 9, 96)) and took_dense(torch.randn(3, 3, 96))  # 9 rows: verify / prefill
    assert mod.weight.shape == (48, 96) and mod.bias is mod.quant.bias


# ---------------------------------------------------------------------------------------- whole tiny models


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


@pytest.fixture(scope="module")
def ids(tiny_qwen2):
    return tiny_qwen2.tokenizer("Сколько будет 17*23? Объясни решение.", return_tensors="pt").input_ids


@needs_int4
@needs_int8
@pytest.mark.parametrize("weights", ["int4", "int8"])
def test_tiny_model_quantized_is_close_and_generates(tiny_qwen2_dir, tiny_qwen2, ids, weights):
    lm = load_model(str(tiny_qwen2_dir), dtype="float32", weights=weights, progress=False)
    assert lm.info["weights"] == weights and lm.info["dtype"] == "float32"
    record = lm.info["quant"]["tensors"]
    swapped = [m for m in lm.model.modules() if isinstance(m, RowDispatchLinear)]
    assert len(swapped) == 14 + (weights == "int8")  # 7 per layer x 2 layers (+ lm_head for int8)
    if weights == "int4":  # the tiny vocabulary (517) is no multiple of 16: the int4 kernel cannot take lm_head
        assert record["lm_head"].startswith("kept dense")
    assert record["model.layers.0.self_attn.q_proj"] == f"float32 -> {weights}" + (
        " min-max g32" if weights == "int4" else " per-channel"
    )

    # The quantized kernel and the dense copy are one model: every forward agrees to fp32 rounding.
    set_dense_above(lm.model, None)
    kernel = _logits(lm.model, ids)
    set_dense_above(lm.model, 0)
    dense = _logits(lm.model, ids)
    torch.testing.assert_close(kernel, dense, atol=1e-4, rtol=1e-4)

    # And that model is the fp32 one up to quantisation noise: relative error 0.11 (int4) and 0.008 (int8) here;
    # by hand, a zero point one step off gave 0.73, scales in the wrong order 0.70, int8 scales reversed 0.34.
    ref = _logits(tiny_qwen2.model, ids)
    rel = ((kernel - ref).norm() / ref.norm()).item()
    assert rel < (0.15 if weights == "int4" else 0.02), rel

    set_dense_above(lm.model, quant.measured_max_rows(weights))
    out = lm.model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 8
    if weights == "int8":  # the tiny model's argmaxes are far from ties: int8 keeps greedy output
        want = tiny_qwen2.model.generate(ids, max_new_tokens=8, do_sample=False)
        assert torch.equal(out, want)


@needs_w8a8
def test_tiny_model_w8a8_is_close_batch_invariant_and_generates(tiny_qwen2_dir, tiny_qwen2, ids):
    lm = load_model(str(tiny_qwen2_dir), weights="w8a8", progress=False)
    assert lm.info["dtype"] == "float32"  # auto: fbgemm takes fp32 activations
    layer = lm.model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, DynamicInt8Linear) and isinstance(layer.mlp.up_proj, DynamicInt8Linear)
    assert isinstance(layer.mlp.down_proj, RowDispatchLinear)  # outlier inputs: 4-bit weight-only
    assert layer.mlp.down_proj.quant.scale_zero.dtype == torch.bfloat16
    record = lm.info["quant"]["tensors"]
    assert record["model.layers.0.self_attn.q_proj"] == "float32 -> int7 per-channel (int8 activations per row)"
    assert record["model.layers.0.mlp.down_proj"] == "float32 -> int4 min-max g32"
    ref = _logits(tiny_qwen2.model, ids)
    got = _logits(lm.model, ids)
    assert ((got - ref).norm() / ref.norm()).item() < 0.15
    # the same prompt beside another in a batch: each linear layer is row-invariant (the test above), but fp32
    # rounding elsewhere (attention over a batch) can flip an activation's 8-bit rounding, so only close
    other = torch.cat([ids[:, 3:], ids[:, :3]], 1)
    with torch.no_grad():
        both = lm.model(torch.cat([ids, other])).logits.float()
    assert ((both[0] - got[0]).norm() / got[0].norm()).item() < 0.02
    assert torch.equal(both[0].argmax(-1), got[0].argmax(-1))
    out = lm.model.generate(ids, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 6


@needs_int4
def test_bf16_activations_and_tied_embeddings(tiny_qwen3_dir):
    ref = load_model(str(tiny_qwen3_dir), dtype="bfloat16", progress=False)
    lm = load_model(str(tiny_qwen3_dir), dtype="bfloat16", weights="int4", progress=False)
    ids = lm.tokenizer("Привет, мир!", return_tensors="pt").input_ids
    set_dense_above(lm.model, None)
    got, want = _logits(lm.model, ids), _logits(ref.model, ids)
    assert ((got - want).norm() / want.norm()).item() < 0.2
    # the tied input embedding is untouched (only nn.Linear layers are swapped)
    assert torch.equal(lm.model.get_input_embeddings().weight, ref.model.get_input_embeddings().weight)


@needs_int4
@pytest.mark.parametrize("native_bf16", [True, False])
def test_dense_copy_and_threshold_follow_the_cpu(tiny_qwen2_dir, ids, monkeypatch, native_bf16):
    """Without native bf16 the dense copy is fp32 (an emulated bf16 matmul is slow) and the threshold higher."""
    from tpro.models import loading

    monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: native_bf16)
    lm = load_model(str(tiny_qwen2_dir), dtype="bfloat16", weights="int4", progress=False)
    mod = lm.model.model.layers[0].mlp.down_proj
    assert mod.weight.dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    assert mod.max_quant_rows == (quant.MAX_ROWS_NATIVE_BF16 if native_bf16 else quant.MAX_ROWS_NO_BF16)["int4"]
    set_dense_above(lm.model, 0)
    with torch.no_grad():
        dense = lm.model(ids).logits
    set_dense_above(lm.model, None)
    assert dense.dtype == torch.bfloat16
    torch.testing.assert_close(dense.float(), _logits(lm.model, ids), atol=0.1, rtol=0.05)


@needs_int4
def test_auto_dtype_with_quantized_weights_is_bf16(tiny_qwen2_dir):
    """The CPU kernels are only fast with bf16 activations, so dtype=auto gives bf16 whatever the CPU."""
    lm = load_model(str(tiny_qwen2_dir), weights="int4", progress=False)
    assert lm.info["dtype"] == "bfloat16" and lm.model.dtype == torch.bfloat16


@needs_int4
def test_codes_cache_round_trip(tiny_qwen2_dir, tmp_path, ids):
    cache = tmp_path / "codes.safetensors"
    a = load_model(str(tiny_qwen2_dir), dtype="float32", progress=False)
    rec_a = quantize_model(a.model, "int4", cache=cache)
    assert cache.is_file()
    b = load_model(str(tiny_qwen2_dir), dtype="float32", progress=False)
    with torch.no_grad():  # the file, not the model, is what the second call reads: spoil the model's weights
        b.model.model.layers[0].mlp.up_proj.weight.mul_(3.0)
    rec_b = quantize_model(b.model, "int4", cache=cache)
    assert rec_b["tensors"] == rec_a["tensors"]
    torch.testing.assert_close(_logits(a.model, ids), _logits(b.model, ids), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------- choices


def test_bad_weights_value_is_explained(tiny_qwen2_dir):
    with pytest.raises(ValueError, match="int3.*bf16, int8, int4, w4a8, w8a8, auto"):
        load_model(str(tiny_qwen2_dir), weights="int3", progress=False)
    from tpro.config import ConfigError
    from tpro.options import ModelOptions

    with pytest.raises(ConfigError, match="weights"):
        ModelOptions(weights="int3")


def test_weights_option_reaches_load_model(tiny_qwen2_dir):
    from tpro.options import ModelOptions

    assert ModelOptions().weights == "bf16"  # stages that read or change weights keep the checkpoint's own
    lm = ModelOptions(model=str(tiny_qwen2_dir), dtype="float32", weights="int8").load_model(progress=False)
    assert lm.info["weights"] == "int8" and lm.info["quant"]["format"] == "int8"
    assert ModelOptions(model=str(tiny_qwen2_dir)).load_model(progress=False).info["weights"] == "bf16"


def test_int4_without_the_kernel_is_explained(tiny_qwen2_dir, monkeypatch):
    monkeypatch.setattr(quant, "int4_kernel_available", lambda: False)
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: False)
    with pytest.raises(ModelLoadError, match=r"no CPU int4 kernel.*Fix: install torch>=2.6, or use --weights int8"):
        load_model(str(tiny_qwen2_dir), weights="int4", progress=False)
    monkeypatch.setattr(quant, "int8_kernel_available", lambda: True)
    assert quant.resolve_weights("auto", "cpu") == "int8"  # auto falls back to the next fastest format
    monkeypatch.setattr(quant, "int8_kernel_available", lambda: False)
    assert quant.resolve_weights("auto", "cpu") == "bf16"


def test_quantized_weights_on_a_gpu_are_explained(monkeypatch):
    with pytest.raises(quant.QuantizationError, match="CPU kernels.*--weights bf16"):
        quant.resolve_weights("int4", "cuda:0")
    assert quant.resolve_weights("auto", "cuda") == "bf16"


@needs_int4
def test_auto_picks_the_fastest_cpu_kernel(monkeypatch):
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: True)
    assert quant.resolve_weights("auto", "cpu") == "w4a8"
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: False)
    assert quant.resolve_weights("auto", "cpu") == "int4"


# ---------------------------------------------------------------------------------- the embedded GGUF


@pytest.fixture(scope="module")
def gguf_tensors():
    import gguf

    from tpro.models import default

    return {t.name: t for t in gguf.GGUFReader(str(default.ensure_gguf())).tensors}


@needs_int4
@pytest.mark.embedded
def test_q4_k_tensors_keep_their_grid_exactly(gguf_tensors):
    """The int4 module's weight, read through the real kernel in fp32, equals gguf's own dequantisation bit for
    bit; its matmul equals a float matmul of that weight to kernel tolerance."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    from tpro.models.quant import q4_k_grid

    q4k = [t for n, t in gguf_tensors.items() if t.tensor_type == GGMLQuantizationType.Q4_K]
    assert len(q4k) == 12  # ffn_down of half the layers (the rest is Q6_K)
    cols = torch.cat([torch.arange(0, 32), torch.arange(2048, 2080), torch.arange(4864 - 32, 4864)])
    for t in q4k[:3]:
        n, k = int(t.shape[1]), int(t.shape[0])  # GGUF shapes are [K, N]
        ref = torch.from_numpy(dequantize(t.data, t.tensor_type)).reshape(n, k)
        q, scale, zero = q4_k_grid(t.data, n, k)
        mod = Int4Linear(q, scale, zero, None, torch.float32)
        # identity rows through the kernel: the weight's columns; fp32 in, so nothing is rounded
        assert torch.equal(mod(torch.eye(k)[cols]).t(), ref[:, cols]), t.name
        assert torch.equal(dequantize_int4(q, scale, zero), ref)  # the dense copy (fp32) is the GGUF's too
        x = torch.randn(2, k)
        want = x @ ref.t()
        torch.testing.assert_close(mod(x), want, atol=1e-4 * want.abs().max().item(), rtol=0)


@needs_int8
@pytest.mark.embedded
def test_int8_of_a_gguf_tensor_matches_its_dequantisation(gguf_tensors):
    from gguf.quants import dequantize

    t = gguf_tensors["blk.0.attn_q.weight"]  # Q5_0
    ref = torch.from_numpy(dequantize(t.data, t.tensor_type)).reshape(896, 896)
    q, scale = absmax_int8(ref, torch.float32)
    mod = Int8Linear(q, scale, None, torch.float32)
    assert ((q.float() * scale[:, None] - ref).abs() <= scale[:, None] / 2 + 1e-7).all()
    x = torch.randn(3, 896)
    want = x @ (q.float() * scale[:, None]).t()
    torch.testing.assert_close(mod(x), want, atol=1e-5 * want.abs().max().item(), rtol=0)


@needs_int4
@pytest.mark.embedded
def test_embedded_model_int4_keeps_the_q4_k_tensors_and_its_next_token(embedded):
    lm = load_model("default", weights="int4", progress=False)  # bf16 activations; codes cached after the first
    q = lm.info["quant"]
    assert (q["q4_k_grid"], q["requantised"], q["kept_dense"]) == (12, 157, 0)
    grid = {name for name, how in q["tensors"].items() if how.startswith("Q4_K")}
    assert grid and all(name.endswith("mlp.down_proj") for name in grid)
    # bf16 activations take bf16 scales: d*sc (fp16 x 6 bits) mostly does not fit, and the record says so
    assert q["exact"] + sum("rounded to bfloat16" in q["tensors"][n] for n in grid) == 12
    ids = lm.tokenizer("def fibonacci(n):", return_tensors="pt").input_ids
    got, want = _logits(lm.model, ids)[0, -1], _logits(embedded.model, ids)[0, -1]
    assert int(got.argmax()) == int(want.argmax())
    kl = torch.nn.functional.kl_div(got.log_softmax(-1), want.log_softmax(-1), log_target=True, reduction="sum")
    assert math.isfinite(kl.item()) and kl.item() < 0.1, kl.item()


def test_a_batching_server_on_a_cpu_serves_w4a8_else_w8a8(monkeypatch):
    """``auto`` for a server that batches is w4a8 where its kernel runs, else w8a8 where fbgemm's kernel exists;
    one at a time, or an explicit format, is left to ``resolve_weights``."""
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: True)
    monkeypatch.setattr(quant, "dynamic_int8_kernel_available", lambda: True)
    monkeypatch.setattr(quant.torch.cuda, "is_available", lambda: False)
    assert quant.serving_weights("auto", 32) == "w4a8"
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: False)
    assert quant.serving_weights("auto", 32) == "w8a8"
    assert quant.serving_weights("auto", 1) == "auto"
    assert quant.serving_weights("int4", 32) == "int4"
    monkeypatch.setattr(quant, "dynamic_int8_kernel_available", lambda: False)
    assert quant.serving_weights("auto", 32) == "auto"
    monkeypatch.setattr(quant, "w4a8_kernel_available", lambda: True)
    monkeypatch.setattr(quant, "dynamic_int8_kernel_available", lambda: True)
    monkeypatch.setattr(quant.torch.cuda, "is_available", lambda: True)
    assert quant.serving_weights("auto", 32) == "auto"  # a GPU: bf16, as resolve_weights says
