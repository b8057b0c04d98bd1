import json
import subprocess
import sys

import pytest

TPRO = [sys.executable, "-m", "tpro.cli"]


def run(*args, **kw):
    return subprocess.run(TPRO + list(args), capture_output=True, text=True, timeout=600, **kw)


def test_help_is_instant_and_lists_stages():
    r = run("--help")
    assert r.returncode == 0 and "generate" in r.stdout and "model" in r.stdout
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tpro.cli", "--help"], capture_output=True, text=True)
    # "instant" = no torch/transformers import (what made --help slow); asserted by import, not by wall clock
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()}
    assert "click" in imported and "torch" not in imported and "transformers" not in imported
    # a stage's own --help is instant too: its commands load their config class only when run or asked for help
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tpro.cli", "generate", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "--max-new-tokens" in r.stdout and "--mode" in r.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()}


def test_generate_json_on_tiny_model(tiny_qwen2_dir):
    r = run("generate", "Привет", "--model", str(tiny_qwen2_dir), "-n", "8", "--json", "--seed", "1", "-t", "0.7")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"text", "reasoning", "answer", "telemetry"}
    assert 1 <= out["telemetry"]["generated_tokens"] <= 8


def test_generate_bad_flag_is_clear(tiny_qwen2_dir):
    r = run("generate", "x", "--model", str(tiny_qwen2_dir), "--temperature", "9")
    assert r.returncode == 2 and "temperature" in r.stderr
    r = run("generate", "x", "--model", "/nope/model")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_generate_reads_a_document_file_and_refuses_one_over_the_context(tiny_qwen2_dir, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Мама мыла раму. " * 20, encoding="utf-8")
    r = run("generate", "Кто мыл раму?", "--file", str(doc), "--model", str(tiny_qwen2_dir), "-n", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["telemetry"]["prompt_tokens"] > 100  # the document went in
    doc.write_text("Мама мыла раму. " * 2000, encoding="utf-8")  # far over the tiny model's 2048 tokens
    r = run("generate", "Кто мыл раму?", "--file", str(doc), "--model", str(tiny_qwen2_dir), "-n", "2")
    assert r.returncode == 2 and "over the model's context of 2048" in r.stderr and "--rope-scaling" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("generate", "x", "--file", str(tmp_path / "missing.txt"), "--model", str(tiny_qwen2_dir))
    assert r.returncode == 2 and "cannot read --file" in r.stderr


def test_generate_old_and_new_mode_spellings_agree(tiny_qwen2_dir, tmp_path):
    """`--reasoning` (old) and `--mode reasoning` (one vocabulary) and a YAML config give the same request."""
    outs = []
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(f"prompt: Привет\nmodel: {tiny_qwen2_dir}\nmode: reasoning\nmax_new_tokens: 6\ndtype: float32\n")
    base = ["--model", str(tiny_qwen2_dir), "-n", "6", "--json", "--dtype", "float32"]
    for args in (
        ["Привет", *base, "--reasoning"],
        ["Привет", *base, "--mode", "reasoning"],
        ["--config", str(cfg), "--json"],
    ):
        r = run("generate", *args)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert {o["mode"] for o in outs} == {"reasoning"}
    assert outs[0]["text"] == outs[1]["text"] == outs[2]["text"]


@pytest.mark.embedded
def test_generate_russian_json_on_embedded():
    r = run("generate", "Сколько будет 17*23? Объясни.", "--json", "-n", "48")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["telemetry"]["generated_tokens"] > 0 and out["telemetry"]["ttft_s"] > 0


def test_python_dash_m_tpro_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "tpro", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "generate" in r.stdout and "serve" in r.stdout


def test_generate_compile_gives_the_eager_tokens(tiny_qwen2_dir):
    """--compile (tpro.engine.compiled) decodes the same greedy tokens as the eager loop, fp32, through the CLI."""
    args = ["generate", "Привет", "--model", str(tiny_qwen2_dir), "-n", "12", "--json", "--dtype", "float32"]
    eager = run(*args, "--weights", "bf16")
    compiled = run(*args, "--weights", "bf16", "--compile")
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr
    e, c = json.loads(eager.stdout), json.loads(compiled.stdout)
    assert c["text"] == e["text"] and c["telemetry"]["decoder"] == "vanilla-compiled"
