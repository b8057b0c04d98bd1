"""Bits per character of model directories on held-out text, one line each (issue 14's tables).

    python bench/bits_per_char.py remapped chat/snapshots/15min chat/snapshots/45min --text ../shared/data/ud/ru_test.txt

fp32, ``tpro.models.bpc.bits_per_char`` (every token scored, tokenizer-independent: bits / characters), the same
call ``tpro tokenizer recover --eval`` makes; one non-empty line per text. ``--out`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="Model directories (or tpro model specs)")
    ap.add_argument("--text", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()

    from tpro.models import load_model
    from tpro.models.bpc import bits_per_char

    texts = [ln.rstrip("\n") for ln in Path(args.text).open(encoding="utf-8") if ln.strip()]
    out = {}
    for spec in args.models:
        lm = load_model(spec, dtype="float32", threads=args.threads, progress=False)
        out[spec] = bits_per_char(lm.model.eval(), lm.tokenizer, texts, max_length=1024, batch_tokens=1024)
        print(f"{spec}\t{out[spec]:.4f}", flush=True)
        del lm
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
