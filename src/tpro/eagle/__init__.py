"""EAGLE speculative decoding: a one-layer draft head over the target's features, an EAGLE-2 dynamic draft tree
verified in one target forward, lossless greedy and sampling acceptance, data building, training and SGLang export.

Plugs into ``tpro.engine`` as a ``Decoder``; knows nothing about HTTP, chat formats or evaluation.
Contract: ``load_decoder(draft_dir, lm) -> Decoder`` and ``default_head_dir() -> Path | None``.
"""

from __future__ import annotations

from pathlib import Path

HEADS_DIR = Path(__file__).parent / "heads"
DEFAULT_HEAD = "qwen2.5-coder-0.5b"


def default_head_dir() -> Path | None:
    """The head shipped for the embedded default model (Qwen2.5-Coder-0.5B-Instruct), or None if not present."""
    d = HEADS_DIR / DEFAULT_HEAD
    return d if (d / "head.safetensors").is_file() and (d / "head_config.json").is_file() else None


def load_decoder(draft_dir, lm, calibrate: bool = True, target=None, **overrides):
    """An EAGLE ``Decoder`` for the loaded target ``lm`` (a ``tpro.models.LoadedModel``) from a head directory.

    ``draft_dir``: a directory written by ``tpro eagle train`` (``head.safetensors`` + ``head_config.json``), or
    "default" for ``default_head_dir()``. ``overrides``: ``EagleConfig`` fields (depth, top_k, total_tokens,
    suffix, ...; None = the default). The decoder also drafts model-free from the text and its earlier answers
    (``tpro.eagle.suffix``) unless ``suffix=False``. ``calibrate``: measure the target's verify cost by tree size
    on this machine (``measure_verify_ms``, a few seconds for the embedded model) instead of the shipped table.
    ``target``: the target's verify side (``tpro.eagle.target``; default ``EagerTarget()``). A ``CompiledTarget``
    verifies through ``torch.compile`` over a static cache; its graphs, one per tree-size bucket, compile here
    (calibrating measures them for a short chat's cache length: ~35 s a bucket on a 2-core CPU, seconds once
    inductor has them on disk) or at the first request of each new cache length.
    """
    from tpro.eagle.decoder import EagleConfig, EagleDecoder, measure_verify_ms
    from tpro.eagle.head import load_head
    from tpro.eagle.target import CompiledTarget, EagerTarget

    if draft_dir in (None, "", "default"):
        draft_dir = default_head_dir()
        if draft_dir is None:
            raise FileNotFoundError(
                "no EAGLE head is shipped for the default model in this install; train one with "
                "`tpro eagle build-data` and `tpro eagle train` (see the README's EAGLE section) and pass its directory"
            )
    # the head runs in the target's dtype: drafting a level is memory-bound at batch 1 (the layer plus the hot
    # lm_head rows are read once per level), so a bf16 head drafts about twice as fast as an fp32 one on a CPU
    head = load_head(draft_dir, lm.model, dtype=lm.model.dtype)
    if lm.info.get("weights") in ("int4", "int8", "w4a8", "w8a8"):  # a quantized target: its head too (cheaper levels)
        head.quantize(lm.info["weights"])
    # the weight format (bf16 | int8 | int4 | w4a8 | w8a8, tpro.models.load_model's info) picks the verify-cost curve
    target = target or EagerTarget()
    compiled = isinstance(target, CompiledTarget)
    cfg = EagleConfig.for_model(lm.model, weights=lm.info.get("weights"), compiled=compiled, **overrides)
    decoder = EagleDecoder(head, cfg, target=target)
    if calibrate:  # this machine's costs replace the shipped tables (policy.VERIFY_MS, LEVEL_MS)
        if overrides.get("verify_ms") is None:
            cfg.verify_ms = target.measure(lm.model) if compiled else measure_verify_ms(lm.model)
        if overrides.get("level_ms") is None:
            cfg.level_ms = decoder.measure_level_ms(lm.model)
    return decoder


class DraftUnavailable(RuntimeError):
    """A draft was asked for and cannot be used; the message says why and what to do."""


def resolve_draft(spec: str | None, lm, target=None, **overrides):
    """The one reading of a ``--draft`` spec (serve, eval, bench, playground): -> (Decoder or None, a line saying
    what was chosen). ``spec``: None/"none" | "auto" | "default" | DIR. ``auto`` falls back to plain decoding (and
    says why); an explicit draft that cannot be loaded raises ``DraftUnavailable``, never a silent fallback.
    ``overrides``: ``EagleConfig`` fields (depth, top_k, total_tokens; None = the default for the target).
    ``target``: the verify side (``load_decoder``; a ``tpro.eagle.target.CompiledTarget`` compiles it)."""
    if spec in (None, "", "none"):
        return None, "draft: none (plain decoding)"
    if spec in ("auto", "default"):
        head = default_head_dir()
        if head is None:
            reason = "no EAGLE head is shipped for the embedded model (tpro.eagle.default_head_dir() is None)"
            if spec == "auto":
                return None, f"draft: none ({reason})"
            raise DraftUnavailable(
                f"--draft default: {reason}. Fix: train one with `tpro eagle train` and pass --draft DIR"
            )
        if spec == "auto" and lm.kind != "default":  # the shipped head belongs to the embedded model only
            return None, f"draft: none (the shipped head is for the embedded model, not {lm.name})"
    else:
        head = spec
    try:
        decoder = load_decoder(head, lm, target=target, **overrides)
    except Exception as e:  # noqa: BLE001 - any load failure is reported with the directory named
        raise DraftUnavailable(
            f"could not load the EAGLE draft from {head}: {e}. Fix: pass a directory written by "
            "`tpro eagle train` (head.safetensors + head_config.json), or --draft none"
        ) from e
    return decoder, f"draft: {decoder.name} from {head}"


__all__ = ["DraftUnavailable", "default_head_dir", "load_decoder", "resolve_draft"]
