"""``--weights w4a8``: int4 weights (groups of 32, the int4 format's codes and grid) times int8 activations,
multiplied in integers with AVX512-VNNI: llama.cpp's recipe for Q4_K on a CPU, as a PyTorch op.

Why a kernel of our own (``kernels/w4a8.cpp``, built once per machine by ``torch.utils.cpp_extension``): PyTorch's
CPU int4 kernel multiplies in floating point and its cost grows with rows, and a speculative verify forward has
2-8 rows. The embedded model's 169 linear layers, 2 threads, AVX-512 EPYC (Zen 4), ms per forward, rows 1 / 2 / 4
/ 8: ``_weight_int4pack_mm_for_cpu`` 17.1 / 20.3 / 27.5 / 51.5, this kernel 10.8 / 11.3 / 14.4 / 18.5 (2026-12-04,
its first layout; the super-tile layout of ``kernels/w4a8.cpp`` then took one row from 9.4 to 7.2 ms on a Zen 5
EPYC, at the memory bandwidth; ``python bench/quant_quality.py --crossover --skip-quality --skip-speed`` measures
the MLP matrices on the machine at hand: docs/benchmarks.md, issue 17). Integer
dot products do 64 multiply-adds an instruction and each weight tile is read once for up to 8 rows. No wheel of
PyTorch or torchao ships this for x86 (torchao's ``da8w4`` CPU op is not built into its PyPI wheel; checked 0.18).

Numerics: each row's activations are quantised per group of 32 (``round(x / s)``, ``s = max|x| / 127``); the
result is the dequantised weights times those activations (the zero term uses the quantised sum too: with the exact
sum the error was ~3x larger, the grid's offset no longer cancelling), and the integer sums are exact, so a row's result does not depend on
the other rows of the call (a token's logits are the same alone, in a batch, or in a speculative tree; tested).
Scales and zeros are kept in bf16 (their bytes are a fifth of the weights' traffic).
``w4a8_reference`` is the same computation in plain PyTorch (the tests' oracle).

Where the CPU lacks AVX512-VNNI, or no C++ compiler is found, ``available()`` is False with the reason, and
``--weights auto`` keeps the int4 kernel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SOURCE = Path(__file__).with_name("kernels") / "w4a8.cpp"
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vnni", "-fopenmp"]  # OpenMP: at::parallel_for's threads
GROUP = 32


def cpu_supported() -> bool:
    """AVX-512 with VNNI (Intel Cascade Lake and later, AMD Zen 4 and later)."""
    try:
        return bool(torch.cpu._is_avx512_supported() and torch.cpu._is_vnni_supported())
    except AttributeError:  # an older torch: ask the kernel
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
        return all(f in flags for f in ("avx512f", "avx512bw", "avx512_vnni"))


def _status(text: str):
    from rich.console import Console

    return Console(stderr=True).status(text)


@functools.cache
def _load() -> str | None:
    """Build (once per machine, into tpro's cache) and load the kernel; -> None, or why it cannot run here."""
    if not cpu_supported():
        return "this CPU has no AVX512-VNNI"
    from torch.utils.cpp_extension import load

    from tpro.io import cache_dir

    tag = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:12]
    name = f"tpro_w4a8_{tag}"
    build = cache_dir() / "kernels" / f"{name}-torch{torch.__version__.replace('+', '_')}"
    build.mkdir(parents=True, exist_ok=True)
    built = (build / f"{name}.so").is_file()
    try:
        with contextlib.nullcontext() if built else _status("building the w4a8 CPU kernel (once per machine, ~1 min)"):
            load(name, [str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"], build_directory=str(build),
                 is_python_module=False)  # fmt: skip
    except (RuntimeError, OSError, ImportError) as e:  # no compiler, no ninja, a failed build
        return f"the kernel did not build ({str(e).strip().splitlines()[-1][:200]})"

    @torch.library.register_fake("tpro::w4a8_mm")
    def _(x, codes, sz, n):  # shapes for torch.compile
        return x.new_empty(x.shape[0], n)

    return None


def unavailable_reason() -> str | None:
    """None where the kernel runs here, else why not (for the error a user sees)."""
    return _load()


def available() -> bool:
    return _load() is None


# ------------------------------------------------------------------------------------------------ pure layout


def pack(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Int4 codes and their grid (``w = (q - 8) * scale + zero``, q [N, K] in 0..15, scale/zero [N, K/32]) ->
    the kernel's layout ``(codes, sz, N)``: outputs padded to a multiple of 64 (zero codes and grid), codes uint8
    [N/64, K/8, 64, 4] (super-tile, block of 8 inputs, output lane, byte: inputs j and j+4 of the block in its low
    and high nibble), sz bf16 [N/64, K/32, 4, 2, 16] (per group and tile of 16 outputs: scales, then
    z = zero - 8*scale)."""
    n, k = q.shape
    pad = (-n) % 64
    q, scale, zero = (F.pad(t, (0, 0, 0, pad)) for t in (q, scale.float(), zero.float()))
    ns, g = (n + pad) // 64, scale.shape[1]
    qq = q.to(torch.uint8).reshape(ns, 64, k // 8, 2, 4)  # [super-tile, lane, block, half, byte]
    codes = (qq[:, :, :, 0] | (qq[:, :, :, 1] << 4)).permute(0, 2, 1, 3).contiguous()  # [st, block, lane, byte]
    sz = torch.stack([scale, zero - 8 * scale]).to(torch.bfloat16)  # [2, N, G]
    sz = sz.reshape(2, ns, 4, 16, g).permute(1, 4, 2, 0, 3).contiguous()  # [st, group, tile, scale|zero, lane]
    return codes, sz, n


def w4a8_reference(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """What ``torch.ops.tpro.w4a8_mm`` computes, in plain PyTorch (fp64 sums): x [M, K] -> [M, N] fp32, with the
    scales and zeros rounded to bf16 as the kernel keeps them."""
    m, k = x.shape
    g = scale.shape[1]
    xg = x.float().reshape(m, g, GROUP)  # [M, G, 32]
    amax = xg.abs().amax(-1)  # [M, G]
    xs = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    xq = torch.round(xg * (1 / xs)[..., None]).clamp(-127, 127)  # as the kernel: x times the reciprocal
    s = scale.float().to(torch.bfloat16).double()  # [N, G]
    z = (zero.float() - 8 * scale.float()).to(torch.bfloat16).double()
    dot = torch.einsum("mgk,ngk->mng", xq.double(), q.double().reshape(q.shape[0], g, GROUP))  # [M, N, G]
    xsum = xs.double() * xq.double().sum(-1)  # [M, G]: the quantised activations' sum, as in the codes' term
    y = (dot * xs.double()[:, None, :] * s[None]).sum(-1) + xsum @ z.t()
    return y.float()


# ---------------------------------------------------------------------------------------------------- module


class W4A8Linear(nn.Module):
    """``nn.Linear`` with int4 weights and int8 activations (``torch.ops.tpro.w4a8_mm``); output in x's dtype."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if (reason := unavailable_reason()) is not None:
            raise RuntimeError(f"w4a8 cannot run here: {reason}")
        self.out_features, self.in_features = q.shape
        codes, sz, _ = pack(q, scale, zero)
        self.register_buffer("codes", codes)
        self.register_buffer("sz", sz)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., K] -> [..., N]
        x2 = x.reshape(-1, self.in_features)
        if x2.dtype not in (torch.float32, torch.bfloat16):
            x2 = x2.float()
        y = torch.ops.tpro.w4a8_mm(x2, self.codes, self.sz, self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activations=int8 per group of 32"
