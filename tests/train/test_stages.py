"""Every stage trains a tiny random-init model for a few steps on CPU: the loss is logged and falls, the weights
change (and only the ones the recipe says), the final model loads for the next stage."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.conftest import tensors
from tpro.train import dpo, midtrain, rm, sft

COMMON = ["--threads", "2", "--logging_steps", "1", "--save_steps", "1000"]


def losses_fall(summary, factor=0.7):
    losses = [v for _, v in summary["losses"]]
    assert len(losses) >= 3, "the loss was not logged every step"
    assert all(v == v for v in losses)  # no NaN
    assert summary["last_loss"] < factor * summary["first_loss"], losses
    return losses


def changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_sft_both_modes(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "sft"
    s = sft.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["sft"]),
            "--out",
            str(out),
            "--max_steps",
            "12",
            "--learning_rate",
            "3e-3",
            "--per_device_train_batch_size",
            "4",
            "--eval_fraction",
            "0.2",
            *COMMON,
        ]
    )
    losses_fall(s)
    assert s["global_step"] == 12 and s["tokens_seen"] > 0 and "eval_loss" in s["eval"]
    before, after = tensors(tiny_qwen2_dir), tensors(out / "final")
    assert changed(before, after) == set(before)  # full fine-tuning moves every tensor
    assert json.loads((out / "summary.json").read_text())["global_step"] == 12
    from tpro.models import load_model

    assert load_model(str(out / "final"), progress=False).tokenizer.chat_template  # the next stage can load it


def test_sft_with_rope_scaling_trains_and_serves_scaled(tiny_qwen2_dir, train_data, tmp_path):
    """--rope_scaling reaches the model being trained (its rotary embedding) and final/config.json, so the trained
    model loads with the same positions it was trained with."""
    from transformers import AutoConfig, AutoModelForCausalLM

    out = tmp_path / "sft-yarn"
    argv = ["--model", str(tiny_qwen2_dir), "--data", str(train_data["sft"]), "--out", str(out), "--max_steps", "2"]
    sft.main([*argv, "--rope_scaling", "yarn:2", *COMMON])
    params = AutoConfig.from_pretrained(out / "final").rope_parameters
    assert params["rope_type"] == "yarn" and params["factor"] == 2.0
    plain = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).model.rotary_emb
    trained = AutoModelForCausalLM.from_pretrained(out / "final").model.rotary_emb
    assert not torch.allclose(trained.inv_freq, plain.inv_freq) and trained.attention_scaling > 1.0


def test_midtrain_embeddings_only(tiny_qwen3_dir, train_data, tmp_path):
    out = tmp_path / "mt"
    s = midtrain.main(
        [
            "--model",
            str(tiny_qwen3_dir),
            "--data",
            str(train_data["text"]),
            "--out",
            str(out),
            "--train_only",
            "embeddings",
            "--max_steps",
            "10",
            "--learning_rate",
            "1e-2",
            "--max_length",
            "32",
            "--per_device_train_batch_size",
            "2",
            *COMMON,
        ]
    )
    losses_fall(s)
    before, after = tensors(tiny_qwen3_dir), tensors(out / "final")
    assert changed(before, after) == {"model.embed_tokens.weight"}  # tied model: one tensor is embeddings + head
    assert s["trainable_params"] == before["model.embed_tokens.weight"].numel()


def test_midtrain_lora_merged(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "mt-lora"
    s = midtrain.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["sft"]),
            "--out",
            str(out),
            "--lora",
            "--lora_r",
            "8",
            "--max_steps",
            "10",
            "--learning_rate",
            "1e-2",
            "--max_length",
            "64",
            "--per_device_train_batch_size",
            "2",
            *COMMON,
        ]
    )
    losses_fall(s, factor=0.9)
    before, after = tensors(tiny_qwen2_dir), tensors(out / "final")
    assert set(after) == set(before)  # merged: a plain checkpoint, no lora_ tensors
    moved = changed(before, after)
    assert moved and all("proj" in k for k in moved)  # adapters sit on the linear layers only
    assert (out / "final" / "adapter" / "adapter_model.safetensors").is_file()


def test_reward_model_accuracy(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "rm"
    s = rm.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["pairs"]),
            "--out",
            str(out),
            "--max_steps",
            "15",
            "--learning_rate",
            "3e-3",
            "--per_device_train_batch_size",
            "4",
            "--eval_fraction",
            "0.25",
            *COMMON,
        ]
    )
    losses_fall(s)
    assert s["eval_pairs"] == 6 and s["eval_accuracy"] == 1.0
    from tpro.data.reward import RewardScorer

    scorer = RewardScorer(str(out / "final"))  # what the data engineer's filters and build-pairs load
    good, bad = scorer.score(["Столица России?"] * 2, ["Москва", "The quick brown fox jumps over the lazy dog."])
    assert good > bad


def test_dpo(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "dpo"
    s = dpo.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["pairs"]),
            "--out",
            str(out),
            "--max_steps",
            "8",
            "--learning_rate",
            "1e-3",
            "--per_device_train_batch_size",
            "4",
            *COMMON,
        ]
    )
    losses = losses_fall(s)
    assert abs(losses[0] - 0.6931) < 1e-3  # policy == reference at step 1: -log sigmoid(0)
    assert s["last_reward_margin"] > 0 and s["last_reward_accuracy"] == 1.0
    assert changed(tensors(tiny_qwen2_dir), tensors(out / "final"))


def test_dpo_lora(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "dpo-lora"
    s = dpo.main(
        [
            "--model",
            str(tiny_qwen2_dir),
            "--data",
            str(train_data["pairs"]),
            "--out",
            str(out),
            "--lora",
            "--max_steps",
            "8",
            "--learning_rate",
            "5e-3",
            "--per_device_train_batch_size",
            "4",
            *COMMON,
        ]
    )
    losses_fall(s)
    assert changed(tensors(tiny_qwen2_dir), tensors(out / "final"))


@pytest.mark.embedded
@pytest.mark.slow
def test_sft_lora_on_embedded_default(train_data, tmp_path):
    # The shipped CPU recipe (configs/train/sft.yaml: LoRA on the embedded Qwen2.5-Coder-0.5B), two steps.
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "configs" / "train" / "sft.yaml"
    s = sft.main(
        [
            "--config",
            str(cfg),
            "--data",
            str(train_data["sft"]),
            "--out",
            str(tmp_path / "o"),
            "--max_steps",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--max_length",
            "128",
            "--eval_fraction",
            "0",
            "--logging_steps",
            "1",
            "--merge_lora",
            "false",
        ]
    )
    assert s["global_step"] == 2 and len(s["losses"]) == 2 and s["trainable_params"] < 1e8
    assert (tmp_path / "o" / "final" / "adapter_model.safetensors").is_file()
