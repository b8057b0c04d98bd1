"""Training data in T-pro's two chat modes: token ids with a loss mask on the assistant turns only.

A conversation is rendered exactly as the model will see it at inference: every assistant turn's context is
``tpro.models.build_prompt(tokenizer, history, mode)`` (the model's own template; ``enable_thinking`` where the
template knows it, else our reasoning system prompt and a ``<think>`` pre-fill), and the turn itself is
``<think>\\n{reasoning}\\n</think>\\n\\n{answer}`` in reasoning mode or ``{answer}`` in direct mode, closed by
the template's end-of-turn token. Where the next turn's context extends the text so far (prefix-preserving
templates such as Qwen2.5's in direct mode) turns share one training sequence; where it does not (Qwen3 drops
earlier reasoning from the history), a new sequence starts, so the model never trains on a context it will not
see. The loss mask comes from character spans mapped to tokens through the tokenizer's offsets, so merges across
a boundary cannot shift it; the ids are those of the whole text tokenized once (the round trip is tested).

Row formats read here (one JSON object per line): ``{"messages": [...]}``; ``{"prompt": ..., "completion": ...}``;
Alpaca-style ``{"instruction", "input"?, "output"}`` or the rulm seed ``{"instruction", "instances": [...]}``;
``{"text": ...}``; ``.txt`` files are one text per line. Reasoning rides in an assistant message as
``<think>…</think>`` in ``content`` or as ``reasoning_content`` (Qwen3's field). No training happens here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpro.config import ConfigError
from tpro.io import JSONLError, read_jsonl
from tpro.models.chat import build_prompt
from tpro.models.reasoning import split_reasoning


class DataError(ConfigError):
    """A data file or row cannot be used; the message names the file/row and the fix (the CLI exits 2)."""


@dataclass
class Encoded:
    input_ids: list[int]
    assistant_masks: list[int]  # 1 where the token is part of an assistant turn (trained), else 0
    text: str


# --- reading rows -------------------------------------------------------------------------------------------


def read_rows(path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows from a ``.jsonl``/``.json`` file (objects) or a ``.txt`` file (one ``{"text"}`` per non-empty line)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist. Fix: pass an existing .jsonl, .json or .txt file")
    if p.suffix == ".txt":
        rows = [{"text": line.rstrip("\n")} for line in p.open(encoding="utf-8") if line.strip()]
    elif p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{p} is not valid JSON ({e.msg}, line {e.lineno}). Fix: a list of row objects") from e
        rows = data if isinstance(data, list) else [data]
    else:
        try:
            rows = read_jsonl(p)
        except JSONLError as e:
            raise DataError(str(e)) from e
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{p}: row {bad + 1} is a {type(rows[bad]).__name__}, not a JSON object")
    if not rows:
        raise DataError(f"{p} holds no rows. Fix: point the recipe at a non-empty data file")
    return rows[:limit] if limit else rows


def row_to_messages(row: dict) -> list[dict] | None:
    """A row as chat messages, or ``None`` for plain text rows (``{"text"}``)."""
    if "messages" in row:
        return row["messages"]
    if "prompt" in row and "completion" in row:
        prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        comp = row["completion"]
        comp = comp if isinstance(comp, list) else [{"role": "assistant", "content": comp}]
        return prompt + comp
    if "instruction" in row:
        inst = row.get("instances") or [{"input": row.get("input", ""), "output": row.get("output", "")}]
        first = inst[0]
        user = row["instruction"] + (f"\n\n{first['input']}" if first.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": first.get("output", "")}]
    if "text" in row:
        return None
    raise DataError(
        f"row with keys {sorted(row)} is not a known format. Fix: give 'messages', 'prompt'+'completion', "
        "'instruction'+'output' or 'text'"
    )


# --- the two modes ------------------------------------------------------------------------------------------


def reasoning_and_answer(message: dict) -> tuple[str, str]:
    """(reasoning, answer) of an assistant message: ``reasoning_content`` wins over ``<think>`` in ``content``."""
    content = message.get("content") or ""
    if message.get("reasoning_content"):
        return message["reasoning_content"].strip(), split_reasoning(content)[1]
    return split_reasoning(content)


def infer_mode(messages: list[dict]) -> str:
    """``reasoning`` when any assistant turn carries a trace, else ``direct``."""
    for m in messages:
        if m.get("role") == "assistant" and reasoning_and_answer(m)[0]:
            return "reasoning"
    return "direct"


def assistant_text(message: dict, mode: str, started_in_think: bool) -> str:
    """The assistant turn as the model should produce it after ``build_prompt``'s prompt (end token excluded)."""
    reasoning, answer = reasoning_and_answer(message)
    if mode == "direct":
        return answer
    # Qwen3's layout: "<think>\n" + trace + "\n</think>\n\n" + answer (an empty trace stays as an empty block).
    return ("" if started_in_think else "<think>\n") + reasoning + "\n</think>\n\n" + answer


def end_of_turn(tokenizer: Any) -> str:
    """What the template writes after an assistant message's content, up to its last non-space character
    (``<|im_end|>`` for Qwen templates); the tokenizer's EOS when the template writes nothing."""
    probe = "\u2063PROBE\u2063"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}], tokenize=False
    )
    tail = text[text.rindex(probe) + len(probe) :].strip() if probe in text else ""
    return tail or (tokenizer.eos_token or "")


# --- encoding -----------------------------------------------------------------------------------------------


def _mask_from_spans(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> Encoded:
    # One tokenization of the whole text; a token is trained when its characters overlap an assistant span
    # (overlap, not "starts inside": byte-level BPE gives each byte-token of a split character that character's
    # whole span, so the first character of a turn may start before the span's first byte-token).
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = [int(any(s < b and e > a for a, b in spans)) for s, e in offsets]
    return Encoded(input_ids=list(ids), assistant_masks=mask, text=text)


def encode_chat(tokenizer: Any, messages: list[dict], mode: str | None = None) -> list[Encoded]:
    """A conversation -> one or more training sequences, loss on assistant turns only (see the module doc)."""
    if not any(m.get("role") == "assistant" for m in messages):
        raise DataError("a training conversation needs at least one assistant turn")
    mode = mode or infer_mode(messages)
    eot = end_of_turn(tokenizer)
    out: list[Encoded] = []
    text, spans = "", []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant" or i == 0:
            continue
        prompt = build_prompt(tokenizer, messages[:i], mode)
        if not prompt.text.startswith(text):  # the template rewrote the history: start a new sequence
            out.append(_mask_from_spans(tokenizer, text, spans))
            text, spans = "", []
        turn = assistant_text(m, mode, prompt.started_in_think) + eot
        text = prompt.text + turn
        spans.append((len(text) - len(turn), len(text)))
    out.append(_mask_from_spans(tokenizer, text, spans))
    return [e for e in out if any(e.assistant_masks)]


def encode_text(tokenizer: Any, text: str) -> Encoded:
    """Plain text (midtraining on raw documents): every token is trained; EOS closes the document."""
    return _mask_from_spans(tokenizer, text + (tokenizer.eos_token or ""), [(0, len(text) + 1)])


def encode_row(tokenizer: Any, row: dict, mode: str | None = None, loss_on: str = "assistant") -> list[Encoded]:
    """Any supported row -> training sequences. ``loss_on="all"`` trains every token (midtraining)."""
    messages = row_to_messages(row)
    row_mode = mode or row.get("mode") or (row.get("meta") or {}).get("mode")
    encs = [encode_text(tokenizer, row["text"])] if messages is None else encode_chat(tokenizer, messages, row_mode)
    if loss_on == "all":
        encs = [Encoded(e.input_ids, [1] * len(e.input_ids), e.text) for e in encs]
    return encs


def preference_as_text(tokenizer: Any, row: dict, mode: str | None = None) -> dict:
    """A conversational preference row -> TRL's standard format (prompt text, chosen text, rejected text), the
    prompt rendered by ``build_prompt`` in the row's mode so DPO trains in the inference format."""
    for key in ("prompt", "chosen", "rejected"):
        if key not in row:
            raise DataError(
                f"preference row lacks {key!r} (keys: {sorted(row)}). Fix: use TRL's preference format "
                '{"prompt": [...], "chosen": [...], "rejected": [...]}'
            )
    prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]

    def msg(x: Any) -> dict:
        return x[-1] if isinstance(x, list) else {"role": "assistant", "content": str(x)}

    chosen, rejected = msg(row["chosen"]), msg(row["rejected"])
    mode = mode or row.get("mode") or (row.get("meta") or {}).get("mode") or infer_mode([chosen, rejected])
    p = build_prompt(tokenizer, prompt, mode)
    eot = end_of_turn(tokenizer)
    return {
        "prompt": p.text,
        "chosen": assistant_text(chosen, mode, p.started_in_think) + eot,
        "rejected": assistant_text(rejected, mode, p.started_in_think) + eot,
    }
