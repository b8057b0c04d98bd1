"""``tpro train``: verbs dispatch to the stages, --help lists the recipe's fields, bad input exits 2 with the
reason, --json prints the summary."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tpro.train.cli import app

runner = CliRunner()


def test_help_lists_recipe_fields():
    res = runner.invoke(app, ["midtrain", "--help"])
    assert res.exit_code == 0
    assert "--train_only" in res.output and "--lora_modules_to_save" in res.output and "--config" in res.output


def test_bad_input_exits_2(tmp_path):
    res = runner.invoke(app, ["sft", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "missing.jsonl" in res.output and "does not exist" in res.output
    res = runner.invoke(app, ["sft", "--data", "x.jsonl"])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(app, ["dpo", "--learning_rate", "fast"])
    assert res.exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("bta: 0.1\n")
    res = runner.invoke(app, ["dpo", "--config", str(bad)])
    assert res.exit_code == 2 and "bta" in res.output


def test_json_summary(tiny_qwen2_dir, train_data, tmp_path):
    res = runner.invoke(
        app,
        [
            "sft",
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["sft"]),
            "--out",
            str(tmp_path / "o"),
            "--max_steps",
            "2",
            "--threads",
            "2",
            "--logging_steps",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # stdout holds the summary alone (trainer logs go to stderr)
    assert summary["global_step"] == 2 and summary["final_dir"].endswith("final")
