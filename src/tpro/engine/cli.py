"""``tpro generate``: one prompt, streamed to the terminal (reasoning apart from the answer), with telemetry."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from tpro.config import command, json_flag, like, opt
from tpro.options import COMPILE_HELP, MODE_HELP, Mode, ModelOptions, SamplingOptions, Weights


@dataclass(kw_only=True)
class GenerateConfig(ModelOptions, SamplingOptions):
    """``tpro generate``: the prompt, the chat mode, the model and how to sample."""

    prompt: str = opt(help="The user message.", positional=True)
    mode: Mode = opt("direct", MODE_HELP, flags={"--reasoning": "reasoning", "-r": "reasoning"})
    system: str | None = opt(None, "Optional system message.")
    file: str | None = opt(None, "A UTF-8 text file (a long document) put before the prompt in the user message.")
    weights: Weights = like(ModelOptions, "weights", "auto")  # a decoding stage: the fastest measured format
    compile: bool = opt(False, COMPILE_HELP)


@command(
    GenerateConfig, name="generate", extra=[json_flag("Print one JSON object: text, reasoning, answer, telemetry.")]
)
def app(cfg: GenerateConfig, as_json: bool = False):
    """Generate an answer to PROMPT on the local engine, streamed, with telemetry."""
    from tpro.engine import Done, Engine
    from tpro.engine.compiled import CompiledDecoder
    from tpro.models import ReasoningStream
    from tpro.models.loading import ModelLoadError

    try:
        params = cfg.sampling()
        lm = cfg.load_model(progress=not as_json)
    except (ValueError, ModelLoadError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    engine = Engine.from_loaded(lm, decoder=CompiledDecoder() if cfg.compile else None)
    try:
        user = (Path(cfg.file).read_text(encoding="utf-8") + "\n\n" if cfg.file else "") + cfg.prompt
    except (OSError, UnicodeDecodeError) as e:
        click.echo(f"error: cannot read --file {cfg.file}: {e}. Fix: give an existing UTF-8 text file", err=True)
        sys.exit(2)
    messages = ([{"role": "system", "content": cfg.system}] if cfg.system else []) + [{"role": "user", "content": user}]
    chat = engine.prompt(messages, cfg.mode)
    try:
        engine.request(chat, params)  # a prompt over the context fails here, before any output
    except ValueError as e:
        hint = "" if lm.info.get("rope_scaling") else " or extend the context with --rope-scaling yarn:FACTOR"
        click.echo(f"error: {e}{hint}", err=True)
        sys.exit(2)
    if as_json:
        done = engine.complete(chat, params)
        click.echo(
            json.dumps(
                {
                    "model": lm.name,
                    "mode": chat.mode,
                    "text": done.text,
                    "reasoning": done.reasoning,
                    "answer": done.answer,
                    "finish_reason": done.finish_reason,
                    "telemetry": done.telemetry.to_dict(),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    from rich.console import Console

    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    router = ReasoningStream(started_in_think=chat.started_in_think)
    channel, done = None, None
    for ev in engine.generate(chat, params):
        if isinstance(ev, Done):
            done = ev
            parts = list(router.flush())
        else:
            parts = list(router.feed(ev.text))
        for ch, s in parts:
            if ch != channel:
                s = s.lstrip()
                if not s:
                    continue
                out.print("\n[bold cyan]reasoning:[/] " if ch == "reasoning" else "\n[bold green]answer:[/] ", end="")
                channel = ch
            out.print(s, end="", style="dim" if ch == "reasoning" else None, markup=False)
        sys.stdout.flush()
    out.print()
    t = done.telemetry
    err.print(
        f"[dim]{lm.name} · {chat.mode} · prompt {t.prompt_tokens} tok · generated {t.generated_tokens} tok "
        f"({done.finish_reason}) · TTFT {t.ttft_s:.2f}s · {t.tokens_per_s:.1f} tok/s · "
        f"{t.words_per_s:.1f} words/s · {t.chars_per_s:.0f} chars/s · total {t.total_s:.1f}s[/]"
    )
