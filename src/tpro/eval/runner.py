"""Run a benchmark: generate for every (item, mode, sample), check the answer, append a record per generation.

Two generators share one small interface, ``generate(messages, mode, params) -> Generation``:
  - ``LocalGenerator``: the tpro engine in this process (any model spec, optional EAGLE draft), one at a time;
  - ``EndpointGenerator``: any OpenAI-compatible server (``tpro serve``, vLLM, SGLang) over httpx, with
    timeouts, retries with exponential backoff (connection errors, 429, 5xx; ``Retry-After`` honoured) and a
    bounded number of requests in flight. It sends ``chat_template_kwargs.enable_thinking`` for the mode and
    reads ``reasoning_content`` when the server splits the trace, else splits it with ``split_reasoning``.

The run directory holds ``config.json`` (what was asked, sampling settings included), ``items.jsonl`` (one record
per generation, appended and flushed as each finishes, so a killed run loses at most the generations in flight
and ``run`` again resumes without redoing finished ones), then ``summary.json``, ``report.md`` and plots
(``tpro.eval.report``). Answers are checked in the main thread (math-verify's timeout needs it).

This module knows nothing about how a model is loaded or served beyond those two interfaces.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tpro.eval.benchmarks import BenchmarkSpec, Item
from tpro.eval.check import METRICS, extract_answer

MODES = ("direct", "reasoning")


class RunError(ValueError):
    """A run cannot start or resume as asked; the message says why and what to do."""


@dataclass
class EvalConfig:
    """What a run asks for; saved as ``config.json`` and compared on resume."""

    bench: str = "t-math"  # a built-in benchmark name or a path to a YAML spec
    path: str | None = None  # a local JSONL instead of the benchmark's own source
    fields: dict = field(default_factory=dict)  # field-name overrides for --path: {"question": "problem"}
    hub: bool = False  # read the hub dataset even when a copy ships with tpro
    limit: int | None = None  # the first N items
    modes: list[str] = field(default_factory=lambda: ["direct", "reasoning"])
    samples: int = 1  # K generations per item and mode: pass@1 (first sample), avg@K, maj@K, pass@K
    max_tokens: dict = field(default_factory=lambda: {"direct": 256, "reasoning": 512})  # per mode
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0  # sample k of an item uses seed + k (sampling only)
    model: str | None = None  # a model spec for the local engine
    endpoint: str | None = None  # base URL of an OpenAI-compatible server (…/v1)
    api_model: str | None = None  # the "model" field sent to the endpoint (default: the server's first model)
    draft: str | None = None  # EAGLE draft directory for the local engine ("default": the shipped head)
    dtype: str = "auto"
    threads: int | None = None
    concurrency: int = 4  # endpoint requests in flight
    timeout_s: float = 600.0  # per endpoint request
    retries: int = 3  # endpoint retries after the first try

    # Settings that change results: a resumed run must match them. The rest (concurrency, timeouts) may change.
    RESULT_KEYS = (
        "bench",
        "path",
        "fields",
        "hub",
        "modes",
        "samples",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "model",
        "endpoint",
        "api_model",
        "draft",
        "dtype",
    )

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise RunError(f"unknown mode(s) {bad or self.modes}; choose direct, reasoning or both")
        if (self.model is None) == (self.endpoint is None):
            raise RunError("give exactly one of --model SPEC (local engine) or --endpoint URL")
        if self.samples < 1:
            raise RunError(f"--samples must be >= 1, got {self.samples}")
        if self.draft and self.endpoint:
            raise RunError("--draft is for the local engine; an endpoint uses whatever draft its server loaded")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    text: str  # the raw output (reasoning included when the server returned it apart: <think>…</think> + answer)
    reasoning: str
    answer: str
    prompt_tokens: int | None
    output_tokens: int | None
    latency_s: float  # request start -> last token (wall clock, queueing at an endpoint included)
    ttft_s: float | None = None
    finish_reason: str = ""
    extra: dict = field(default_factory=dict)


class Generator(Protocol):
    name: str

    def generate(self, messages: list[dict], mode: str, params: Any) -> Generation: ...


# ------------------------------------------------------------------------------------------------ local


class LocalGenerator:
    """The tpro engine in this process; batch 1, so the run loop calls it sequentially."""

    def __init__(self, engine, decoder=None):
        self.engine, self.decoder = engine, decoder
        self.name = engine.name + (f"+{decoder.name}" if decoder is not None else "")

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> LocalGenerator:
        from tpro.engine import Engine
        from tpro.models import load_model

        lm = load_model(cfg.model, dtype=cfg.dtype, threads=cfg.threads, progress=False)
        decoder = None
        if cfg.draft:
            # Imported lazily: EAGLE is another stage, and a run without a draft must not need it.
            from tpro.eagle import default_head_dir, load_decoder

            draft_dir = default_head_dir() if cfg.draft == "default" else Path(cfg.draft)
            if draft_dir is None:
                raise RunError("--draft default: no EAGLE head ships for this model; train one (tpro eagle train)")
            decoder = load_decoder(draft_dir, lm)
        return cls(Engine.from_loaded(lm), decoder)

    def generate(self, messages: list[dict], mode: str, params) -> Generation:
        done = self.engine.complete(messages, params, mode=mode, decoder=self.decoder)
        t = done.telemetry
        prefix = "<think>" if done.prompt is not None and done.prompt.started_in_think else ""
        return Generation(
            text=prefix + done.text,
            reasoning=done.reasoning,
            answer=done.answer,
            prompt_tokens=t.prompt_tokens,
            output_tokens=t.generated_tokens,
            latency_s=t.total_s,
            ttft_s=t.ttft_s,
            finish_reason=done.finish_reason,
            extra={"acceptance_length": t.acceptance_length} if self.decoder is not None else {},
        )


# ------------------------------------------------------------------------------------------------ endpoint


class EndpointError(RuntimeError):
    pass


class EndpointGenerator:
    """Any OpenAI-compatible chat completions endpoint, called from worker threads (httpx.Client is thread-safe)."""

    RETRY_STATUS = {408, 429, 500, 502, 503, 504}

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        transport=None,
    ):
        import httpx

        base = base_url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)), headers=headers, transport=transport
        )
        self.retries, self.backoff_s = retries, backoff_s
        self.model = model or self._first_model()
        self.name = self.model

    def _request(self, method: str, url: str, **kw):
        import httpx

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                r = self.client.request(method, url, **kw)
            except (httpx.TransportError, httpx.TimeoutException) as e:  # refused, reset, timed out: try again
                last, wait_s = e, None
            else:
                if r.status_code < 400:
                    return r
                if r.status_code not in self.RETRY_STATUS:  # our request is wrong: retrying will not help
                    raise EndpointError(f"{method} {url} -> HTTP {r.status_code}: {r.text[:300]}")
                last = EndpointError(f"HTTP {r.status_code}: {r.text[:200]}")
                ra = r.headers.get("retry-after")
                wait_s = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
            if attempt < self.retries:
                # exponential backoff with jitter (1, 2, 4 … s), or what the server asked for
                time.sleep(wait_s if wait_s is not None else self.backoff_s * 2**attempt * (0.5 + random.random()))
        raise EndpointError(f"{method} {url} failed after {self.retries + 1} tries: {last}")

    def _first_model(self) -> str:
        data = self._request("GET", f"{self.base}/models").json().get("data") or []
        if not data:
            raise EndpointError(f"{self.base}/models lists no model; pass --api-model NAME")
        return data[0]["id"]

    def generate(self, messages: list[dict], mode: str, params) -> Generation:
        from tpro.models import split_reasoning

        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": False,
            "chat_template_kwargs": {"enable_thinking": mode == "reasoning"},
        }
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM/SGLang/tpro extension; OpenAI itself has no top_k
        if params.seed is not None:
            body["seed"] = params.seed
        t0 = time.perf_counter()
        data = self._request("POST", f"{self.base}/chat/completions", json=body).json()
        latency = time.perf_counter() - t0
        try:
            choice = data["choices"][0]
            msg = choice["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"unexpected response (no choices[0].message): {str(data)[:300]}") from e
        content = msg.get("content") or ""
        if msg.get("reasoning_content") is not None:
            reasoning, answer = msg["reasoning_content"].strip(), content.strip()
            text = f"<think>{msg['reasoning_content']}</think>{content}"
        else:
            reasoning, answer = split_reasoning(content)
            text = content
        use = data.get("usage") or {}
        return Generation(
            text=text,
            reasoning=reasoning,
            answer=answer,
            prompt_tokens=use.get("prompt_tokens"),
            output_tokens=use.get("completion_tokens"),
            latency_s=latency,
            finish_reason=choice.get("finish_reason") or "",
        )


# ------------------------------------------------------------------------------------------------ run dir


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_records(path: Path) -> list[dict]:
    """Records of ``items.jsonl``; a last line cut by a kill (no newline, bad JSON) is ignored."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def job_key(rec: dict) -> tuple[str, str, int]:
    return rec["mode"], rec["id"], int(rec["sample"])


def open_run_dir(out: Path, cfg: EvalConfig) -> set[tuple[str, str, int]]:
    """Create ``out`` or resume it: -> keys of finished generations. Refuses a dir made with other settings."""
    out.mkdir(parents=True, exist_ok=True)
    conf_path = out / "config.json"
    if conf_path.exists():
        old = json.loads(conf_path.read_text(encoding="utf-8"))
        new = cfg.to_dict()
        diff = [k for k in EvalConfig.RESULT_KEYS if old.get(k) != new.get(k)]
        if diff:
            raise RunError(
                f"{out} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}); "
                "use another --out, or the same settings to resume"
            )
    atomic_write(conf_path, json.dumps(cfg.to_dict(), ensure_ascii=False, indent=2))
    return {job_key(r) for r in read_records(out / "items.jsonl")}


class RecordWriter:
    """Append one JSON line per generation; flush and fsync so a kill keeps every finished line."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"  # killed mid-line: start on a fresh line
        else:
            cut = False
        self.f = open(path, "a", encoding="utf-8")
        if cut:
            self.f.write("\n")

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


# ------------------------------------------------------------------------------------------------ the loop


@dataclass
class Job:
    item: Item
    mode: str
    sample: int


def plan(items: list[Item], cfg: EvalConfig, done: set) -> list[Job]:
    """Item by item, both modes side by side, so a partial run already compares the modes on the same items."""
    return [Job(it, m, k) for it in items for m in cfg.modes for k in range(cfg.samples) if (m, it.id, k) not in done]


def sampling_params(cfg: EvalConfig, mode: str, sample: int):
    from tpro.engine import SamplingParams

    return SamplingParams(
        max_new_tokens=int(cfg.max_tokens[mode]),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        seed=None if cfg.temperature == 0 else cfg.seed + sample,
    )


def record(job: Job, spec: BenchmarkSpec, prompt: str, gen: Generation, generator: str) -> dict:
    extracted = extract_answer(gen.answer, last_number=gen.finish_reason != "length")
    tps = gen.output_tokens / gen.latency_s if gen.output_tokens and gen.latency_s > 0 else None
    return {
        "id": job.item.id,
        "mode": job.mode,
        "sample": job.sample,
        "bench": spec.name,
        "generator": generator,
        "prompt": prompt,
        "output": gen.text,
        "reasoning": gen.reasoning,
        "answer": gen.answer,
        "extracted": extracted,
        "gold": job.item.answer,
        "correct": extracted is not None and METRICS[spec.metric](extracted, job.item.answer),
        "prompt_tokens": gen.prompt_tokens,
        "output_tokens": gen.output_tokens,
        "latency_s": round(gen.latency_s, 4),
        "ttft_s": None if gen.ttft_s is None else round(gen.ttft_s, 4),
        "tokens_per_s": None if tps is None else round(tps, 3),
        "finish_reason": gen.finish_reason,
        "flag": job.item.meta.get("flag"),
        **({"extra": gen.extra} if gen.extra else {}),
    }


def run_jobs(
    jobs: list[Job],
    spec: BenchmarkSpec,
    cfg: EvalConfig,
    generator: Generator,
    writer: RecordWriter,
    concurrency: int = 1,
    on_record: Callable[[dict], None] | None = None,
) -> list[tuple[Job, str]]:
    """Generate, check and append every job -> failures (job, error). Finished records are on disk already."""
    failures: list[tuple[Job, str]] = []

    def one(job: Job) -> tuple[str, Generation]:
        prompt = spec.render(job.item, job.mode)
        return prompt, generator.generate(
            [{"role": "user", "content": prompt}], job.mode, sampling_params(cfg, job.mode, job.sample)
        )

    def finish(job: Job, fut_result: Callable[[], tuple[str, Generation]]) -> None:
        try:
            prompt, gen = fut_result()
        except EndpointError as e:  # not written: the next run retries it
            failures.append((job, str(e)))
            return
        rec = record(job, spec, prompt, gen, generator.name)
        writer.write(rec)
        if on_record:
            on_record(rec)

    if concurrency <= 1:
        for job in jobs:
            finish(job, lambda job=job: one(job))
        return failures
    # Bounded in flight: never more than `concurrency` requests submitted and unfinished.
    pending: dict[Future, Job] = {}
    todo: Iterator[Job] = iter(jobs)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while True:
            while len(pending) < concurrency:
                job = next(todo, None)
                if job is None:
                    break
                pending[pool.submit(one, job)] = job
            if not pending:
                break
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                finish(pending.pop(fut), fut.result)
    return failures


def run_eval(
    cfg: EvalConfig,
    out: Path,
    *,
    generator: Generator | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) ``cfg`` into ``out`` -> the summary. ``generator``: one built already (tests, callers
    that hold an engine); otherwise from ``cfg.model`` / ``cfg.endpoint``."""
    from tpro.eval.benchmarks import load_benchmark_with_report

    out = Path(out)
    spec, items, report = load_benchmark_with_report(cfg.bench, cfg.path, cfg.limit, cfg.fields or None, cfg.hub)
    for line in report.lines():
        log(f"{spec.name}: {line}")
    missing = [m for m in cfg.modes if m not in cfg.max_tokens]
    if missing:
        raise RunError(f"no max tokens for mode(s) {missing}")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_run_dir(out)
    try:
        summary = _run_locked(cfg, out, spec, items, generator, progress, log)
    finally:
        lock.close()
    return summary


def _lock_run_dir(out: Path):
    """Hold an exclusive lock on ``out/.lock`` for the run: two runs appending to one items.jsonl would both do
    the same generations. The lock dies with the process, so a killed run never leaves a stale one."""
    import fcntl

    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunError(f"another tpro eval run is writing to {out}; wait for it or stop it first") from None
    return f


def _run_locked(cfg, out, spec, items, generator, progress, log) -> dict:
    from tpro.eval.report import write_outputs

    done = open_run_dir(out, cfg)
    jobs = plan(items, cfg, done)
    total = len(items) * len(cfg.modes) * cfg.samples
    log(
        f"{len(items)} items x {len(cfg.modes)} mode(s) x {cfg.samples} sample(s) = {total} generations; "
        f"{total - len(jobs)} done already, {len(jobs)} to go -> {out}"
    )
    if jobs:
        if generator is None:
            if cfg.endpoint:
                generator = EndpointGenerator(
                    cfg.endpoint,
                    cfg.api_model,
                    api_key=os.environ.get("TPRO_API_KEY"),
                    timeout_s=cfg.timeout_s,
                    retries=cfg.retries,
                )
            else:
                generator = LocalGenerator.from_config(cfg)
        concurrency = cfg.concurrency if isinstance(generator, EndpointGenerator) else 1
        writer = RecordWriter(out / "items.jsonl")
        try:
            failures = _run_with_progress(jobs, spec, cfg, generator, writer, concurrency, progress, log)
        finally:
            writer.close()
        for job, err in failures:
            log(f"failed {job.item.id} {job.mode} #{job.sample}: {err}")
        if failures:
            log(f"{len(failures)} generation(s) failed and were not recorded; run again to retry them")
    report_path, pngs, summaries = write_outputs([out])
    log(f"report: {report_path}; plots: {', '.join(str(p) for p in pngs)}")
    return summaries[0]


def _run_with_progress(jobs, spec, cfg, generator, writer, concurrency, progress, log):
    counts = {"n": 0, "right": 0}

    def note(rec: dict) -> None:
        counts["n"] += 1
        counts["right"] += rec["correct"]
        if not progress:  # a log file gets one line per generation instead of a bar
            log(
                f"[{counts['n']}/{len(jobs)}] {rec['id']} {rec['mode']} #{rec['sample']}: "
                f"{'right' if rec['correct'] else 'wrong'} (extracted {rec['extracted']!r}, gold {rec['gold']!r}), "
                f"{rec['output_tokens']} tokens, {rec['latency_s']:.1f} s, {rec['finish_reason']}"
            )

    if not progress:
        return run_jobs(jobs, spec, cfg, generator, writer, concurrency, note)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(f"{spec.name} on {generator.name}", total=len(jobs))

        def tick(rec: dict) -> None:
            note(rec)
            bar.update(
                task, advance=1, description=f"{spec.name} on {generator.name}: {counts['right']}/{counts['n']} right"
            )

        return run_jobs(jobs, spec, cfg, generator, writer, concurrency, tick)
