"""The OpenAI chat-completions wire format: the request schema (pydantic, so FastAPI validates it and the
OpenAPI document describes it), the error shape, and builders for responses and stream chunks.

Extensions, as vLLM/SGLang accept them: ``top_k``, ``chat_template_kwargs.enable_thinking``, and tpro's own
``speculative`` switch; responses add ``reasoning_content`` (message and deltas) and a ``telemetry`` object.
Nothing here knows the engine or HTTP routing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's documented temperature range; the engine itself would take up to 5.
MAX_TEMPERATURE = 2.0
MAX_STOP = 16


class APIError(Exception):
    """An error answered in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    # Sent back by clients that keep an earlier turn's reasoning; dropped from the prompt (as Qwen3's template does).
    reasoning_content: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatTemplateKwargs(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    enable_thinking: bool | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions. Unknown fields are ignored (as vLLM does); known ones we cannot honour
    (n > 1, logprobs, penalties) are rejected with a 400 rather than silently dropped."""

    # strict: "0.7" is not a temperature and true is not a token count (OpenAI rejects both too).
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1, max_length=512, description="A name listed by GET /v1/models.")
    messages: list[Message] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(None, ge=1, description="Tokens to generate at most (prompt excluded).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer OpenAI name for max_tokens.")
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=-1, description="vLLM/SGLang extension; -1 or 0 = off.")
    stop: str | list[str] | None = Field(None, description=f"Up to {MAX_STOP} stop strings.")
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    logprobs: bool = False
    chat_template_kwargs: ChatTemplateKwargs | None = None
    speculative: bool | None = Field(
        None, description="tpro extension: use the server's speculative draft (default: on when it has one)."
    )


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    id: str, model: str, answer: str, reasoning: str, finish_reason: str, usage_: dict, telemetry: dict
) -> dict:
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "reasoning_content": reasoning or None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_,
        "telemetry": telemetry,
    }


def chunk_body(id: str, model: str, created: int, delta: dict, finish_reason: str | None = None, **extra: Any) -> dict:
    body = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    body.update(extra)
    return body
