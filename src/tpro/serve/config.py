"""``ServeConfig``: every setting of ``tpro serve``, declared once (the command's options, ``--config`` YAML keys and
``build_app``'s Python settings). Importing it imports neither torch nor FastAPI, so ``tpro serve --help`` is
instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tpro.config import like, opt
from tpro.options import COMPILE_HELP, DRAFT_HELP, MODE_HELP, Mode, ModelOptions, SamplingOptions, Weights

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(kw_only=True)
class ServeConfig(ModelOptions):
    """How to serve: what to load (model, draft), where to listen, and the server's request policy.
    ``build_app`` reads the policy fields (queue, timeout, budgets, mode, API key, name); the command the rest."""

    draft: str = opt("none", DRAFT_HELP)
    compile: bool = opt(False, COMPILE_HELP + " (compiled at startup; a request alone decodes through it)")
    # a decoding stage: the fastest measured format; with batching on a CPU w4a8 or w8a8 (quant.serving_weights)
    weights: Weights = like(
        ModelOptions,
        "weights",
        "auto",
        help="Linear-layer weights: bf16 | int8 | int4 | w4a8 | w8a8 (see tpro generate --help) | auto: on a CPU "
        "w4a8 where it has AVX512-VNNI (the fastest alone and under load), else w8a8 when --max-batch > 1 (its "
        "cost grows least with the batch: 2x int4's tokens/s under load) and int4 for one sequence",
    )
    host: str = opt("127.0.0.1", "Interface to bind; 0.0.0.0 exposes the server to the network")
    port: int = opt(8000, "TCP port (0: any free port)", min=0, max=65535)
    api_key: str | None = opt(
        None,
        "Require 'Authorization: Bearer KEY' on every route but /health (prefer the env var)",
        envvar="TPRO_API_KEY",
        secret=True,
    )
    max_queue: int = opt(8, "Requests that may wait for a place in the batch; more get 429 + Retry-After", min=0)
    max_batch: int = opt(
        32,
        "Requests decoded together, one forward per step (continuous batching); 1 = one at a time, each through "
        "the draft. 32: ~45 tokens/s in all on the embedded model, fp32, 2 threads (1: 5.4, 16: 30, 48: 60), a step "
        "of ~0.7 s per user",
        min=1,
        max=256,
    )
    kv_memory_gb: float = opt(
        2.0,
        "KV-cache memory the batch may hold (GiB): requests wait for room rather than exceed it, and one that alone "
        "needs more gets 413",
        min=0.0001,
    )
    prefill_chunk: int = opt(
        256, "Prompt tokens prefilled per step: a long prompt holds up the running requests one chunk at a time", min=1
    )
    timeout_s: float = opt(
        300.0,
        "Per-request timeout in seconds, queueing included; past it generation stops",
        min=1.0,
        aliases=("--timeout",),
    )
    max_new_tokens: int = like(
        SamplingOptions,
        "max_new_tokens",
        help="Tokens a request may generate when it sends no max_tokens (capped by the context left)",
        aliases=("--max-tokens", "--default-max-tokens"),
    )
    max_tokens_limit: int | None = opt(
        None, "Reject requests asking for more max_tokens (400); none: the context", min=1
    )
    mode: Mode = opt(
        "direct",
        f"{MODE_HELP}; for requests that send no chat_template_kwargs.enable_thinking",
        flags={"--thinking": "reasoning", "--no-thinking": "direct"},
    )
    served_model_name: str | None = opt(None, "The model name clients send (default: the model's name)")
    log_level: Literal["debug", "info", "warning", "error"] = opt("info", "uvicorn log level")

    @property
    def local_only(self) -> bool:
        return self.host in LOCAL_HOSTS
