"""The EAGLE draft head: ``fc([embed(x_{t+1}); f_t]) -> one Llama decoder layer -> the target's lm_head``.

``f_t`` is the target's final hidden state at position t *after* its final norm (what its ``lm_head`` reads).
The head predicts ``f_{t+1}``; its output goes straight into the target's ``lm_head`` without another norm, as in
EAGLE-1/2 and SGLang's ``LlamaForCausalLMEagle`` (so an exported head computes the same function there). For
the same reason the layer's ``input_layernorm`` is an identity (the ``fc`` output is the layer's first input) and
the layer is transformers' own ``LlamaDecoderLayer`` for every target family (Llama, Qwen2, Qwen3): its weights
load into SGLang unchanged. No model code is forked: the layer and its rotary embedding are built from a config.

The embedding and ``lm_head`` stay the target's (frozen, not saved here). FR-Spec: ``hot_ids`` [N] is a reduced
draft vocabulary (the N most frequent tokens of the training data); drafting multiplies by those N rows of the
``lm_head`` only (151936 rows cost ~1/4 of a 0.5B target's per-token compute on this CPU).
What this module does not know: trees, verification, sampling.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tpro.io import atomic_path, write_json


@dataclass
class HeadConfig:
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    vocab_size: int  # the target's full vocabulary
    hot_vocab_size: int  # FR-Spec draft vocabulary size (== vocab_size when off)
    hidden_act: str = "silu"
    target: str = ""  # the target's name, for humans
    # the target's RoPE scaling (rope_parameters without rope_theta: rope_type, factor, ...), None = plain RoPE
    rope_scaling: dict | None = None

    @classmethod
    def from_target(cls, config, hot_vocab_size: int | None = None, target: str = "") -> HeadConfig:
        # Every field is read from the target config so the draft layer has the target's shapes (EAGLE's choice:
        # the fc input is [embedding; feature] of the target's width).
        rope = config.rope_parameters or {}
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads,
            # Qwen2 configs have no head_dim field (it is hidden / heads there); Qwen3 and Llama configs carry one
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            rms_norm_eps=config.rms_norm_eps,
            rope_theta=float(rope.get("rope_theta", 10000.0)),
            max_position_embeddings=config.max_position_embeddings,
            vocab_size=config.vocab_size,
            hot_vocab_size=hot_vocab_size or config.vocab_size,
            hidden_act=config.hidden_act,
            target=target,
            rope_scaling=rope_scaling_of(config),
        )

    def llama_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=1,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters={"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta},
            max_position_embeddings=self.max_position_embeddings,
            vocab_size=self.vocab_size,
            hidden_act=self.hidden_act,
            attention_bias=False,
            attn_implementation="sdpa",
        )


def rope_scaling_of(config) -> dict | None:
    """A model config's RoPE scaling (``rope_parameters`` minus ``rope_theta``), None for plain RoPE."""
    rope = dict(config.rope_parameters or {})
    if rope.get("rope_type", "default") == "default":
        return None
    rope.pop("rope_theta", None)
    return rope


class DraftHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

        super().__init__()
        self.cfg = cfg
        lcfg = cfg.llama_config()
        self.fc = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=True)
        self.layer = LlamaDecoderLayer(lcfg, layer_idx=0)
        self.layer.input_layernorm = nn.Identity()  # EAGLE: the fc output enters the attention un-normed
        self.rotary = LlamaRotaryEmbedding(lcfg)
        # hot_ids [N]: draft-vocabulary index -> target token id. Saved with the head.
        self.register_buffer("hot_ids", torch.arange(cfg.hot_vocab_size), persistent=True)
        # lm_head rows of the hot tokens [N, H]: the target's, copied at attach() time, never saved or trained.
        self.register_buffer("lm_head_hot", torch.zeros(0, cfg.hidden_size), persistent=False)
        self.hot_logits: nn.Module | None = None  # those rows as a quantized layer, after quantize() (decoding only)

    def attach(self, target) -> DraftHead:
        """Copy the target's lm_head rows for the hot vocabulary (in the head's dtype)."""
        w = target.get_output_embeddings().weight.detach()
        self.lm_head_hot = w[self.hot_ids.to(w.device)].to(device=self.fc.weight.device, dtype=self.fc.weight.dtype)
        return self

    def forward(
        self,
        embeds: torch.Tensor,  # [B, T, H] embeddings of x_{t+1}
        features: torch.Tensor,  # [B, T, H] target (or drafted) features f_t
        position_ids: torch.Tensor,  # [B, T] positions t
        attention_mask: torch.Tensor | None = None,  # [B, 1, T, P+T] float additive, or None = causal
        cache=None,  # a DynamicCache for the one layer, or None (training)
    ) -> torch.Tensor:  # [B, T, H] predicted f_{t+1}
        x = self.fc(torch.cat([embeds, features], dim=-1))
        pos = self.rotary(x, position_ids)
        return self.layer(
            x,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=cache is not None,
            position_embeddings=pos,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., H] -> logits over the hot vocabulary [..., N]."""
        if self.hot_logits is not None:
            return self.hot_logits(hidden)
        return hidden @ self.lm_head_hot.T

    def quantize(self, weights: str) -> DraftHead:
        """For decoding on a CPU: the head's linear layers and its hot ``lm_head`` rows in the target's weight
        format (``tpro.models.quant``; attach first). A draft level reads all of them once, as a target step reads
        the target's: in fp32 the embedded model's head reads ~125 MB a level (layer + 16384 hot rows), in w8a8
        ~31 MB. Drafts only propose; verification keeps the output the target's, whatever the head computes."""
        from tpro.models.quant import quantize_model

        quantize_model(self, weights)
        hot = nn.Sequential(nn.Linear(self.cfg.hidden_size, self.lm_head_hot.shape[0], bias=False))
        hot[0].weight = nn.Parameter(self.lm_head_hot, requires_grad=False)
        quantize_model(hot, weights)
        self.hot_logits = hot[0]
        return self


def save_head(head: DraftHead, out: str | Path, extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """``head.safetensors`` (fc, layer, hot_ids) + ``head_config.json``, both written atomically.

    ``dtype``: cast float tensors (bf16 halves a shipped head: 0.5B target -> ~33 MB; loading casts back)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(out / "head.safetensors") as tmp:
        save_file(state, str(tmp))
    write_json(out / "head_config.json", {"head": asdict(head.cfg), **(extra or {})})
    return out


def read_head_config(head_dir: str | Path) -> dict:
    p = Path(head_dir) / "head_config.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"{p} not found: a head directory holds head.safetensors and head_config.json "
            "(written by `tpro eagle train`)"
        )
    return json.loads(p.read_text())


def load_head(head_dir: str | Path, target, dtype: torch.dtype = torch.float32) -> DraftHead:
    """Load a head for ``target`` (checks the shapes match) and attach the target's lm_head rows."""
    from safetensors.torch import load_file

    meta = read_head_config(head_dir)
    cfg = HeadConfig(**meta["head"])
    tc = target.config
    if (cfg.hidden_size, cfg.vocab_size) != (tc.hidden_size, tc.vocab_size):
        raise ValueError(
            f"the head in {head_dir} was trained for hidden_size={cfg.hidden_size}, vocab={cfg.vocab_size} "
            f"({cfg.target or 'unknown target'}), but the target has hidden_size={tc.hidden_size}, vocab={tc.vocab_size}; "
            "train a head for this target with `tpro eagle train`"
        )
    try:
        state = load_file(str(Path(head_dir) / "head.safetensors"))
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{head_dir}/head.safetensors is not a readable head ({e}); retrain or re-export it") from e
    # The head follows the target's positions: a target loaded with --rope-scaling (or trained with it) gets a
    # head whose rotary embedding is scaled the same way, as the features it reads are (no weights change).
    cfg.rope_scaling = rope_scaling_of(tc)
    head = DraftHead(cfg)
    head.load_state_dict(state, strict=True)
    head.to(dtype=dtype, device=target.device).eval()
    head.hot_ids = head.hot_ids.long()
    return head.attach(target)


def init_head(target, hot_ids: torch.Tensor | None = None, name: str = "", seed: int = 0) -> DraftHead:
    """A fresh head for ``target`` (fp32). ``hot_ids`` [N]: the FR-Spec vocabulary (None = the full vocabulary).

    The layer's weights start as a copy of the target's last decoder layer where shapes match (Llama, Qwen2 and
    the Llama-shaped part of Qwen3), a warm start that EAGLE-style heads converge from faster than random.
    """
    torch.manual_seed(seed)
    cfg = HeadConfig.from_target(target.config, None if hot_ids is None else int(hot_ids.numel()), target=name)
    head = DraftHead(cfg)
    if hot_ids is not None:
        head.hot_ids = hot_ids.long().cpu()
    last = target.get_decoder().layers[-1].state_dict()
    own = head.layer.state_dict()
    warm = {k: v.float() for k, v in last.items() if k in own and own[k].shape == v.shape}
    head.layer.load_state_dict(warm, strict=False)
    with torch.no_grad():  # fc starts as "take the feature" (right half identity, embedding half small)
        head.fc.weight.zero_()
        head.fc.weight[:, cfg.hidden_size :] = torch.eye(cfg.hidden_size)
        head.fc.weight[:, : cfg.hidden_size].normal_(0, 0.01)
        head.fc.bias.zero_()
    return head.to(target.device).attach(target)
