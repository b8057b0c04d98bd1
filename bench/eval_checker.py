"""The answer checker against plain math-verify on the pinned table of tricky pairs (tests/eval/test_check.py),
and on every shipped gold answer (each must match itself).

    python bench/eval_checker.py

Plain math-verify here means what most harnesses do: ``verify(parse(gold), parse(output))`` on the raw output.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    from math_verify import parse, verify

    from tests.eval.test_check import TABLE
    from tpro.eval.benchmarks import load_benchmark
    from tpro.eval.check import is_correct

    def plain(text: str, gold: str) -> bool:
        try:
            return bool(verify(parse(f"${gold}$"), parse(text)))
        except Exception:
            return False

    ours = sum(is_correct(t, g) is e for t, g, e in TABLE)
    mv = sum(plain(t, g) is e for t, g, e in TABLE)
    missed = [(t, g) for t, g, e in TABLE if plain(t, g) is not e]
    print(f"tricky pairs: {len(TABLE)}; tpro.eval.check right on {ours}, plain math-verify right on {mv}")
    for t, g in missed:
        print(f"  plain math-verify wrong: {t!r} vs gold {g!r}")
    for bench in ("t-math", "math-500"):
        items = load_benchmark(bench)
        a = sum(is_correct(f"\\boxed{{{i.answer}}}", i.answer) for i in items)
        b = sum(plain(f"\\boxed{{{i.answer}}}", i.answer) for i in items)
        print(
            f"{bench}: gold matches itself (boxed): tpro.eval.check {a}/{len(items)}, plain math-verify {b}/{len(items)}"
        )


if __name__ == "__main__":
    main()
