"""tpro eval report across benchmarks (tpro.eval.board): a math run, a multiple-choice run and an arena run of the
same model line up in one row per mode, each cell the run's own headline number with its tokens and latency."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.eval.test_arena_run import Answerer, Judge, config, published, questions_file, quiet
from tpro.eval.arena_run import run_arena
from tpro.eval.cli import app
from tpro.eval.report import write_outputs


def eval_run(d, bench, modes, correct, subjects=None, tokens=(10, 100), generator="answerer"):
    """A run directory as tpro eval run writes it: ``correct[mode]`` per item; ``subjects`` per item (MC)."""
    d.mkdir()
    conf = {"bench": bench, "modes": modes, "samples": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0,
            "max_tokens": {"direct": 64, "reasoning": 256}, "model": generator}  # fmt: skip
    (d / "config.json").write_text(json.dumps(conf))
    recs = []
    for mode, t in zip(modes, tokens):
        for i, c in enumerate(correct[mode]):
            rec = {"id": f"q{i}", "mode": mode, "sample": 0, "extracted": "A", "correct": c, "answer": "A",
                   "gold": "A", "output_tokens": t, "latency_s": t / 10, "finish_reason": "stop",
                   "generator": generator}  # fmt: skip
            if subjects:
                rec["subject"] = subjects[i]
            recs.append(rec)
    (d / "items.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return d


def arena_run(tmp_path):
    """An arena where the judge prefers the answerer's direct answers to the baseline's on 3 of 4 questions."""
    qfile = questions_file(tmp_path, 4)
    base = published(tmp_path, "base", "норма")

    def judge(a, b, messages, params):
        mine_first = a.startswith("ответ")
        if "Вопрос номер 0?" in messages[1]["content"]:
            return "[[B>A]]" if mine_first else "[[A>B]]"  # the baseline wins question 0 in both orders
        return "[[A>B]]" if mine_first else "[[B>A]]"

    cfg = config(tmp_path, qfile, [base], out=str(tmp_path / "arena"), style_control=False)
    summary = run_arena(cfg, generator=Answerer(), judge=Judge(judge), log=quiet)
    return tmp_path / "arena", summary


def test_math_choice_and_arena_runs_share_one_table(tmp_path):
    math = eval_run(tmp_path / "math", "t-math", ["direct", "reasoning"],
                    {"direct": [True, False, False, False], "reasoning": [True, True, True, False]})  # fmt: skip
    # macro accuracy, not all-item accuracy: geo 2/2 right, history 0/1 -> macro 0.5 (all items 2/3)
    mc = eval_run(tmp_path / "mc", "choice-jsonl", ["direct"], {"direct": [True, True, False]},
                  subjects=["geo", "geo", "history"], tokens=(3,))  # fmt: skip
    arena_dir, summary = arena_run(tmp_path)
    mine = next(r for r in summary["plain"] if r["model"] == "m [direct]")

    report, pngs, summaries = write_outputs([math, mc, arena_dir], tmp_path / "all")
    md = report.read_text(encoding="utf-8")
    assert "## Across benchmarks" in md
    header = next(line for line in md.splitlines() if line.startswith("| model | mode |"))
    arena_col = "arena (fake-judge, vs base, plain)"
    assert header == f"| model | mode | t-math | choice-jsonl | {arena_col} |"
    direct = next(line for line in md.splitlines() if line.startswith("| answerer | direct |"))
    cells = [c.strip() for c in direct.strip("|").split("|")]
    assert cells[2] == "25.0 · 10 tok, 1.0 s"
    assert cells[3] == "50.0 · 3 tok, 0.3 s"
    wr = 100 * mine["win_rate"]
    assert wr > 50 and cells[4].startswith(f"{wr:.1f} (")  # the arena's own win rate vs its baseline
    reasoning = next(line for line in md.splitlines() if line.startswith("| answerer | reasoning |"))
    assert [c.strip() for c in reasoning.strip("|").split("|")][2:] == ["75.0 · 100 tok, 10.0 s", "–", "–"]
    assert "## Multiple choice: accuracy per subject" in md
    assert (tmp_path / "all" / "plots" / "score_vs_tokens.png").is_file()
    board = json.loads((tmp_path / "all" / "board.json").read_text())
    arena_cell = next(c for c in board if c["bench"] == arena_col)
    assert arena_cell["score"] == pytest.approx(wr) and arena_cell["lower"] <= wr <= arena_cell["upper"]
    assert [s["kind"] for s in summaries] == ["eval", "eval", "arena"]


def test_one_benchmark_keeps_the_plain_report_and_a_stray_directory_is_a_clear_error(tmp_path):
    one = eval_run(tmp_path / "one", "t-math", ["direct"], {"direct": [True, False]})
    report, _, _ = write_outputs([one])
    assert "## Across benchmarks" not in report.read_text()
    (tmp_path / "stray").mkdir()
    r = CliRunner().invoke(app, ["report", str(one), str(tmp_path / "stray"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "neither an eval run" in r.stderr and "tpro eval arena --out" in r.stderr
