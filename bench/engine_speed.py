"""Engine decode speed vs transformers' ``model.generate`` on the embedded default, fp32 and bf16.

Usage: python bench/engine_speed.py [--new-tokens 128] [--dtypes float32 bfloat16] [--out bench/results/engine_speed.json]

Both sides generate exactly N tokens greedily from the same 5 Russian prompts (EOS ignored), interleaved
prompt by prompt so machine noise hits both alike; we report medians and the engine/generate ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

PROMPTS = [
    "Сколько будет 17*23? Объясни.",
    "Напиши короткое стихотворение о зимнем лесе.",
    "Объясни, что такое рекурсия, простыми словами.",
    "Переведи на английский: «Мы встретимся завтра в девять утра у вокзала».",
    "Какие три главные причины изменения климата?",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/engine_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tpro.engine import Engine, SamplingParams
    from tpro.models import load_model

    n = args.new_tokens
    rows = []
    for dtype in args.dtypes:
        lm = load_model("default", dtype=dtype, progress=False)
        eng = Engine.from_loaded(lm)
        eng.eos = set()  # exactly n tokens on both sides
        ours, hf = [], []
        for text in PROMPTS:
            p = eng.prompt(text, "direct")
            ids = torch.tensor([p.input_ids])
            t = time.perf_counter()
            done = eng.complete(p, SamplingParams(max_new_tokens=n))
            ours.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            out = lm.model.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n)
            hf.append(n / (time.perf_counter() - t))
            # identical up to the model's first EOS (after it, generate's min_new_tokens masks EOS, we don't)
            eos = [i for i, t in enumerate(done.token_ids) if t in Engine.from_loaded(lm).eos] + [n]
            assert out[0, ids.shape[1] :].tolist()[: eos[0]] == done.token_ids[: eos[0]], "greedy outputs differ"
        row = {
            "dtype": dtype,
            "engine_tok_s": statistics.median(ours),
            "generate_tok_s": statistics.median(hf),
            "ratio": statistics.median(o / h for o, h in zip(ours, hf)),
            "per_prompt": {"engine": ours, "generate": hf},
        }
        rows.append(row)
        print(
            f"{dtype}: engine {row['engine_tok_s']:.2f} tok/s, generate {row['generate_tok_s']:.2f} tok/s, ratio {row['ratio']:.3f}"
        )
        del lm, eng
    result = {
        "date": str(date.today()),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "new_tokens": n,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("| dtype | engine tok/s | model.generate tok/s | ratio (median of per-prompt ratios) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['engine_tok_s']:.2f} | {r['generate_tok_s']:.2f} | {r['ratio']:.3f} |")


if __name__ == "__main__":
    main()
