"""Build the EAGLE prompt lists shipped in ``src/tpro/eagle/prompts/`` from the shared offline data.

    python bench/eagle_make_prompts.py /work/shared/data

Sources (all Apache-2.0, the license is kept on every row): ru-alpaca-seed (IlyaGusev/rulm), T-Math (t-tech/T-math),
GSM8K test questions and solutions (jianzhnie/LLMEval). Held out for the benchmark and never trained on: every 8th
ru-alpaca seed (Russian chat) and every 10th T-Math problem (Russian math). Run once; the output is committed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "tpro" / "eagle" / "prompts"


def rows(path: Path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(data: Path):
    train, heldout = [], []
    for i, r in enumerate(rows(data / "ru-alpaca-seed" / "seed_tasks.jsonl")):
        inst = r["instances"][0] if r.get("instances") else {}
        q = r["instruction"] + (("\n\n" + inst["input"]) if inst.get("input") else "")
        row = {
            "id": r["id"],
            "domain": "ru-chat",
            "license": "Apache-2.0 (IlyaGusev/rulm)",
            "prompt": q,
            "reference": inst.get("output", ""),
        }
        (heldout if i % 8 == 7 else train).append(row)
    for i, r in enumerate(rows(data / "t-math" / "t_math.jsonl")):
        q = r["question"].replace("\r", "\\r").replace("\t", "\\t")  # the file's two known escape accidents
        row = {
            "id": r["id"],
            "domain": "ru-math",
            "license": "Apache-2.0 (t-tech/T-math)",
            "prompt": q,
            "reference": "",
        }
        (heldout if i % 10 == 9 else train).append(row)
    for r in rows(data / "en-math" / "gsm8k_test.jsonl")[:300]:
        train.append(
            {
                "id": r["id"],
                "domain": "en-math",
                "license": "Apache-2.0 (jianzhnie/LLMEval)",
                "prompt": r["question"],
                "reference": r.get("solution", ""),
            }
        )
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rs in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(OUT / name, "w", encoding="utf-8") as f:
            for r in rs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(name, len(rs))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"))
