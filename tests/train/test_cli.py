"""``tpro train``: one command per recipe generated from its config, --help lists the recipe's fields, old
underscore spellings still parse, bad input exits 2 with the reason, --json prints the summary, ``--config`` runs."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tpro.train.cli import app

runner = CliRunner()


def test_help_lists_recipe_fields():
    res = runner.invoke(app, ["midtrain", "--help"])
    assert res.exit_code == 0
    assert "--train-only" in res.output and "--lora-modules-to-save" in res.output and "--config" in res.output
    assert "--train_only" not in res.output  # old spellings are accepted, not listed


def test_bad_input_exits_2(tmp_path):
    res = runner.invoke(app, ["sft", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "missing.jsonl" in res.output and "does not exist" in res.output
    res = runner.invoke(app, ["sft", "--data", "x.jsonl"])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(app, ["dpo", "--learning_rate", "fast"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["midtrain", "--data", "x", "--out", "o", "--train_only", "embeddings", "--lora"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("bta: 0.1\n")
    res = runner.invoke(app, ["dpo", "--config", str(bad)])
    assert res.exit_code == 2 and "bta" in res.output and "did you mean 'beta'" in res.output
    bad.write_text("data: d\nout: o\nlearning_rate: -1\n")
    res = runner.invoke(app, ["sft", "--config", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and "out of range" in res.output


def test_json_summary_from_a_config_file(tiny_qwen2_dir, train_data, tmp_path):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {tiny_qwen2_dir}\ndata: {train_data['sft']}\nmax_steps: 5\nthreads: 2\nlogging_steps: 1\n")
    res = runner.invoke(app, ["sft", "--config", str(cfg), "--out", str(tmp_path / "o"), "--max-steps", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # stdout holds the summary alone (trainer logs go to stderr)
    assert summary["global_step"] == 2 and summary["final_dir"].endswith("final")  # the flag won over the file
    assert summary["config"]["threads"] == 2 and summary["config"]["model"] == str(tiny_qwen2_dir)
