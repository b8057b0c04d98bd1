"""``tpro serve``: load a model and its draft (``tpro.eagle.resolve_draft``), then serve it over HTTP with uvicorn.

Every option is a field of ``tpro.serve.config.ServeConfig`` (the settings ``build_app`` takes too). An explicit
draft that cannot be loaded is an error (exit 2), never a silent fallback; ``--draft auto`` falls back and says so.
"""

from __future__ import annotations

import os

import click

from tpro.config import ConfigError, command
from tpro.serve.config import ServeConfig


@command(ServeConfig, name="serve")
def app(cfg: ServeConfig):
    """Serve MODEL with OpenAI's /v1/chat/completions API (streaming and not), /v1/models, /health, /metrics."""
    import uvicorn

    from tpro.eagle import DraftUnavailable, resolve_draft
    from tpro.engine import Engine
    from tpro.models.loading import ModelLoadError
    from tpro.serve.app import build_app

    if not cfg.local_only and not cfg.api_key:
        click.echo(
            f"warning: binding {cfg.host} without --api-key exposes the model to anyone who can reach it", err=True
        )
    from tpro.models.quant import serving_weights

    cfg.weights = serving_weights(cfg.weights, cfg.max_batch)  # auto + batching on a CPU: w4a8 or w8a8
    try:
        lm = cfg.load_model()
        target = None
        if cfg.compile:  # the draft's verify compiled too, its static cache sized for this server's requests
            from tpro.eagle.target import BUCKETS, CompiledTarget
            from tpro.engine.compiled import cache_length

            target = CompiledTarget(smallest=cache_length(200, cfg.max_new_tokens + BUCKETS[-1], 256, None))
        decoder, draft_line = resolve_draft(cfg.draft, lm, target=target)
    except (ValueError, ModelLoadError, DraftUnavailable) as e:
        raise ConfigError(str(e)) from e
    engine = Engine.from_loaded(lm)
    if cfg.compile:
        from tpro.engine.compiled import CompiledDecoder, cache_length

        # every request up to a 200-token prompt with the default budget shares one cache length, compiled now: a
        # shorter one would otherwise compile its own graph inside its request (~30 s on 2 cores, measured in the
        # playground); a longer one still does, once
        length = cache_length(200, cfg.max_new_tokens, 256, engine.context_length)
        engine.decoder = dec = CompiledDecoder(smallest=length)
        click.echo("tpro serve: compiling the decode step (once; later starts reuse inductor's cache)...", err=True)
        dec.warm_up(lm.model, [length])
        click.echo(f"tpro serve: compiled (cache length: seconds) {dec.compile_s}", err=True)
        if decoder is not None and target is not None:  # compiled while the draft calibrated (resolve_draft)
            click.echo(f"tpro serve: compiled the draft's verify (length, bucket: s) {target.compile_s}", err=True)
    application = build_app(engine, cfg, draft=decoder)
    click.echo(
        f"tpro serve: {cfg.served_model_name or lm.name} · {draft_line} · http://{cfg.host}:{cfg.port}/v1 · "
        f"api key {'required' if cfg.api_key else 'off'} · pid {os.getpid()}",
        err=True,
    )
    # Keep-alive past the waits clients make between retries (bench/load_server.py waits Retry-After, at most
    # 30 s): with uvicorn's 5 s default, a client reusing its pooled connection after a wait raced the server
    # closing it, and got a ReadError (1 of 20 requests in a load run, 2026-12-03).
    uvicorn.run(application, host=cfg.host, port=cfg.port, log_level=cfg.log_level, timeout_keep_alive=75)
