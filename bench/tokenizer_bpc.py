"""Bits per character on held-out Russian for the embedded model before and after the vocabulary swap.

    python bench/tokenizer_bpc.py [--swap 34000] [--tokenizer-out DIR] [--model-out DIR] [--lines N]

1. Adapt the embedded model's own tokenizer (Qwen2.5 vocabulary) with the default offline corpus
   (skipped when --tokenizer-out already holds one).
2. Remap the embedded Qwen2.5-Coder-0.5B-Instruct to it with each init method: ``mean`` and ``contextual``
   (fitted on UD Russian dev sentences, ../shared/data/ud/ru_dev.txt).
3. Bits per character (``tpro.models.bpc.bits_per_char``) on UD Russian test sentences (ru_test.txt, never
   used above) for the base model with its own tokenizer and for each remapped model with the new one, plus
   tokens per character, so the cost per character can be compared too.
The mean-init checkpoint is --model-out, the contextual one --model-out-contextual. Writes a JSON summary.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UD = ROOT.parent / "shared" / "data" / "ud"


def bpc_of(spec: str, lines: list[str]) -> dict:
    import torch

    from tpro.models import load_model
    from tpro.models.bpc import bits_per_char

    torch.set_num_threads(2)
    lm = load_model(spec, progress=False)
    t0 = time.perf_counter()
    bpc = bits_per_char(lm.model, lm.tokenizer, lines, batch_tokens=2048)
    n_tok = sum(len(lm.tokenizer(x, add_special_tokens=False)["input_ids"]) for x in lines)
    res = {
        "bpc": round(bpc, 4),
        "tokens": n_tok,
        "chars": sum(map(len, lines)),
        "chars_per_token": round(sum(map(len, lines)) / n_tok, 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    del lm
    gc.collect()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--swap", type=int, default=34000)
    ap.add_argument("--tokenizer-out", type=Path, default=Path("/work/notes/artifacts/tokenizer-qwen25-cyr"))
    ap.add_argument("--model-out", type=Path, default=Path("/work/notes/artifacts/remapped-default"))
    ap.add_argument("--lines", type=int, default=300, help="use only the first N test lines (0: all)")
    ap.add_argument("--summary", type=Path, default=Path("/tmp/tok-bench/bpc.json"))
    ap.add_argument(
        "--only",
        choices=["base", "mean", "contextual"],
        action="append",
        help="measure only these (repeatable; default all three)",
    )
    args = ap.parse_args(argv)
    from tpro.models.default import ensure_gguf
    from tpro.models.loading import convert_gguf
    from tpro.tokenizer.adapt import AdaptConfig, adapt
    from tpro.tokenizer.remap import RemapConfig, remap

    base_dir = convert_gguf(ensure_gguf(), progress=False)
    if not (args.tokenizer_out / "tokenizer.json").is_file():
        t0 = time.perf_counter()
        adapt(AdaptConfig(base=str(base_dir), out=str(args.tokenizer_out), swap=args.swap))
        print(f"adapt: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    test = (UD / "ru_test.txt").read_text(encoding="utf-8").splitlines()
    test = [x for x in test if x.strip()][: args.lines or None]
    only = args.only or ["base", "mean", "contextual"]
    results = {"test_lines": len(test)}
    if "base" in only:
        results["base"] = bpc_of("default", test)
        print("base", results["base"], file=sys.stderr, flush=True)
    for method in [m for m in ("mean", "contextual") if m in only]:
        out = args.model_out if method == "mean" else args.model_out.with_name(args.model_out.name + f"-{method}")
        t0 = time.perf_counter()
        if (out / "tpro_remap.json").is_file() and json.loads((out / "tpro_remap.json").read_text())[
            "method"
        ] == method:
            stats = json.loads((out / "tpro_remap.json").read_text())  # made earlier by the same command
        else:
            stats = remap(
                RemapConfig(
                    model="default",
                    tokenizer=str(args.tokenizer_out),
                    out=str(out),
                    method=method,
                    text=[str(UD / "ru_dev.txt")] if method == "contextual" else [],
                ),
                show_progress=False,
            )
        results[method] = {
            **bpc_of(str(out), test),
            "remap_seconds": stats.get("seconds"),
            "fitted_rows": stats["fitted"],
            "swapped_rows": stats["swapped"],
            "dir": str(out),
        }
        print(method, results[method], file=sys.stderr, flush=True)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
