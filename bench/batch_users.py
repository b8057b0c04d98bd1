"""Batch users, one at a time vs continuously batched, side by side in one run (issue 13).

    python bench/batch_users.py --out bench/results/batch_users

Two jobs, each run twice through the real CLI (model load included, as a user waits for it), ``--batch 1`` then
``--batch N``:
  - ``tpro eval run``: T-Math, the first ``--eval-items`` problems, direct mode, greedy, embedded default;
    the two runs must give the same answers (fp32: a request's greedy output does not depend on the batch);
  - ``tpro data difficulty``: ``--problems`` T-Math problems x ``--samples`` sampled answers (T=0.7, seeded).
The eval entry also gets ``bound``: the most any batching could gain on that workload, from the one-at-a-time
run's own fixed cost, prefills and per-token cost (``ceiling``).
Writes ``OUT/summary.json`` and prints it. Each job's run directory is
fresh (an earlier one is removed), so no figure comes from a resumed run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` -> wall seconds; its output goes to ``log``; a failure stops the benchmark."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return wall


def records(run_dir: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def ceiling(wall_one: float, rows: list[dict]) -> dict:
    """The most any batching can gain over the one-at-a-time run ``wall_one`` whose items are ``rows``.

    Split that run into its fixed cost F (imports, model load, report: the wall time outside the items), its
    prefills P (the items' times to first token) and its decode steps (the rest, at c seconds a token). A perfect
    batcher still pays F, still pays P (a prefill is compute-bound: a batch of prompts costs the sum of their
    prefills, docs/benchmarks.md "forward costs"), and at best advances every sequence for the price of one, so it
    needs (longest answer - 1) steps of c. Ceiling = wall_one / (F + P + (max tokens - 1) * c)."""
    prefill = sum(r["ttft_s"] for r in rows)
    decode = sum(r["latency_s"] - r["ttft_s"] for r in rows)
    steps = sum(max(r["output_tokens"] - 1, 0) for r in rows)
    per_token = decode / max(steps, 1)
    fixed = wall_one - sum(r["latency_s"] for r in rows)
    longest = max(r["output_tokens"] for r in rows)
    best = fixed + prefill + (longest - 1) * per_token
    return {
        "fixed_s": round(fixed, 2),
        "prefill_s": round(prefill, 2),
        "decode_s": round(decode, 2),
        "ms_per_token": round(1000 * per_token, 1),
        "longest_answer": longest,
        "best_batched_s": round(best, 2),
        "ceiling": round(wall_one / best, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/batch_users")
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--weights", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="--batch of the batched runs")
    ap.add_argument("--eval-items", type=int, default=20)
    ap.add_argument("--eval-tokens", type=int, default=128, help="--max-new-tokens-direct of the eval runs")
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--difficulty-tokens", type=int, default=128, help="--max-new-tokens of the difficulty runs")
    ap.add_argument("--skip", choices=["eval", "difficulty"], action="append", default=[])
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model", args.model, "--dtype", args.dtype, "--weights", args.weights, "--threads", str(args.threads)]
    summary: dict = {"args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    if "eval" not in args.skip:
        walls, recs = {}, {}
        for batch in (1, args.batch):
            d = out / f"eval-b{batch}"
            shutil.rmtree(d, ignore_errors=True)
            cmd = ["tpro", "eval", "run", "--bench", "t-math", "--mode", "direct", "--limit", str(args.eval_items)]
            cmd += ["--max-new-tokens-direct", str(args.eval_tokens), "--batch", str(batch), "--out", str(d)]
            walls[batch] = run(cmd + common + ["--no-progress"], out / f"eval-b{batch}.log")
            recs[batch] = records(d)
            print(f"eval --batch {batch}: {walls[batch]:.1f} s", flush=True)
        one, many = recs[1], recs[args.batch]
        same = sum(one[i]["output"] == many[i]["output"] for i in one)
        summary["eval"] = {
            "wall_s": {str(b): round(w, 1) for b, w in walls.items()},
            "speedup": round(walls[1] / walls[args.batch], 2),
            "items": len(one),
            "same_output": same,
            "same_extracted": sum(one[i]["extracted"] == many[i]["extracted"] for i in one),
            "correct": {str(b): sum(r["correct"] for r in recs[b].values()) for b in recs},
            "output_tokens": {str(b): sum(r["output_tokens"] or 0 for r in recs[b].values()) for b in recs},
            "bound": ceiling(walls[1], list(one.values())),
        }

    if "difficulty" not in args.skip:
        from tpro.eval.benchmarks import load_benchmark

        items = load_benchmark("t-math", limit=args.problems)
        src = out / "problems.jsonl"
        src.write_text(
            "".join(
                json.dumps({"question": it.question, "answer": it.answer}, ensure_ascii=False) + "\n" for it in items
            )
        )
        walls, kept = {}, {}
        for batch in (1, args.batch):
            dst = out / f"difficulty-b{batch}.jsonl"
            for old in out.glob(f"difficulty-b{batch}.jsonl*"):
                old.unlink()
            cmd = ["tpro", "data", "difficulty", str(src), "-o", str(dst), "--samples", str(args.samples)]
            cmd += ["--max-new-tokens", str(args.difficulty_tokens), "--batch", str(batch), "--json"]
            walls[batch] = run(cmd + common, out / f"difficulty-b{batch}.log")
            kept[batch] = json.loads((out / f"difficulty-b{batch}.jsonl.histogram.json").read_text())["pass_rates"]
            print(f"difficulty --batch {batch}: {walls[batch]:.1f} s", flush=True)
        summary["difficulty"] = {
            "wall_s": {str(b): round(w, 1) for b, w in walls.items()},
            "speedup": round(walls[1] / walls[args.batch], 2),
            "problems": args.problems,
            "samples": args.samples,
            "pass_rates": {str(b): kept[b] for b in kept},
            "same_pass_rates": kept[1] == kept[args.batch],
        }

    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
