"""Split model output into (reasoning, answer), whole or streamed.

T-pro/Qwen3 wrap a reasoning trace in ``<think>…</think>`` before the answer. Real outputs are messier:
the opening tag may live in the prompt (so the output starts mid-trace), the trace may be cut by the token
limit (unclosed), tags may repeat or appear inside the answer, the trace may be empty. The rule used here:

  - text before the first ``</think>`` that follows the first ``<think>`` (or the start of the text when
    ``started_in_think``) is reasoning; everything after it is the answer;
  - an unclosed trace is all reasoning and an empty answer;
  - a ``</think>`` with no ``<think>`` before it closes a trace that started in the prompt;
  - no tags at all: everything is answer;
  - stray tags left in the answer are removed.

No tokenizer or model knowledge here: plain strings.
"""

from __future__ import annotations

from collections.abc import Iterator

OPEN, CLOSE = "<think>", "</think>"


def _strip_tags(s: str) -> str:
    return s.replace(OPEN, "").replace(CLOSE, "")


def split_reasoning(text: str, started_in_think: bool = False) -> tuple[str, str]:
    """-> (reasoning, answer), both stripped of surrounding whitespace."""
    start = 0
    if not started_in_think:
        o = text.find(OPEN)
        c = text.find(CLOSE)
        if o < 0 and c < 0:
            return "", text.strip()
        if o >= 0 and (c < 0 or o < c):
            # Text before the opening tag is preamble, not reasoning; keep it in the answer.
            pre, start = text[:o], o + len(OPEN)
        else:  # a close before any open: the trace opened in the prompt
            pre, start = "", 0
    else:
        pre = ""
    c = text.find(CLOSE, start)
    if c < 0:
        return _strip_tags(text[start:]).strip(), _strip_tags(pre).strip()
    reasoning = _strip_tags(text[start:c]).strip()
    answer = (_strip_tags(pre) + _strip_tags(text[c + len(CLOSE) :])).strip()
    return reasoning, answer


class ReasoningStream:
    """Route streamed text deltas to ``("reasoning", s)`` or ``("answer", s)`` parts as they arrive.

    Holds back only the few characters that could be the start of a tag split across deltas, so a
    client sees reasoning and answer live. The concatenation of all parts of each channel equals what
    ``split_reasoning`` returns on the full text, up to whitespace, with one exception a stream cannot avoid:
    a lone ``</think>`` (no ``<think>`` before it) when the caller did not say the prompt opened the trace.
    Text before it has already gone out as answer. ``build_prompt`` sets ``started_in_think`` whenever the
    prompt ends inside an open ``<think>``, so well-formed outputs never hit this.
    """

    def __init__(self, started_in_think: bool = False):
        self.in_think = started_in_think
        self.seen_close = False
        self.buf = ""

    def _holdback(self) -> int:
        # Longest suffix of buf that is a proper prefix of a tag we might still see.
        for k in range(min(len(self.buf), len(CLOSE) - 1), 0, -1):
            tail = self.buf[-k:]
            if CLOSE.startswith(tail) or OPEN.startswith(tail):
                return k
        return 0

    def feed(self, delta: str) -> Iterator[tuple[str, str]]:
        self.buf += delta
        while True:
            if self.in_think:
                i = self.buf.find(CLOSE)
                if i >= 0:
                    if i:
                        yield "reasoning", _strip_tags(self.buf[:i])
                    self.buf = self.buf[i + len(CLOSE) :]
                    self.in_think, self.seen_close = False, True
                    continue
            elif not self.seen_close:
                i = self.buf.find(OPEN)
                j = self.buf.find(CLOSE)
                if i >= 0 and (j < 0 or i < j):
                    if i:
                        yield "answer", self.buf[:i]
                    self.buf = self.buf[i + len(OPEN) :]
                    self.in_think = True
                    continue
                if j >= 0:  # close before open: everything so far was reasoning started in the prompt
                    if j:
                        yield "reasoning", self.buf[:j]
                    self.buf = self.buf[j + len(CLOSE) :]
                    self.seen_close = True
                    continue
            break
        keep = self._holdback()
        out, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep :]
        if out:
            channel = "reasoning" if self.in_think else "answer"
            out = _strip_tags(out) if self.seen_close or self.in_think else out
            if out:
                yield channel, out

    def flush(self) -> Iterator[tuple[str, str]]:
        if self.buf:
            channel = "reasoning" if self.in_think else "answer"
            yield channel, _strip_tags(self.buf)
            self.buf = ""
