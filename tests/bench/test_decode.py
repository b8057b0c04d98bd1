"""``tpro bench decode`` end to end on a tiny model: every method runs, ratios and files come out."""

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from tpro.bench.cli import app
from tpro.bench.decode import BenchConfig, Run, markdown, summarize


def test_summarize_ratios_and_acceptance():
    runs = [
        Run("generate-fp32", "ru-math", "a", 0.0, 100, 10.0),
        Run("generate-bf16", "ru-math", "a", 0.0, 100, 20.0),
        Run("vanilla", "ru-math", "a", 0.0, 100, 8.0),
        Run("eagle", "ru-math", "a", 0.0, 100, 4.0, steps=25, accepted=75, draft_s=1.0, verify_s=3.0),
    ]
    rows = {(r["domain"], r["method"]): r for r in summarize(runs)}
    e = rows[("ru-math", "eagle")]
    assert e["tokens_per_s"] == 25.0 and e["speedup_vs_generate"] == 2.5 and e["speedup_vs_vanilla"] == 2.0
    assert e["acceptance_length"] == 4.0 and e["draft_share"] == 0.25
    assert rows[("all", "eagle")]["tokens"] == 100
    assert "| 0.0 | ru-math | eagle | 25.00 | 2.50x | 2.00x | 4.00 |" in markdown(summarize(runs))


def test_cli_runs_every_method_and_writes_outputs(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    from tpro.eagle.head import init_head, save_head

    torch.set_num_threads(1)
    save_head(init_head(tiny_qwen2.model), tmp_path / "head")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"id": f"{d}{i}", "domain": d, "prompt": q}, ensure_ascii=False)
            for i, (d, q) in enumerate([("chat", "Привет!"), ("math", "2+2=?"), ("math", "3*3=?")])
        )
    )
    # a config file (configs/bench/decode.yaml's shape) with flags over it, old spellings among them
    cfg = tmp_path / "decode.yaml"
    cfg.write_text(
        f"draft: {tmp_path / 'head'}\nprompts: {prompts}\nmax_new_tokens: 8\ntemperatures: [0.0, 0.8]\n"
        f"per_domain: 1\nout: {tmp_path / 'out'}\n"
    )
    r = CliRunner().invoke(
        app,
        [
            "decode",
            "--config",
            str(cfg),
            "--target",
            str(tiny_qwen2_dir),
            "--eagle-dtype",
            "float32",
            "--baseline-dtype",
            "float32",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "decode.json").read_text())
    methods = {(x["temperature"], x["method"]) for x in res["runs"]}
    # generate runs in both default generate dtypes; pld at T=0 only
    assert methods == {
        (0.0, "generate-fp32"),
        (0.0, "generate-bf16"),
        (0.0, "pld"),
        (0.0, "vanilla"),
        (0.0, "eagle"),
        (0.8, "generate-fp32"),
        (0.8, "generate-bf16"),
        (0.8, "vanilla"),
        (0.8, "eagle"),
    }
    assert {x["domain"] for x in res["runs"]} == {"chat", "math"}
    eagle = [x for x in res["summary"] if x["method"] == "eagle" and x["domain"] == "all"]
    assert all(x["acceptance_length"] >= 1.0 and x["speedup_vs_generate"] > 0 for x in eagle)
    assert (tmp_path / "out" / "decode.png").stat().st_size > 1000
    assert "| T | domain |" in (tmp_path / "out" / "decode.md").read_text()


def test_shipped_config_and_old_flags_resolve(tmp_path):
    """configs/bench/decode.yaml is the recorded recipe; docs/benchmarks.md's flags (and old spellings) go over it."""
    yaml = Path(__file__).parents[2] / "configs" / "bench" / "decode.yaml"
    args = ["decode", "--config", str(yaml), "--generate-dtype", "bfloat16", "--methods", "generate,vanilla,eagle"]
    r = CliRunner().invoke(app, [*args, "--reasoning", "-t", "0", "--print-config"])
    assert r.exit_code == 0, r.output
    (tmp_path / "back.yaml").write_text(r.output)
    cfg = BenchConfig.from_yaml(tmp_path / "back.yaml")
    assert cfg.max_new_tokens == 256 and cfg.draft == "default" and cfg.mode == "reasoning"
    assert cfg.temperatures == [0.0] and cfg.generate_dtypes == ["bfloat16"]
    assert cfg.methods == ["generate", "vanilla", "eagle"]


def test_cli_bad_input_exits_2(tmp_path):
    r = CliRunner().invoke(app, ["decode", "--prompts", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "missing.jsonl" in r.output
    r = CliRunner().invoke(app, ["decode", "-t", "9"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["decode", "--generate-dtype", "float8"])  # refused before any model loads
    assert r.exit_code == 2 and "float8" in r.output
    r = CliRunner().invoke(app, ["decode", "--methods", "generate,fast"])
    assert r.exit_code == 2 and "fast" in r.output
