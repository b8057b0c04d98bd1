"""The `tpro data` commands end to end, in process (click's CliRunner): outputs, manifests, resume, errors."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tpro.data.cli import app
from tpro.data.io import read_rows, write_rows
from tpro.data.manifest import manifest_path
from tpro.data.synth import plant
from tpro.io import append_jsonl

from .conftest import random_docs

runner = CliRunner()


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def test_dedup_then_decontaminate_with_manifests_and_skip(tmp_path):
    from tpro.eval.benchmarks import load_benchmark

    leak = load_benchmark("t-math")[3]
    rows = plant(random_docs(50), [(leak.id, leak.question)], exact_frac=0.1, near_frac=0.1, edit_fracs=(0.01,))
    src, ded, dec = tmp_path / "in.jsonl", tmp_path / "ded.parquet", tmp_path / "dec.jsonl"
    write_rows(src, rows)
    code, out, _ = run("dedup", src, "-o", ded, "--json")
    assert code == 0 and json.loads(out)["removed"] == 10
    assert {r["id"] for r in read_rows(ded)} == {r["id"] for r in rows if r["plant"]["kind"] in ("original", "leak")}
    clusters = read_rows(tmp_path / "ded.parquet.clusters.jsonl")
    assert len(clusters) == 10 and all(c["size"] == 2 for c in clusters)
    code, out, _ = run("decontaminate", ded, "-o", dec, "--bench", "t-math", "--json")
    assert code == 0 and json.loads(out)["removed"] == 1
    removed = read_rows(tmp_path / "dec.jsonl.removed.jsonl")
    assert removed[0]["id"] == "leak-0" and removed[0]["reasons"][0]["item"] == f"t-math:{leak.id}"
    man = json.loads(manifest_path(dec).read_text())
    assert [h["step"] for h in man["history"]] == ["dedup"] and man["counts"]["rows_out"] == 50
    assert man["history"][0]["counts"]["rows_in"] == 61
    # a rerun with the same inputs and parameters is skipped; the output file is untouched
    mtime = dec.stat().st_mtime_ns
    code, _, err = run("decontaminate", ded, "-o", dec, "--bench", "t-math")
    assert code == 0 and "up to date" in err and dec.stat().st_mtime_ns == mtime


def test_bad_input_exits_2_with_a_message(tmp_path):
    code, _, err = run("dedup", tmp_path / "missing.jsonl", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "does not exist" in err
    src = tmp_path / "in.jsonl"
    write_rows(src, [{"body": "x"}])
    code, _, err = run("dedup", src, "-o", tmp_path / "o.jsonl")
    assert code == 2 and "no field 'text'" in err and "--field" in err
    code, _, err = run("balance", src, "-o", tmp_path / "o.jsonl", "--lang-cap", "en")
    assert code == 2 and "LANG=SHARE" in err
    code, _, err = run("decontaminate", src, "-o", tmp_path / "o.jsonl", "--bench", "no-such-bench", "--field", "body")
    assert code == 2 and "no-such-bench" in err


def test_reward_filter_resumes_from_progress(tmp_path, tiny_rm_dir):
    from tpro.data.reward import RewardFilterConfig
    from tpro.data.steps import start_manifest

    rows = [{"prompt": f"вопрос {i}", "completions": ["да", "нет", "может быть"]} for i in range(3)]
    src, out = tmp_path / "k.jsonl", tmp_path / "pairs.jsonl"
    write_rows(src, rows)
    # A killed run left row 0 scored: resuming must reuse that score rather than recompute it.
    key = start_manifest(RewardFilterConfig(source=str(src), out=str(out), model=str(tiny_rm_dir))).key
    progress = tmp_path / f"pairs.jsonl.{key}.progress.jsonl"
    append_jsonl(progress, [{"index": 0, "result": [5.0, -5.0, 0.0]}])
    code, stdout, _ = run("reward-filter", src, "-o", out, "--model", tiny_rm_dir, "--json")
    assert code == 0, stdout
    counts = json.loads(stdout)
    assert counts["resumed_rows"] == 1 and counts["rows_out"] == 3
    pairs = read_rows(out)
    assert pairs[0]["chosen"][0]["content"] == "да" and pairs[0]["meta"]["margin"] == 10.0
    assert abs(pairs[1]["meta"]["margin"]) < 1.0  # scored by the tiny model, not the planted values
    assert not progress.exists()  # the finished output replaces the progress file


def test_reward_filter_best_and_threshold_from_given_scores(tmp_path):
    src = tmp_path / "k.jsonl"
    write_rows(src, [{"prompt": "q", "completions": ["a", "b", "c"], "scores": [0.1, 0.9, 0.5]}])
    code, _, _ = run("reward-filter", src, "-o", tmp_path / "best.jsonl", "--select", "best")
    assert code == 0 and read_rows(tmp_path / "best.jsonl")[0]["messages"][-1]["content"] == "b"
    code, _, _ = run("reward-filter", src, "-o", tmp_path / "thr.jsonl", "--select", "threshold", "--threshold", "0.4")
    assert [r["messages"][-1]["content"] for r in read_rows(tmp_path / "thr.jsonl")] == ["b", "c"]
    code, _, err = run("reward-filter", src, "-o", tmp_path / "x.jsonl", "--select", "threshold")
    assert code == 2 and "--threshold" in err


def test_balance_with_given_languages(tmp_path):
    rows = [{"text": f"t{i}", "tags": ["a" if i % 3 else "b"], "lang": "en" if i < 10 else "ru"} for i in range(40)]
    src, out = tmp_path / "in.jsonl", tmp_path / "bal.jsonl"
    write_rows(src, rows)
    code, stdout, _ = run(
        "balance", src, "-o", out, "--lang-field", "lang", "--lang-cap", "en=0.1", "--max-per-tag", "12", "--json"
    )
    counts = json.loads(stdout)
    assert code == 0 and counts["per_tag_out"]["b"] <= 12 and counts["per_tag_out"]["a"] <= 12
    kept = read_rows(out)
    assert sum(r["lang"] == "en" for r in kept) <= 0.1 * len(kept) and len(kept) == counts["rows_out"]


def test_difficulty_writes_histogram_and_plot(tmp_path, tiny_qwen2_dir):
    src, out = tmp_path / "p.jsonl", tmp_path / "d.jsonl"
    write_rows(src, [{"id": f"p{i}", "question": f"{i}+{i}?", "answer": str(2 * i)} for i in range(3)])
    code, stdout, _ = run(
        "difficulty",
        src,
        "-o",
        out,
        "--model",
        tiny_qwen2_dir,
        "--samples",
        "2",
        "--max-new-tokens",
        "4",
        "--band",
        "0,0",
        "--json",
    )
    assert code == 0, stdout
    counts = json.loads(stdout)
    hist = json.loads((tmp_path / "d.jsonl.histogram.json").read_text())
    assert sum(hist["histogram"].values()) == 3 and set(hist["pass_rates"]) == {"p0", "p1", "p2"}
    assert counts["rows_out"] == hist["histogram"]["0/2"] == len(read_rows(out))
    assert (tmp_path / "d.jsonl.histogram.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run("difficulty", src, "-o", out, "--model", tiny_qwen2_dir, "--band", "0.9,0.1", "--force")
    assert code == 2 and "band" in err


def test_tag_with_the_embedding_tagger(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "tagged.jsonl"
    write_rows(src, [{"text": "Write a Python function that reverses a list"}, {"text": "Привет, как дела?"}])
    code, stdout, _ = run("tag", src, "-o", out, "--json", "--threads", "1")
    assert code == 0, stdout
    rows = read_rows(out)
    assert rows[0]["tags"] == ["code"] and rows[0]["lang"] == "en" and rows[1]["lang"] == "ru"
    assert len(rows[1]["tags_scores"]) == 8


@pytest.mark.slow  # a subprocess imports torch and loads a model: ~10 s alone, a minute on a busy CPU
def test_difficulty_killed_mid_run_resumes_to_the_same_result(tmp_path, tiny_qwen2_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "p.jsonl"
    write_rows(src, [{"id": f"p{i}", "question": f"{i}+{i}?", "answer": str(2 * i)} for i in range(20)])
    args = [
        "difficulty",
        str(src),
        "--model",
        str(tiny_qwen2_dir),
        "--samples",
        "2",
        "--max-new-tokens",
        "16",
        "--band",
        "0,1",
        "--threads",
        "1",
        "--batch",
        "1",  # one problem at a time: a batch could finish all 20 between two polls (seen in CI)
        "--json",
    ]
    killed = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "tpro.data.cli", *args, "-o", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def progress_lines():
        files = list(tmp_path.glob("killed.jsonl.*.progress.jsonl"))
        return len(files[0].read_text().splitlines()) if files else 0

    deadline = time.time() + 120
    while time.time() < deadline and progress_lines() < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists()  # nothing half-written
    done_before = progress_lines()
    assert 2 <= done_before < 20
    code, stdout, _ = run(*args, "-o", killed)
    assert code == 0 and json.loads(stdout)["resumed_rows"] >= 2
    code, _, _ = run(*args, "-o", tmp_path / "fresh.jsonl")
    assert read_rows(killed) == read_rows(tmp_path / "fresh.jsonl")  # seeded per problem: same samples


def test_step_config_file_and_flags_win(tmp_path):
    """`tpro data dedup --config configs/data/dedup.yaml`: the shipped example, then a file of our own."""
    src, out, cfg = tmp_path / "in.jsonl", tmp_path / "o.jsonl", tmp_path / "c.yaml"
    write_rows(src, [{"text": t} for t in random_docs(10)])
    example = Path(__file__).parents[2] / "configs" / "data" / "dedup.yaml"
    code, stdout, err = run("dedup", src, "-o", out, "--config", example, "--json")
    assert code == 0, err
    assert json.loads(stdout)["rows_out"] == 10
    cfg.write_text("threshold: 0.55\nnum_perm: 64\nmethod: near\n")
    code, _, err = run("dedup", src, "-o", out, "--config", cfg, "--method", "both")
    assert code == 0, err
    params = json.loads(manifest_path(out).read_text())["params"]
    assert (params["threshold"], params["num_perm"], params["method"]) == (0.55, 64, "both")
    cfg.write_text("treshold: 0.5\n")
    code, _, err = run("dedup", src, "-o", out, "--config", cfg)
    assert code == 2 and "unknown key 'treshold'" in err and "did you mean 'threshold'" in err


def test_difficulty_example_config_prints(tmp_path):
    example = Path(__file__).parents[2] / "configs" / "data" / "difficulty.yaml"
    code, stdout, err = run("difficulty", "--config", example, "--print-config")
    assert code == 0, err
    assert "temperature: 0.7" in stdout and "samples: 8" in stdout


def test_old_spellings_still_work(tmp_path):
    """The sectioned `tpro data --config steps.yaml CMD` file and old flags (--mode on dedup) are kept."""
    src, out, cfg = tmp_path / "in.jsonl", tmp_path / "o.jsonl", tmp_path / "c.yaml"
    write_rows(src, [{"text": t} for t in random_docs(10)])
    cfg.write_text("dedup:\n  threshold: 0.55\n  num-perm: 64\n  mode: near\n")
    res = runner.invoke(app, ["--config", str(cfg), "dedup", str(src), "-o", str(out), "--mode", "both"])
    assert res.exit_code == 0, res.stderr
    params = json.loads(manifest_path(out).read_text())["params"]
    assert (params["threshold"], params["num_perm"], params["method"]) == (0.55, 64, "both")
    res = runner.invoke(app, ["--config", str(cfg), "dedup", str(src), "-o", str(out), "--force"])
    assert res.exit_code == 0 and json.loads(manifest_path(out).read_text())["params"]["method"] == "near"
    cfg.write_text("dedupe:\n  threshold: 0.5\n")
    res = runner.invoke(app, ["--config", str(cfg), "dedup", str(src), "-o", str(out)])
    assert res.exit_code == 2 and "dedupe" in res.stderr
    cfg.write_text("dedup:\n  threshold: 2\n")
    res = runner.invoke(app, ["--config", str(cfg), "dedup", str(src), "-o", str(out)])
    assert res.exit_code == 2 and "threshold" in res.stderr and str(cfg) in res.stderr


def test_missing_out_exits_2(tmp_path):
    src = tmp_path / "in.jsonl"
    write_rows(src, [{"text": "x"}])
    code, _, err = run("dedup", src)
    assert code == 2 and "--out" in err
