"""Recipe configs: YAML round trip (Python and command line), flags override the file, old spellings, bad input
refused with a clear message, the shipped recipes load."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tpro.config import ConfigError
from tpro.train import common
from tpro.train.cli import app
from tpro.train.dpo import DPORecipe
from tpro.train.midtrain import MidtrainRecipe
from tpro.train.pairs import PairsConfig
from tpro.train.rm import RMRecipe
from tpro.train.sft import SFTRecipe

ROOT = Path(__file__).resolve().parents[2]
VERBS = {MidtrainRecipe: "midtrain", SFTRecipe: "sft", RMRecipe: "rm", DPORecipe: "dpo", PairsConfig: "build-pairs"}
runner = CliRunner()


def _changed(cls):
    """An instance with every field moved off its default (so a dropped field would show)."""
    vals = {}
    for f in dataclasses.fields(cls):
        d = f.default
        if f.name == "mode":
            vals[f.name] = "reasoning"
        elif f.name in ("train_only", "loss_on", "scorer", "dtype", "weights"):
            vals[f.name] = {
                "train_only": "embeddings",
                "loss_on": "assistant",
                "scorer": "verifier",
                "weights": "int8",
            }.get(f.name, "float32")
        elif f.name == "stop":
            vals[f.name] = ["</s>"]
        elif f.name == "rope_scaling":
            vals[f.name] = "yarn:2"
        elif d is None:
            vals[f.name] = 7
        elif isinstance(d, bool):
            vals[f.name] = not d
        elif isinstance(d, int):
            vals[f.name] = d + 3
        elif isinstance(d, float):
            vals[f.name] = min(d + 0.25, 1.0) if d < 1 else d + 0.25
        else:
            vals[f.name] = f"{d}x" if d not in ("", MISSING) else "some/path ü"
    return cls(**vals)


@pytest.mark.parametrize("cls", list(VERBS), ids=lambda c: c.__name__)
def test_yaml_round_trip(cls, tmp_path):
    cfg = _changed(cls)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert cls.from_yaml(path) == cfg
    # the command line reads the same file to the same settings
    res = runner.invoke(app, [VERBS[cls], "--config", str(path), "--print-config"])
    assert res.exit_code == 0, res.output
    assert cls(**yaml.safe_load(res.stdout)) == cfg


def test_flags_override_yaml_and_old_spellings(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("learning_rate: 0.001\nmax_steps: 7\nlora: true\ndata: a.jsonl\nout: o\n")
    res = runner.invoke(app, ["sft", "--config", str(path), "--max_steps", "9", "--lora", "false", "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = SFTRecipe(**yaml.safe_load(res.stdout))
    assert (cfg.learning_rate, cfg.max_steps, cfg.lora, cfg.data) == (0.001, 9, False, "a.jsonl")
    # build-pairs: --policy is --model's old spelling; underscore flags of the shared sampling options
    args = ["--policy", "p", "--prompts", "x", "--out", "o", "--reward_model", "r", "--max_new_tokens", "9"]
    res = runner.invoke(app, ["build-pairs", *args, "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = PairsConfig(**yaml.safe_load(res.stdout))
    assert (cfg.model, cfg.reward_model, cfg.max_new_tokens, cfg.temperature, cfg.top_p) == ("p", "r", 9, 0.8, 0.95)


def test_recipe_defaults():
    # each recipe's own value for a shared setting (declared once; tpro.config.like keeps its help and bounds)
    assert SFTRecipe(data="d", out="o").learning_rate == 2e-5
    assert MidtrainRecipe(data="d", out="o").learning_rate == 1e-4 and MidtrainRecipe(data="d", out="o").packing
    assert not SFTRecipe(data="d", out="o").packing
    assert RMRecipe(data="d", out="o").eval_fraction == 0.1 and DPORecipe(data="d", out="o").learning_rate == 1e-7
    assert PairsConfig(prompts="p", out="o").max_new_tokens == 256
    helps = {c: c.__dataclass_fields__["learning_rate"].metadata["help"] for c in (SFTRecipe, DPORecipe)}
    assert helps[SFTRecipe] == helps[DPORecipe]
    assert common.ConfigError is ConfigError


def test_bad_inputs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat.*did you mean 'learning_rate'"):
        SFTRecipe.from_yaml(path, data="d", out="o")
    with pytest.raises(ConfigError, match="does not exist"):
        SFTRecipe.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="'everything' is not one of all, embeddings"):
        MidtrainRecipe(data="d", out="o", train_only="everything")
    with pytest.raises(ConfigError, match="out of range"):
        PairsConfig(prompts="p", out="o", k=1)
    res = runner.invoke(app, ["midtrain", "--data", "d", "--out", "o", "--train_only", "everything"])
    assert res.exit_code == 2 and "everything" in res.output
    res = runner.invoke(app, ["sft", "--data", "d", "--out", "o", "--rope_scaling", "yarn:0.5"])  # before any load
    assert res.exit_code == 2 and "yarn:0.5" in res.output


def test_stage_main_is_the_cli(tmp_path, capsys):
    """``python -m tpro.train.X`` / ``accelerate launch -m`` go through the same command: same flags, exit 2."""
    from tpro.train import sft

    with pytest.raises(SystemExit) as e:
        sft.main(["--out", "o"])
    assert e.value.code == 2 and "missing setting(s): --data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sft.main(["--data", "d", "--out", "o", "--learning_rate", "fast"])
    assert e.value.code == 2 and "fast" in capsys.readouterr().err
    assert sft.main(["--data", "d", "--out", "o", "--print-config"]) is None
    assert "data: d" in capsys.readouterr().out


def test_shipped_configs_parse():
    seen = 0
    by_stage = {"midtrain": "midtrain", "sft": "sft", "rm": "rm", "dpo": "dpo", "pairs": "build-pairs"}
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        verb = by_stage[path.stem.split("-")[0]]
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and ("tpro train" in first or "accelerate launch" in first), path
        assert f"--config configs/train/{path.name}" in first, path
        required = ["--prompts", "p"] if verb == "build-pairs" else ["--data", "d"]
        res = runner.invoke(app, [verb, "--config", str(path), *required, "--print-config"])
        assert res.exit_code == 0, (path, res.output)
        seen += 1
    assert seen >= 9


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    root = ROOT / "configs" / "accelerate"
    kinds = {}
    for path in sorted(root.glob("*.yaml")):
        assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/" + path.name)
        cfg = ClusterConfig.from_yaml_file(str(path))
        kinds[path.stem] = str(cfg.distributed_type)
    assert kinds == {"fsdp": "DistributedType.FSDP", "zero3": "DistributedType.DEEPSPEED"}


def test_recipes_load_without_hub_kernels(tiny_qwen2_dir):
    """transformers 5 turns Hub kernels (downloaded code) on by default; on a GPU that failed the first training
    step. Every recipe loads its models through ``load_pretrained``, which keeps them off."""
    model = common.load_pretrained(
        common.TrainConfig(model=str(tiny_qwen2_dir), data="unused.jsonl", out="unused"), str(tiny_qwen2_dir)
    )
    assert model.use_kernels is False
