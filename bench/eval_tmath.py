"""T-Math on the embedded default, direct vs reasoning, beside the T-pro 2.0 paper's figures.

    nohup python bench/eval_tmath.py --limit 20 --out bench/results/eval_tmath_default > bench/results/eval_tmath_default.log 2>&1 &

The same as ``tpro eval run --bench t-math --model default --limit 20 --mode both --max-tokens-direct 128
--max-tokens-reasoning 256 --out DIR --no-progress`` (greedy), then a markdown table for docs/benchmarks.md.
Killed, it resumes from DIR when started again. ``--table-only`` prints the table of a finished (or partial) run.

Budgets: direct mode asks for the answer alone (the model stops after a few tokens; 128 caps a ramble);
reasoning mode gets 256 tokens for trace + answer, and a trace cut by the limit has no answer and counts as
wrong. Why not 512 (the CLI's default): on the shared 2-core machine, under a load average of ~15, one 512-token
reasoning generation took 1314 s (0.39 tokens/s, against ~11 tokens/s on an idle machine), and the 0.5B model's
greedy traces loop until the limit anyway (measured on tmath-0001), so 512 would buy no accuracy for 2x the time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# T-pro 2.0 paper, T-Math pass@1 (reasoning mode), all 331 problems
PAPER = [("T-pro 2.0 (paper)", 0.541), ("Qwen3-32B (paper)", 0.529)]


def table(run_dir: Path) -> str:
    from tpro.eval.report import load_run, summarize

    config, records = load_run(run_dir, recheck=True)  # today's checker, whatever the run's process had
    s = summarize(config, records)
    lines = [
        "| model | mode | items | pass@1 | mean output tokens | mean latency, s | accuracy per 1k tokens | "
        "cut by the limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, m in s["modes"].items():
        lines.append(
            f"| {s['generator']} (embedded default) | {mode} | {m['items']} | {m['pass@1']:.3f} | "
            f"{m['mean_output_tokens']:.0f} | {m['mean_latency_s']:.1f} | {m['acc_per_1k_tokens']:.3f} | "
            f"{m['truncated']:.0%} |"
        )
    for name, acc in PAPER:
        lines.append(f"| {name} | reasoning | 331 | {acc:.3f} | – | – | – | – |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/eval_tmath_default"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if not args.table_only:
        from tpro.eval.runner import EvalConfig, run_eval

        cfg = EvalConfig(
            bench="t-math",
            limit=args.limit,
            model="default",
            threads=args.threads,
            max_new_tokens_direct=128,
            max_new_tokens=256,
        )
        run_eval(cfg, args.out, progress=False, log=lambda s: print(s, flush=True))
    print(table(args.out))


if __name__ == "__main__":
    main()
