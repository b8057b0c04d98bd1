"""Export a head as a checkpoint SGLang serves with ``--speculative-algorithm EAGLE``.

Checked against SGLang's ``python/sglang/srt/models/llama_eagle.py`` (``LlamaForCausalLMEagle``):
  - ``config.json``: a Llama config with ``architectures: ["LlamaForCausalLMEagle"]``, ``num_hidden_layers: 1``
    and the target's widths, ``vocab_size`` = the target's (SGLang shares the target's embedding and lm_head
    with an EAGLE draft, so neither is in the checkpoint);
  - weights without the ``model.`` prefix (its ``load_weights`` adds it and skips ``lm_head``): ``fc.weight``
    [H, 2H], ``fc.bias`` [H] applied to ``cat(embeds, hidden_states)`` (our order too), ``layers.0.self_attn.
    {q,k,v,o}_proj.weight``, ``layers.0.mlp.{gate,up,down}_proj.weight``, ``layers.0.post_attention_layernorm.
    weight``; no ``input_layernorm`` (SGLang deletes it on layer 0, as our head does);
  - the FR-Spec token map as a ``torch.save``d int64 tensor of hot token ids (SGLang's ``load_token_map`` reads it
    with ``torch.load(weights_only=True)``), passed with ``--speculative-token-map``.
The hidden states SGLang hands an EAGLE draft are the target's final (post-norm) ones, the features we train on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tpro.config import Config, opt
from tpro.eagle.head import HeadConfig, read_head_config
from tpro.eagle.options import target_model
from tpro.io import atomic_path, atomic_write, write_json

SGLANG_SERVE = (
    "python -m sglang.launch_server --model-path {target} --speculative-algorithm EAGLE "
    "--speculative-draft-model-path {out} --speculative-token-map {out}/hot_token_map.pt "
    "--speculative-num-steps 6 --speculative-eagle-topk 8 --speculative-num-draft-tokens 32"
)


@dataclass(kw_only=True)
class ExportConfig(Config):
    """``tpro eagle export``: which head, where, in which format."""

    head_dir: str = opt(help="Head directory (head.safetensors + head_config.json)", positional=True)
    out: str = opt(help="Output directory", short="-o")
    format: Literal["sglang"] = opt("sglang", "sglang: a LlamaForCausalLMEagle checkpoint + the FR-Spec token map")
    model: str = target_model("Target model, named in the export's README when the head does not record it")
    rope_scaling: str | None = opt(
        None,
        "RoPE scaling of the target the engine will serve (yarn:FACTOR[:ORIGINAL] | linear:FACTOR | "
        "dynamic:FACTOR[:ORIGINAL]), written into the draft's config.json so its positions match the target's; "
        "default: the scaling the head was trained with (none for a plain target)",
    )

    def __post_init__(self):
        super().__post_init__()
        from tpro.models.rope import parse_rope_scaling

        parse_rope_scaling(self.rope_scaling)


def sglang_config(cfg: HeadConfig, torch_dtype: str = "bfloat16") -> dict:
    return {
        "architectures": ["LlamaForCausalLMEagle"],
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": 1,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": cfg.hidden_act,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "vocab_size": cfg.vocab_size,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": torch_dtype,
        # the target's scaling, in the key SGLang reads for Llama-shaped drafts ("type" for older readers)
        **({"rope_scaling": {**cfg.rope_scaling, "type": cfg.rope_scaling["rope_type"]}} if cfg.rope_scaling else {}),
    }


def sglang_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our head's state dict -> SGLang names: ``layer.*`` -> ``layers.0.*``; buffers dropped."""
    out = {}
    for k, v in state.items():
        if k == "hot_ids":
            continue
        name = "layers.0." + k[len("layer.") :] if k.startswith("layer.") else k
        out[name] = v
    return out


def export_sglang(
    head_dir: str | Path,
    out: str | Path,
    target: str = "default",
    dtype: torch.dtype = torch.bfloat16,
    rope_scaling: str | None = None,
) -> Path:
    """Write ``out``: model.safetensors, config.json, hot_token_map.pt (FR-Spec heads) and a README with the
    SGLang command. ``rope_scaling``: the served target's scaling spec (``tpro.models.rope``), written into the
    draft's config (a yarn spec without ORIGINAL takes the head's native context). Returns ``out``."""
    from safetensors.torch import load_file, save_file

    from tpro.models.rope import parse_rope_scaling

    meta = read_head_config(head_dir)
    cfg = HeadConfig(**meta["head"])
    if scaling := parse_rope_scaling(rope_scaling):
        if scaling["rope_type"] == "yarn":
            scaling.setdefault("original_max_position_embeddings", cfg.max_position_embeddings)
        cfg.rope_scaling = scaling
    state = load_file(str(Path(head_dir) / "head.safetensors"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(dtype).contiguous() for k, v in sglang_state_dict(state).items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(out / "config.json", sglang_config(cfg, str(dtype).removeprefix("torch.")))
    if cfg.hot_vocab_size < cfg.vocab_size:
        with atomic_path(out / "hot_token_map.pt") as tmp:
            torch.save(state["hot_ids"].long(), tmp)
    target_path = cfg.target or target
    readme = (
        f"EAGLE draft head for {target_path}, exported by `tpro eagle export`.\n\nServe with SGLang:\n\n"
        + SGLANG_SERVE.format(target="<the target's hub id or path>", out=out)
        + "\n"
    )
    if cfg.hot_vocab_size >= cfg.vocab_size:
        readme = readme.replace(f" --speculative-token-map {out}/hot_token_map.pt", "")
    atomic_write(out / "README.md", readme)
    return out
