"""Where a one-token decode step of the embedded model spends its time, per weight format (issue 17).

    python bench/decode_profile.py --weights bf16 --weights int4 --weights w8a8 --rows 16 [--no-onednn] [--compile]

For each format: the mean ms of a plain greedy step (``DynamicCache``, the engine's vanilla path), then one
``torch.profiler`` pass over ``--steps`` steps split into the model's parts (MLP gate/up, MLP down, attention
projections, lm_head, attention itself, everything else: norms, rotary, residuals, cache updates, dispatch).
``--compile`` also times the step through ``torch.compile`` over a ``StaticCache`` (transformers' documented
compiled-decoding setup) and reports the compile time and whether the tokens stayed the same.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

LINEAR_OPS = (
    "aten::_weight_int4pack_mm_for_cpu",
    "quantized::linear_dynamic",
    "aten::addmm",
    "aten::mm",
    "aten::_weight_int8pack_mm",
    "aten::linear",
    "mkldnn::_linear_pointwise",
)


def part_of(n_out: int, n_in: int, cfg) -> str:
    """The model part a linear layer of this shape (out, in) belongs to."""
    if n_out == cfg.vocab_size:
        return "lm_head"
    if n_out == cfg.intermediate_size:
        return "MLP gate/up"
    if n_in == cfg.intermediate_size:
        return "MLP down"
    return "attention projections"


def step_ms(model, ids, steps: int, rows: int = 1) -> tuple[float, list[int]]:
    """Mean ms of a greedy step over ``rows`` copies of the prompt (a batch of ``rows`` sequences) -> (ms, row 0's
    tokens)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    ids = ids.repeat(rows, 1)
    tok = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1)
    out = []
    for _ in range(3):  # warm-up
        tok = model(input_ids=tok[:, None], past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1)
    t0 = time.perf_counter()
    for _ in range(steps):
        tok = model(input_ids=tok[:, None], past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1)
        out.append(int(tok[0]))
    return (time.perf_counter() - t0) / steps * 1e3, out


def profile_parts(model, ids, steps: int) -> dict[str, float]:
    """ms per step by part, from one profiled run of ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    tok = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1].argmax()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            tok = model(input_ids=tok.view(1, 1), past_key_values=cache, use_cache=True).logits[0, -1].argmax()
        wall = (time.perf_counter() - t0) / steps * 1e3
    parts: dict[str, float] = {}
    cfg = model.config
    for ev in prof.key_averages(group_by_input_shape=True):
        ms = ev.self_cpu_time_total / 1e3 / steps
        shapes = ev.input_shapes or []
        if ev.key == "quantized::linear_dynamic":  # fbgemm's packed weights: their shape is not recorded
            key = "w8a8 linears (every part but MLP down)"
        elif ev.key in ("aten::addmm", "aten::mm") and len(shapes) >= 2:
            w = shapes[-1]  # x @ w.T: w.T is [in, out]
            key = part_of(w[1], w[0], cfg) if len(w) == 2 else "other ops (norms, rotary, residuals, cache, casts)"
        elif ev.key in LINEAR_OPS and len(shapes) >= 2:
            n_in = shapes[0][-1] if shapes[0] else 0
            n_out = max((s[0] for s in shapes[1:] if len(s) >= 2), default=0)  # the packed weight's rows
            key = part_of(n_out, n_in, cfg)
        elif "scaled_dot_product" in ev.key:
            key = "attention (SDPA)"
        else:
            key = "other ops (norms, rotary, residuals, cache, casts)"
        parts[key] = parts.get(key, 0.0) + ms
    # profiler self-times of nested ops double-count nothing; the wall includes Python between ops
    parts["Python and dispatch outside ops"] = max(0.0, wall - sum(parts.values()))
    parts["step wall (profiled)"] = wall
    return {k: round(v, 2) for k, v in parts.items()}


def compiled_ms(model, ids, steps: int, ref: list[int]) -> dict:
    from transformers import StaticCache

    S = ids.shape[1]
    cache = StaticCache(config=model.config, max_cache_len=S + steps + 8)

    def step(tok, pos):
        return model(input_ids=tok, position_ids=pos[None], cache_position=pos, past_key_values=cache).logits

    cstep = torch.compile(step, dynamic=False)
    logits = model(input_ids=ids, past_key_values=cache, cache_position=torch.arange(S), logits_to_keep=1).logits
    tok = logits[0, -1].argmax().view(1, 1)
    out, times = [], []
    for i in range(3 + steps):
        t0 = time.perf_counter()
        tok = cstep(tok, torch.tensor([S + i]))[0, -1].argmax().view(1, 1)
        times.append(time.perf_counter() - t0)
        if i >= 3:
            out.append(int(tok))
    return {
        "compile_s": round(times[0], 1),
        "ms_per_step": round(sum(times[3:]) / steps * 1e3, 2),
        "same_tokens_as_eager": out == ref,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--weights", action="append", help="repeatable; default int4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--rows", type=int, action="append", default=[], help="also time batched steps of N rows")
    ap.add_argument("--no-onednn", action="store_true", help="keep fp32 linears on F.linear (the BLAS)")
    ap.add_argument("--out", default="bench/results/decode_profile.json")
    args = ap.parse_args()
    from tpro.models import load_model

    torch.set_num_threads(args.threads)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads, "formats": {}}
    for weights in args.weights or ["int4"]:
        lm = load_model(args.model, weights=weights, threads=args.threads, progress=False)
        if args.no_onednn:
            from torch import nn

            from tpro.models.dense import OneDNNLinear

            for m in lm.model.modules():
                if type(m) is OneDNNLinear:
                    m.__class__ = nn.Linear
            lm.info["onednn_linears"] = 0
        ids = lm.tokenizer("Расскажи о Москве подробно, пожалуйста.", return_tensors="pt").input_ids
        with torch.inference_mode():
            ms, ref = step_ms(lm.model, ids, args.steps)
            row = {"dtype": str(lm.model.dtype), "onednn_linears": lm.info.get("onednn_linears", 0)}
            row["ms_per_step"] = round(ms, 2)
            for rows in args.rows:
                row[f"ms_per_step_{rows}_rows"] = round(step_ms(lm.model, ids, max(4, args.steps // 4), rows)[0], 2)
            row["parts"] = profile_parts(lm.model, ids, 10)
        if args.compile:
            with torch.inference_mode():
                row["compiled"] = compiled_ms(lm.model, ids, args.steps, ref)
        result["formats"][weights + ("-blas" if args.no_onednn else "")] = row
        print(weights, json.dumps(row, indent=1), flush=True)
        del lm
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
