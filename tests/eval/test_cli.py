"""``tpro eval`` commands through click's runner: list, bad input (exit 2, message on stderr), report,
contamination, a run from a YAML config on a tiny model, old flag spellings."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from tpro.eval.benchmarks import load_benchmark
from tpro.eval.cli import app

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "eval"


def test_list_human_and_json():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "t-math" in r.output and "shipped" in r.output
    rows = json.loads(runner.invoke(app, ["list", "--json"]).output)
    assert {"t-math", "mgsm-ru", "aime-2025", "jsonl"} <= {x["name"] for x in rows}
    assert next(x for x in rows if x["name"] == "mgsm-ru")["source"] == "hub juletxara/mgsm"
    ru = json.loads(runner.invoke(app, ["list", "--language", "ru", "--json"]).output)
    assert {x["name"] for x in ru} == {
        "t-math",
        "mgsm-ru",
        "jsonl",
        "choice-jsonl",
        "ru-mmlu-pro",
        "mera-rummlu",
        "mera-ruopenbookqa",
    }


def test_bad_input_exits_2_with_a_message(tmp_path):
    r = runner.invoke(app, ["run", "--mode", "fast"])
    assert r.exit_code == 2 and "'fast' is not one of 'direct', 'reasoning', 'both'" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: fast\nmax_new_tokens: 0\n")
    r = runner.invoke(app, ["run", "--config", str(bad)])
    assert r.exit_code == 2 and str(bad) in r.stderr and "key 'mode': 'fast' is not one of" in r.stderr
    r = runner.invoke(app, ["run", "-n", "0"])  # -n is the token budget, never --limit
    assert r.exit_code == 2 and "--max-new-tokens" in r.stderr
    r = runner.invoke(app, ["run", "--bench", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown benchmark 'nope'" in r.stderr
    r = runner.invoke(app, ["run", "--bench", "jsonl", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--path" in r.stderr
    r = runner.invoke(app, ["run", "--question-field", "q"])
    assert r.exit_code == 2 and "--path" in r.stderr
    r = runner.invoke(app, ["run", "--model", "m", "--endpoint", "http://x"])
    assert r.exit_code == 2 and "exactly one" in r.stderr
    r = runner.invoke(app, ["report"])
    assert r.exit_code == 2 and "one or more run directories" in r.stderr
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "neither an eval run" in r.stderr
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


def test_old_and_new_spellings_give_one_config(tmp_path):
    """The spellings in runs/pipeline.sh and docs/benchmarks.md (--max-tokens-direct/-reasoning, --n) still work."""

    def cfg(*args):
        r = runner.invoke(app, [*args, "--print-config"])
        assert r.exit_code == 0, r.output
        return yaml.safe_load(r.output)

    old = cfg("run", "--max-tokens-direct", "16", "--max-tokens-reasoning", "24", "--mode", "direct", "--limit", "2")
    new = cfg("run", "--max-new-tokens-direct", "16", "-n", "24", "--mode", "direct", "--limit", "2")
    assert old == new and (new["max_new_tokens_direct"], new["max_new_tokens"], new["limit"]) == (16, 24, 2)
    assert (new["model"], new["draft"], new["threads"]) == ("default", "none", 0)  # the embedded model, no draft
    assert cfg("run", "--endpoint", "http://x")["model"] is None
    assert cfg("contamination", "t.jsonl", "--n", "5")["ngram"] == 5
    shipped = cfg("run", "--config", str(CONFIGS / "t-math.yaml"))
    assert (shipped["max_new_tokens_direct"], shipped["max_new_tokens"], shipped["limit"]) == (128, 256, 20)


def test_run_from_a_config_file_on_a_tiny_model(tiny_qwen2_dir, tmp_path):
    """`tpro eval run --config configs/eval/t-math.yaml` with a tiny model and a tiny benchmark file given as flags
    (flags win over the file), then the same run from a YAML of its own: it resumes, nothing to redo."""
    bench = tmp_path / "add.jsonl"
    bench.write_text(json.dumps({"id": "a1", "q": "Сколько будет 2 + 2?", "a": "4"}, ensure_ascii=False) + "\n")
    out = tmp_path / "run"
    flags = ["--bench", "jsonl", "--path", str(bench), "--question-field", "q", "--answer-field", "a"]
    flags += ["--model", str(tiny_qwen2_dir), "-n", "5", "--max-new-tokens-direct", "3", "--out", str(out)]
    r = runner.invoke(app, ["run", "--config", str(CONFIGS / "t-math.yaml"), *flags, "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["modes"]["direct"]["items"] == summary["modes"]["reasoning"]["items"] == 1
    assert summary["sampling"]["max_tokens"] == {"direct": 3, "reasoning": 5}
    saved = json.loads((out / "config.json").read_text())
    assert (saved["dtype"], saved["mode"], saved["model"]) == ("float32", "both", str(tiny_qwen2_dir))  # from the file
    own = tmp_path / "own.yaml"
    own.write_text(
        yaml.safe_dump(
            {
                k: saved[k]
                for k in (
                    "bench",
                    "path",
                    "question_field",
                    "answer_field",
                    "model",
                    "dtype",
                    "max_new_tokens",
                    "max_new_tokens_direct",
                    "out",
                )
            }
        )
    )
    r = runner.invoke(app, ["run", "--config", str(own)])
    assert r.exit_code == 0, r.output
    assert "2 done already, 0 to go" in r.stderr and "| reasoning |" in r.stdout


def test_a_draft_that_cannot_load_is_a_clear_error(tiny_qwen2_dir, tmp_path):
    """--draft goes through tpro.eagle.resolve_draft: a bad DIR is named, exit 2, no silent fallback."""
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    args = ["run", "--bench", "jsonl", "--path", str(bench), "--model", str(tiny_qwen2_dir), "-n", "2"]
    r = runner.invoke(app, [*args, "--draft", str(tmp_path / "no-head"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "could not load the EAGLE draft" in r.stderr and "no-head" in r.stderr
    r = runner.invoke(app, [*args, "--draft", "auto", "--out", str(tmp_path / "a"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "draft: none (" in r.stderr  # auto: plain decoding for a model without a shipped head, and it says so
