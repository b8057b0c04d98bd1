"""RoPE scaling (``tpro.models.rope``): spec parsing, the config transformers reads, and that the scaling reaches
the rotary embeddings of tiny Qwen2 and Qwen3 models (against transformers' own reference functions), their logits,
the context they accept, and the command line.

The tiny checkpoints are copied with ``max_position_embeddings`` lowered to ``ORIG`` tokens, so "longer than the
pretraining context" is a 100-token sequence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tpro.config import ConfigError
from tpro.models import load_model
from tpro.models.rope import apply_rope_scaling, context_length, parse_rope_scaling
from tpro.options import ModelOptions

ORIG = 64  # the copies' pretraining context
LONG = 100  # a sequence past it


def short_context_copy(src: Path, dst: Path, n: int = ORIG) -> Path:
    """A copy of checkpoint ``src`` whose config says it was trained on ``n`` tokens of context."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["max_position_embeddings"] = n
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module", params=["qwen2", "qwen3"])
def short_dir(request, tmp_path_factory):
    src = request.getfixturevalue(f"tiny_{request.param}_dir")
    return short_context_copy(src, tmp_path_factory.mktemp("short") / request.param)


def _load(path, rope_scaling=None):
    return load_model(str(path), dtype="float32", progress=False, rope_scaling=rope_scaling)


@pytest.fixture(scope="module")
def plain(short_dir):
    return _load(short_dir)


def _reference(path, rope_parameters: dict):
    """What transformers computes for ``rope_parameters`` written by hand into the checkpoint's config, as the
    Qwen model cards say to (independent of tpro.models.rope)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path))
    config.rope_parameters = {"rope_theta": config.rope_parameters["rope_theta"], **rope_parameters}
    return config


def _logits(model, n: int = LONG) -> torch.Tensor:
    ids = torch.arange(3, 3 + n).remainder(model.config.vocab_size - 3).unsqueeze(0) + 3  # [1, n]
    with torch.no_grad():
        return model(input_ids=ids).logits  # [1, n, V]


# --- parsing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,want",
    [
        (None, None),
        ("", None),
        ("none", None),
        (" None ", None),
        ("yarn:4", {"rope_type": "yarn", "factor": 4.0}),
        ("yarn:4:32768", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
        ("YaRN:2.5:100", {"rope_type": "yarn", "factor": 2.5, "original_max_position_embeddings": 100}),
        ("linear:2", {"rope_type": "linear", "factor": 2.0}),
        ("dynamic:2", {"rope_type": "dynamic", "factor": 2.0}),
        ("dynamic:3:4096", {"rope_type": "dynamic", "factor": 3.0, "original_max_position_embeddings": 4096}),
    ],
)
def test_parse(spec, want):
    assert parse_rope_scaling(spec) == want


@pytest.mark.parametrize(
    "spec,why",
    [
        ("yarn", "FACTOR"),
        ("yarn:", "not a number"),
        ("yarn:four", "not a number"),
        ("yarn:1", "> 1"),
        ("yarn:0.5", "> 1"),
        ("yarn:nan", "> 1"),
        ("yarn:inf", "> 1"),
        ("yarn:4:0", "> 0"),
        ("yarn:4:-5", "> 0"),
        ("yarn:4:1.5", "whole number"),
        ("yarn:4:32768:1", "FACTOR[:ORIGINAL]"),
        ("linear:2:4096", "linear takes FACTOR"),
        ("longrope:2", "unknown kind"),
        ("4", "unknown kind"),
    ],
)
def test_parse_errors_name_the_value_and_the_forms(spec, why):
    with pytest.raises(ConfigError) as e:
        parse_rope_scaling(spec)
    msg = str(e.value)
    assert repr(spec) in msg and why in msg
    assert "yarn:FACTOR[:ORIGINAL]" in msg and "yarn:4:32768" in msg and "Qwen3" in msg


# --- the config transformers reads --------------------------------------------------------------------------------


def test_apply_writes_rope_parameters_and_context():
    from transformers import Qwen3Config

    config = Qwen3Config(max_position_embeddings=40960, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    got = apply_rope_scaling(config, parse_rope_scaling("yarn:4:32768"))
    want = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 32768}
    assert got == want and config.rope_parameters == want
    assert config.max_position_embeddings == 131072 == context_length(config)


def test_apply_defaults_original_and_replaces_an_old_scaling():
    from transformers import Qwen2Config

    config = Qwen2Config(max_position_embeddings=1000)
    assert apply_rope_scaling(config, parse_rope_scaling("yarn:2"))["original_max_position_embeddings"] == 1000
    assert config.max_position_embeddings == 2000
    config.rope_parameters["beta_fast"] = 16  # a checkpoint's own yarn extras: replaced, not mixed in
    got = apply_rope_scaling(config, parse_rope_scaling("linear:3"))
    # the pretraining length stays the checkpoint's original (1000), not its already-stretched 2000
    assert got == {"rope_type": "linear", "factor": 3.0, "rope_theta": config.rope_parameters["rope_theta"]}
    assert config.max_position_embeddings == 3000


def test_apply_none_leaves_the_config_alone():
    from transformers import Qwen2Config

    config = Qwen2Config(max_position_embeddings=1000)
    before = dict(config.rope_parameters)
    assert apply_rope_scaling(config, None) is None
    assert config.rope_parameters == before and config.max_position_embeddings == 1000 == context_length(config)


def test_apply_refuses_a_hand_made_bad_dict():
    from transformers import Qwen2Config

    for bad in ({"rope_type": "longrope", "factor": 2.0}, {"rope_type": "yarn", "factor": 0.5}, {"rope_type": "yarn"}):
        with pytest.raises(ConfigError, match="parse_rope_scaling"):
            apply_rope_scaling(Qwen2Config(), bad)


# --- the loaded model ---------------------------------------------------------------------------------------------


def test_without_scaling_nothing_changes(plain, short_dir):
    from transformers import AutoConfig

    on_disk = AutoConfig.from_pretrained(str(short_dir))
    assert plain.info["rope_scaling"] is None and plain.info["context_length"] == ORIG
    assert plain.model.config.rope_parameters == on_disk.rope_parameters
    assert on_disk.rope_parameters["rope_type"] == "default"
    assert plain.model.config.max_position_embeddings == ORIG
    assert _load(short_dir, "none").info["rope_scaling"] is None


def test_yarn_reaches_the_rotary_embedding(plain, short_dir):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from tpro.engine import Engine

    lm = _load(short_dir, f"yarn:4:{ORIG}")
    rotary = lm.model.model.rotary_emb
    ref = _reference(short_dir, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIG})
    inv_freq, scaling = ROPE_INIT_FUNCTIONS["yarn"](ref, "cpu")
    torch.testing.assert_close(rotary.inv_freq, inv_freq, rtol=0, atol=0)
    assert rotary.attention_scaling == pytest.approx(scaling) and scaling > 1.1  # 0.1 ln 4 + 1
    assert rotary.rope_type == "yarn"
    # ...and it is not the unscaled model's
    assert not torch.allclose(rotary.inv_freq, plain.model.model.rotary_emb.inv_freq)
    assert plain.model.model.rotary_emb.attention_scaling == 1.0
    # past the pretraining context the outputs differ
    diff = (_logits(lm.model)[:, ORIG:] - _logits(plain.model)[:, ORIG:]).abs().max()
    assert diff > 1e-3
    # the context the model accepts grows: config, load info, engine
    assert lm.model.config.max_position_embeddings == 4 * ORIG == lm.info["context_length"]
    assert Engine.from_loaded(lm).context_length == 4 * ORIG > Engine.from_loaded(plain).context_length
    assert lm.info["rope_scaling"] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": ORIG,
        "rope_theta": ref.rope_parameters["rope_theta"],
    }


def test_yarn_original_defaults_to_the_checkpoints(short_dir):
    lm = _load(short_dir, {"rope_type": "yarn", "factor": 2.0})  # the dict form, as Python callers may pass
    assert lm.model.config.rope_parameters["original_max_position_embeddings"] == ORIG
    assert lm.info["context_length"] == 2 * ORIG


def test_linear_reaches_the_rotary_embedding(plain, short_dir):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from tpro.engine import Engine

    lm = _load(short_dir, "linear:2")
    rotary = lm.model.model.rotary_emb
    inv_freq, _ = ROPE_INIT_FUNCTIONS["linear"](_reference(short_dir, {"rope_type": "linear", "factor": 2.0}), "cpu")
    torch.testing.assert_close(rotary.inv_freq, inv_freq, rtol=0, atol=0)
    # linear interpolation = every frequency halved
    torch.testing.assert_close(rotary.inv_freq, plain.model.model.rotary_emb.inv_freq / 2)
    assert (_logits(lm.model) - _logits(plain.model)).abs().max() > 1e-3
    assert Engine.from_loaded(lm).context_length == 2 * ORIG == lm.info["context_length"]


def test_dynamic_rescales_past_the_original_length(plain, short_dir):
    """transformers' dynamic NTK starts rescaling past max_position_embeddings, so that stays the original length
    (grown, it would switch the scaling off below ORIG x FACTOR) while the accepted context is ORIG x FACTOR."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    lm = _load(short_dir, f"dynamic:4:{ORIG}")
    rotary = lm.model.model.rotary_emb
    assert lm.model.config.max_position_embeddings == ORIG
    assert lm.info["context_length"] == 4 * ORIG == context_length(lm.model.config)
    from tpro.engine import Engine

    assert Engine.from_loaded(lm).context_length == 4 * ORIG  # the engine (and the server) accept that much
    # within the original length: the plain frequencies and the same logits
    short = 32
    torch.testing.assert_close(_logits(lm.model, short), _logits(plain.model, short))
    # past it: transformers' dynamic NTK frequencies for that length, and other logits
    long_logits = _logits(lm.model)
    ref = _reference(short_dir, {"rope_type": "dynamic", "factor": 4.0})
    ref.max_position_embeddings = ORIG
    inv_freq, _ = ROPE_INIT_FUNCTIONS["dynamic"](ref, "cpu", seq_len=LONG)
    torch.testing.assert_close(rotary.inv_freq, inv_freq)
    assert not torch.allclose(inv_freq, plain.model.model.rotary_emb.inv_freq)
    assert (long_logits[:, ORIG:] - _logits(plain.model)[:, ORIG:]).abs().max() > 1e-3


def test_model_options_validate_early_and_pass_the_scaling(short_dir):
    with pytest.raises(ConfigError, match="'yarn:1'"):
        ModelOptions(model=str(short_dir), rope_scaling="yarn:1")
    lm = ModelOptions(model=str(short_dir), dtype="float32", rope_scaling="yarn:2").load_model(progress=False)
    assert lm.info["rope_scaling"]["rope_type"] == "yarn" and lm.info["context_length"] == 2 * ORIG


# --- the command line ---------------------------------------------------------------------------------------------

runner = CliRunner()


def test_bad_rope_scaling_flag_exits_2_with_the_forms(tiny_qwen2_dir, tmp_path):
    from tpro.engine.cli import app as generate
    from tpro.models.cli import app as model

    texts = tmp_path / "t.txt"
    texts.write_text("Мама мыла раму.\n", encoding="utf-8")
    for app, args in (
        (generate, ["x"]),
        (model, ["bpc", str(texts)]),
    ):
        r = runner.invoke(app, [*args, "--model", str(tiny_qwen2_dir), "--rope-scaling", "yarn:big"])
        assert r.exit_code == 2, r.output
        assert "'yarn:big'" in r.stderr and "yarn:4:32768" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rope_scaling: rope:4\n")
    r = runner.invoke(model, ["bpc", str(texts), "--config", str(bad)])
    assert r.exit_code == 2 and "'rope:4'" in r.stderr


def test_bpc_command_with_and_without_scaling(tiny_qwen2_dir, tmp_path):
    from tpro.models.cli import app as model

    short = short_context_copy(tiny_qwen2_dir, tmp_path / "short")
    texts = tmp_path / "t.txt"
    texts.write_text("Мама мыла раму. Папа читает газету. " * 12 + "\n\nПривет!\n", encoding="utf-8")
    base = ["bpc", str(texts), "--model", str(short), "--dtype", "float32", "--max-length", "200", "--json"]
    outs = []
    for extra in ([], ["--rope-scaling", f"yarn:4:{ORIG}"]):
        r = runner.invoke(model, [*base, *extra])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout))
    assert outs[0]["texts"] == 2 and outs[0]["rope_scaling"] is None and outs[0]["context_length"] == ORIG
    assert outs[1]["rope_scaling"]["factor"] == 4.0 and outs[1]["context_length"] == 4 * ORIG
    assert outs[0]["bits_per_char"] > 0 and outs[1]["bits_per_char"] != pytest.approx(outs[0]["bits_per_char"])
    r = runner.invoke(model, ["bpc", str(tmp_path / "missing.txt"), "--model", str(short)])
    assert r.exit_code == 2 and "does not exist" in r.stderr
