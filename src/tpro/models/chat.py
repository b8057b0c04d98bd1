"""Chat prompts in T-pro 2.0's two modes: a direct answer, or a reasoning trace then the answer.

Where the model's own chat template understands ``enable_thinking`` (Qwen3, T-pro 2.0) we pass it and let
the template do the work. Other templates (e.g. the embedded Qwen2.5-Coder) get a reasoning mode of our
own: a system instruction to think inside ``<think>…</think>`` and the assistant turn pre-filled with
``<think>\\n`` so even a small model starts its trace (the output then begins inside the trace, which the
parser is told through ``ChatPrompt.started_in_think``). We always use the model's own template: the Qwen3
template on Qwen2.5-Coder made it emit ``<|endoftext|>`` at once (measured).

Reasoning from earlier assistant turns is dropped from the history, as Qwen3's template does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tpro.models.reasoning import split_reasoning
from tpro.options import MODES

REASONING_SYSTEM = (
    "You are a helpful assistant. Before answering, think step by step inside <think> and </think>; "
    "then write the final answer after </think>. Answer in the language of the question. "
    "Сначала рассуждай по шагам внутри <think> и </think>, затем дай окончательный ответ."
)
THINK_PREFILL = "<think>\n"


@dataclass(frozen=True)
class ChatPrompt:
    text: str  # the rendered prompt, ending where the model should continue
    input_ids: list[int]
    mode: str
    started_in_think: bool  # the prompt already opened <think>: the output begins inside the trace


def supports_enable_thinking(tokenizer: Any) -> bool:
    return "enable_thinking" in (getattr(tokenizer, "chat_template", None) or "")


def normalize_messages(messages: str | list[dict]) -> list[dict]:
    """Accept a bare user string or OpenAI-style messages; validate roles and content."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages:
        raise ValueError("messages is empty: send at least one user message")
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"messages[{i}].role is {role!r}; expected system, user, assistant or tool")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string (or text parts), got {type(content).__name__}")
        if role == "assistant":
            content = split_reasoning(content)[1] or content
        out.append({"role": role, "content": content})
    return out


def build_prompt(tokenizer: Any, messages: str | list[dict], mode: str = "direct") -> ChatPrompt:
    """Render ``messages`` for generation in ``mode`` ("direct" or "reasoning")."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose direct or reasoning")
    msgs = normalize_messages(messages)
    if supports_enable_thinking(tokenizer):
        text = tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True, enable_thinking=(mode == "reasoning")
        )
        # Some templates (Qwen3-2507 thinking, T-pro variants) open the trace in the prompt themselves.
        started = text.rstrip().endswith("<think>")
    else:
        if mode == "reasoning":
            if msgs[0]["role"] == "system":
                msgs = [{"role": "system", "content": msgs[0]["content"] + "\n\n" + REASONING_SYSTEM}] + msgs[1:]
            else:
                msgs = [{"role": "system", "content": REASONING_SYSTEM}] + msgs
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        started = mode == "reasoning"
        if started:
            text += THINK_PREFILL
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ChatPrompt(text=text, input_ids=list(ids), mode=mode, started_in_think=started)
