"""Quality and speed of each weight format of one model: bits/char on held-out Russian text and decode tokens/s.

Issue 17's bar: every format within +1% bits/char of the fp32 reference, the same model dequantised (for a GGUF:
the converted checkpoint in fp32, i.e. the GGUF's own values). Rows:

- ``fp32``: the reference (dense, fp32 activations);
- ``bf16``: the same weights in bf16 (dense);
- ``w8a8``: int8 weights and per-row dynamic int8 activations (fbgemm; fp32 elsewhere), down projections int4;
- ``int8`` / ``int4``: ``tpro.models.quant`` with bf16 activations (what ``--weights int4`` runs);
- ``w4a8``: the int4 codes times int8 activations per group of 32 (``tpro.models.w4a8``, AVX512-VNNI CPUs). For bits/char
  the quantized kernel runs every forward (``dense_above=None``), so the figure is the kernel's own; decoding
  uses the row dispatch of ``--weights`` (one-token steps quantized, the prompt's prefill dense).

Decode speed is the engine's plain greedy loop (``tpro.engine.Engine``, telemetry ``decode_tokens_per_s``) on one
prompt, best of ``--repeats``. Bits/char: ``tpro.models.bpc.bits_per_char`` over the first ``--n-texts`` lines.
``--crossover`` first prints the cost of the quantized and dense matmuls by rows per forward on this CPU (the
72 MLP matrices of the embedded model) and the largest row count where each quantized format still wins: the
thresholds in ``tpro.models.quant`` (``MAX_ROWS_*``).

    nice -n 10 python bench/quant_quality.py --threads 2 --out bench/results/quant_quality.json
    python bench/quant_quality.py --crossover --skip-quality
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

PROMPT = "Сколько будет 17 × 23? Объясни решение по шагам."


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def crossover(rows=(1, 2, 4, 8, 12, 16, 24, 32, 64), repeats: int = 5) -> dict:
    """ms per pass over 72 MLP-shaped matrices (24 x gate/up 4864x896 + down 896x4864) by rows, bf16 activations
    (fp32 dense too); median of ``repeats`` interleaved passes, so load on a shared machine hits all alike."""
    import torch
    import torch.nn.functional as F

    from tpro.models import w4a8
    from tpro.models.quant import absmax_int8, minmax_int4

    kinds = ("fp32", "bf16", "int4", "int8") + (("w4a8",) if w4a8.available() else ())
    layers = []
    for n, k in [(4864, 896), (4864, 896), (896, 4864)] * 24:
        w = torch.randn(n, k) * 0.02
        q, s, z = minmax_int4(w, torch.bfloat16)
        q8, s8 = absmax_int8(w, torch.bfloat16)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        w4 = w4a8.pack(q, s, z) if "w4a8" in kinds else None
        layers.append((w, w.bfloat16(), packed, torch.stack([s.t(), z.t()], -1).contiguous(), q8, s8, w4))

    def one(kind: str, m: int) -> float:
        xs = {k: torch.randn(m, k, dtype=torch.bfloat16) for k in (896, 4864)}
        xf = {k: x.float() for k, x in xs.items()}
        t0 = time.perf_counter()
        for w32, w16, packed, sz, q8, s8, w4 in layers:
            k = w32.shape[1]
            if kind == "fp32":
                F.linear(xf[k], w32)
            elif kind == "bf16":
                F.linear(xs[k], w16)
            elif kind == "int4":
                torch.ops.aten._weight_int4pack_mm_for_cpu(xs[k], packed, 32, sz)
            elif kind == "w4a8":
                torch.ops.tpro.w4a8_mm(xs[k], *w4)
            else:
                torch._weight_int8pack_mm(xs[k], q8, s8)
        return (time.perf_counter() - t0) * 1000

    table = {}
    for m in rows:
        runs = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for kind in runs:
                runs[kind].append(one(kind, m))
        table[m] = {kind: round(statistics.median(v), 1) for kind, v in runs.items()}
        log(f"rows {m}: " + " ".join(f"{k} {v} ms" for k, v in table[m].items()))
    dense = {m: min(t["fp32"], t["bf16"]) for m, t in table.items()}
    wins = {f: max((m for m in rows if table[m][f] < dense[m]), default=0) for f in kinds[2:]}
    return {"ms_by_rows": table, "quantized_wins_up_to_rows": wins}


def decode_speed(lm, new_tokens: int, repeats: int) -> float:
    from tpro.engine import Engine, SamplingParams

    engine = Engine.from_loaded(lm)
    best = 0.0
    for _ in range(repeats):
        done = engine.complete(PROMPT, SamplingParams(max_new_tokens=new_tokens, temperature=0.0), mode="direct")
        best = max(best, done.telemetry.decode_tokens_per_s)
    return best


def measure(row: str, args, texts: list[str]) -> dict:
    from tpro.models import load_model
    from tpro.models.bpc import bits_per_char
    from tpro.models.quant import set_dense_above

    dtype = "float32" if row in ("fp32", "w8a8") else "bfloat16"  # w8a8: fbgemm takes fp32 activations
    weights = row if row in ("int4", "int8", "w8a8", "w4a8") else "bf16"
    t0 = time.perf_counter()
    lm = load_model(args.model, dtype=dtype, weights=weights, threads=args.threads, progress=False)
    out = {"format": row, "activations": dtype, "load_s": round(time.perf_counter() - t0, 1)}
    if weights != "bf16":
        out["exact_tensors"] = lm.info["quant"]["exact"]
        out["q4_k_grid_tensors"] = lm.info["quant"]["q4_k_grid"]
        out["requantised_tensors"] = lm.info["quant"]["requantised"]
    if not args.skip_quality:
        t0 = time.perf_counter()
        measured = set_dense_above(lm.model, None)  # bits/char of the quantized kernel itself, at any rows
        out["bits_per_char"] = bits_per_char(lm.model, lm.tokenizer, texts, batch_tokens=args.batch_tokens)
        set_dense_above(lm.model, measured)
        out["bpc_s"] = round(time.perf_counter() - t0, 1)
        log(f"{row}: {out['bits_per_char']:.4f} bits/char ({out['bpc_s']} s)")
    if not args.skip_speed:
        out["decode_tokens_per_s"] = round(decode_speed(lm, args.new_tokens, args.repeats), 2)
        log(f"{row}: {out['decode_tokens_per_s']} tokens/s decode")
    del lm
    gc.collect()
    return out


def markdown(rows: list[dict]) -> str:
    ref = next((r["bits_per_char"] for r in rows if r["format"] == "fp32" and "bits_per_char" in r), None)
    lines = [
        "| weights | activations | bits/char | vs fp32 | decode tokens/s | on the GGUF's Q4_K grid (exactly) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        bpc = r.get("bits_per_char")
        cells = [r["format"], r["activations"], "-", "-", str(r.get("decode_tokens_per_s", "-")), "-"]
        if bpc is not None:
            cells[2] = f"{bpc:.4f}"
            cells[3] = f"{(bpc / ref - 1) * 100:+.2f}%" if ref else "-"
        if "exact_tensors" in r:
            total = r["q4_k_grid_tensors"] + r["requantised_tensors"]
            cells[5] = f"{r['q4_k_grid_tensors']} ({r['exact_tensors']}) of {total}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="model spec (default: the embedded Q4_K_M GGUF)")
    p.add_argument("--texts", default="../shared/data/ud/ru_test.txt", help="held-out text, one sentence a line")
    p.add_argument("--n-texts", type=int, default=200)
    p.add_argument("--formats", default="fp32,bf16,int8,int4,w8a8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-tokens", type=int, default=1024, help="padded tokens per bits/char forward")
    p.add_argument("--crossover", action="store_true", help="first measure matmul cost by rows per forward")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    result: dict = {"machine": platform_line(), "threads": args.threads, "model": args.model}
    if args.crossover:
        result["crossover"] = crossover()
        log(f"quantized kernel wins up to rows: {result['crossover']['quantized_wins_up_to_rows']}")
    texts = [t for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if t.strip()][: args.n_texts]
    if not (args.skip_quality and args.skip_speed):
        result["rows"] = [measure(row, args, texts) for row in args.formats.split(",")]
        print(markdown(result["rows"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False))


def platform_line() -> str:
    import platform

    import torch

    from tpro.models.loading import cpu_has_native_bf16

    model = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "unknown"
    )
    return (
        f"{model}, native bf16: {cpu_has_native_bf16()}, torch {torch.__version__}, python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
