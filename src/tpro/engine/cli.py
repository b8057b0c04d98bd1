"""``tpro generate``: one prompt, streamed to the terminal (reasoning apart from the answer), with telemetry."""

from __future__ import annotations

import json
import sys

import typer

app = typer.Typer(help="Generate an answer, streamed, with telemetry.")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The user message."),
    model: str = typer.Option("default", "--model", "-m", help="Model spec: default | hub id | local dir | .gguf"),
    reasoning: bool = typer.Option(False, "--reasoning", "-r", help="Reasoning mode: think inside <think>…</think> first."),
    system: str = typer.Option(None, help="Optional system message."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", min=1, help="Tokens to generate at most."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", min=0.0, max=5.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    top_k: int = typer.Option(0, "--top-k", min=0),
    seed: int = typer.Option(None, help="Sampling seed (same seed, same text)."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU and on CPUs with native bf16, else fp32) | float32 | bfloat16 | float16"),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: text, reasoning, answer, telemetry."),
):
    """Generate an answer to PROMPT on the local engine."""
    from tpro.engine import Done, Engine, SamplingParams
    from tpro.models import ReasoningStream, load_model
    from tpro.models.loading import ModelLoadError

    try:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p or 1.0,
                                top_k=top_k, seed=seed, stop=list(stop))
        lm = load_model(model, dtype=dtype, threads=threads, progress=not as_json)
    except (ValueError, ModelLoadError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    engine = Engine.from_loaded(lm)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    chat = engine.prompt(messages, "reasoning" if reasoning else "direct")
    done = None
    if as_json:
        done = engine.complete(chat, params)
        typer.echo(json.dumps({
            "model": lm.name, "mode": chat.mode, "text": done.text, "reasoning": done.reasoning,
            "answer": done.answer, "finish_reason": done.finish_reason, "telemetry": done.telemetry.to_dict(),
        }, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    router = ReasoningStream(started_in_think=chat.started_in_think)
    channel = None
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
