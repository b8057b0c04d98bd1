"""``tpro serve``: load a model (and optionally an EAGLE draft), then serve it over HTTP with uvicorn.

The draft comes from ``tpro.eagle`` (imported only when asked for): ``--draft DIR`` loads a head directory,
``--draft default`` the head shipped for the embedded model, ``--draft auto`` the shipped head when there
is one and plain decoding otherwise (what ``tpro playground`` uses). An explicit draft that cannot be loaded
is an error (exit 2), never a silent fallback.
"""

from __future__ import annotations

import os

import typer

app = typer.Typer(help="OpenAI-compatible server on the engine (EAGLE optional).")


class DraftUnavailable(RuntimeError):
    """A draft was asked for and cannot be used; the message says why and what to do."""


def resolve_draft(spec: str | None, lm):
    """-> (Decoder or None, a line saying what was chosen). ``spec``: None/"none" | "auto" | "default" | DIR."""
    if spec in (None, "", "none"):
        return None, "draft: none (plain decoding)"
    try:
        from tpro.eagle import default_head_dir, load_decoder
    except ImportError as e:
        reason = f"EAGLE support (tpro.eagle) is not available in this install ({e})"
        if spec == "auto":
            return None, f"draft: none ({reason})"
        raise DraftUnavailable(f"--draft {spec} asked for an EAGLE draft, but {reason}") from e
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
        decoder = load_decoder(head, lm)
    except Exception as e:  # noqa: BLE001 - any load failure is reported with the directory named
        raise DraftUnavailable(f"could not load the EAGLE draft from {head}: {e}") from e
    return decoder, f"draft: {decoder.name} from {head}"


@app.command()
def serve(
    model: str = typer.Option("default", "--model", "-m", help="Model spec: default | hub id | local dir | .gguf"),
    draft: str = typer.Option(
        None,
        help="Speculative draft: DIR (an EAGLE head) | default (the shipped head) | "
        "auto (the shipped head when present) | none.",
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)."),
    api_key: str = typer.Option(
        None,
        envvar="TPRO_API_KEY",
        help="Require 'Authorization: Bearer KEY' on every route but /health (env TPRO_API_KEY).",
    ),
    max_queue: int = typer.Option(8, min=0, help="Requests that may wait behind the running one; more get 429."),
    timeout: float = typer.Option(300.0, min=1.0, help="Per-request timeout in seconds, queueing included."),
    default_max_tokens: int = typer.Option(512, min=1, help="max_tokens when a request sends none."),
    max_tokens_limit: int = typer.Option(None, min=1, help="Reject requests asking for more tokens (400)."),
    thinking: bool = typer.Option(
        False,
        "--thinking/--no-thinking",
        help="Reasoning mode for requests that do not send chat_template_kwargs.enable_thinking.",
    ),
    served_model_name: str = typer.Option(None, help="The model name clients send (default: the model's name)."),
    dtype: str = typer.Option(
        "auto", help="auto (bf16 on GPU and on CPUs with native bf16, else fp32) | float32 | bfloat16 | float16"
    ),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    log_level: str = typer.Option("info", help="uvicorn log level: debug | info | warning | error"),
):
    """Serve MODEL with OpenAI's /v1/chat/completions API (streaming and not), /v1/models, /health, /metrics."""
    import uvicorn

    from tpro.engine import Engine
    from tpro.models import load_model
    from tpro.models.loading import ModelLoadError
    from tpro.serve.app import ServeConfig, build_app

    def fail(msg: str):
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.echo(f"warning: binding {host} without --api-key exposes the model to anyone who can reach it", err=True)
    try:
        lm = load_model(model, dtype=dtype, threads=threads)
    except (ValueError, ModelLoadError) as e:
        fail(str(e))
    try:
        decoder, draft_line = resolve_draft(draft, lm)
    except DraftUnavailable as e:
        fail(str(e))
    config = ServeConfig(
        max_queue=max_queue,
        timeout_s=timeout,
        default_max_tokens=default_max_tokens,
        max_tokens_limit=max_tokens_limit,
        default_thinking=thinking,
        api_key=api_key or None,
        served_model_name=served_model_name,
    )
    application = build_app(Engine.from_loaded(lm), config, draft=decoder)
    name = served_model_name or lm.name
    typer.echo(
        f"tpro serve: {name} · {draft_line} · http://{host}:{port}/v1 · "
        f"api key {'required' if api_key else 'off'} · pid {os.getpid()}",
        err=True,
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level)
