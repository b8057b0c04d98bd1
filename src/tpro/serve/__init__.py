"""OpenAI-compatible HTTP server on the tpro engine (``tpro serve``): chat completions streamed or not, models,
health, Prometheus metrics; reasoning returned apart; per-request speculative decoding when a draft is loaded.

``build_app`` is the entry point for in-process use; ``tpro.serve.cli`` loads models and runs uvicorn.
"""

from tpro.serve.app import ServeConfig, build_app

__all__ = ["ServeConfig", "build_app"]
