"""Russian prompts for self-distillation after a vocabulary swap (issue 14): the base model answers them with
``tpro data sample`` and the swapped model learns those answers in its new tokens.

    python bench/ru_chat_prompts.py --out prompts.jsonl
    tpro data sample prompts.jsonl -o answers.jsonl --template "{instruction}\\n\\n{input}" --samples 2 -n 320

Rows (``id``, ``instruction``, ``input``): the 137 Russian instruction seeds of ru-alpaca (rulm, Apache-2.0;
the first instance's input) and, for variety of vocabulary, a request to explain each of the first
``--ud-sentences`` UD Russian *dev* sentences of 40+ characters (the test sentences stay held out for bits/char).
None of ``bench/tokenizer_speed.py``'s prompts is among them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EXPLAIN = "Объясни простыми словами, о чём говорится в этом предложении, и добавь пару фраз от себя: «{s}»"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default=str(SHARED / "ru-alpaca-seed" / "seed_tasks.jsonl"))
    ap.add_argument("--ud-dev", default=str(SHARED / "ud" / "ru_dev.txt"))
    ap.add_argument("--ud-sentences", type=int, default=240, help="Dev sentences considered (the first N)")
    args = ap.parse_args()

    rows = []
    for line in Path(args.seeds).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        rows.append(
            {"id": d["id"], "instruction": d["instruction"], "input": (d.get("instances") or [{}])[0].get("input", "")}
        )
    dev = [s.strip() for s in Path(args.ud_dev).read_text(encoding="utf-8").splitlines() if s.strip()]
    for i, s in enumerate(dev[: args.ud_sentences]):
        if len(s) >= 40:
            rows.append({"id": f"ud-dev-{i}", "instruction": EXPLAIN.format(s=s), "input": ""})
    Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} prompts -> {args.out}")


if __name__ == "__main__":
    main()
