"""Precision/recall of dedup and decontamination on planted duplicates and benchmark leaks.

    python bench/data_plants.py --base 3000 --leaks 100 --out /tmp/tpro-plants

Base: UD sentences (ru, be, kk, ky, tt, mk, bxr; >= 40 chars, distinct). Plants: 10% exact copies (case,
spacing, punctuation changed), 20% near copies with random character edits of 1/3/5/10/20% of the length,
and leaks of T-Math and MATH-500 questions inside a sentence (half verbatim, half with 2 character edits).
The same file goes through the CLI steps (dedup, then decontaminate), so the numbers are what a user gets.
UD itself holds near-identical template sentences ("X is a village in Y district..."): flagged base rows are
counted as false positives anyway and listed in the output so a reader can judge them.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    from data_common import ud_sentences

    from tpro.data.decontam import load_items
    from tpro.data.io import read_rows, write_rows
    from tpro.data.synth import plant, precision_recall

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=3000)
    ap.add_argument("--leaks", type=int, default=100)
    ap.add_argument("--out", default="/tmp/tpro-plants")
    ap.add_argument("--thresholds", default="0.5,0.7")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    sents = ud_sentences()
    base = rng.sample(sents, min(args.base, len(sents)))
    items = load_items(["t-math", "math-500"])
    leaks = [(it.id, it.question) for it in rng.sample(items, args.leaks)]
    rows = plant(base, leaks, exact_frac=0.1, near_frac=0.2, edit_fracs=(0.01, 0.03, 0.05, 0.1, 0.2), seed=0)
    src = out / "plants.jsonl"
    write_rows(src, rows)
    kind = {r["id"]: r["plant"] for r in rows}
    results = {"rows": len(rows), "planted": Counter(p["kind"] for p in kind.values())}
    dup_planted = {i for i, p in kind.items() if p["kind"] in ("exact", "near")}
    for th in args.thresholds.split(","):
        ded = out / f"dedup-{th}.jsonl"
        subprocess.run(
            ["tpro", "data", "dedup", str(src), "-o", str(ded), "--threshold", th, "--json", "--force"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        removed = set(kind) - {r["id"] for r in read_rows(ded)}
        removed_dups = {i for i in removed if kind[i]["kind"] != "leak"}  # leaks are decontamination's job
        res = precision_recall(removed_dups, dup_planted)
        res["recall_exact"] = precision_recall(removed, {i for i in dup_planted if kind[i]["kind"] == "exact"})[
            "recall"
        ]
        for f in (0.01, 0.03, 0.05, 0.1, 0.2):
            plant_f = {i for i in dup_planted if kind[i].get("edit_frac") == f}
            res[f"recall_near_{int(f * 100)}pct"] = precision_recall(removed, plant_f)["recall"]
        res["false_positive_examples"] = [r["text"][:90] for r in rows if r["id"] in removed_dups - dup_planted][:3]
        results[f"dedup_threshold_{th}"] = res
    dec = out / "decontaminated.jsonl"
    subprocess.run(
        [
            "tpro",
            "data",
            "decontaminate",
            str(src),
            "-o",
            str(dec),
            "--bench",
            "t-math",
            "--bench",
            "math-500",
            "--json",
            "--force",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    removed = set(kind) - {r["id"] for r in read_rows(dec)}
    leak_planted = {i for i, p in kind.items() if p["kind"] == "leak"}
    res = precision_recall(removed, leak_planted)
    for e in (0, 2):
        res[f"recall_leak_{e}_edits"] = precision_recall(removed, {i for i in leak_planted if kind[i]["edits"] == e})[
            "recall"
        ]
    res["missed"] = [r["text"][:120] for r in rows if r["id"] in leak_planted - removed]
    by = Counter()
    for r in read_rows(Path(str(dec) + ".removed.jsonl")):
        by[" + ".join(sorted({x["method"] for x in r["reasons"]}))] += 1
    res["removed_by_methods"] = dict(by)
    results["decontaminate"] = res
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
