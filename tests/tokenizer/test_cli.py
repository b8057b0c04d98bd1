"""The CLI end to end on a tiny model: adapt -> check -> report -> remap-model, YAML configs, clear errors."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from tpro.tokenizer.cli import app

from .conftest import SMALL_CORPUS, SMALL_KEEP

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"


def test_adapt_check_report_remap(tiny_qwen3_dir, tmp_path):
    out = tmp_path / "tok"
    args = [
        "adapt",
        "--base",
        str(tiny_qwen3_dir / "tokenizer.json"),
        "--out",
        str(out),
        "--swap",
        "24",
        "--trainer-words",
        "50000",
        "--quiet",
        "--json",
    ]
    for c in SMALL_CORPUS:
        args += ["--corpus", c]
    for c in SMALL_KEEP:
        args += ["--keep-corpus", c]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["swapped"] == 24
    assert {p.name for p in out.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "swap.json", "report.json"}
    # The chat template (with enable_thinking) travels with the tokenizer.
    r = runner.invoke(app, ["check", str(out), "--base", str(tiny_qwen3_dir), "--examples", "50", "--json"])
    assert r.exit_code == 0, r.output
    assert all(c["ok"] for c in json.loads(r.stdout))

    text = tmp_path / "ru.txt"
    text.write_text("Сегодня в городе прошла большая конференция.\nМама мыла раму.\n", encoding="utf-8")
    r = runner.invoke(
        app,
        [
            "report",
            "--tokenizer",
            f"base={tiny_qwen3_dir}",
            "--tokenizer",
            f"new={out}",
            "--text",
            f"ru={text}",
            "--out-dir",
            str(tmp_path / "rep"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = {row["tokenizer"]: row for row in json.loads(r.stdout)}
    assert rows["new"]["tokens"] < rows["base"]["tokens"] and rows["new"]["words"] == rows["base"]["words"] == 9
    assert (tmp_path / "rep" / "density.png").is_file() and (tmp_path / "rep" / "density.md").is_file()

    r = runner.invoke(
        app,
        [
            "remap-model",
            "--model",
            str(tiny_qwen3_dir),
            "--tokenizer",
            str(out),
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["tied"] is True
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()


def test_bad_inputs_exit_2(tiny_qwen2_dir, tmp_path):
    r = runner.invoke(app, ["adapt", "--base", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = runner.invoke(
        app,
        [
            "adapt",
            "--base",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "o"),
            "--corpus",
            str(tmp_path / "nope.txt"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "no such file" in r.stderr
    (tmp_path / "w.jsonl").write_text('{"text": "привет"}\n')
    r = runner.invoke(
        app,
        [
            "adapt",
            "--base",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "o"),
            "--corpus",
            str(tmp_path / "w.jsonl"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "name the JSON field" in r.stderr
    r = runner.invoke(
        app,
        [
            "remap-model",
            "--model",
            str(tiny_qwen2_dir),
            "--tokenizer",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "m"),
            "--method",
            "magic",
        ],
    )
    assert r.exit_code == 2 and "'magic' is not one of 'mean', 'contextual'" in r.stderr
    r = runner.invoke(app, ["report", "--tokenizer", str(tiny_qwen2_dir), "--text", str(tmp_path / "none.txt")])
    assert r.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_adapt_and_check_from_config_files(tiny_qwen2_dir, adapted_tiny, tmp_path):
    """`--config FILE` sets every field (a positional one too); flags given on the command line win."""
    out = tmp_path / "tok"
    cfg = tmp_path / "adapt.yaml"
    settings = dict(
        base=str(tiny_qwen2_dir),
        out=str(out),
        swap=16,
        corpus=SMALL_CORPUS,
        keep_corpus=SMALL_KEEP,
        trainer_words=50000,
    )
    cfg.write_text(yaml.safe_dump(settings), encoding="utf-8")
    r = runner.invoke(app, ["adapt", "--config", str(cfg), "--swap", "12", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["swapped"] == 12 and report["config"] == {**report["config"], **settings, "swap": 12}

    check = tmp_path / "check.yaml"
    check.write_text(yaml.safe_dump({"directory": str(adapted_tiny[0]), "base": str(tiny_qwen2_dir), "examples": 20}))
    r = runner.invoke(app, ["check", "--config", str(check), "--json"])
    assert r.exit_code == 0, r.output
    assert all(c["ok"] for c in json.loads(r.stdout))

    check.write_text("directory: x\nbase: y\nexampels: 3\n")
    r = runner.invoke(app, ["check", "--config", str(check)])
    assert r.exit_code == 2 and "unknown key 'exampels' (did you mean 'examples'?)" in r.stderr


def test_shipped_configs_read_and_name_their_command():
    """Each configs/tokenizer/*.yaml opens with the command that runs it, and that command accepts the file."""
    files = sorted(CONFIGS.glob("*.yaml"))
    assert files
    for f in files:
        first = f.read_text(encoding="utf-8").splitlines()[0]
        verb = first.split()[3]
        assert first == f"# tpro tokenizer {verb} --config configs/tokenizer/{f.name}"
        r = runner.invoke(app, [verb, "--config", str(f), "--print-config"])
        assert r.exit_code == 0, r.output
        assert yaml.safe_load(r.stdout).items() >= yaml.safe_load(f.read_text(encoding="utf-8")).items()
