"""Config dataclasses: YAML round trip, flags override the file, bad input is refused with a clear message."""

from __future__ import annotations

import dataclasses

import pytest

from tpro.train.common import ConfigError, parse_config, to_yaml
from tpro.train.dpo import DPORecipe
from tpro.train.midtrain import MidtrainRecipe
from tpro.train.pairs import PairsConfig
from tpro.train.rm import RMRecipe
from tpro.train.sft import SFTRecipe

ALL = [MidtrainRecipe, SFTRecipe, RMRecipe, DPORecipe, PairsConfig]


def _changed(cls):
    """An instance with every field moved off its default (so a dropped field would show)."""
    vals = {}
    for f in dataclasses.fields(cls):
        d = f.default
        if isinstance(d, bool):
            vals[f.name] = not d
        elif isinstance(d, int):
            vals[f.name] = d + 3
        elif isinstance(d, float):
            vals[f.name] = d + 0.25
        elif f.name in ("mode",):
            vals[f.name] = "reasoning" if d != "reasoning" else "direct"
        elif f.name == "train_only":
            vals[f.name] = "embeddings"
        elif f.name == "loss_on":
            vals[f.name] = "assistant"
        elif f.name == "scorer":
            vals[f.name] = "verifier"
        else:
            vals[f.name] = f"{d}x" if d else "some/path ü"
    return cls(**vals)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_yaml_round_trip(cls, tmp_path):
    cfg = _changed(cls)
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg), encoding="utf-8")
    assert parse_config(cls, ["--config", str(path)]) == cfg
    assert parse_config(cls, []) == cls()


def test_flags_override_yaml(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("learning_rate: 0.001\nmax_steps: 7\nlora: true\ndata: a.jsonl\n")
    cfg = parse_config(SFTRecipe, ["--config", str(path), "--max_steps", "9", "--lora", "false"])
    assert (cfg.learning_rate, cfg.max_steps, cfg.lora, cfg.data) == (0.001, 9, False, "a.jsonl")


def test_bad_inputs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        parse_config(SFTRecipe, ["--config", str(path)])
    with pytest.raises(ConfigError, match="existing YAML"):
        parse_config(SFTRecipe, ["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(SystemExit) as e:  # argparse: unknown choice -> exit 2 with its message
        parse_config(MidtrainRecipe, ["--train_only", "everything"])
    assert e.value.code == 2


def test_shipped_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    by_stage = {"midtrain": MidtrainRecipe, "sft": SFTRecipe, "rm": RMRecipe, "dpo": DPORecipe, "pairs": PairsConfig}
    seen = 0
    for path in sorted(root.glob("*.yaml")):
        cls = by_stage[path.stem.split("-")[0]]
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and ("tpro train" in first or "accelerate launch" in first), path
        parse_config(cls, ["--config", str(path)])
        seen += 1
    assert seen >= 5


def test_accelerate_configs_load():
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    root = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
    kinds = {}
    for path in sorted(root.glob("*.yaml")):
        assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/" + path.name)
        cfg = ClusterConfig.from_yaml_file(str(path))
        kinds[path.stem] = str(cfg.distributed_type)
    assert kinds == {"fsdp": "DistributedType.FSDP", "zero3": "DistributedType.DEEPSPEED"}
