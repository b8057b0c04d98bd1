"""A streaming client for OpenAI-compatible chat endpoints (tpro serve, SGLang, vLLM), over httpx.

Reads the extensions those servers add: ``reasoning_content`` deltas (reasoning apart from the answer), tpro's
``telemetry`` object and ``speculative`` switch. For endpoints without telemetry it measures what a client
can: time to first token, end-to-end latency, tokens/s from ``usage``. Answers that carry the trace inline
as ``<think>…</think>`` are split with the same parser the server uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import httpx

from tpro.models.reasoning import ReasoningStream


@dataclass
class PaneSettings:
    url: str  # base URL: http://host:port or http://host:port/v1
    model: str
    api_key: str | None = None
    reasoning: bool = False
    temperature: float = 0.0
    max_tokens: int = 256
    speculative: bool | None = None  # None: do not send the switch (endpoints other than tpro serve)

    @property
    def base(self) -> str:
        u = self.url.strip().rstrip("/")
        return u if u.endswith("/v1") else u + "/v1"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("api_key")  # never stored with votes
        return d


@dataclass
class Result:
    answer: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict | None = None
    telemetry: dict | None = None  # the server's (tpro serve), when it sends one
    error: str | None = None
    ttft_s: float = 0.0  # client-side: request sent -> first text
    total_s: float = 0.0  # client-side: request sent -> stream end
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line of telemetry for the page."""
        if self.error:
            return f"error: {self.error}"
        t = self.telemetry or {}
        tokens = (self.usage or {}).get("completion_tokens", t.get("generated_tokens"))
        parts = []
        if tokens is not None:
            parts.append(f"{tokens} tokens")
        parts.append(f"TTFT {t.get('ttft_s', self.ttft_s):.2f} s")
        if t.get("tokens_per_s"):
            parts.append(f"{t['tokens_per_s']:.1f} tok/s")
        elif tokens and self.total_s:
            parts.append(f"{tokens / self.total_s:.1f} tok/s")
        if t.get("words_per_s"):
            parts.append(f"{t['words_per_s']:.1f} words/s")
        if t.get("draft_proposed"):
            parts.append(
                f"acceptance length {t['acceptance_length']:.2f} "
                f"({t['draft_accepted']}/{t['draft_proposed']} draft tokens)"
            )
        elif t:
            parts.append(f"decoder {t.get('decoder', '?')}")
        parts.append(f"{self.total_s:.1f} s end to end")
        if self.finish_reason:
            parts.append(self.finish_reason)
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def list_models(url: str, api_key: str | None = None, timeout: float = 5.0) -> list[dict]:
    """GET /v1/models -> the "data" list (tpro serve adds {"tpro": {"speculative": bool, ...}})."""
    s = PaneSettings(url=url, model="", api_key=api_key)
    r = httpx.get(s.base + "/models", headers=s.headers(), timeout=timeout)
    r.raise_for_status()
    return r.json().get("data", [])


def request_body(s: PaneSettings, messages: list[dict]) -> dict:
    body = {
        "model": s.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
        "chat_template_kwargs": {"enable_thinking": s.reasoning},
    }
    if s.speculative is not None:
        body["speculative"] = s.speculative
    return body


def _error_text(r: httpx.Response) -> str:
    try:
        return f"HTTP {r.status_code}: {r.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}: {r.text[:300]}"


def stream_chat(s: PaneSettings, messages: list[dict], timeout: float = 600.0) -> Iterator[tuple[str, object]]:
    """Yield ("reasoning", text) and ("content", text) as they stream, then ("done", Result)."""
    res = Result()
    router = ReasoningStream()
    t0 = time.perf_counter()

    def parts(channel: str, text: str):
        for ch, piece in router.feed(text) if channel == "content" else [("reasoning", text)]:
            key = "content" if ch == "answer" else "reasoning"
            if not res.ttft_s:
                res.ttft_s = time.perf_counter() - t0
            if key == "content":
                res.answer += piece
            else:
                res.reasoning += piece
            yield key, piece

    try:
        with httpx.stream(
            "POST",
            s.base + "/chat/completions",
            json=request_body(s, messages),
            headers=s.headers(),
            timeout=httpx.Timeout(timeout, connect=10.0),
        ) as r:
            if r.status_code != 200:
                r.read()
                res.error = _error_text(r)
            else:
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        res.error = chunk["error"].get("message", str(chunk["error"]))
                        break
                    res.usage = chunk.get("usage") or res.usage
                    res.telemetry = chunk.get("telemetry") or res.telemetry
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("reasoning_content"):
                            yield from parts("reasoning", delta["reasoning_content"])
                        if delta.get("content"):
                            yield from parts("content", delta["content"])
                        res.finish_reason = choice.get("finish_reason") or res.finish_reason
    except httpx.HTTPError as e:
        res.error = f"{type(e).__name__}: {e} ({s.base})"
    except json.JSONDecodeError as e:
        res.error = f"the endpoint sent a malformed stream chunk: {e}"
    for ch, piece in router.flush():
        if ch == "answer":
            res.answer += piece
            yield "content", piece
        else:
            res.reasoning += piece
            yield "reasoning", piece
    res.total_s = time.perf_counter() - t0
    res.answer, res.reasoning = res.answer.strip(), res.reasoning.strip()
    yield "done", res
