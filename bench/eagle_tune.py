"""Choose EAGLE's CPU tree defaults by measurement: one model load, a grid of (depth, top_k, total_tokens), each
run on the same held-out prompts beside ``model.generate`` in the same dtype, ratios taken inside one process.

    python bench/eagle_tune.py --draft DIR [-n 128] [--per-domain 1] [--grid 4x4x12,5x6x16,6x8x32] [--json]
        [--weights int4] [--compile] [--split train] [--temperature 0.8]

``--compile`` verifies through ``tpro.eagle.target.CompiledTarget`` (graphs compiled before timing) and adds a
``plain`` row, the compiled one-token loop (``tpro.engine.compiled``) on the same weights. ``--split train``
tunes on the training prompts, keeping the held-out ones for the benchmark.

Prints a markdown table (tokens/s, speedup vs generate, acceptance length, ms per step, draft share) and, with
--json, the rows as JSON. The winner becomes ``EagleConfig.for_model``'s default (docs/benchmarks.md, EAGLE).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch

from tpro.bench.decode import run_engine, run_generate
from tpro.eagle import load_decoder
from tpro.eagle.data import PROMPTS_DIR, read_prompts
from tpro.eagle.target import CompiledTarget
from tpro.engine import Engine, SamplingParams
from tpro.engine.compiled import CompiledDecoder, cache_length
from tpro.engine.decoder import VanillaDecoder
from tpro.models import build_prompt, load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("-n", "--max-new-tokens", type=int, default=128)
    ap.add_argument("--per-domain", type=int, default=1)
    ap.add_argument("--grid", default="3x4x8,4x4x12,4x6x16,5x6x16,5x8x24,6x8x32,7x10x48")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--weights", default="bf16", choices=("bf16", "int8", "int4", "w4a8"))
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"))
    a = ap.parse_args()
    try:
        grid = [tuple(map(int, spec.split("x"))) for spec in a.grid.split(",")]
        assert all(len(g) == 3 and min(g) >= 1 for g in grid)
    except (ValueError, AssertionError):
        ap.error(f"--grid {a.grid!r}: expected comma-separated DEPTHxTOPKxNODES with positive integers, e.g. 4x6x16")
    rows = read_prompts(PROMPTS_DIR / f"{a.split}.jsonl")
    by_dom = defaultdict(list)
    for r in rows:
        by_dom[r.get("domain", "all")].append(r)
    picked = [r for d in sorted(by_dom) for r in by_dom[d][: a.per_domain]]
    lm = load_model("default", dtype=a.dtype, weights=a.weights, progress=False)
    try:
        dec = load_decoder(a.draft, lm, target=CompiledTarget() if a.compile else None)
    except (FileNotFoundError, ValueError) as e:
        ap.error(f"--draft {a.draft}: {e}")
    eng = Engine.from_loaded(lm, decoder=dec)
    chats = [build_prompt(lm.tokenizer, r["prompt"], "direct") for r in picked]
    plain = CompiledDecoder() if a.compile else VanillaDecoder()
    if a.compile:  # every graph before any timing
        plain.warm_up(lm.model, sorted({cache_length(len(c.input_ids), a.max_new_tokens, 256, None) for c in chats}))
        for c in chats:
            dec.target.warm_up(lm.model, len(c.input_ids), a.max_new_tokens)
    run_engine(eng, chats[0], 8, 0.0, 0)  # warm-up (first-call allocations)
    gen_tok = gen_s = plain_tok = plain_s = 0
    vanilla = []  # plain token ids on the same weights: how far each EAGLE output agrees with them
    for c in chats:
        k, dt = run_generate(lm, c.input_ids, a.max_new_tokens, a.temperature, 0)
        gen_tok, gen_s = gen_tok + k, gen_s + dt
        done = eng.complete(
            c, SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature), decoder=plain
        )
        vanilla.append(done.token_ids)
        plain_tok, plain_s = plain_tok + done.telemetry.generated_tokens, plain_s + done.telemetry.total_s
    gen_tps = gen_tok / gen_s
    out = [
        {"config": "model.generate", "tokens_per_s": round(gen_tps, 2), "speedup": 1.0},
        {
            "config": plain.name,
            "tokens_per_s": round(plain_tok / plain_s, 2),
            "speedup": round(plain_tok / plain_s / gen_tps, 3),
        },
    ]
    for d, k, n in grid:
        spec = f"{d}x{k}x{n}"
        dec.cfg.depth, dec.cfg.top_k, dec.cfg.total_tokens = d, k, n
        tok = s = steps = acc = ds = vs = same = 0
        for c, ref in zip(chats, vanilla):
            dec.forget()  # every grid point sees the same prompts: no drafting from an earlier point's answer
            done = eng.complete(c, SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature))
            t = done.telemetry
            tok, s, steps, acc = tok + t.generated_tokens, s + t.total_s, steps + t.steps, acc + t.draft_accepted
            ds, vs = ds + t.draft_s, vs + t.verify_s
            same += done.token_ids == ref
        out.append(
            {
                "config": spec,
                "tokens_per_s": round(tok / s, 2),
                "speedup": round(tok / s / gen_tps, 3),
                "identical_to_vanilla": f"{same}/{len(chats)}",
                "acceptance_length": round((acc + steps) / steps, 3),
                "ms_per_step": round(1000 * (ds + vs) / steps, 1),
                "draft_share": round(ds / (ds + vs), 3),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    if a.json:
        print(
            json.dumps(
                {
                    "threads": torch.get_num_threads(),
                    "prompts": [r.get("id") for r in picked],
                    "max_new_tokens": a.max_new_tokens,
                    "temperature": a.temperature,
                    "rows": out,
                }
            )
        )
    print("| depth x top-k x nodes | tokens/s | vs generate | accept len | ms/step | draft share | = vanilla |")
    print("|---|---|---|---|---|---|---|")
    for r in out:
        print(
            f"| {r['config']} | {r['tokens_per_s']} | {r['speedup']:.2f}x | {r.get('acceptance_length', '')} | "
            f"{r.get('ms_per_step', '')} | {r.get('draft_share', '')} | {r.get('identical_to_vanilla', '')} |"
        )


if __name__ == "__main__":
    main()
