"""RoPE scaling: a ``--rope-scaling`` spec, parsed and written into a transformers config so the model reads it.

A spec is ``none`` | ``yarn:FACTOR[:ORIGINAL]`` | ``linear:FACTOR`` | ``dynamic:FACTOR[:ORIGINAL]``: FACTOR > 1
stretches the positions, ORIGINAL is the context the model was pretrained on (default: the checkpoint's
``original_max_position_embeddings`` if it already carries one, else its ``max_position_embeddings``).
``yarn:4:32768`` is Qwen3's documented setting for 131072 tokens.

Where transformers 5 reads it (``modeling_rope_utils``, the Qwen2/Qwen3 ``RotaryEmbedding``): the rotary module
is built from ``config.rope_parameters`` (``rope_type``, ``rope_theta``, ``factor``, and for yarn
``original_max_position_embeddings``) when the model is constructed. A ``rope_scaling`` key set after that, or a
top-level ``original_max_position_embeddings`` on a config that has no such field, is never read: the setting is
silently ignored. So the spec is written into ``rope_parameters`` of the config *before* ``from_pretrained``, and
checked with transformers' own ``validate_rope``.

The context the model accepts follows from the spec:
- yarn, linear: ``max_position_embeddings = ORIGINAL * FACTOR`` (yarn's inverse frequencies are fixed at
  construction from ``factor`` and ORIGINAL; linear divides every position by ``factor``);
- dynamic: transformers' dynamic NTK takes ``max_position_embeddings`` as the pretraining length and rescales the
  frequencies only for sequences longer than it (``_compute_dynamic_ntk_parameters``). Growing it to
  ORIGINAL * FACTOR would switch the scaling off below that length, so it is set to ORIGINAL and the accepted
  context, ``context_length(config)``, is ORIGINAL * FACTOR (vLLM's reading of the same setting). Dynamic NTK also
  changes the frequencies mid-sequence, so keys already in a KV cache were rotated with other ones: prefer yarn.

This module knows no model files and does no loading; it imports neither torch nor transformers.
"""

from __future__ import annotations

from tpro.config import ConfigError

ROPE_TYPES = ("yarn", "linear", "dynamic")
FORMS = (
    "none | yarn:FACTOR[:ORIGINAL] | linear:FACTOR | dynamic:FACTOR[:ORIGINAL] (FACTOR a number > 1, ORIGINAL the "
    "pretraining context in tokens), e.g. yarn:4:32768, Qwen3's documented setting for 131072 tokens"
)
# keys of a scaling the checkpoint may already carry: replaced, never mixed with the new one
_SCALING_KEYS = {
    "type",
    "rope_type",
    "factor",
    "original_max_position_embeddings",
    "attention_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "short_factor",
    "long_factor",
    "low_freq_factor",
    "high_freq_factor",
}


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"--rope-scaling {spec!r}: {why}. Fix: pass {FORMS}")


def parse_rope_scaling(spec: str | None) -> dict | None:
    """``"yarn:4:32768"`` -> ``{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}``;
    ``None`` / ``""`` / ``"none"`` -> None. ORIGINAL is left out when not given. Raises ``ConfigError``."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    parts = spec.strip().split(":")
    kind = parts[0].lower()
    if kind not in ROPE_TYPES:
        raise _bad(spec, f"unknown kind {parts[0]!r} (not one of {', '.join(ROPE_TYPES)})")
    most = 2 if kind == "linear" else 3
    if not 2 <= len(parts) <= most:
        raise _bad(spec, f"{kind} takes {'FACTOR' if most == 2 else 'FACTOR[:ORIGINAL]'}")
    try:
        factor = float(parts[1])
    except ValueError:
        raise _bad(spec, f"FACTOR {parts[1]!r} is not a number") from None
    if not factor > 1.0 or factor == float("inf"):  # also refuses nan
        raise _bad(spec, f"FACTOR must be a finite number > 1, got {parts[1]!r}")
    out = {"rope_type": kind, "factor": factor}
    if len(parts) == 3:
        try:
            original = int(parts[2])
        except ValueError:
            raise _bad(spec, f"ORIGINAL {parts[2]!r} is not a whole number of tokens") from None
        if original <= 0:
            raise _bad(spec, f"ORIGINAL must be > 0, got {original}")
        out["original_max_position_embeddings"] = original
    return out


def apply_rope_scaling(config, scaling: dict | None) -> dict | None:
    """Write ``scaling`` (``parse_rope_scaling``'s dict) into ``config.rope_parameters`` and set
    ``config.max_position_embeddings`` (see the module docstring), in place, before the model is built.
    Keeps ``rope_theta`` and the other non-scaling keys; replaces a scaling the checkpoint already has.
    Returns the effective ``rope_parameters`` (a copy), or None (config untouched) when ``scaling`` is None."""
    if scaling is None:
        return None
    kind, factor = scaling.get("rope_type"), scaling.get("factor")
    if kind not in ROPE_TYPES or not isinstance(factor, (int, float)) or not factor > 1.0:
        raise ConfigError(f"rope scaling {scaling!r} is not valid. Fix: build it with parse_rope_scaling({FORMS!r})")
    if kind == "linear" and "original_max_position_embeddings" in scaling:
        raise ConfigError("linear RoPE scaling takes no ORIGINAL (transformers does not read it). Fix: linear:FACTOR")
    current = dict(config.rope_parameters or {})
    if not current or config.nested_rope_parameter_keys(current):
        raise ConfigError(
            f"{type(config).__name__} has no single RoPE setting to scale (none, or one per layer type). "
            "Fix: leave --rope-scaling at none for this model"
        )
    original = int(
        scaling.get("original_max_position_embeddings")
        or current.get("original_max_position_embeddings")
        or config.max_position_embeddings
    )
    params = {k: v for k, v in current.items() if k not in _SCALING_KEYS}
    params.update(rope_type=kind, factor=float(factor))
    if kind == "yarn":
        params["original_max_position_embeddings"] = original
    config.rope_parameters = params
    # dynamic: transformers' pretraining length is max_position_embeddings itself (module docstring)
    config.max_position_embeddings = original if kind == "dynamic" else int(original * factor)
    config.standardize_rope_params()
    try:
        config.validate_rope()
    except (KeyError, ValueError) as e:
        raise ConfigError(f"transformers refuses RoPE setting {params}: {e}. Fix: pass {FORMS}") from e
    effective = dict(config.rope_parameters)
    # standardize_rope_params prefers a top-level original_max_position_embeddings (Phi-3 style configs) over ours
    if kind == "yarn" and effective.get("original_max_position_embeddings") != original:
        raise ConfigError(
            f"{type(config).__name__} overrides ORIGINAL={original} with its own "
            f"original_max_position_embeddings={effective.get('original_max_position_embeddings')}. "
            "Fix: pass that value as ORIGINAL, or leave ORIGINAL out"
        )
    return effective


def context_length(config) -> int:
    """Tokens the model accepts: ``max_position_embeddings``, times ``factor`` for dynamic NTK (whose
    ``max_position_embeddings`` is the pretraining length it starts rescaling from)."""
    params = getattr(config, "rope_parameters", None) or {}
    n = int(getattr(config, "max_position_embeddings", None) or 32768)
    if isinstance(params, dict) and params.get("rope_type") == "dynamic" and params.get("factor"):
        return int(n * params["factor"])
    return n
