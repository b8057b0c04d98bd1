"""fp32 linear on the CPU: the BLAS behind ``F.linear`` (MKL on x86 builds) vs oneDNN (``tpro.models.dense``).

    python bench/linear_backends.py --out bench/results/onednn/linear_backends.json

The embedded model's shapes (MLP 4864x896 and 896x4864, lm_head 151936x896), 1 and 16 rows, 2 threads; best of
three runs per cell, ms. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from tpro.models.dense import _onednn_linear


def best_ms(fn, n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return round(best * 1e3, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/onednn/linear_backends.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| weight | rows | BLAS ms | oneDNN ms | ratio |\n|---|---|---|---|---|")
    for n_out, n_in in ((4864, 896), (896, 4864), (151936, 896)):
        w = torch.randn(n_out, n_in)
        n = 3 if n_out > 100_000 else 20
        for m in (1, 16):
            x = torch.randn(m, n_in)
            blas, onednn = best_ms(lambda: F.linear(x, w), n), best_ms(lambda: _onednn_linear(x, w, None), n)
            rows.append({"weight": [n_out, n_in], "rows": m, "blas_ms": blas, "onednn_ms": onednn})
            print(f"| {n_out}x{n_in} | {m} | {blas} | {onednn} | {blas / onednn:.2f}x |")
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
