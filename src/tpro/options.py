"""Settings that several stages share, declared once: one name, one default and one meaning across the toolkit.

- ``ModelOptions``: ``--model`` (``-m``), ``--dtype``, ``--weights``, ``--threads`` (0 = torch's default,
  everywhere), ``--rope-scaling`` (``tpro.models.rope``);
- ``SamplingOptions``: ``--max-new-tokens`` (``-n``, always this budget), ``--temperature`` (``-t``), ``--top-p``,
  ``--top-k``, ``--seed``, ``--stop``;
- ``Mode`` / ``ModeOrBoth`` and ``--mode``: ``direct`` or ``reasoning`` (``both`` where a stage runs each);
- ``--draft``: ``none | auto | default | DIR``, resolved by ``tpro.eagle.resolve_draft`` alone.

Stage configs inherit these mixins, so a flag added here (RoPE scaling, a weight format) reaches every command
that loads a model. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tpro.config import Config, ConfigError, opt

Mode = Literal["direct", "reasoning"]
ModeOrBoth = Literal["direct", "reasoning", "both"]
MODES: tuple[str, ...] = ("direct", "reasoning")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
MAX_TEMPERATURE = 5.0

MODE_HELP = "direct: answer at once; reasoning: think inside <think>…</think> first"
DRAFT_HELP = (
    "Speculative draft: none | auto (the shipped EAGLE head when the model has one) | default (the shipped "
    "head, an error if absent) | DIR (a head from `tpro eagle train`)"
)


def expand_modes(mode: str) -> list[str]:
    """``both`` -> ["direct", "reasoning"]; a single mode -> [mode]."""
    if mode == "both":
        return list(MODES)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose direct, reasoning or both")
    return [mode]


Weights = Literal["bf16", "int8", "int4", "w4a8", "w8a8", "auto"]


@dataclass(kw_only=True)
class ModelOptions(Config):
    """Which model to load and how (mixed into every stage config that loads one)."""

    model: str = opt(
        "default",
        "Model: default (the embedded Qwen2.5-Coder-0.5B-Instruct) | hub id | local checkpoint dir | .gguf file",
        short="-m",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto",
        "auto = bf16 on GPUs, on CPUs with native bf16 (AVX512-BF16/AMX) and with int4/int8 weights, else fp32",
    )
    # bf16 by default: stages that read, copy or change weights (eval figures, EAGLE data and training, tokenizer
    # remap, data tagging) keep the checkpoint's own weights; the decoding stages (serve, playground, generate)
    # override the default with `like(ModelOptions, "weights", "auto")`.
    weights: Weights = opt(
        "bf16",
        "Linear-layer weights: bf16 (the checkpoint's, in --dtype) | int8 | int4 (weight-only, PyTorch's CPU "
        "kernels; a GGUF's Q4_K tensors keep their grid) | w4a8 (the int4 codes times int8 activations, "
        "AVX512-VNNI CPUs, tpro's own kernel built once) | w8a8 (int8 weights and per-row int8 activations, "
        "fbgemm on x86 CPUs; MLP down projections int4) | auto (the fastest measured for decoding here)",
    )
    device: str = opt(
        "auto", "Where the model runs: auto (a CUDA GPU when torch sees one, else the CPU) | cpu | cuda[:N]"
    )
    threads: int = opt(0, "torch CPU threads (0 = torch's default)", min=0)
    rope_scaling: str | None = opt(
        None,
        "RoPE scaling for contexts past the pretraining length: none | yarn:FACTOR[:ORIGINAL] | linear:FACTOR | "
        "dynamic:FACTOR[:ORIGINAL] (ORIGINAL: the pretraining context, default the checkpoint's); the accepted "
        "context becomes ORIGINAL x FACTOR. yarn:4:32768 is Qwen3's documented setting for 131072 tokens",
    )

    def __post_init__(self):
        super().__post_init__()
        from tpro.models.rope import parse_rope_scaling  # no torch: a bad spec fails before any model loads

        parse_rope_scaling(self.rope_scaling)

    def load_model(self, progress: bool = True, **kw):
        """The loaded model (``tpro.models.LoadedModel``) these options describe."""
        from tpro.models import load_model

        return load_model(
            self.model,
            dtype=self.dtype,
            device=self.device,
            weights=self.weights,
            threads=self.threads or None,
            progress=progress,
            rope_scaling=self.rope_scaling,
            **kw,
        )


COMPILE_HELP = (
    "Decoding steps through torch.compile over a static cache (tpro.engine.compiled; with a draft, its tree "
    "verify too, tpro.eagle.target): on a CPU the embedded model's int4 step took ~22 ms instead of ~32 "
    "(docs/benchmarks.md, issue 17), after a one-off compile (~35 s a graph; seconds once inductor's disk cache "
    "is warm); greedy tokens unchanged in fp32"
)


@dataclass(kw_only=True)
class BatchOptions(Config):
    """How many sequences a batch job (evaluation, data generation) decodes together."""

    # 32: on the embedded model in fp32 (2 threads, this 2-core AVX2 machine) 32 rows decode at ~35 tokens/s in all
    # against 5.4 for one sequence alone (tpro.engine.batch); beyond that a step gets slow enough to hurt latency.
    batch: int = opt(
        32,
        "Sequences decoded together (continuous batching; K samples of a prompt share its prefill); 1 = one at a "
        "time (a --draft speculates only then)",
        min=1,
        max=256,
    )

    def batch_engine(self, engine):
        """A ``tpro.engine.BatchEngine`` over ``engine`` with these settings."""
        from tpro.engine import BatchEngine

        return BatchEngine(engine, max_batch=self.batch)


@dataclass(kw_only=True)
class SamplingOptions(Config):
    """How to sample: the engine's ``SamplingParams`` as settings."""

    max_new_tokens: int = opt(
        512,
        "Tokens to generate at most per answer (the prompt does not count)",
        short="-n",
        min=1,
        aliases=("--max-tokens",),
    )
    temperature: float = opt(0.0, "0 = greedy", short="-t", min=0.0, max=MAX_TEMPERATURE)
    top_p: float = opt(
        1.0, "Nucleus sampling: keep the smallest set of tokens whose probability sums to >= top_p", min=0.0, max=1.0
    )
    top_k: int = opt(0, "Keep the k most likely tokens (0 = off)", min=0)
    seed: int | None = opt(None, "Sampling seed (same seed, same text)")
    stop: list[str] = opt([], "Stop string (repeatable; not included in the output)")

    def sampling(self, **overrides):
        """``tpro.engine.SamplingParams`` from these settings (``overrides`` win)."""
        from tpro.engine import SamplingParams

        values = dict(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p or 1.0,
            top_k=self.top_k,
            seed=self.seed,
            stop=list(self.stop),
        )
        return SamplingParams(**{**values, **overrides})
