"""Cost of one target forward over N new tokens (a verification tree) and of one draft-head level, fp32 vs bf16.

    python bench/eagle_tree_cost.py --prefix 300 --reps 3 > bench/results/eagle_tree_cost.json

Used to choose EagleConfig's CPU defaults (docs/benchmarks.md, EAGLE section): the verify cost curve says how
many nodes a step can afford in each dtype; the draft cost says how deep the tree can go, and
which FR-Spec vocabulary size it can afford (the head runs in the target's dtype, as ``load_decoder`` loads it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import DynamicCache

from tpro.eagle import tree
from tpro.eagle.head import init_head
from tpro.models import load_model


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="1,4,8,16,32,48,64")
    ap.add_argument("--hot-vocab", default="8192,16384,32768", help="FR-Spec draft vocabulary sizes to time")
    args = ap.parse_args()
    res = {"prefix": args.prefix, "threads": torch.get_num_threads(), "verify_ms": {}, "draft_level_ms": {}}
    for dtype in ("float32", "bfloat16"):
        lm = load_model("default", dtype=dtype, progress=False)
        m = lm.model
        prefix = torch.randint(1000, 20000, (1, args.prefix))
        cache = DynamicCache(config=m.config)
        m.get_decoder()(input_ids=prefix, cache=cache, use_cache=True)
        row = {}
        for n in map(int, args.sizes.split(",")):
            parents = torch.tensor([-1] + [max(0, (i - 1) // 4) for i in range(1, n)])
            anc = tree.ancestors(parents)
            mask = tree.tree_attention_mask(anc, args.prefix, m.dtype)
            pos = (args.prefix + tree.depths(parents))[None]
            ids = torch.randint(1000, 20000, (1, n))

            def step():
                h = m.get_decoder()(
                    input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True
                ).last_hidden_state
                m.get_output_embeddings()(h)
                tree.keep_cache_positions(cache, torch.arange(args.prefix))

            row[n] = round(1000 * timed(step, args.reps), 1)
            print(dtype, "verify", n, row[n], flush=True)
        res["verify_ms"][dtype] = row
        drow = {}
        for hv in map(int, args.hot_vocab.split(",")):
            # the head in the target's dtype, as load_decoder runs it
            head = init_head(m, torch.arange(hv)).to(m.dtype).attach(m)
            hc = DynamicCache()
            feats = torch.randn(args.prefix, m.config.hidden_size, dtype=m.dtype)
            head(m.get_input_embeddings()(prefix), feats[None], torch.arange(args.prefix)[None], None, hc)
            for k in (1, 4, 8, 10):
                ids, f = torch.randint(1000, 20000, (k,)), torch.randn(1, k, m.config.hidden_size, dtype=m.dtype)
                mask = tree.tree_attention_mask(torch.eye(k, dtype=torch.bool), args.prefix, m.dtype)

                def level():
                    h = head(m.get_input_embeddings()(ids)[None], f, torch.full((1, k), args.prefix), mask, hc)
                    torch.log_softmax(head.logits(h).float(), -1).topk(k)
                    tree.keep_cache_positions(hc, torch.arange(args.prefix))

                drow[f"hot{hv}/k{k}"] = round(1000 * timed(level, args.reps), 1)
                print(dtype, "draft level", f"hot {hv}", f"k {k}", drow[f"hot{hv}/k{k}"], flush=True)
        res["draft_level_ms"][dtype] = drow
        del lm  # the next dtype loads a fresh model (m and cache are rebound then)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
