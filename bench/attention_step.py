"""One compiled int4 decode step of the embedded model under three attention implementations, side by side in one
process: transformers' SDPA, transformers' eager attention, and ``tpro.models.attention`` (SDPA outside compiled
graphs, fused matmuls inside), each over a 256-slot static cache, median of 40 steps.

    python bench/attention_step.py [--weights int4] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import StaticCache

from tpro.models import load_model
from tpro.models.attention import NAME


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="int4", choices=("bf16", "int8", "int4"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lm = load_model("default", weights=a.weights, progress=False)
    model = lm.model
    for impl in ("sdpa", "eager", NAME):
        model.set_attn_implementation(impl)
        cache = StaticCache(config=model.config, max_cache_len=256)

        def step(tok, pos, cache=cache):
            out = model(input_ids=tok, position_ids=pos[None], cache_position=pos, cache=cache, use_cache=True)
            return out.logits[:, -1]

        compiled = torch.compile(step, dynamic=False, fullgraph=True)
        tok = torch.zeros(1, 1, dtype=torch.long)
        with torch.inference_mode():
            model(input_ids=torch.zeros(1, 20, dtype=torch.long), cache=cache, use_cache=True)
            t0 = time.perf_counter()
            compiled(tok, torch.tensor([20]))
            compile_s = time.perf_counter() - t0
            times = []
            for i in range(a.steps):
                t0 = time.perf_counter()
                compiled(tok, torch.tensor([21 + i]))
                times.append(1000 * (time.perf_counter() - t0))
        print(f"{impl}: {statistics.median(times):.2f} ms a step (min {min(times):.2f}; compile {compile_s:.0f} s)")
    model.set_attn_implementation("sdpa")


if __name__ == "__main__":
    main()
