"""The OpenAI-compatible HTTP server over one ``tpro.engine.Engine``: ``build_app(engine, ...)`` -> FastAPI.

Routes: ``POST /v1/chat/completions`` (JSON or SSE stream), ``GET /v1/models``, ``GET /health``,
``GET /metrics`` (Prometheus text).

How requests flow. Requests go to a ``tpro.engine.batch.BatchEngine``: up to ``max_batch`` decode together, one
forward per step, joining and leaving at every step; the rest wait in its queue, first come first served
(``max_batch`` 1: one at a time, each through the draft, as before batching). Admission is bounded: a request gets
429 with Retry-After at once when ``max_batch`` (or fewer, when the KV budget fits fewer requests of its size)
are running and ``max_queue`` are waiting, or when it would only time out in the queue; one that alone needs more
KV cache than ``kv_memory_gb`` gets 413. Each request's event stream is read in a worker thread and handed to the
event loop through an ``asyncio.Queue``, so the loop stays free to accept, reject and stream. A client that
disconnects (while queued or while generating) and a request that runs past ``timeout_s`` set the request's
``cancel`` event; the engine drops it within one step, freeing its row.

Every error is answered in OpenAI's format with a 4xx (bad input, unknown model, overload) and the server
goes on serving. This module knows HTTP and the engine's interface; it knows nothing about how a model is
loaded or how a draft is built (``tpro.serve.cli`` does that); its settings are ``tpro.serve.config.ServeConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from tpro.engine import Decoder, Delta, Done, Engine, SamplingParams
from tpro.engine.batch import BatchEngine
from tpro.models import ChatPrompt, ReasoningStream
from tpro.serve.config import ServeConfig
from tpro.serve.protocol import (
    MAX_STOP,
    APIError,
    ChatCompletionRequest,
    chunk_body,
    completion_body,
    error_body,
    new_id,
    usage,
)

__all__ = ["ServeConfig", "build_app"]


@dataclass
class Job:
    id: str
    prompt: ChatPrompt
    params: SamplingParams
    decoder: Decoder | None
    deadline: float  # loop.time() by which the request must finish
    kv_bytes: int = 0  # KV cache the request may grow to (prompt + max_tokens)
    include_usage: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    created: int = field(default_factory=lambda: int(time.time()))


class Metrics:
    """Prometheus metrics in a registry per app (several apps can live in one test process)."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tpro_requests", "Chat completion requests by outcome", ["outcome"], registry=r)
        self.latency = Histogram(
            "tpro_request_seconds",
            "End-to-end latency of completed requests",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
        )
        self.ttft = Histogram(
            "tpro_ttft_seconds",
            "Time to first token (prefill + first step)",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.prompt_tokens = Counter("tpro_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("tpro_generated_tokens", "Tokens generated", registry=r)
        self.acceptance = Histogram(
            "tpro_acceptance_length",
            "Speculative acceptance length per request",
            registry=r,
            buckets=(1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8),
        )
        self.queued = Gauge("tpro_queue_depth", "Requests admitted and not yet finished (running included)", registry=r)
        self.batch_size = Histogram(
            "tpro_batch_size",
            "Sequences decoded together, per decode step",
            registry=r,
            buckets=(1, 2, 4, 8, 12, 16, 24, 32, 64, 128, 256),
        )
        self.active = Gauge("tpro_active_sequences", "Sequences holding a place in the batch now", registry=r)
        self.kv_bytes = Gauge("tpro_kv_cache_bytes", "KV-cache bytes the batch holds now", registry=r)
        self.kv_budget = Gauge("tpro_kv_cache_budget_bytes", "KV-cache bytes the batch may hold", registry=r)
        self.kv_per_token = Gauge("tpro_kv_cache_bytes_per_token", "KV-cache bytes of one token", registry=r)


class Runner:
    """Admission control in front of a ``BatchEngine``; each admitted request's events are read in a worker thread."""

    def __init__(self, engine: Engine, config: ServeConfig, metrics: Metrics):
        self.engine, self.config, self.metrics = engine, config, metrics
        self.kv_budget = int(config.kv_memory_gb * 2**30)
        self.batch = BatchEngine(
            engine,
            max_batch=config.max_batch,
            chunk_tokens=config.prefill_chunk,
            kv_budget=self.kv_budget,
            on_step=lambda n, _kv: metrics.batch_size.observe(n),
        )
        metrics.active.set_function(lambda: self.batch.active)
        metrics.kv_bytes.set_function(lambda: self.batch.kv_bytes)
        metrics.kv_budget.set(self.kv_budget)
        metrics.kv_per_token.set(self.batch.kv_bytes_per_token)
        self.pending = 0  # admitted and not finished, running ones included
        self.avg_s: float | None = None  # moving average of a served request's generation time (None: none yet)
        # one thread per admitted request, blocked on its stream most of the time
        self.executor = ThreadPoolExecutor(
            max_workers=config.max_batch + config.max_queue + 1, thread_name_prefix="tpro-generate"
        )

    def slots(self, job: Job) -> int:
        """Requests like ``job`` that can run at once: ``max_batch``, or fewer when the KV budget fits fewer."""
        return max(1, min(self.config.max_batch, self.kv_budget // max(1, job.kv_bytes)))

    def retry_after(self, slots: int) -> int:
        # Time for the queue ahead to drain, roughly; clients that honour it come back when there is room.
        waves = max(1, math.ceil((self.pending - self.config.max_queue) / slots))
        return max(1, min(120, math.ceil((self.avg_s or 5.0) * waves)))

    def admit(self, job: Job) -> None:
        slots, cfg = self.slots(job), self.config
        full = self.pending >= slots + cfg.max_queue
        # A request expected to finish after its timeout would only take a place and then time out, wasting the
        # engine time it got (measured: 20 clients on a busy 2-core CPU with a 300 s timeout and a deep queue
        # made most requests time out mid-generation): refuse it now. Never on an idle server. Requests ahead run
        # ``slots`` at a time, each taking about ``avg_s`` (measured under the same batching).
        expected_s = math.ceil((self.pending + 1) / slots) * self.avg_s if self.avg_s is not None else 0.0
        hopeless = self.pending > 0 and expected_s > cfg.timeout_s
        if full or hopeless:
            self.metrics.requests.labels("rejected").inc()
            if full:
                limit = f"--max-batch {cfg.max_batch}"
                if slots < cfg.max_batch:
                    limit = (
                        f"the KV budget (--kv-memory-gb {cfg.kv_memory_gb:g}) fits {slots} requests of this size, "
                        f"{job.kv_bytes / 2**20:.1f} MiB each"
                    )
                why = f"{self.pending} requests running or queued; {limit}, --max-queue {cfg.max_queue}"
            else:
                why = (
                    f"{self.pending} requests ahead, {slots} at a time at ~{self.avg_s:.1f}s each, would exceed the "
                    f"{cfg.timeout_s:g}s timeout"
                )
            raise APIError(
                429,
                f"the server is at capacity ({why}); retry after the Retry-After seconds",
                type="server_overloaded",
                code="queue_full" if full else "queue_too_slow",
                headers={"Retry-After": str(self.retry_after(slots))},
            )
        self.pending += 1
        self.metrics.queued.set(self.pending)

    def _release(self) -> None:
        self.pending -= 1
        self.metrics.queued.set(self.pending)

    async def events(self, job: Job) -> AsyncIterator[Delta | Done]:
        """The engine's events for ``job``. Leaving early (client gone, timeout) cancels it; the worker thread
        ends, and the request's place is released, when the engine has dropped it (within one step)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        end = object()

        def put(item) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us (server shutdown)
                loop.call_soon_threadsafe(q.put_nowait, item)

        def work() -> None:
            try:
                for ev in self.batch.submit(job.prompt, job.params, decoder=job.decoder, cancel=job.cancel):
                    if isinstance(ev, Done):  # recorded here: a client that left never reads its Done
                        self.record(job, ev)
                    put(ev)
            except BaseException as e:  # noqa: BLE001 - handed to the request, which answers it
                put(e)
            finally:
                put(end)

        released = False

        def release(_=None) -> None:
            nonlocal released
            if not released:
                released = True
                self._release()

        fut = loop.run_in_executor(self.executor, work)
        fut.add_done_callback(release)  # also when the request task is cancelled while waiting below
        timer = loop.call_later(max(0.0, job.deadline - loop.time()), self._time_out, job)
        try:
            first = True
            while (ev := await q.get()) is not end:
                if isinstance(ev, BaseException):
                    raise ev
                if first and isinstance(ev, Done) and job.timed_out and not ev.telemetry.steps:
                    raise APIError(  # before any token: still an HTTP error, not an in-band one
                        503,
                        f"timed out after {self.config.timeout_s:g}s waiting in the queue; retry later",
                        type="server_overloaded",
                        code="queue_timeout",
                        headers={"Retry-After": str(self.retry_after(self.slots(job)))},
                    )
                first = False
                yield ev
        finally:
            timer.cancel()
            job.cancel.set()  # a no-op once generation has ended on its own
            await asyncio.shield(fut)  # the engine drops it within one step
            release()

    def record(self, job: Job, done: Done) -> None:
        t, m = done.telemetry, self.metrics
        outcome = "timeout" if job.timed_out else "cancelled" if done.finish_reason == "cancelled" else "ok"
        m.requests.labels(outcome).inc()
        m.prompt_tokens.inc(t.prompt_tokens)
        m.generated_tokens.inc(t.generated_tokens)
        if outcome == "ok":
            m.latency.observe(t.total_s)
            m.ttft.observe(t.ttft_s)
            if t.draft_proposed:
                m.acceptance.observe(t.acceptance_length)
            self.avg_s = t.total_s if self.avg_s is None else 0.8 * self.avg_s + 0.2 * t.total_s

    async def close(self) -> None:
        await asyncio.to_thread(self.batch.close)
        self.executor.shutdown(wait=False)

    @staticmethod
    def _time_out(job: Job) -> None:
        job.timed_out = True
        job.cancel.set()


def sse(obj: dict | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


async def _until_disconnect(request: Request) -> None:
    # After the body is read, the ASGI receive channel only ever delivers "http.disconnect".
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _first_or_disconnect(agen: AsyncIterator, request: Request):
    """``await anext(agen)``, unless the client disconnects first (then: cancel and return None)."""
    step = asyncio.ensure_future(anext(agen, None))
    gone = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({step, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this task is cancelled: asyncio.wait leaves the tasks it waits on running
        gone.cancel()
        if not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
    return None if step.cancelled() else step.result()


class Server:
    """Request handling: validation into a ``Job``, then a JSON answer or an SSE stream."""

    def __init__(self, engine: Engine, config: ServeConfig, draft: Decoder | None):
        self.engine, self.config, self.draft = engine, config, draft
        self.name = config.served_model_name or engine.name
        self.metrics = Metrics()
        self.runner = Runner(engine, config, self.metrics)

    # -- validation -------------------------------------------------------------------------------------
    def prepare(self, body: ChatCompletionRequest, now: float) -> Job:
        """Validate ``body`` into a ``Job`` (or raise ``APIError``). ``now``: the event loop's clock."""
        if body.model != self.name:
            raise APIError(
                404,
                f"the model {body.model!r} does not exist here; this server serves {self.name!r} (GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        if body.n != 1:
            raise APIError(
                400,
                f"n={body.n} is not supported: this server returns one choice per request (n=1)",
                param="n",
                code="unsupported_parameter",
            )
        if body.logprobs:
            raise APIError(
                400, "logprobs are not supported by this server", param="logprobs", code="unsupported_parameter"
            )
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(body, name):
                raise APIError(
                    400,
                    f"{name} is not supported by this server; send 0 or leave it out",
                    param=name,
                    code="unsupported_parameter",
                )
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > MAX_STOP:
            raise APIError(400, f"stop has {len(stop)} strings; at most {MAX_STOP}", param="stop")
        thinking = self.config.mode == "reasoning"
        if body.chat_template_kwargs and body.chat_template_kwargs.enable_thinking is not None:
            thinking = body.chat_template_kwargs.enable_thinking
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        try:
            prompt = self.engine.prompt(messages, "reasoning" if thinking else "direct")
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from e
        ctx, n_prompt = self.engine.context_length, len(prompt.input_ids)
        max_tokens = body.max_completion_tokens or body.max_tokens
        limit = self.config.max_tokens_limit
        if n_prompt >= ctx:
            raise APIError(
                400,
                f"this model's maximum context length is {ctx} tokens and the messages take {n_prompt}; shorten them",
                param="messages",
                code="context_length_exceeded",
            )
        if max_tokens is None:
            max_tokens = min(self.config.max_new_tokens, ctx - n_prompt)
        elif limit is not None and max_tokens > limit:
            raise APIError(
                400,
                f"max_tokens={max_tokens} is over this server's limit of {limit} (tpro serve --max-tokens-limit)",
                param="max_tokens",
            )
        elif n_prompt + max_tokens > ctx:
            raise APIError(
                400,
                f"this model's maximum context length is {ctx} tokens; the messages take {n_prompt} "
                f"and max_tokens asks for {max_tokens} more. Lower max_tokens or shorten the messages",
                param="max_tokens",
                code="context_length_exceeded",
            )
        kv_bytes = self.runner.batch.kv_reserve(n_prompt, max_tokens)
        if kv_bytes > self.runner.kv_budget:
            raise APIError(
                413,
                f"this request may need {kv_bytes / 2**20:.1f} MiB of KV cache ({n_prompt} prompt tokens + "
                f"max_tokens {max_tokens}), over this server's KV budget of {self.config.kv_memory_gb:g} GiB "
                "(tpro serve --kv-memory-gb); lower max_tokens or shorten the messages",
                param="max_tokens",
                code="kv_budget_exceeded",
            )
        if body.speculative and self.draft is None:
            raise APIError(
                400,
                "speculative=true, but this server has no draft model; start it with "
                "`tpro serve --draft DIR` (or send speculative=false)",
                param="speculative",
            )
        use_draft = self.draft is not None and body.speculative is not False
        params = SamplingParams(
            max_new_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,  # OpenAI's default
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(0, body.top_k or 0),
            seed=body.seed,
            stop=stop,
        )
        return Job(
            id=new_id(),
            prompt=prompt,
            params=params,
            decoder=self.draft if use_draft else None,
            deadline=now + self.config.timeout_s,
            kv_bytes=kv_bytes,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )

    # -- outcomes ---------------------------------------------------------------------------------------
    def _timeout_error(self) -> APIError:
        return APIError(
            504,
            f"generation ran past this server's per-request timeout of {self.config.timeout_s:g}s "
            "(tpro serve --timeout-s); lower max_tokens",
            type="timeout",
            code="request_timeout",
        )

    @staticmethod
    def _usage(done: Done) -> dict:
        return usage(done.telemetry.prompt_tokens, done.telemetry.generated_tokens)

    # -- responses --------------------------------------------------------------------------------------
    async def complete(self, job: Job, request: Request) -> Response:
        async def run() -> Done | None:
            async with contextlib.aclosing(self.runner.events(job)) as events:
                async for ev in events:
                    if isinstance(ev, Done):
                        return ev
            return None

        done = await _first_or_disconnect(_once(run()), request)
        if done is None:  # client gone (nobody reads this); counted by the runner if generation had started
            return Response(status_code=499)
        if job.timed_out:
            raise self._timeout_error()
        return JSONResponse(
            completion_body(
                job.id,
                self.name,
                done.answer,
                done.reasoning,
                _finish(done.finish_reason),
                self._usage(done),
                done.telemetry.to_dict(),
            )
        )

    async def stream(self, job: Job, request: Request) -> Response:
        events = self.runner.events(job)
        # Wait for our turn before sending headers, so a queue timeout is still an HTTP error.
        first = await _first_or_disconnect(events, request)
        if first is None:
            await events.aclose()
            return Response(status_code=499)
        return StreamingResponse(
            self._sse(job, first, events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _sse(self, job: Job, first: Delta | Done, events: AsyncIterator) -> AsyncIterator[bytes]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
            return sse(chunk_body(job.id, self.name, job.created, delta, finish, **extra))

        router = ReasoningStream(started_in_think=job.prompt.started_in_think)
        try:
            yield chunk({"role": "assistant", "content": ""})
            ev = first
            while True:
                if isinstance(ev, Done):
                    for ch, s in router.flush():
                        yield chunk({"content" if ch == "answer" else "reasoning_content": s})
                    if job.timed_out:
                        yield sse(self._timeout_error().body())
                    else:
                        yield chunk(
                            {}, _finish(ev.finish_reason), usage=self._usage(ev), telemetry=ev.telemetry.to_dict()
                        )
                        if job.include_usage:
                            body = chunk_body(job.id, self.name, job.created, {}, None, usage=self._usage(ev))
                            body["choices"] = []
                            yield sse(body)
                    yield sse("[DONE]")
                    return
                for ch, s in router.feed(ev.text):
                    yield chunk({"content" if ch == "answer" else "reasoning_content": s})
                ev = await anext(events)
        except APIError as e:  # after the headers: report in-band, as vLLM does
            yield sse(e.body())
            yield sse("[DONE]")
        finally:  # also when the client went away mid-stream: closing the events cancels generation
            await events.aclose()


async def _once(coro):
    """An async generator yielding one value: lets ``_first_or_disconnect`` race any coroutine."""
    yield await coro


def _finish(reason: str) -> str:
    return "length" if reason == "cancelled" else reason


class APIKeyMiddleware:
    """Require ``Authorization: Bearer KEY`` on every route except /health (pure ASGI: no body buffering)."""

    def __init__(self, app, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            got = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(got, self.expected):
                msg = (
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key the "
                    "server was started with (--api-key / TPRO_API_KEY)"
                )
                resp = JSONResponse(
                    error_body(msg, "invalid_request_error", None, "invalid_api_key"),
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


_UNION_TAG = re.compile(r"str|int|float|bool|none|.*[\[\-].*")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    # pydantic tags union members in the location ("content", "str"); a client wants the field's path only.
    loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _UNION_TAG.fullmatch(str(p))]
    if err.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}", None
    param = ".".join(loc) or None
    if param is None:
        return (
            "the request body must be a JSON object with at least model and messages "
            "(and the header Content-Type: application/json)"
        ), None
    where = f"{param}: " if param else "body: "
    extra = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{where}{err.get('msg')}{extra}", param


def build_app(engine: Engine, config: ServeConfig | None = None, draft: Decoder | None = None) -> FastAPI:
    """The FastAPI app for ``engine``. ``draft``: a speculative ``Decoder`` used unless a request says
    ``"speculative": false``. In-process tests and ``tpro serve`` both start here."""
    config = config or ServeConfig()
    server = Server(engine, config, draft)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await server.runner.close()

    app = FastAPI(
        title="tpro",
        version="0.1.0",
        description="OpenAI-compatible chat completions on the tpro engine.",
        lifespan=lifespan,
    )
    app.state.server = server

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        if exc.status < 500 and exc.status != 429:
            server.metrics.requests.labels("invalid").inc()
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        server.metrics.requests.labels("invalid").inc()
        msg, param = _validation_message(exc)
        return JSONResponse(error_body(msg, "invalid_request_error", param, None), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error"), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        server.metrics.requests.labels("error").inc()
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"), 500)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        # Tokenising a long prompt takes a while: off the event loop.
        job = await asyncio.to_thread(server.prepare, body, asyncio.get_running_loop().time())
        server.runner.admit(job)
        if body.stream:
            return await server.stream(job, request)
        return await server.complete(job, request)

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": server.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "tpro",
                    "max_model_len": engine.context_length,
                    "tpro": {"speculative": draft is not None, "draft": draft.name if draft is not None else None},
                }
            ],
        }

    @app.get("/health")
    async def health() -> dict:
        runner = server.runner
        return {
            "status": "ok",
            "model": server.name,
            "queue": runner.pending,
            "batch": runner.batch.active,
            "kv_cache_bytes": runner.batch.kv_bytes,
            "speculative": draft is not None,
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if config.api_key:
        app.add_middleware(APIKeyMiddleware, key=config.api_key)
    return app
