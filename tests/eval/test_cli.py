"""``tpro eval`` commands through typer's runner: list, bad input (exit 2, message on stderr), report, contamination."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tpro.eval.benchmarks import load_benchmark
from tpro.eval.cli import app

runner = CliRunner()


def test_list_human_and_json():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "t-math" in r.output and "shipped" in r.output
    rows = json.loads(runner.invoke(app, ["list", "--json"]).output)
    assert {"t-math", "mgsm-ru", "aime-2025", "jsonl"} <= {x["name"] for x in rows}
    assert next(x for x in rows if x["name"] == "mgsm-ru")["source"] == "hub juletxara/mgsm"


def test_bad_input_exits_2_with_a_message(tmp_path):
    r = runner.invoke(app, ["run", "--mode", "fast"])
    assert r.exit_code == 2 and "choose direct, reasoning or both" in r.stderr
    r = runner.invoke(app, ["run", "--bench", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown benchmark 'nope'" in r.stderr
    r = runner.invoke(app, ["run", "--bench", "jsonl", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--path" in r.stderr
    r = runner.invoke(app, ["run", "--question-field", "q"])
    assert r.exit_code == 2 and "--path" in r.stderr
    r = runner.invoke(app, ["run", "--model", "m", "--endpoint", "http://x"])
    assert r.exit_code == 2 and "exactly one" in r.stderr
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not an eval run directory" in r.stderr
    r = runner.invoke(app, ["report", str(tmp_path), str(tmp_path)])
    assert r.exit_code == 2 and "--out" in r.stderr
    r = runner.invoke(app, ["contamination", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.stderr


def _fake_run(d, correct_direct, correct_reasoning, tokens):
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps(
            {
                "bench": "t-math",
                "modes": ["direct", "reasoning"],
                "samples": 1,
                "temperature": 0.0,
                "top_p": 1.0,
                "top_k": 0,
                "seed": 0,
                "max_tokens": {"direct": 256, "reasoning": 512},
                "model": "m",
            }
        )
    )
    recs = []
    for i, (cd, cr) in enumerate(zip(correct_direct, correct_reasoning)):
        for mode, c, t in (("direct", cd, tokens[0]), ("reasoning", cr, tokens[1])):
            recs.append(
                {
                    "id": f"t{i}",
                    "mode": mode,
                    "sample": 0,
                    "extracted": "1",
                    "correct": c,
                    "output_tokens": t,
                    "latency_s": t / 10,
                    "finish_reason": "stop",
                    "generator": "m",
                }
            )
    (d / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_report_compares_runs_and_modes(tmp_path):
    _fake_run(tmp_path / "a", [True, False, False, False], [True, True, True, False], (10, 200))
    _fake_run(tmp_path / "b", [False] * 4, [True] * 4, (20, 400))
    r = runner.invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| a | t-math | m | reasoning | 4 | 1 | 0.750 |" in md
    assert "| b | t-math | m | direct | 4 | 1 | 0.000 |" in md
    assert "+50.0 points) for 20.0× the output tokens" in md
    assert "2 right only with reasoning (t1, t2), 0 right only direct" in md
    assert (tmp_path / "cmp" / "plots" / "latency.png").exists()
    one = json.loads(runner.invoke(app, ["report", str(tmp_path / "a"), "--json"]).output)
    assert one[0]["modes"]["direct"]["acc_per_1k_tokens"] == 25.0
    # --recheck re-extracts from the stored answers: every stored answer here is "" -> nothing is right
    rows = [json.loads(x) for x in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    (tmp_path / "a" / "items.jsonl").write_text(
        "".join(json.dumps({**r, "answer": "", "gold": "1"}) + "\n" for r in rows)
    )
    again = json.loads(runner.invoke(app, ["report", str(tmp_path / "a"), "--json", "--recheck"]).output)
    assert again[0]["modes"]["reasoning"]["avg@k"] == 0.0 and again[0]["modes"]["reasoning"]["no_answer"] == 1.0


def test_contamination_lists_items_in_a_training_file(tmp_path):
    items = load_benchmark("t-math", limit=4)
    train = tmp_path / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "Привет"}]},
        {"messages": [{"role": "user", "content": items[3].question}, {"role": "assistant", "content": "ok"}]},
    ]
    train.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    r = runner.invoke(app, ["contamination", str(train), "--bench", "t-math", "--json"])
    assert r.exit_code == 0
    hits = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(h["line"], h["item_id"]) for h in hits] == [(2, items[3].id)]
