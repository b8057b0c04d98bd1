"""Data shards and training on a tiny model: resumable, the loss falls, the weights change; export for SGLang."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from tpro.eagle import tree
from tpro.eagle.cli import app
from tpro.eagle.data import DataConfig, build_data, iter_sequences, list_shards
from tpro.eagle.export import export_sglang
from tpro.eagle.head import init_head, load_head
from tpro.eagle.train import TrainConfig, eagle_loss, hot_vocabulary, train, unrolled_forward, unrolled_mask
from tpro.engine import SamplingParams


@pytest.fixture(scope="module")
def tiny_data(tiny_qwen2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eagle-data")
    build_data(
        DataConfig(model=str(tiny_qwen2_dir), out=str(out), limit=12, batch_size=6, max_new_tokens=40, dtype="float32"),
        log=lambda s: None,
    )
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
    build_data(
        DataConfig(
            model=str(tiny_qwen2_dir), out=str(tiny_data), limit=12, batch_size=6, max_new_tokens=40, dtype="float32"
        ),
        log=logs.append,
    )
    assert logs == [] and before == {p: p.stat().st_mtime_ns for p in list_shards(tiny_data)}


def test_self_distilled_answers_are_the_targets_own(tiny_qwen2):
    """build-data's answers come from the batched engine and equal the target's greedy answer alone (fp32), with
    the end-of-turn token it stopped on kept as the answer's last token."""
    from tpro.eagle.data import generate_answers
    from tpro.engine import BatchEngine, Engine

    engine = Engine.from_loaded(tiny_qwen2)
    stopper = next(iter(engine.eos))
    chats = [engine.prompt(q) for q in ("Привет", "Сколько будет 2+2? Ответь кратко.", "Кто ты?")]
    cfg = DataConfig(model="x", out="unused", max_new_tokens=16, dtype="float32")
    be = BatchEngine(engine, max_batch=4)
    try:
        answers = generate_answers(be, chats, cfg)
        for chat, ans in zip(chats, answers):
            assert ans == engine.complete(chat, SamplingParams(max_new_tokens=16)).token_ids
        # a target that ends its turn at once: the answer is that token alone
        with torch.no_grad():
            bias = torch.zeros(tiny_qwen2.model.config.vocab_size)
            bias[stopper] = 1e4
            head = tiny_qwen2.model.lm_head
            saved = head.bias
            head.bias = torch.nn.Parameter(bias)
        try:
            assert generate_answers(be, chats[:1], cfg) == [[stopper]]
        finally:
            head.bias = saved
    finally:
        be.close()


def test_hot_vocabulary_ranks_by_frequency_and_tops_up_low_ids():
    hot = hot_vocabulary([torch.tensor([7, 7, 7, 9, 9, 3])], vocab_size=20, n=5)
    assert hot.tolist() == [0, 1, 3, 7, 9]


def test_unrolled_mask_small_case():
    # L = 3 step-1 rows; step 2 has rows 0, 1 (positions 1, 2); step 3 has row 0 (position 2)
    m2 = unrolled_mask(3, 2)
    assert m2.int().tolist() == [[1, 0, 0, 1, 0], [1, 1, 0, 0, 1]]
    assert unrolled_mask(3, 3).int().tolist() == [[1, 0, 0, 1, 0, 1]]


@torch.no_grad()
def test_unrolled_steps_equal_incremental_drafting(tiny_qwen2):
    """Step j of training computes what the decoder computes for a depth-j chain drafted after committed pairs."""
    m = tiny_qwen2.model
    torch.manual_seed(0)
    head = init_head(m, torch.arange(200))
    for p in head.parameters():  # move off the warm start so every weight matters
        p.add_(torch.randn_like(p) * 0.02)
    S, H = 9, m.config.hidden_size
    ids = torch.randint(0, 200, (1, S))
    emb = m.get_input_embeddings()(ids)
    f_in = torch.randn(1, S - 1, H)
    outs = unrolled_forward(head, emb, f_in, unroll=3)
    assert [o.shape[1] for o in outs] == [8, 7, 6]
    from transformers import DynamicCache

    for i in (0, 3, 5):  # committed pairs 0..i, then a chain of two drafted nodes
        cache = DynamicCache()
        h = head(emb[:, 1 : i + 2], f_in[:, : i + 1], torch.arange(i + 1)[None], None, cache)[:, -1:]
        torch.testing.assert_close(h, outs[0][:, i : i + 1], atol=1e-5, rtol=1e-5)
        for j in (2, 3):  # node at position i + j - 1 reads (x_{i+j}, previous prediction); sees prefix + chain
            n_cached = i + 1 + (j - 2)
            mask = tree.causal_mask(1, n_cached, torch.float32)
            h = head(emb[:, i + j : i + j + 1], h, torch.tensor([[i + j - 1]]), mask, cache)
            torch.testing.assert_close(h, outs[j - 1][:, i : i + 1], atol=1e-5, rtol=1e-5)


def test_unrolled_loss_reports_each_depth(tiny_qwen2):
    m = tiny_qwen2.model
    head = init_head(m, torch.arange(200))
    ids = torch.randint(0, 200, (2, 12))
    feats = torch.randn(2, 12, m.config.hidden_size)
    mask = torch.ones(2, 12, dtype=torch.bool)
    loss, stats = eagle_loss(head, m.get_input_embeddings()(ids).detach(), feats, mask, 0.5, unroll=3)
    assert {"acc", "acc2", "acc3", "reg2", "cls3"} <= set(stats)
    loss.backward()
    assert head.fc.weight.grad is not None and torch.isfinite(loss)


def test_train_lowers_loss_changes_weights_and_resumes(tiny_data, tiny_qwen2, tmp_path):
    out = tmp_path / "head"
    cfg = TrainConfig(
        data=[str(tiny_data)],
        out=str(out),
        steps=12,
        batch_size=4,
        lr=3e-3,
        warmup=2,
        save_every=6,
        hot_vocab=256,
        mixed_precision="no",
    )
    # run to step 6, then "crash" (a new run with a larger budget resumes from the checkpoint)
    train(TrainConfig(**{**cfg.to_dict(), "steps": 6}), lm=tiny_qwen2, progress=False)
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
    train(
        TrainConfig(data=[str(tiny_data)], out=str(out), steps=1, hot_vocab=128, mixed_precision="no"),
        lm=tiny_qwen2,
        progress=False,
    )
    exp = export_sglang(out, tmp_path / "sglang")
    cfg = json.loads((exp / "config.json").read_text())
    H, I = cfg["hidden_size"], cfg["intermediate_size"]  # noqa: E741 - the paper's names
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    assert cfg["architectures"] == ["LlamaForCausalLMEagle"] and cfg["num_hidden_layers"] == 1
    w = load_file(str(exp / "model.safetensors"))
    expect = {
        "fc.weight": (H, 2 * H),
        "fc.bias": (H,),
        "layers.0.self_attn.q_proj.weight": (cfg["num_attention_heads"] * cfg["head_dim"], H),
        "layers.0.self_attn.k_proj.weight": (kv, H),
        "layers.0.self_attn.v_proj.weight": (kv, H),
        "layers.0.self_attn.o_proj.weight": (H, cfg["num_attention_heads"] * cfg["head_dim"]),
        "layers.0.mlp.gate_proj.weight": (I, H),
        "layers.0.mlp.up_proj.weight": (I, H),
        "layers.0.mlp.down_proj.weight": (H, I),
        "layers.0.post_attention_layernorm.weight": (H,),
    }
    assert {k: tuple(v.shape) for k, v in w.items()} == expect
    hot = torch.load(exp / "hot_token_map.pt", weights_only=True)
    assert hot.dtype == torch.int64 and hot.numel() == 128
    assert "--speculative-algorithm EAGLE" in (exp / "README.md").read_text()


def test_cli_errors_are_clear(tmp_path):
    r = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "h"), "--target", "x"]
    )
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "head_config.json" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "vllm"])
    assert r.exit_code == 2 and "sglang" in r.output


def test_train_through_a_config_file_flags_win(tiny_data, tiny_qwen2_dir, tmp_path):
    """`tpro eagle train --config FILE` on the tiny model: the file's settings, a flag over one, the old --target."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"data: [{tiny_data}]\nout: {tmp_path / 'head'}\nsteps: 3\nbatch_size: 2\nhot_vocab: 64\n"
        "mixed_precision: 'no'\nwarmup: 0\n"
    )
    r = CliRunner().invoke(
        app, ["train", "--config", str(cfg), "--steps", "1", "--target", str(tiny_qwen2_dir), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "head" / "head_config.json").read_text())
    assert meta["step"] == 1 and meta["head"]["hot_vocab_size"] == 64
    assert meta["train"]["model"] == str(tiny_qwen2_dir) and meta["train"]["batch_size"] == 2


def test_old_spellings_and_print_config():
    r = CliRunner().invoke(
        app, ["build-data", "-o", "d", "--modes", "direct", "--target", "m", "-n", "9", "--print-config"]
    )
    assert r.exit_code == 0, r.output
    assert "mode: direct" in r.output and "model: m" in r.output and "max_new_tokens: 9" in r.output
    r = CliRunner().invoke(app, ["build-data", "-o", "d", "--mode", "sideways"])
    assert r.exit_code == 2 and "sideways" in r.output


def test_one_hot_vocab_default_and_the_shipped_recipe_agree():
    """The shipped head was trained with configs/eagle/train-default-head.yaml: every recorded setting (but the
    machine's threads and its paths) is in the file, and --hot-vocab's one default is the shipped head's."""
    from pathlib import Path

    from tpro.eagle import default_head_dir
    from tpro.eagle.head import read_head_config

    recipe = TrainConfig.from_yaml(Path(__file__).parents[2] / "configs" / "eagle" / "train-default-head.yaml")
    assert TrainConfig(out="x").hot_vocab == recipe.hot_vocab == 16384
    head = default_head_dir()
    if head is None:
        pytest.skip("no head shipped in this install")
    meta = read_head_config(head)
    assert meta["head"]["hot_vocab_size"] == recipe.hot_vocab
    shipped = {k: v for k, v in meta["train"].items() if k not in ("data", "out", "threads", "target")}
    mine = recipe.to_dict()
    assert {k: mine[k] for k in shipped} == shipped


def test_head_follows_the_targets_rope_scaling(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    """A head loaded for a target with --rope-scaling gets the target's scaled rotary embedding (its features come
    from scaled positions); a plain target keeps plain RoPE; the weights are the same either way."""
    from tpro.eagle.head import save_head
    from tpro.models import load_model

    scaled = load_model(str(tiny_qwen2_dir), dtype="float32", progress=False, rope_scaling="yarn:2")
    save_head(init_head(tiny_qwen2.model, seed=3), tmp_path / "h")
    plain_head, scaled_head = load_head(tmp_path / "h", tiny_qwen2.model), load_head(tmp_path / "h", scaled.model)
    for head, target in ((plain_head, tiny_qwen2.model), (scaled_head, scaled.model)):
        torch.testing.assert_close(head.rotary.inv_freq, target.model.rotary_emb.inv_freq, rtol=0, atol=0)
        assert head.rotary.attention_scaling == target.model.rotary_emb.attention_scaling
    assert scaled_head.cfg.rope_scaling["rope_type"] == "yarn" and plain_head.cfg.rope_scaling is None
    assert not torch.allclose(scaled_head.rotary.inv_freq, plain_head.rotary.inv_freq)
    for k, v in plain_head.state_dict().items():
        torch.testing.assert_close(scaled_head.state_dict()[k], v)


def test_export_writes_the_served_targets_rope_scaling(tiny_qwen2, tmp_path):
    from transformers import LlamaConfig

    from tpro.eagle.head import save_head

    save_head(init_head(tiny_qwen2.model, seed=4), tmp_path / "h")
    plain = json.loads((export_sglang(tmp_path / "h", tmp_path / "plain") / "config.json").read_text())
    assert "rope_scaling" not in plain
    exp = export_sglang(tmp_path / "h", tmp_path / "yarn", rope_scaling="yarn:4")
    cfg = json.loads((exp / "config.json").read_text())
    native = tiny_qwen2.model.config.max_position_embeddings
    assert cfg["rope_scaling"] == {"rope_type": "yarn", "type": "yarn", "factor": 4.0,
                                   "original_max_position_embeddings": native}  # fmt: skip
    read = LlamaConfig.from_pretrained(exp).rope_parameters  # as transformers-based engines read it
    assert read["rope_type"] == "yarn" and read["factor"] == 4.0
    r = CliRunner().invoke(app, ["export", str(tmp_path / "h"), "--out", str(tmp_path / "o"), "--rope-scaling", "x:2"])
    assert r.exit_code == 2 and "x:2" in r.output
