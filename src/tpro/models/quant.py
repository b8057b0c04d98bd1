"""Weight-only int4 / int8 linear layers for CPU decoding, swapped into a transformers model module by module.

A decode step of a small model on a CPU is memory-bound: it reads every weight once per token. PyTorch ships
weight-only kernels that read 4-bit or 8-bit weights and multiply them with bf16 activations (fp32 activations
work too, ~10-20x slower: a test mode, not a speed mode):

- ``Int4Linear``: ``torch.ops.aten._weight_int4pack_mm_for_cpu`` over ``_convert_weight_to_int4pack_for_cpu``,
  groups of 32 weights along the input axis, each group affine: ``w = (q - 8) * scale + zero``, ``q`` in 0..15
  (checked on the real kernel: identity rows times the packed weight give exactly that in fp32);
- ``Int8Linear``: ``torch._weight_int8pack_mm``, one symmetric scale per output channel: ``w = q * scale``;
- ``RowDispatchLinear``: a quantized module *and* a dense copy of the same (dequantised) weight, picking one per
  forward by the number of rows; ``quantize_model`` puts one in place of every ``nn.Linear``. The quantized
  kernels win one-token steps but their cost grows with rows while a dense bf16 matmul (AMX) stays flat (72 MLP
  matrices of the embedded model, 2 threads, ms per pass; rows 1 / 4 / 8 / 16 / 32: bf16 43 / 45 / 48 / 50 / 50,
  int4 11 / 19 / 37 / 69 / 133, int8 28 / 39 / 72 / 109 / 174; ../shared/notes/verified-facts.md). So one-token
  steps run quantized, and speculative verify forwards (8-32 rows) and prefill run dense, on the same weight
  values: the dense copy is the dequantised quantized weight, so both paths are one model up to rounding.

From a GGUF file the GGUF's own grid is kept where the int4 layout expresses it: a Q4_K super-block is eight
32-weight sub-blocks, each ``w = d*sc*q - dmin*m`` with ``q`` in 0..15, i.e. ``scale = d*sc``,
``zero = 8*scale - dmin*m``. Other GGUF types (Q5_0, Q6_K, Q8_0: 5, 6 and 8 bits) cannot be expressed in 4 bits;
they are dequantised and re-quantised (int4: min-max per group of 32; int8: per channel). A HF checkpoint's
weights are quantised the same way. ``quantize_model`` returns a record of what happened to each tensor, and can
keep the codes in a safetensors file (quantising the embedded model from its GGUF took 1-2.5 min on 2 busy
cores; reading the codes back takes seconds).

Why not torchao: its CPU int4 path (``Int4WeightOnlyOpaqueTensorConfig``, moved to ``torchao.prototype`` in
2025; before that ``Int4WeightOnlyConfig(layout=Int4CPULayout())``) computes its own scales and zeros from float
weights (``from_hp``), so it cannot take the GGUF's grid, and it calls the very same aten kernel through a
tensor subclass. These three small modules do the same with no dependency and no prototype API.

What this module does not know: model architectures (it swaps ``nn.Linear`` by module name), files other than
a GGUF it is handed, tokenizers, decoding. Loading and the ``--weights`` choice live in ``tpro.models.loading``.
"""

from __future__ import annotations

import functools
from math import inf
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GROUP_SIZE = 32  # int4 group along the input axis: a Q4_K sub-block, and the finest group the CPU kernel takes
WEIGHT_FORMATS = ("bf16", "int8", "int4", "w4a8", "w8a8", "auto")
# w8a8: layers whose inputs carry outlier channels stay 4-bit weight-only. The input of an MLP's down projection
# (silu(gate) * up) has channels ~100x the rest; with 7-bit activations every layer of the embedded model quantized
# cost +9.2% bits/char on held-out Russian, every layer but down_proj -1.9% (bench/quant_quality.py).
W8A8_WEIGHT_ONLY = ("down_proj",)
# w8a8's weights use -63..63: AVX2 (no VNNI) multiplies u8 activations by s8 weights and adds pairs in saturating
# int16, and 2 x 255 x 63 < 32767 never clips, where full-range weights clip often (a pair of zero-point-128
# activations times two weights near 127 already does). 8-bit activations matter more than the weights' 8th bit:
# 7-bit activations (fbgemm's reduce_range) lost 1.7% bits/char on the embedded model.
W8A8_WEIGHT_MAX = 63

# Rows per forward up to which the quantized kernel is used; above it the dense copy is cheaper. It depends on
# whether the CPU multiplies bf16 in hardware (`tpro.models.loading.cpu_has_native_bf16`):
# - AMX / AVX512-BF16 (verified-facts.md, quiet 2-core machine, the table in the module docstring): int4 beats
#   bf16 up to 8 rows (37 vs 48 ms) and loses at 16 (69 vs 50); int8 up to 4 rows (39 vs 45), loses at 8 (72 vs 48).
# - AVX2 only (2-core AMD EPYC, 2 threads, `bench/quant_quality.py --crossover`, 2026-12-03, load ~1; the dense
#   copy is fp32 there, see `dense_dtype`): rows 1 / 8 / 16 / 32 / 64: fp32 90 / 241 / 298 / 456 / 598 ms,
#   bf16 42 / 280 / 578 / 1108 / 2120, int4 29 / 107 / 219 / 422 / 820, int8 31 / 112 / 204 / 411 / 738.
# `python bench/quant_quality.py --crossover` prints the curve and the threshold for the machine at hand.
# - w4a8 (``tpro.models.w4a8``, AVX512-VNNI): over the 72 MLP matrices (EPYC Zen 5, 2 threads, 2026-12-04,
#   `--crossover`, raw bench/results/zen5/crossover_w4a8.json) rows 1 / 8 / 16 / 32 / 64: w4a8 4.6 / 8.6 / 13.8 /
#   22.8 / 39.5 ms, bf16 22.8 / 26.0 / 29.0 / 41.7 / 59.5, int4 5.8 / 16.1 / 30.5 / 59.8 / 118.1: w4a8 wins to 64
#   rows (a batch of 64 sequences stays quantized; a prompt's prefill in chunks above that goes dense).
MAX_ROWS_NATIVE_BF16 = {"int4": 8, "int8": 4, "w4a8": 64}
MAX_ROWS_NO_BF16 = {"int4": 32, "int8": 32, "w4a8": 64}
QUANT_VERSION = 3  # part of a cached codes file's name: bump when the codes made for a tensor change


class QuantizationError(RuntimeError):
    """A weight format cannot be used here; the message says why and what to use instead."""


# ---------------------------------------------------------------------------------------------------- kernels


def measured_max_rows(weights: str) -> int:
    """The row threshold for ``weights`` on this CPU kind (see ``MAX_ROWS_NATIVE_BF16``)."""
    from tpro.models.loading import cpu_has_native_bf16

    return (MAX_ROWS_NATIVE_BF16 if cpu_has_native_bf16() else MAX_ROWS_NO_BF16)[weights]


def dense_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of ``RowDispatchLinear``'s dense copy for activations in ``dtype``: the same where the CPU
    multiplies it in hardware, else fp32 (a bf16 matmul is emulated on an AVX2 CPU: 1108 vs 456 ms at 32 rows)."""
    from tpro.models.loading import cpu_has_native_bf16

    return dtype if dtype == torch.float32 or cpu_has_native_bf16() else torch.float32


@functools.cache
def int4_kernel_available() -> bool:
    """True where this PyTorch build has the CPU int4 weight-only kernels (PyTorch >= 2.6) and they run."""
    try:
        q = torch.zeros(16, GROUP_SIZE, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        sz = torch.ones(1, 16, 2, dtype=torch.float32)
        torch.ops.aten._weight_int4pack_mm_for_cpu(torch.ones(1, GROUP_SIZE), packed, GROUP_SIZE, sz)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


@functools.cache
def dynamic_int8_kernel_available() -> bool:
    """True where this PyTorch build has fbgemm's dynamic int8 linear (x86 CPUs) and it runs."""
    try:
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            return False
        DynamicInt8Linear(torch.ones(4, 8, dtype=torch.int8), torch.ones(4), None)(torch.ones(1, 8))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


@functools.cache
def int8_kernel_available() -> bool:
    """True where this PyTorch build has ``torch._weight_int8pack_mm`` for CPU and it runs."""
    try:
        torch._weight_int8pack_mm(torch.ones(1, 8), torch.ones(4, 8, dtype=torch.int8), torch.ones(4))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def w4a8_kernel_available() -> bool:
    """True where ``tpro.models.w4a8``'s kernel builds and runs (AVX512-VNNI and a C++ compiler)."""
    from tpro.models import w4a8

    return w4a8.available()


def kernel_available(fmt: str) -> bool:
    if fmt == "w4a8":
        return w4a8_kernel_available()
    if fmt == "w8a8":  # its down projections are int4
        return dynamic_int8_kernel_available() and int4_kernel_available()
    return {"int4": int4_kernel_available, "int8": int8_kernel_available}[fmt]()


def check_format(weights: str, device: str) -> None:
    """Raise ``QuantizationError`` (or ``ValueError`` for an unknown name) if ``weights`` cannot run on ``device``."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    if weights not in ("int4", "int8", "w4a8", "w8a8"):
        return
    if not device.startswith("cpu"):
        raise QuantizationError(
            f"--weights {weights} runs PyTorch's CPU kernels and the model is on {device}. "
            "Fix: use --weights bf16 (auto picks it on a GPU), or serve a quantized model with SGLang or vLLM"
        )
    if weights == "w4a8" and not kernel_available(weights):
        from tpro.models import w4a8

        raise QuantizationError(
            f"--weights w4a8 cannot run here: {w4a8.unavailable_reason()}. Fix: use --weights int4 (PyTorch's own "
            "int4 kernel; --weights auto picks it), or install a C++ compiler (g++) where the CPU has AVX512-VNNI"
        )
    if not kernel_available(weights):
        op = {
            "int4": "aten._weight_int4pack_mm_for_cpu",
            "int8": "aten._weight_int8pack_mm",
            "w8a8": "quantized.linear_dynamic (fbgemm, x86 only) or aten._weight_int4pack_mm_for_cpu",
        }[weights]
        raise QuantizationError(
            f"this PyTorch ({torch.__version__}) has no CPU {weights} kernel (torch.ops.{op}). "
            f"Fix: install torch>=2.6, or use --weights {dict(int4='int8', w8a8='int4').get(weights, 'bf16')}"
        )


def resolve_weights(weights: str, device: str) -> str:
    """``auto`` -> the fastest format measured for decoding: w4a8 on a CPU with AVX512-VNNI (``tpro.models.w4a8``:
    one-token steps ~1.6x and 8-row verify forwards ~2.8x cheaper than int4's on an AVX-512 EPYC), else int4, else
    int8, else bf16; bf16 on a GPU. Other names are checked and returned. Measured with the embedded model, 2 threads: on an AMX
    machine a one-token step took 41.6 ms in int4 against 85.7 in bf16 (verified-facts.md); on an AVX2 EPYC the
    engine's greedy decode ran at 13.6 tokens/s in int4, 11.0 int8, 9.6 bf16, 6.0 fp32 (bench/quant_quality.py)."""
    if weights == "auto":
        if not device.startswith("cpu"):
            return "bf16"
        return next((f for f in ("w4a8", "int4", "int8") if kernel_available(f)), "bf16")
    check_format(weights, device)
    return weights


def serving_weights(weights: str, max_batch: int) -> str:
    """The ``--weights`` a server runs: ``auto`` with batching (``max_batch`` > 1) on a CPU -> w4a8 where its kernel
    runs (AVX512-VNNI), else w8a8 where fbgemm's int8 kernel exists: the formats whose cost grows least with rows;
    anything else unchanged (``auto`` then resolves as for one sequence). Measured with 20 clients x 128 tokens,
    2 threads (docs/benchmarks.md, issue 13): on a Zen 5 EPYC (2026-12-04) w4a8 served 198.9 tokens/s batched, bf16
    189.3, w8a8 120.4, and one at a time w4a8 39.9 against bf16's 19.9, so w4a8 is the best for a lone user and a
    crowd alike; on an AVX2 EPYC (no VNNI) w8a8 served 47.7 against int4's 23.1; on an AMX Xeon bf16 served most
    under load (113.2; w8a8 78.9, int4 65.8; w4a8 not measured there) but decodes one sequence at ~10 tokens/s
    against w8a8's ~20. A server that is always busy on an AMX CPU runs --weights bf16."""
    if weights != "auto" or max_batch <= 1 or torch.cuda.is_available():
        return weights
    if w4a8_kernel_available():
        return "w4a8"
    return "w8a8" if dynamic_int8_kernel_available() else weights


# ------------------------------------------------------------------------------------------ pure quantisation


def minmax_int4(w: torch.Tensor, dtype: torch.dtype, group: int = GROUP_SIZE):
    """Affine min-max int4 per group: w [N, K] float -> q [N, K] int32 in 0..15, scale, zero [N, K/group] in
    ``dtype``, with ``w ~ (q - 8) * scale + zero``. The codes are chosen against the scale and zero as rounded
    to ``dtype`` (what the kernel multiplies with), so each weight gets its nearest point of the real grid."""
    n, k = w.shape
    g = w.float().reshape(n, k // group, group)  # [N, G, group]
    lo, hi = g.amin(-1), g.amax(-1)  # [N, G]
    scale = ((hi - lo) / 15).to(dtype)
    flat = scale == 0  # a constant group: scale 1, zero = the constant, q = 8
    scale = torch.where(flat, torch.ones_like(scale), scale)
    zero = torch.where(flat, lo, lo + 8 * scale.float()).to(dtype)
    q = torch.round((g - zero.float()[..., None]) / scale.float()[..., None]) + 8
    return q.clamp_(0, 15).to(torch.int32).reshape(n, k), scale, zero


def absmax_int8(w: torch.Tensor, dtype: torch.dtype, qmax: int = 127):
    """Symmetric int8 per output channel: w [N, K] -> q [N, K] int8 in -qmax..qmax, scale [N] in ``dtype``."""
    w = w.float()
    scale = (w.abs().amax(-1) / qmax).to(dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale.float()[:, None]).clamp_(-qmax, qmax).to(torch.int8)
    return q, scale


def q4_k_grid(blocks, n: int, k: int):
    """A Q4_K tensor's own grid: blocks (numpy uint8 [N, K/256*144], as ``gguf.GGUFReader`` reads them) ->
    q [N, K] int32 in 0..15, scale [N, K/32] and zero [N, K/32] float32 in the int4 kernel's convention.

    A 144-byte super-block: d (fp16), dmin (fp16), 12 bytes of 6-bit (sc, m) for 8 sub-blocks (unpacked by
    gguf's own ``Q4_K.get_scale_min``), 128 bytes of nibbles (bytes 32i..32i+31: sub-block 2i in the low nibbles,
    2i+1 in the high). Sub-block j: ``w = d*sc_j*q - dmin*m_j`` = ``(q - 8)*scale + zero`` with ``scale = d*sc_j``,
    ``zero = 8*scale - dmin*m_j``."""
    import numpy as np
    from gguf.quants import Q4_K

    b = np.ascontiguousarray(blocks).reshape(-1, 144)  # [B, 144], B = N*K/256
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)  # [B, 1]
    dmin = b[:, 2:4].copy().view(np.float16).astype(np.float32)  # [B, 1]
    sc, m = Q4_K.get_scale_min(b[:, 4:16].copy())  # [B, 8] each
    qs = b[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)  # [B, 4, 2, 32]
    q = (qs & 0x0F).reshape(n, k).astype(np.int32)
    scale = d * sc.astype(np.float32)  # [B, 8], exact: fp16 d times a 6-bit integer
    zero = 8 * scale - dmin * m.astype(np.float32)
    return torch.from_numpy(q), torch.from_numpy(scale.reshape(n, k // 32)), torch.from_numpy(zero.reshape(n, k // 32))


# ---------------------------------------------------------------------------------------------------- modules


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """q [N, K] in 0..15 -> uint8 [N, K/2], column 2j in the low nibble (our storage layout, not the kernel's)."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K/2] -> int32 [N, K] (inverse of ``pack_nibbles``)."""
    return torch.stack([codes & 0x0F, codes >> 4], -1).reshape(codes.shape[0], -1).to(torch.int32)


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(q - 8) * scale + zero per group, in fp32: q [N, K], scale and zero [N, K/group] -> [N, K]."""
    n, k = q.shape
    g = (q.float() - 8).reshape(n, scale.shape[1], -1)  # [N, G, group]
    return (g * scale.float()[..., None] + zero.float()[..., None]).reshape(n, k)


class Int4Linear(nn.Module):
    """``nn.Linear`` with int4 weights in groups of 32 (PyTorch's CPU int4 kernel); activations stay in ``dtype``.

    It keeps only the kernel's packed layout, so it has no cheap ``weight``: ``RowDispatchLinear`` carries the
    dequantised copy. (Running an identity matrix through the kernel gives the weight exactly but costs seconds
    to minutes for a large matrix: the kernel's cost grows with rows, and fp32 activations are ~20x slower.)"""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None, dtype):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.group_size = self.in_features // scale.shape[1]
        # packed [N, K/2] uint8 in the kernel's own order; scale_zero [K/group, N, 2]: groups first
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
        self.register_buffer("scale_zero", torch.stack([scale.t(), zero.t()], -1).to(dtype).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., K] -> [..., N]
        # activations in the module's dtype: bf16 inside an fp32 model (w8a8's down projections) keeps the kernel
        # fast (fp32 activations are its slow path)
        dtype = self.scale_zero.dtype
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, self.in_features).to(dtype).contiguous(), self.packed, self.group_size, self.scale_zero
        )
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and one scale per output channel (``torch._weight_int8pack_mm``)."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, dtype):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("qweight", q.to(torch.int8).contiguous())  # [N, K]
        self.register_buffer("scales", scale.to(dtype).contiguous())  # [N]
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., K] -> [..., N]
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).contiguous(), self.qweight, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class DynamicInt8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output channel) and int8 activations quantized per row at
    run time, multiplied in integers by fbgemm (``torch.ops.quantized.linear_dynamic``, x86 CPUs, AVX2 and up).

    Why this kernel: on a 2-core AVX2 EPYC one 4864x896 matrix took 0.17 / 0.37 / 0.66 ms for 1 / 4 / 16 rows
    against 0.4 / 0.8 / 1.6 for the int4 weight-only kernel and ~1.6 / 1.6 / 3 for an fp32 matmul: integer
    multiply-adds are what AVX2 does fastest, and the cost hardly grows with rows (verification trees, batches).
    torchao's int8 dynamic-activation config computes with ``torch._int_mm`` on a CPU (3.9 ms for one row here).

    fbgemm quantizes a whole input with one asymmetric 8-bit range (see ``REDUCE_RANGE``). One range for all rows would make a row's result depend on the rows beside
    it (a request's tokens on the rest of the batch, a speculative tree's verification on its siblings). So each
    row is divided by its own absmax and two columns holding -1 and +1 (zero weights) are appended: every row then
    spans exactly [-1, 1], the quantization grid is the same for any batch, and since the products are summed in
    integers, a row's output is bit-identical alone or in any batch (tested). Activations are fp32 inside; the
    output is cast back to the input's dtype."""

    # 8-bit activations; the weights are kept to -63..63 instead, so AVX2's int16 pair sums never clip
    # (``W8A8_WEIGHT_MAX``). A layer built with full-range int8 weights would clip: use reduce_range there.
    REDUCE_RANGE = False
    PAD = 32  # the -1 / +1 columns, then zeros: 32 extra columns kept fbgemm at its speed (2 cost ~15% at 8 rows)

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        import warnings

        self.out_features, self.in_features = q.shape
        q = torch.cat([q.to(torch.int8), q.new_zeros(q.shape[0], self.PAD, dtype=torch.int8)], 1)  # [N, K + PAD]
        self.register_buffer("scales", scale.float().contiguous())  # [N]
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        with warnings.catch_warnings():  # quantized tensors are deprecated, this op's packing still takes them
            warnings.simplefilter("ignore")
            qw = torch._make_per_channel_quantized_tensor(
                q, self.scales.double(), torch.zeros(q.shape[0], dtype=torch.long), 0
            )
            self._packed = torch.ops.quantized.linear_prepack(qw, None)  # fbgemm's own layout (not a buffer)
        # the appended columns, built once (not a Python list -> tensor conversion on every call)
        self._ends = torch.tensor([[-1.0, 1.0] + [0.0] * (self.PAD - 2)])  # [1, PAD]

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight [N, K] fp32, computed on access (the EAGLE head copies ``lm_head`` rows)."""
        w = torch.ops.quantized.linear_unpack(self._packed)[0].dequantize()
        return w[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., K] -> [..., N]
        xf = x.reshape(-1, self.in_features).float()  # [M, K]
        amax = torch.linalg.vector_norm(xf, float("inf"), -1, keepdim=True).clamp_min_(1e-30)  # [M, 1] max |x|
        ends = self._ends.expand(xf.shape[0], -1)  # [M, PAD]
        y = torch.ops.quantized.linear_dynamic(torch.cat([xf / amax, ends], 1), self._packed, self.REDUCE_RANGE)
        y = y.mul_(amax)  # [M, N], a fresh tensor: in place saves an allocation
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activations=int8 per row"


class RowDispatchLinear(nn.Module):
    """A quantized linear plus a dense copy of its dequantised weight: a forward with at most ``max_quant_rows``
    rows (one-token decode steps) takes the quantized kernel, a larger one (prefill, speculative verification)
    the dense matmul, where that is cheaper (``MAX_ROWS_NATIVE_BF16``; the copy is fp32 on CPUs without
    native bf16, ``dense_dtype``). Both are the same weight values, so both
    paths compute one model up to rounding. ``weight`` and ``bias`` read like ``nn.Linear``'s (the EAGLE head
    copies the ``lm_head`` rows it drafts with from ``weight``)."""

    def __init__(self, quant: Int4Linear | Int8Linear, dense: torch.Tensor, max_quant_rows: int | float):
        super().__init__()
        self.quant = quant
        self.weight = nn.Parameter(dense.contiguous(), requires_grad=False)  # [N, K]
        self.max_quant_rows = max_quant_rows

    @property
    def bias(self) -> torch.Tensor | None:
        return self.quant.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // x.shape[-1] <= self.max_quant_rows:
            return self.quant(x)
        w, bias = self.weight, self.bias
        if w.dtype == x.dtype:
            return F.linear(x, w, bias)
        # an fp32 copy on a CPU without native bf16 (`dense_dtype`): the matmul in fp32, the result in x's dtype
        return F.linear(x.to(w.dtype), w, None if bias is None else bias.to(w.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_quant_rows={self.max_quant_rows}"


def set_dense_above(model: nn.Module, rows: int | float | None) -> int | float | None:
    """Set every ``RowDispatchLinear``'s threshold (None: the quantized kernel at any rows, 0: always dense);
    returns the previous one, to restore. For measurements: bits/char of the kernel itself, dense-vs-kernel."""
    previous = None
    for mod in model.modules():
        if isinstance(mod, RowDispatchLinear):
            previous, mod.max_quant_rows = mod.max_quant_rows, inf if rows is None else rows
    return None if previous == inf else previous


# ----------------------------------------------------------------------------------------- codes for a model


class GGUFGrids:
    """The GGUF tensors behind a model's linear layers, by HF module name, through ``gguf``'s own name tables
    (``model.layers.N.self_attn.q_proj`` -> ``blk.N.attn_q``, ``lm_head`` -> ``output``)."""

    def __init__(self, path: str | Path, num_layers: int):
        import gguf

        reader = gguf.GGUFReader(str(path))
        arch_name = reader.fields["general.architecture"].contents()
        arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
        self.names = gguf.get_tensor_name_map(arch, num_layers) if arch is not None else None
        self.tensors = {t.name: t for t in reader.tensors}

    def tensor(self, module_name: str):
        """The GGUF tensor holding ``module_name``'s weight, or None."""
        base = self.names.get_name(module_name) if self.names is not None else None
        return self.tensors.get(f"{base}.weight") if base else None


def _dequantized(tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """The GGUF tensor dequantised to fp32 [N, K] if it equals ``weight`` (the loaded weight, rounded to its
    dtype), i.e. the name map and orientation are right; else None (transformers permutes some architectures'
    q/k rows on load: those tensors are quantised from the loaded weight)."""
    from gguf.quants import dequantize

    if tuple(int(d) for d in reversed(tensor.shape)) != tuple(weight.shape):
        return None
    deq = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).reshape(weight.shape))
    return deq if torch.equal(deq.to(weight.dtype), weight) else None


def layer_format(weights: str, name: str) -> str:
    """The codes a linear layer gets in format ``weights``: w8a8's are int7 (``W8A8_WEIGHT_MAX``) but for
    ``W8A8_WEIGHT_ONLY`` (int4)."""
    if weights == "w8a8":
        return "int4" if name.rsplit(".", 1)[-1] in W8A8_WEIGHT_ONLY else "int7"
    return "int4" if weights == "w4a8" else weights


def _codes(fmt: str, weight: torch.Tensor, tensor, dtype: torch.dtype | None = None):
    """One linear layer's codes: int4 {codes, scale, zero} / int8 {qweight, scales}, and how they were made.
    ``weight`` [N, K] is the loaded weight; ``tensor`` its GGUF tensor or None; ``dtype``: of the scales
    (default: the weight's)."""
    from gguf import GGMLQuantizationType

    dtype = dtype or weight.dtype
    src = _dequantized(tensor, weight) if tensor is not None else None
    how = tensor.tensor_type.name if src is not None else str(weight.dtype).removeprefix("torch.")
    if src is None:
        src = weight
    elif fmt == "int4" and tensor.tensor_type == GGMLQuantizationType.Q4_K:
        q, scale, zero = q4_k_grid(tensor.data, *weight.shape)
        s, z = scale.to(dtype), zero.to(dtype)
        # the kernel takes its scales in the activations' dtype: d*sc (fp16 times 6 bits) fits fp32, rarely bf16
        exact = torch.equal(s.float(), scale) and torch.equal(z.float(), zero)
        how = "Q4_K exact" if exact else f"Q4_K grid, scales rounded to {str(dtype).removeprefix('torch.')}"
        return {"codes": pack_nibbles(q), "scale": s, "zero": z}, how
    if fmt == "int4":
        q, scale, zero = minmax_int4(src, dtype)
        return {"codes": pack_nibbles(q), "scale": scale, "zero": zero}, f"{how} -> int4 min-max g{GROUP_SIZE}"
    qmax = W8A8_WEIGHT_MAX if fmt == "int7" else 127
    q, scale = absmax_int8(src, dtype, qmax)
    if fmt == "int7":
        return {"qweight": q, "scales": scale}, f"{how} -> int7 per-channel (int8 activations per row)"
    return {"qweight": q, "scales": scale}, f"{how} -> int8 per-channel"


def quantize_weights(model: nn.Module, weights: str, gguf: str | Path | None = None):
    """The codes of every ``nn.Linear`` of ``model`` in format ``weights`` ("int4" | "int8"), without changing
    the model -> (state {f"{module}.{key}": tensor}, record {module: how}). ``gguf``: the file the model was
    converted from (its Q4_K tensors keep their grid; other tensors are re-quantised from its fp32
    dequantisation, not from the model's bf16 rounding of it)."""
    grids = GGUFGrids(gguf, model.config.num_hidden_layers) if gguf is not None else None
    state: dict[str, torch.Tensor] = {}
    record: dict[str, str] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        n, k = mod.weight.shape
        fmt = layer_format(weights, name)
        if fmt == "int4" and (k % GROUP_SIZE or n % 16):
            record[name] = f"kept dense ({n}x{k} does not fit the int4 kernel)"
            continue
        # w8a8's int4 layers run with bf16 activations inside the fp32 model, and w4a8 keeps its scales in bf16:
        # their grid is chosen in bf16
        dtype = torch.bfloat16 if weights in ("w8a8", "w4a8") and fmt == "int4" else None
        with torch.no_grad():
            tensor = grids.tensor(name) if grids is not None else None
            codes, how = _codes(fmt, mod.weight.detach(), tensor, dtype)
        state.update({f"{name}.{key}": t.contiguous() for key, t in codes.items()})
        record[name] = how
    return state, record


def swap_linears(model: nn.Module, weights: str, state: dict, record: dict, max_quant_rows: int | float) -> None:
    """Replace each ``nn.Linear`` that has codes in ``state`` (in place): int4 and int8 codes by a
    ``RowDispatchLinear`` (``max_quant_rows``), w8a8's int8 codes by a ``DynamicInt8Linear`` (no dense copy: its
    cost grows slowly with rows)."""
    for name in record:
        mod = model.get_submodule(name)
        dtype, bias = mod.weight.dtype, mod.bias
        if f"{name}.codes" in state:  # int4 and w4a8 (w8a8's down projections too, their scales in bf16)
            q, scale, zero = unpack_nibbles(state[f"{name}.codes"]), state[f"{name}.scale"], state[f"{name}.zero"]
            if weights == "w4a8":
                from tpro.models.w4a8 import W4A8Linear

                quant = W4A8Linear(q, scale, zero, None if bias is None else bias.to(dtype))
            else:
                quant = Int4Linear(q, scale, zero, bias, scale.dtype)
            dense = dequantize_int4(q, scale, zero)
        elif f"{name}.scales" in state and weights == "w8a8":
            model.set_submodule(name, DynamicInt8Linear(state[f"{name}.qweight"], state[f"{name}.scales"], bias))
            continue
        elif f"{name}.scales" in state:
            q, scale = state[f"{name}.qweight"], state[f"{name}.scales"]
            quant, dense = Int8Linear(q, scale, bias, dtype), q.float() * scale.float()[:, None]
        else:
            continue  # kept dense
        model.set_submodule(name, RowDispatchLinear(quant, dense.to(dense_dtype(dtype)), max_quant_rows))


def quantize_model(
    model: nn.Module,
    weights: str,
    gguf: str | Path | None = None,
    dense_above: int | None | str = "measured",
    cache: str | Path | None = None,
) -> dict:
    """Swap every ``nn.Linear`` of ``model`` (CPU, in place) for a ``RowDispatchLinear`` in format ``weights``.

    ``gguf``: see ``quantize_weights``. ``dense_above``: forwards with more rows use the dense copy; "measured" =
    ``measured_max_rows(weights)``; None = never (the quantized kernel for every forward: quality measurements).
    ``cache``: a safetensors file for the codes: read if present, else written (atomically). Linear layers the
    kernel cannot take (int4: in_features not a multiple of 32 or out_features of 16) stay ``nn.Linear``.
    Returns the record for ``LoadedModel.info["quant"]``.
    """
    import json

    from safetensors.torch import load_file, save_file

    from tpro.io import atomic_path

    if weights not in ("int4", "int8", "w4a8", "w8a8"):
        raise ValueError(f"quantize_model takes int4, int8, w4a8 or w8a8, not {weights!r}")
    check_format(weights, "cpu")
    if cache is not None and Path(cache).is_file():
        from safetensors import safe_open

        with safe_open(str(cache), "pt") as f:
            record = json.loads(f.metadata()["record"])
        state = load_file(str(cache))
    else:
        state, record = quantize_weights(model, weights, gguf)
        if cache is not None:
            with atomic_path(cache) as tmp:
                save_file(state, str(tmp), metadata={"record": json.dumps(record), "weights": weights})
    measured = measured_max_rows("int4" if weights == "w8a8" else weights)
    max_rows = measured if dense_above == "measured" else inf if dense_above is None else dense_above
    swap_linears(model, weights, state, record, max_rows)
    return {
        "format": weights,
        "group_size": GROUP_SIZE if weights in ("int4", "w4a8", "w8a8") else None,
        "dense_above_rows": None if max_rows == inf else max_rows,
        "source": str(gguf) if gguf is not None else "loaded weights",
        "q4_k_grid": sum(v.startswith("Q4_K") for v in record.values()),
        "exact": sum(v.endswith("exact") for v in record.values()),
        "requantised": sum("->" in v for v in record.values()),
        "kept_dense": sum(v.startswith("kept") for v in record.values()),
        "tensors": record,
    }
