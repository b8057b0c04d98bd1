"""OpenAI-compatible HTTP server on the tpro engine (``tpro serve``): chat completions streamed or not, models,
health, Prometheus metrics; reasoning returned apart; per-request speculative decoding when a draft is loaded.

``build_app(engine, ServeConfig(...), draft=None)`` is the entry point for in-process use; ``tpro.serve.cli`` loads
the model and its draft and runs uvicorn. Names are imported on first use, so the command's ``--help`` does not
import FastAPI or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tpro.serve.app import build_app
    from tpro.serve.config import ServeConfig

__all__ = ["ServeConfig", "build_app"]


def __getattr__(name: str):
    if name == "ServeConfig":
        from tpro.serve.config import ServeConfig

        return ServeConfig
    if name == "build_app":
        from tpro.serve.app import build_app

        return build_app
    raise AttributeError(f"module 'tpro.serve' has no attribute {name!r}")
