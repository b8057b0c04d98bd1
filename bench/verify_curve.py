"""The target's verify cost by tree size, eager (``measure_verify_ms``, a ``DynamicCache``) and compiled
(``tpro.eagle.target.CompiledTarget``, a static cache, one graph per bucket), side by side in one process, plus one
draft-head level: the costs the EAGLE planner sizes trees with.

    python bench/verify_curve.py [--weights int4] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tpro.eagle import load_decoder
from tpro.eagle.decoder import measure_verify_ms
from tpro.eagle.target import CompiledTarget
from tpro.models import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="int4", choices=("bf16", "int8", "int4"))
    ap.add_argument("--buckets", default="1,2,4,8,16", help="tree sizes to compile and time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    buckets = tuple(int(x) for x in a.buckets.split(","))
    lm = load_model("default", weights=a.weights, progress=False)
    target = CompiledTarget(buckets=buckets)
    t0 = time.perf_counter()
    compile_s = target.warm_up(lm.model, 64, 128)
    warm_s = time.perf_counter() - t0
    res = {
        "weights": a.weights,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "compile_s": {f"{length}/{b}": s for (length, b), s in compile_s.items()},
        "warm_up_s": round(warm_s, 1),
        "compiled_ms": target.measure(lm.model, prefix=64, max_new_tokens=128),
        "eager_ms": measure_verify_ms(lm.model, sizes=buckets),
        "level_ms": load_decoder("default", lm, calibrate=False).measure_level_ms(lm.model),
    }
    print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
