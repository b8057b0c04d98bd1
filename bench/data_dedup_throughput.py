"""Throughput of MinHash dedup on 100k short documents: datasketch in one process vs datatrove's
LocalPipelineExecutor (1 and 2 workers), same threshold and signature length (so the same LSH bands).

    python bench/data_dedup_throughput.py --rows 100000 --out /tmp/tpro-dedup-bench > bench_dedup.log 2>&1

Prints one JSON line per method; the CPU is shared with other jobs, so compare methods within one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    from data_common import short_docs

    from tpro.data.dedup import DedupConfig, dedup
    from tpro.data.dedup_datatrove import run_datatrove_dedup
    from tpro.data.io import write_rows
    from tpro.data.synth import plant

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", default="/tmp/tpro-dedup-bench")
    ap.add_argument("--methods", default="datasketch-char,datasketch-word,datatrove-1,datatrove-2")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    base = short_docs(int(args.rows / 1.1))
    rows = plant(base, exact_frac=0.03, near_frac=0.07, edit_fracs=(0.01, 0.03), seed=0)[: args.rows]
    src = out / "in.jsonl"
    write_rows(src, rows)
    print(json.dumps({"rows": len(rows), "mean_chars": sum(len(r["text"]) for r in rows) / len(rows)}), flush=True)
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        if method.startswith("datasketch"):
            unit = method.split("-")[1]
            cfg = DedupConfig(unit=unit, shingle=5 if unit == "char" else 3, threshold=0.7)
            res = dedup(rows, cfg)
            counts = res.counts
        else:
            workers = int(method.split("-")[1])
            cfg = DedupConfig(unit="word", shingle=3, threshold=0.7)
            counts = run_datatrove_dedup(
                str(src), out / f"{method}.jsonl", cfg, workers=workers, work=out / f"{method}-work"
            )
        dt = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "method": method,
                    "seconds": round(dt, 1),
                    "rows_per_s": round(len(rows) / dt),
                    "rows_out": counts["rows_out"],
                    "removed": counts["removed"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":  # datatrove's executors start processes with spawn/forkserver
    main()
