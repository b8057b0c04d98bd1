"""fp32 linear layers through oneDNN where it beats the BLAS that ``torch.nn.functional.linear`` calls.

On x86 CPUs PyTorch's fp32 ``linear`` goes to MKL's sgemm. On the AMD EPYC (Zen 3, AVX2) machines this project
runs on, oneDNN's matmul, which PyTorch ships and inductor itself uses for CPU linears
(``torch.ops.mkldnn._linear_pointwise``), is 1.1-2.3x faster for the shapes of decoding (2 threads, 2026-12-03, ``bench/linear_backends.py``,
ms MKL / oneDNN: 4864x896 weight, 1 row 1.08 / 0.55, 16 rows 3.06 / 2.37; the embedded model's 151936x896
lm_head, 1 row 32.8 / 14.4, 16 rows 117.7 / 72.5). A batched decode step spent 90% of its time in ``Linear.forward`` (py-spy), so
this is the main cost of fp32 decoding, one sequence or many.

``use_onednn(model)`` turns every plain ``nn.Linear`` of a CPU fp32 model into a ``OneDNNLinear`` in place (same
parameters, so tied embeddings, state dicts and training are untouched). It is applied only where a quick
measurement on the machine at hand says oneDNN is faster (``onednn_is_faster``: a few ms, once per process), so a
CPU whose MKL is the faster one keeps it. Grad-requiring calls take ``F.linear`` (the oneDNN op has no autograd
kernel). Results equal ``F.linear``'s up to fp32 summation order, as MKL's own differ between row counts.
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F
from torch import nn


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(nn.Linear):
    """An ``nn.Linear`` whose inference forward runs oneDNN's fp32 matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., K] -> [..., N]
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        if x.dtype != torch.float32 or self.weight.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.weight, self.bias)
        if torch.compiler.is_compiling():  # inductor picks its own CPU linear (oneDNN's included) and cannot lower
            return F.linear(x, self.weight, self.bias)  # this op on a 3-D input (LoweringException, measured)
        return _onednn_linear(x, self.weight, self.bias)


@functools.cache
def onednn_is_faster(threads: int) -> bool:
    """Whether oneDNN's fp32 matmul beats ``F.linear`` here, for 1 and 16 rows of a 4864x896 weight (the MLP
    shape of the embedded model; the decision is per machine, not per model). ``threads``: the cache key."""
    if not onednn_available():
        return False
    w = torch.randn(4864, 896)
    ratios = []
    for rows in (1, 16):
        x = torch.randn(rows, 896)
        times = {}
        for name, fn in (("blas", lambda: F.linear(x, w)), ("onednn", lambda: _onednn_linear(x, w, None))):
            fn()
            best = float("inf")
            for _ in range(3):  # best of three short runs: robust to a busy neighbour
                t0 = time.perf_counter()
                for _ in range(5):
                    fn()
                best = min(best, time.perf_counter() - t0)
            times[name] = best
        ratios.append(times["onednn"] / times["blas"])
    return max(ratios) < 0.9


def use_onednn(model: nn.Module, force: bool | None = None) -> int:
    """Swap ``model``'s plain fp32 CPU ``nn.Linear``s for ``OneDNNLinear`` (in place) when oneDNN is faster here
    (``force``: True/False skips the measurement) -> how many were swapped."""
    linears = [
        m
        for m in model.modules()
        if type(m) is nn.Linear and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
    ]
    if not linears or not onednn_available():
        return 0
    if force is None:
        force = onednn_is_faster(torch.get_num_threads())
    if not force:
        return 0
    for m in linears:
        m.__class__ = OneDNNLinear
    return len(linears)
