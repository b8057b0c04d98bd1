"""Data shards and training on a tiny model: resumable, the loss falls, the weights change; export for SGLang."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tpro.eagle.cli import app
from tpro.eagle.data import DataConfig, build_data, iter_sequences, list_shards
from tpro.eagle.export import export_sglang
from tpro.eagle.head import load_head
from tpro.eagle.train import TrainConfig, hot_vocabulary, train


@pytest.fixture(scope="module")
def tiny_data(tiny_qwen2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eagle-data")
    build_data(DataConfig(target=str(tiny_qwen2_dir), out=str(out), limit=12, batch_size=6, max_new_tokens=40,
                          dtype="float32"), log=lambda s: None)
    return out


def test_shards_hold_target_features(tiny_data, tiny_qwen2):
    assert len(list_shards(tiny_data)) == 2
    ids, hid, mask = next(iter_sequences([tiny_data]))
    with torch.no_grad():
        ref = tiny_qwen2.model.get_decoder()(input_ids=ids[None]).last_hidden_state[0]
    torch.testing.assert_close(hid.float(), ref, atol=2e-2, rtol=2e-2)  # stored as bf16
    assert mask.any() and not mask[0]  # answer tokens only


def test_build_data_resumes_without_redoing_shards(tiny_data, tiny_qwen2_dir):
    before = {p: p.stat().st_mtime_ns for p in list_shards(tiny_data)}
    logs = []
    build_data(DataConfig(target=str(tiny_qwen2_dir), out=str(tiny_data), limit=12, batch_size=6, max_new_tokens=40,
                          dtype="float32"), log=logs.append)
    assert logs == [] and before == {p: p.stat().st_mtime_ns for p in list_shards(tiny_data)}


def test_hot_vocabulary_ranks_by_frequency_and_tops_up_low_ids():
    hot = hot_vocabulary([torch.tensor([7, 7, 7, 9, 9, 3])], vocab_size=20, n=5)
    assert hot.tolist() == [0, 1, 3, 7, 9]


def test_train_lowers_loss_changes_weights_and_resumes(tiny_data, tiny_qwen2, tmp_path):
    out = tmp_path / "head"
    cfg = TrainConfig(data=[str(tiny_data)], out=str(out), steps=12, batch_size=4, lr=3e-3, warmup=2, save_every=6,
                      hot_vocab=256, mixed_precision="no")
    # run to step 6, then "crash" (a new run with a larger budget resumes from the checkpoint)
    train(TrainConfig(**{**cfg.__dict__, "steps": 6}), lm=tiny_qwen2, progress=False)
    first = load_file(str(out / "checkpoint" / "head.safetensors"))
    logs = []
    train(cfg, lm=tiny_qwen2, progress=False, log=logs.append)
    assert any("resuming" in s and "step 6" in s for s in logs)
    rows = [json.loads(line) for line in open(out / "train_log.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3])
    final = load_file(str(out / "head.safetensors"))
    assert not torch.equal(final["fc.weight"], first["fc.weight"])
    assert final["hot_ids"].numel() == 256
    head = load_head(out, tiny_qwen2.model)
    assert head.lm_head_hot.shape == (256, tiny_qwen2.model.config.hidden_size)


def test_export_sglang_names_shapes_and_token_map(tiny_data, tiny_qwen2, tmp_path):
    out = tmp_path / "head"
    train(TrainConfig(data=[str(tiny_data)], out=str(out), steps=1, hot_vocab=128, mixed_precision="no"), lm=tiny_qwen2, progress=False)
    exp = export_sglang(out, tmp_path / "sglang")
    cfg = json.loads((exp / "config.json").read_text())
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    assert cfg["architectures"] == ["LlamaForCausalLMEagle"] and cfg["num_hidden_layers"] == 1
    w = load_file(str(exp / "model.safetensors"))
    expect = {
        "fc.weight": (H, 2 * H), "fc.bias": (H,),
        "layers.0.self_attn.q_proj.weight": (cfg["num_attention_heads"] * cfg["head_dim"], H),
        "layers.0.self_attn.k_proj.weight": (kv, H), "layers.0.self_attn.v_proj.weight": (kv, H),
        "layers.0.self_attn.o_proj.weight": (H, cfg["num_attention_heads"] * cfg["head_dim"]),
        "layers.0.mlp.gate_proj.weight": (I, H), "layers.0.mlp.up_proj.weight": (I, H), "layers.0.mlp.down_proj.weight": (H, I),
        "layers.0.post_attention_layernorm.weight": (H,),
    }
    assert {k: tuple(v.shape) for k, v in w.items()} == expect
    hot = torch.load(exp / "hot_token_map.pt", weights_only=True)
    assert hot.dtype == torch.int64 and hot.numel() == 128
    assert "--speculative-algorithm EAGLE" in (exp / "README.md").read_text()


def test_cli_errors_are_clear(tmp_path):
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "h"), "--target", "x"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "head_config.json" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "vllm"])
    assert r.exit_code == 2 and "sglang" in r.output
