"""Load a causal LM and its tokenizer from a model *spec*.

A spec is one of:
  - ``default`` (or empty): the embedded Qwen2.5-Coder-0.5B-Instruct (see ``tpro.models.default``);
  - a path to a ``.gguf`` file: dequantised through transformers' GGUF support, then saved once as a
    safetensors checkpoint in the cache so the next load takes seconds instead of a minute;
  - a local directory holding a transformers checkpoint;
  - a Hugging Face hub id (``Qwen/Qwen3-0.6B``, ``t-tech/T-pro-it-2.0``), the path real users take.

``weights`` picks the linear layers' format: ``bf16`` (the checkpoint's weights as loaded, in ``dtype``), ``int8``
or ``int4`` (weight-only, PyTorch's CPU kernels, ``tpro.models.quant``; a GGUF's Q4_K tensors keep their own grid),
``w4a8`` (int4 codes and grid times int8 activations per group of 32, multiplied with AVX512-VNNI by our own kernel,
``tpro.models.w4a8``), ``w8a8`` (int8 weights and per-row dynamic int8 activations through fbgemm on x86 CPUs,
MLP down projections int4),
``auto`` (the fastest measured for decoding on this device, ``tpro.models.quant.resolve_weights``).

``rope_scaling`` (``yarn:4:32768`` | ``linear:F`` | ``dynamic:F[:ORIGINAL]``, ``tpro.models.rope``) is written into
the config before the weights load, so the rotary embeddings are built with it.

``trust_remote_code`` stays off unless the caller asks. This module does no decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpro.io import cache_dir

DTYPES = ("auto", "float32", "bfloat16", "float16")


class ModelLoadError(RuntimeError):
    """A model spec could not be loaded; the message says what was tried and how to fix it."""


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel, in eval mode
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    name: str  # short name for telemetry and the server's /v1/models
    source: str  # where the weights were read from
    kind: str  # "default" | "gguf" | "local" | "hub"
    info: dict = field(default_factory=dict)

    @property
    def device(self):
        return self.model.device

    @property
    def dtype(self):
        return self.model.dtype


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (x86 AMX or AVX512-BF16, read from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str, device: str = "cpu", weights: str = "bf16"):
    """Map a dtype name to a torch dtype. ``auto``: bfloat16 on CUDA, on CPUs with native bf16 and with int4/int8
    weights (the CPU weight-only kernels are only fast with bf16 activations: on an AVX2 EPYC, one thread, int4
    matmuls took 11x longer with fp32 activations at 1 row and 24x at 8 rows), else float32.

    Why bf16 on such CPUs: one-token decode steps of the 0.5B default cost ~46 ms in bf16 and ~120 ms in fp32 on
    this 2-core AVX512-BF16/AMX machine when it is quiet (bench/eagle_tree_cost.py, docs/benchmarks.md), and
    EAGLE's tree verification needs bf16 (a 32-node forward costs ~2x one token in bf16, ~3x in fp32). CPUs without
    bf16 units emulate it slowly, so they keep fp32.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if weights == "w8a8":  # fbgemm takes fp32 activations (and its int4 layers cast to bf16 themselves)
            return torch.float32
        if device.startswith("cuda") or weights in ("int4", "int8", "w4a8"):
            return torch.bfloat16
        return torch.bfloat16 if device == "cpu" and cpu_has_native_bf16() else torch.float32
    return getattr(torch, dtype)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu`` / ``cuda`` / ``cuda:N`` checked against what
    this torch build can reach (a clear ``ModelLoadError`` instead of torch's assertion deep inside the load)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ModelLoadError(f"unknown device {device!r}. Fix: --device auto | cpu | cuda | cuda:N")
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"--device {device}: torch {torch.__version__} sees no CUDA GPU here. Fix: --device cpu (or auto), or "
            "install a CUDA build of torch (README: GPU users)"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ModelLoadError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible. Fix: cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}, or set CUDA_VISIBLE_DEVICES"
        )
    return device


def _gguf_cache_key(path: Path) -> str:
    # Hashing a multi-GB GGUF on every load would cost more than the load we are caching, so the key is
    # the resolved path, size and mtime: a replaced file gets a new conversion.
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def converted_dir_for(gguf: Path) -> Path:
    return cache_dir() / "converted" / f"{gguf.stem}-{_gguf_cache_key(gguf)}"


def convert_gguf(gguf: Path, out: Path | None = None, progress: bool = True) -> Path:
    """Dequantise ``gguf`` through transformers and save a safetensors checkpoint + tokenizer, atomically.

    transformers leaves its GGUF quantizer on the model, which makes ``save_pretrained`` raise; the weights
    are already plain tensors, so dropping the quantizer and its config entry is safe (the saved copy's
    logits equal the GGUF load's exactly: tested).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} does not exist. Fix: pass the path of an existing .gguf file")
    out = out or converted_dir_for(gguf)
    if (out / "config.json").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    status = None
    if progress:
        from rich.console import Console

        status = Console(stderr=True).status(f"converting {gguf.name} to safetensors (once; ~1 min for 0.5B)")
        status.start()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "tpro_source.json").write_text(
            json.dumps({"gguf": str(gguf.resolve()), "seconds": round(time.perf_counter() - t0, 1)})
        )
        os.replace(tmp, out)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ModelLoadError(f"could not convert GGUF {gguf}: {e}") from e
    finally:
        if status is not None:
            status.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _classify(spec: str | None) -> tuple[str, str]:
    if spec in (None, "", "default", "embedded"):
        return "default", "default"
    p = Path(spec).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"GGUF file {spec!r} not found. Fix: check the path")
        return "gguf", str(p)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelLoadError(
                f"directory {spec!r} has no config.json, so it is not a transformers checkpoint. "
                "Fix: point at the folder written by save_pretrained (or a .gguf file)"
            )
        return "local", str(p)
    # A hub id is "name" or "org/name"; anything else that does not exist is a mistyped path.
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model path {spec!r} does not exist. Fix: check the path")
    return "hub", spec


def _resolve_checkpoint(spec: str | None, progress: bool) -> tuple[str, str, str]:
    """-> (kind, directory or hub id to load from, short name)."""
    kind, where = _classify(spec)
    if kind == "default":
        from tpro.models import default

        gguf = default.ensure_gguf()
        return kind, str(convert_gguf(gguf, progress=progress)), default.DEFAULT_NAME
    if kind == "gguf":
        return kind, str(convert_gguf(Path(where), progress=progress)), Path(where).stem
    if kind == "local":
        return kind, where, Path(where).resolve().name
    return kind, where, where


def _gguf_file(kind: str, spec: str | None) -> Path | None:
    """The GGUF a ``default`` / ``gguf`` spec was converted from (whose grid int4 weights keep), else None."""
    if kind == "default":
        from tpro.models import default

        return default.ensure_gguf()
    return Path(spec).expanduser() if kind == "gguf" else None


def _quantize(model, kind: str, spec: str | None, where: str, weights: str, dtype_name: str, progress: bool) -> dict:
    """Swap the model's linear layers for ``weights``; a GGUF source's codes are kept in the cache beside its
    converted checkpoint (quantising the embedded model took 1-2.5 min on 2 busy cores, reading the codes seconds).
    HF checkpoints are quantised on each load (min-max, seconds for a small model)."""
    from tpro.models.quant import QUANT_VERSION, quantize_model

    gguf = _gguf_file(kind, spec)
    cache = None
    if gguf is not None:
        stem = f"{Path(where).name}-{weights}-{dtype_name}"
        cache = cache_dir() / "quantized" / f"{stem}-v{QUANT_VERSION}.safetensors"
        for old in cache.parent.glob(f"{stem}-v*.safetensors"):  # codes of an older tpro: never read again
            if old != cache:
                old.unlink(missing_ok=True)
    status = None
    if progress and (cache is None or not cache.is_file()):
        from rich.console import Console

        once = "once; 1-2 min for 0.5B" if cache is not None else "seconds for a small model"
        status = Console(stderr=True).status(f"quantizing the weights to {weights} ({once})")
        status.start()
    try:
        return quantize_model(model, weights, gguf=gguf, cache=cache)
    finally:
        if status is not None:
            status.stop()


def checkpoint_source(spec: str | None = "default", progress: bool = True) -> str:
    """What ``from_pretrained`` takes for ``spec`` (a directory or hub id), without loading weights: the embedded
    default and GGUF files are converted once into the cache. Training loads it with its own head class."""
    return _resolve_checkpoint(spec, progress)[1]


def load_model(
    spec: str | None = "default",
    *,
    dtype: str = "auto",
    device: str = "cpu",
    weights: str = "bf16",
    threads: int | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = "sdpa",
    progress: bool = True,
    rope_scaling: str | dict | None = None,
) -> LoadedModel:
    """Load ``spec`` (see module docstring) as an eval-mode model plus tokenizer, its linear layers in format
    ``weights`` (bf16 | int8 | int4 | auto; what was done to each tensor is in ``info["quant"]``), its RoPE scaled
    by ``rope_scaling`` (a spec or ``parse_rope_scaling``'s dict; ``info["rope_scaling"]``, ``info["context_length"]``).
    Raises ``tpro.config.ConfigError`` for a bad ``rope_scaling``, before any weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tpro.models.quant import QuantizationError, resolve_weights
    from tpro.models.rope import apply_rope_scaling, context_length, parse_rope_scaling

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    try:
        weights = resolve_weights(weights, device)  # before the load: a format that cannot run fails at once
    except QuantizationError as e:
        raise ModelLoadError(str(e)) from e
    scaling = parse_rope_scaling(rope_scaling) if isinstance(rope_scaling, str) else rope_scaling
    torch_dtype = resolve_dtype(dtype, device, weights)
    kind, where, name = _resolve_checkpoint(spec, progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
        # The config is loaded first and changed before the model is built: the rotary embeddings read
        # rope_parameters once, at construction (tpro.models.rope).
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
        rope = apply_rope_scaling(config, scaling)
        model = AutoModelForCausalLM.from_pretrained(
            where,
            config=config,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
            use_kernels=trust_remote_code,  # Hub kernels are downloaded code: only with trust_remote_code (train/common.py)
        )
    except OSError as e:
        hint = (
            "Fix: check the hub id and your network (or set HF_HUB_OFFLINE=0), or pass a local directory / .gguf file"
            if kind == "hub"
            else "Fix: the checkpoint looks incomplete or corrupt; re-save it or delete the cache folder "
            f"{where} so it is rebuilt"
        )
        raise ModelLoadError(f"could not load model {spec!r} from {where}: {e}. {hint}") from e
    model.to(device)
    model.eval()
    dtype_name = str(torch_dtype).removeprefix("torch.")
    info = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": (model.config.architectures or [type(model).__name__])[0],
        "vocab_size": model.config.vocab_size,
        "dtype": dtype_name,
        "device": device,
        "weights": weights,
        "rope_scaling": rope,
        "context_length": context_length(model.config),
    }
    if weights in ("int4", "int8", "w4a8", "w8a8"):
        info["quant"] = _quantize(model, kind, spec, where, weights, dtype_name, progress)
    if device == "cpu":  # fp32 linears through oneDNN where it is measured faster than the BLAS (tpro.models.dense)
        from tpro.models.dense import use_onednn

        info["onednn_linears"] = use_onednn(model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, source=where, kind=kind, info=info)
