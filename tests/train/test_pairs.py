"""On-policy pair building with the real engine on a tiny policy: K seeded samples per prompt (the one seed rule of
``tpro.engine.samples``), reward-model or verifier scores, best vs worst in the project's preference format; reruns
resume and reproduce."""

from __future__ import annotations

import json

import pytest

from tests.train.data import write_jsonl
from tpro.train import pairs
from tpro.train.common import ConfigError
from tpro.train.pairs import PairsConfig


@pytest.fixture(scope="module")
def reward_dir(tiny_qwen2_dir, tmp_path_factory):
    """A random-init one-label sequence-classification head on the tiny body: a real (if meaningless) scorer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path_factory.mktemp("rm")
    torch.manual_seed(0)
    m = AutoModelForSequenceClassification.from_pretrained(str(tiny_qwen2_dir), num_labels=1)
    tok = AutoTokenizer.from_pretrained(str(tiny_qwen2_dir))
    m.config.pad_token_id = tok.pad_token_id
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reward_pairs_resume_and_reproduce(tiny_qwen2_dir, reward_dir, tmp_path):
    prompts = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "Сколько будет 2+2?"},
            {"prompt": "Столица России?"},
            {"prompt": [{"role": "user", "content": "Привет!"}]},
        ],
    )
    args = [
        "--policy",  # the old spelling of --model
        str(tiny_qwen2_dir),
        "--prompts",
        str(prompts),
        "--k",
        "3",
        "--max_new_tokens",
        "8",
        "--temperature",
        "1.0",
        "--reward_model",
        str(reward_dir),
        "--threads",
        "2",
    ]
    out = tmp_path / "a" / "pairs.jsonl"
    s1 = pairs.main([*args, "--out", str(out), "--limit", "2"])
    samples = out.with_name("pairs.jsonl.samples.jsonl")
    first = _rows(samples)
    assert [r["index"] for r in first] == [0, 1] and s1["samples"] == 6
    s2 = pairs.main([*args, "--out", str(out)])  # resumes: only prompt 3 is sampled
    rows = _rows(samples)
    assert rows[:2] == first and [r["index"] for r in rows] == [0, 1, 2]
    scored = _rows(out.with_name("pairs.jsonl.scored.jsonl"))
    assert len(scored) == 3
    for r in scored:
        assert len(r["completions"]) == len(r["scores"]) == 3
        assert len(set(r["completions"])) > 1  # T > 0 with distinct seeds: different samples
    got = _rows(out)
    assert len(got) == s2["pairs"] >= 1
    for p in got:
        assert set(p) == {"prompt", "chosen", "rejected", "meta"}
        assert p["prompt"][0]["role"] == "user" and p["chosen"][0]["role"] == "assistant"
        assert p["meta"]["chosen_score"] > p["meta"]["rejected_score"] and p["meta"]["mode"] == "direct"
        row = next(r for r in scored if r["prompt"] in (p["prompt"][0]["content"], p["prompt"]))
        assert p["meta"]["chosen_score"] == max(row["scores"]) and p["meta"]["rejected_score"] == min(row["scores"])
    # Same seed, fresh directory, through the Python API: the same samples.
    out2 = tmp_path / "b" / "pairs.jsonl"
    cfg = PairsConfig(
        model=str(tiny_qwen2_dir),
        prompts=str(prompts),
        out=str(out2),
        k=3,
        max_new_tokens=8,
        temperature=1.0,
        reward_model=str(reward_dir),
        threads=2,
    )
    pairs.run(cfg)
    assert _rows(out2.with_name("pairs.jsonl.samples.jsonl")) == rows


def test_seed_rule(tiny_qwen2_dir, tmp_path):
    """Sample j of prompt i is seeded with seed + 1000*i + j (``tpro.engine.samples.sample_seed``)."""
    from dataclasses import replace

    from tpro.engine import Engine
    from tpro.models import load_model

    prompts = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "Привет!", "answer": "x"}, {"prompt": "Как дела?", "answer": "y"}]
    )
    out = tmp_path / "pairs.jsonl"
    cfg = PairsConfig(
        model=str(tiny_qwen2_dir),
        prompts=str(prompts),
        out=str(out),
        k=2,
        max_new_tokens=6,
        temperature=1.0,
        seed=5,
        scorer="verifier",
        threads=2,
    )
    pairs.run(cfg)
    got = _rows(out.with_name("pairs.jsonl.samples.jsonl"))[1]["samples"][1]["text"]
    engine = Engine.from_loaded(load_model(str(tiny_qwen2_dir), progress=False))
    want = engine.complete("Как дела?", replace(cfg.sampling(), seed=5 + 1000 + 1), mode="direct").text
    assert got == want


def test_verifier_reasoning_mode(tiny_qwen2_dir, tmp_path):
    prompts = write_jsonl(tmp_path / "m.jsonl", [{"question": "Сколько будет 2+2?", "answer": "4"}])
    out = tmp_path / "pairs.jsonl"
    s = pairs.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--prompts",
            str(prompts),
            "--k",
            "2",
            "--max_new_tokens",
            "6",
            "--scorer",
            "verifier",
            "--mode",
            "reasoning",
            "--out",
            str(out),
            "--threads",
            "2",
        ]
    )
    (row,) = _rows(out.with_name("pairs.jsonl.scored.jsonl"))
    assert set(row["scores"]) <= {0.0, 1.0} and row["meta"]["mode"] == "reasoning"
    assert all(c.startswith("<think>\n") and "\n</think>\n\n" in c for c in row["completions"])
    assert s["pairs"] == (1 if len(set(row["scores"])) == 2 else 0)  # all-equal scores teach nothing: dropped


def test_bad_settings(tmp_path, capsys):
    with pytest.raises(ConfigError, match="temperature"):
        pairs.run(PairsConfig(prompts="x", out="y", temperature=0, reward_model="r"))
    with pytest.raises(ConfigError, match="reward-model"):
        pairs.run(PairsConfig(prompts="x", out="y"))
    with pytest.raises(SystemExit) as e:  # the command line: the reason on stderr, exit 2
        pairs.main(["--prompts", "x", "--out", "y"])
    assert e.value.code == 2 and "error: --scorer reward needs --reward-model" in capsys.readouterr().err
