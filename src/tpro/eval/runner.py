"""Run a benchmark: generate for every (item, mode, sample), check the answer, append a record per generation.

Two generators share one small interface, ``generate(messages, mode, params) -> Generation``:
  - ``LocalGenerator``: the tpro engine in this process (any model spec, optional EAGLE draft): ``--batch`` generations
    decode together through ``tpro.engine.BatchEngine`` (continuous batching), or one at a time with ``--batch 1``;
  - ``EndpointGenerator``: any OpenAI-compatible server (``tpro serve``, vLLM, SGLang) over httpx, with
    timeouts, retries with exponential backoff (connection errors, 429, 5xx; ``Retry-After`` honoured) and a
    bounded number of requests in flight. It sends ``chat_template_kwargs.enable_thinking`` for the mode and
    reads ``reasoning_content`` when the server splits the trace, else splits it with ``split_reasoning``.

``EvalConfig`` is the run's settings: the ``tpro eval run`` command line, a YAML file (``configs/eval/``) and the
Python API are the same dataclass. The run directory holds ``config.json`` (what was asked, sampling settings
included), ``items.jsonl`` (one record per generation, appended and fsync'd as each finishes, so a killed run
loses at most the generations in flight and ``run`` again resumes without redoing finished ones), then
``summary.json``, ``report.md`` and plots (``tpro.eval.report``). With ``--samples K`` and a temperature, sample j
of item i is seeded by ``tpro.engine.samples.sample_seed`` (the toolkit's one seed rule). Answers are checked in
the main thread (math-verify's timeout needs it).

Multiple-choice benchmarks (``metric: choice``) run either way: ``--scoring generate`` (the default) generates in
each mode and reads the option letter from the answer; ``--scoring loglik`` scores every option's text by the local
model's log-likelihood instead (``tpro.eval.choice.score_jobs``: one record per item, mode "loglik", the same
run directory, resume and report).

This module knows nothing about how a model is loaded or served beyond those two interfaces.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tpro.config import ConfigError, opt
from tpro.engine.samples import sample_seed
from tpro.eval.benchmarks import BenchmarkSpec, Item
from tpro.eval.check import METRICS, extract_for
from tpro.eval.report import budgets_of, modes_of, read_records, write_outputs
from tpro.io import append_jsonl, write_json
from tpro.options import (
    DRAFT_HELP,
    MODE_HELP,
    BatchOptions,
    ModelOptions,
    ModeOrBoth,
    SamplingOptions,
    expand_modes,
)


class RunError(ConfigError):
    """A run cannot start or resume as asked; the message says why and what to do (the CLI exits 2)."""


_SHARED_BUDGET = SamplingOptions.__dataclass_fields__["max_new_tokens"]


@dataclass(kw_only=True)
class GeneratorOptions(ModelOptions, BatchOptions):
    """Who answers: the local engine (``--model``, ``--draft``, ``--batch``) or an OpenAI-compatible ``--endpoint``
    (``--api-model``, ``--concurrency``, ``--timeout``, ``--retries``). Mixed into every evaluation config."""

    # The model is the local engine's; None when --endpoint is given (the embedded default otherwise).
    model: str | None = opt(
        None,
        "Local engine: default (the embedded model; what runs without --endpoint) | hub id | local dir | .gguf file",
        short="-m",
    )
    endpoint: str | None = opt(
        None,
        "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (API key from $TPRO_API_KEY if set)",
        short="-e",
    )
    api_model: str | None = opt(None, "Model name sent to the endpoint (default: its first model)")
    draft: str = opt("none", DRAFT_HELP + " (local engine)")
    concurrency: int = opt(4, "Endpoint requests in flight", min=1)
    timeout: float = opt(600.0, "Seconds per endpoint request", min=1.0)
    retries: int = opt(3, "Endpoint retries (with exponential backoff)", min=0)

    def __post_init__(self):
        super().__post_init__()
        if self.model is not None and self.endpoint is not None:
            raise RunError("give exactly one of --model SPEC (local engine) or --endpoint URL")
        if self.endpoint is None:
            self.model = self.model or "default"
        if self.draft not in ("", "none") and self.endpoint:
            raise RunError("--draft is for the local engine; an endpoint uses whatever draft its server loaded")


class ModeBudgets:
    """``modes`` and ``budget(mode)`` for a config with ``mode`` and two budgets: ``max_new_tokens`` (reasoning: trace
    + answer) and ``max_new_tokens_direct`` (every evaluation config)."""

    @property
    def modes(self) -> list[str]:
        return expand_modes(self.mode)

    def budget(self, mode: str) -> int:
        return self.max_new_tokens_direct if mode == "direct" else self.max_new_tokens


@dataclass(kw_only=True)
class EvalConfig(ModeBudgets, GeneratorOptions, SamplingOptions):
    """``tpro eval run``: the benchmark, the generator (local model or endpoint), the modes, budgets and sampling.
    Saved as ``config.json`` in the run directory and compared on resume."""

    bench: str = opt("t-math", "Benchmark name (tpro eval list) or a path to a YAML spec", short="-b")
    path: str | None = opt(None, "A local JSONL to use instead of the benchmark's source")
    question_field: str | None = opt(None, "Question field name in --path rows")
    answer_field: str | None = opt(None, "Gold answer field name in --path rows")
    id_field: str | None = opt(None, "Id field name in --path rows (default: row numbers)")
    hub: bool = opt(False, "Load from the Hugging Face hub even when a copy ships with tpro")
    limit: int | None = opt(None, "Only the first N items", min=1)
    mode: ModeOrBoth = opt("both", MODE_HELP + "; both: every item in each mode")
    scoring: Literal["generate", "loglik"] = opt(
        "generate",
        "generate: answers generated in each --mode and checked; loglik (multiple-choice benchmarks, local model "
        "only): each option's text scored by log-likelihood, per token and per character too; --mode is ignored",
    )
    samples: int = opt(1, "Generations per item and mode (pass@1, avg@K, maj@K, pass@K)", short="-k", min=1)
    # The shared budget is reasoning mode's (trace + answer); direct mode asks for the answer alone and gets its own,
    # smaller one. Defaults 512 / 256: the README's; docs/benchmarks.md's T-Math run used 256 / 128
    # (configs/eval/t-math.yaml).
    max_new_tokens: int = opt(
        _SHARED_BUDGET.default,
        "Tokens to generate at most per answer in reasoning mode (trace + answer)",
        short="-n",
        min=1,
        aliases=(*_SHARED_BUDGET.metadata["aliases"], "--max-tokens-reasoning"),
    )
    max_new_tokens_direct: int = opt(
        256, "Tokens to generate at most per answer in direct mode", min=1, aliases=("--max-tokens-direct",)
    )
    out: str | None = opt(
        None,
        "Run directory (default runs/eval/BENCH-MODEL). Running again with the same settings resumes it.",
        short="-o",
    )
    progress: bool = opt(True, "A progress bar (--no-progress: one log line per generation)")

    def __post_init__(self):
        super().__post_init__()
        if self.fields and self.path is None:
            raise RunError("--question-field/--answer-field/--id-field apply to --path FILE; give the file too")
        if self.scoring == "loglik" and self.endpoint:
            raise RunError(
                "--scoring loglik reads the log-probability of every option, which needs a local model (--model); "
                "an endpoint only generates: use --scoring generate with it"
            )
        if self.scoring == "loglik" and self.samples > 1:
            raise RunError("--scoring loglik is deterministic: --samples applies to --scoring generate")

    @property
    def modes(self) -> list[str]:
        return ["loglik"] if self.scoring == "loglik" else super().modes

    @property
    def fields(self) -> dict[str, str]:
        """Field-name overrides for --path rows: {"question": "problem"}."""
        pairs = (("question", self.question_field), ("answer", self.answer_field), ("id", self.id_field))
        return {k: v for k, v in pairs if v}

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        who = Path(self.model).name if self.model else (self.api_model or "endpoint")
        return Path("runs") / "eval" / f"{Path(self.bench).stem}-{who}{'-loglik' if self.scoring == 'loglik' else ''}"


def result_settings(config: dict) -> dict:
    """The settings that decide a run's results, from a ``config.json`` of this version or an earlier one
    (``modes``/``max_tokens``/``fields`` keys, ``draft: null``): a resumed run must match them. The rest (limit,
    concurrency, timeouts, output) may change."""
    fields = config.get("fields") or {}
    modes = modes_of(config)
    return {
        "bench": config.get("bench"),
        "path": config.get("path"),
        **{f"{k}_field": config.get(f"{k}_field", fields.get(k)) for k in ("question", "answer", "id")},
        "hub": config.get("hub", False),
        "scoring": config.get("scoring", "generate"),
        "modes": modes,
        "samples": config.get("samples", 1),
        "max_tokens": {m: budgets_of(config).get(m) for m in modes},
        **{k: config.get(k) for k in ("temperature", "top_p", "top_k", "model", "endpoint", "api_model", "dtype")},
        "seed": config.get("seed") or 0,
        "stop": config.get("stop") or [],
        "draft": config.get("draft") or "none",
    }


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
    """The tpro engine in this process. With a ``BatchEngine`` (``batch``), ``generate`` is thread-safe and the run
    loop keeps ``concurrency`` generations in flight, decoding together; without one it runs one at a time."""

    def __init__(self, engine, decoder=None, batch=None):
        self.engine, self.decoder, self.batch = engine, decoder, batch
        self.name = engine.name + (f"+{decoder.name}" if decoder is not None else "")
        self.concurrency = batch.max_batch if batch is not None else 1

    @classmethod
    def from_config(cls, cfg: GeneratorOptions, log: Callable[[str], None] = print) -> LocalGenerator:
        from tpro.engine import Engine

        lm = cfg.load_model(progress=False)
        # Imported lazily: EAGLE is another stage, and a run without a draft must not need it.
        from tpro.eagle import DraftUnavailable, resolve_draft

        try:
            decoder, line = resolve_draft(cfg.draft, lm)
        except DraftUnavailable as e:
            raise RunError(str(e)) from e
        log(line)
        engine = Engine.from_loaded(lm)
        if cfg.batch > 1 and decoder is not None:
            log(f"--batch {cfg.batch}: the draft speculates only while one generation runs; --batch 1 measures it")
        return cls(engine, decoder, cfg.batch_engine(engine) if cfg.batch > 1 else None)

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()

    def generate(self, messages: list[dict], mode: str, params) -> Generation:
        if self.batch is not None:
            from tpro.engine.batch import last_event

            done = last_event(self.batch.submit(messages, params, mode=mode, decoder=self.decoder))
        else:
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
            extra={
                **({"acceptance_length": t.acceptance_length} if self.decoder is not None else {}),
                **({"batch_size": t.batch_size} if self.batch is not None else {}),
            },
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
        if params.stop:
            body["stop"] = params.stop
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


def job_key(rec: dict) -> tuple[str, str, int]:
    return rec["mode"], rec["id"], int(rec["sample"])


def open_run_dir(out: Path, cfg: EvalConfig) -> set[tuple[str, str, int]]:
    """Create ``out`` or resume it: -> keys of finished generations. Refuses a dir made with other settings."""
    out.mkdir(parents=True, exist_ok=True)
    conf_path = out / "config.json"
    new = cfg.to_dict()
    if conf_path.exists():
        old = result_settings(json.loads(conf_path.read_text(encoding="utf-8")))
        now = result_settings(new)
        diff = [k for k in now if old.get(k) != now[k]]
        if diff:
            raise RunError(
                f"{out} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {now[k]!r}' for k in diff)}); "
                "use another --out, or the same settings to resume"
            )
    write_json(conf_path, new)
    return {job_key(r) for r in read_records(out / "items.jsonl")}


# ------------------------------------------------------------------------------------------------ the loop


@dataclass
class Job:
    item: Item
    mode: str
    sample: int
    index: int = 0  # the item's position in the benchmark: with ``sample``, it picks the sample's seed


def plan(items: list[Item], cfg: EvalConfig, done: set) -> list[Job]:
    """Item by item, both modes side by side, so a partial run already compares the modes on the same items."""
    return [
        Job(it, m, k, i)
        for i, it in enumerate(items)
        for m in cfg.modes
        for k in range(cfg.samples)
        if (m, it.id, k) not in done
    ]


def sampling_params(cfg: EvalConfig, job: Job):
    """The mode's budget; when sampling, the seed of sample j of item i is ``sample_seed(seed, i, j)`` (the rule of
    ``tpro.engine.samples``: a resumed or longer run draws the same text for the same item and sample)."""
    seed = None if cfg.temperature == 0 else sample_seed(cfg.seed or 0, job.index, job.sample)
    return cfg.sampling(max_new_tokens=cfg.budget(job.mode), seed=seed)


def record(job: Job, spec: BenchmarkSpec, prompt: str, gen: Generation, generator: str) -> dict:
    n_options = len(job.item.options) or None  # multiple choice: the letters an answer may name
    extracted = extract_for(spec.metric, gen.answer, last_number=gen.finish_reason != "length", n_options=n_options)
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
        **({"subject": job.item.subject, "n_options": n_options} if spec.metric == "choice" else {}),
        **({"extra": gen.extra} if gen.extra else {}),
    }


def run_jobs(
    jobs: list[Job],
    spec: BenchmarkSpec,
    cfg: EvalConfig,
    generator: Generator,
    items_path: Path,
    concurrency: int = 1,
    on_record: Callable[[dict], None] | None = None,
) -> list[tuple[Job, str]]:
    """Generate, check and append every job to ``items_path`` -> failures (job, error). Finished records are on
    disk already (appended and fsync'd one by one: a kill loses at most the generations in flight)."""
    failures: list[tuple[Job, str]] = []

    def one(job: Job) -> tuple[str, Generation]:
        prompt = spec.render(job.item, job.mode)
        return prompt, generator.generate([{"role": "user", "content": prompt}], job.mode, sampling_params(cfg, job))

    def finish(job: Job, fut_result: Callable[[], tuple[str, Generation]]) -> None:
        try:
            prompt, gen = fut_result()
        except EndpointError as e:  # not written: the next run retries it
            failures.append((job, str(e)))
            return
        rec = record(job, spec, prompt, gen, generator.name)
        append_jsonl(items_path, [rec])
        if on_record:
            on_record(rec)

    for job, result in bounded(one, jobs, concurrency):
        finish(job, result)
    return failures


def bounded(fn: Callable[[Any], Any], jobs: list, concurrency: int) -> Iterator[tuple[Any, Callable[[], Any]]]:
    """Run ``fn(job)`` over ``jobs`` with at most ``concurrency`` in flight (threads); -> (job, result getter) in
    the order they finish (the getter re-raises the job's exception). ``concurrency`` 1 runs them in this thread."""
    if concurrency <= 1:
        for job in jobs:
            yield job, (lambda job=job: fn(job))
        return
    pending: dict[Future, Any] = {}
    todo = iter(jobs)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while True:
            while len(pending) < concurrency:
                job = next(todo, None)
                if job is None:
                    break
                pending[pool.submit(fn, job)] = job
            if not pending:
                break
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                yield pending.pop(fut), fut.result


def make_generator(cfg: GeneratorOptions, log: Callable[[str], None] = print) -> Generator:
    """The endpoint client or the local engine that ``cfg`` names."""
    if cfg.endpoint:
        return EndpointGenerator(
            cfg.endpoint,
            cfg.api_model,
            api_key=os.environ.get("TPRO_API_KEY"),
            timeout_s=cfg.timeout,
            retries=cfg.retries,
        )
    return LocalGenerator.from_config(cfg, log)


def generator_concurrency(generator: Generator, cfg: GeneratorOptions) -> int:
    """Generations to keep in flight: ``--concurrency`` for an endpoint, the batch size for the local engine."""
    return cfg.concurrency if isinstance(generator, EndpointGenerator) else getattr(generator, "concurrency", 1)


def run_eval(
    cfg: EvalConfig,
    out: str | Path | None = None,
    *,
    generator: Generator | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) ``cfg`` into ``out`` (default ``cfg.run_dir()``) -> the summary. ``generator``: one built
    already (tests, callers that hold an engine); otherwise from ``cfg.model`` / ``cfg.endpoint``. ``progress``:
    a bar (default ``cfg.progress``) or one log line per generation."""
    from tpro.eval.benchmarks import load_benchmark_with_report

    out = Path(out) if out is not None else cfg.run_dir()
    progress = cfg.progress if progress is None else progress
    spec, items, report = load_benchmark_with_report(cfg.bench, cfg.path, cfg.limit, cfg.fields or None, cfg.hub)
    for line in report.lines():
        log(f"{spec.name}: {line}")
    if cfg.samples > 1 and cfg.temperature == 0:
        log("warning: --samples > 1 with --temperature 0 repeats the same greedy answer")
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
    if cfg.scoring == "loglik" and spec.metric != "choice":
        raise RunError(f"--scoring loglik scores the options of multiple-choice benchmarks; {spec.name} has none")
    done = open_run_dir(out, cfg)
    jobs = plan(items, cfg, done)
    total = len(items) * len(cfg.modes) * cfg.samples
    what = "generations" if cfg.scoring == "generate" else "items scored by log-likelihood"
    log(
        f"{len(items)} items x {len(cfg.modes)} mode(s) x {cfg.samples} sample(s) = {total} {what}; "
        f"{total - len(jobs)} done already, {len(jobs)} to go -> {out}"
    )
    own = generator is None
    items_path = out / "items.jsonl"
    failures: list[tuple[Job, str]] = []
    if jobs and cfg.scoring == "loglik":
        from tpro.eval.choice import score_jobs

        lm = cfg.load_model(progress=False)
        loop = lambda on_record: score_jobs(jobs, spec, lm, items_path, on_record)
        failures = _run_with_progress(jobs, spec, lm.name, progress, log, loop)
    elif jobs:
        generator = generator or make_generator(cfg, log)
        concurrency = generator_concurrency(generator, cfg)
        loop = lambda on_record: run_jobs(jobs, spec, cfg, generator, items_path, concurrency, on_record)
        try:
            failures = _run_with_progress(jobs, spec, generator.name, progress, log, loop)
        finally:
            if own and hasattr(generator, "close"):
                generator.close()
    for job, err in failures:
        log(f"failed {job.item.id} {job.mode} #{job.sample}: {err}")
    if failures:
        log(f"{len(failures)} generation(s) failed and were not recorded; run again to retry them")
    report_path, pngs, summaries = write_outputs([out])
    log(f"report: {report_path}; plots: {', '.join(str(p) for p in pngs)}")
    return summaries[0]


def _run_with_progress(jobs, spec, who: str, progress, log, loop: Callable[[Callable[[dict], None]], list]):
    """``loop(on_record)`` runs the jobs (``run_jobs`` or ``tpro.eval.choice.score_jobs``) -> failures; this shows a
    bar over it, or logs one line per record."""
    counts = {"n": 0, "right": 0}

    def note(rec: dict) -> None:
        counts["n"] += 1
        counts["right"] += rec["correct"]
        if not progress:  # a log file gets one line per generation instead of a bar
            cost = (
                f"{rec['output_tokens']} tokens, {rec['latency_s']:.1f} s, {rec['finish_reason']}"
                if rec["mode"] != "loglik"
                else f"by {', '.join(f'{k} {v}' for k, v in rec['chosen'].items())}, {rec['latency_s']:.1f} s"
            )
            log(
                f"[{counts['n']}/{len(jobs)}] {rec['id']} {rec['mode']} #{rec['sample']}: "
                f"{'right' if rec['correct'] else 'wrong'} (extracted {rec['extracted']!r}, gold {rec['gold']!r}), "
                + cost
            )

    if not progress:
        return loop(note)
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
        task = bar.add_task(f"{spec.name} on {who}", total=len(jobs))

        def tick(rec: dict) -> None:
            note(rec)
            bar.update(task, advance=1, description=f"{spec.name} on {who}: {counts['right']}/{counts['n']} right")

        return loop(tick)
