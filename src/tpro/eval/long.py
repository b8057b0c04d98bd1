"""``tpro eval long``: where does a model stop finding things in a long Russian document?

Needle-in-a-haystack and multi-key retrieval (``tpro.eval.haystack``) over a grid of prompt lengths x needle
depths, in direct and/or reasoning mode, on the local engine or any OpenAI-compatible endpoint (the same command
measures a GPU server with T-pro at 32k-128k). Lengths are counted with the model's tokenizer (an endpoint: the
``--tokenizer`` given, else the embedded default's, the Qwen vocabulary T-pro shares) and include the chat
template. A length over the model's context stops the run before anything is generated, naming the fix
(``--rope-scaling``).

The run directory holds ``config.json``, ``items.jsonl`` (one record per case and mode, appended and fsync'd as
each finishes: ``run`` again resumes; adding lengths or depths later only runs the new cells), then
``summary.json``, ``report.md`` (accuracy per length x depth, prefill time and prompt tokens per length) and
``plots/heatmap_TASK.png``. Cases are generated from ``--haystack-seed`` alone, so a record holds the case's
coordinates and gold value, not its prompt (``tpro.eval.haystack.build_case`` rebuilds it).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpro.config import opt
from tpro.eval import haystack
from tpro.eval.report import read_records
from tpro.eval.runner import (
    EndpointError,
    Generator,
    GeneratorOptions,
    ModeBudgets,
    RunError,
    _lock_run_dir,
    bounded,
    generator_concurrency,
    make_generator,
)
from tpro.io import append_jsonl, atomic_write, write_json
from tpro.options import MODE_HELP, ModeOrBoth, SamplingOptions


@dataclass(kw_only=True)
class LongConfig(ModeBudgets, GeneratorOptions, SamplingOptions):
    """``tpro eval long``: the grid (tasks, lengths, depths, trials), the haystack, the generator and the budgets."""

    tasks: str = opt(
        "passkey", f"Comma-separated tasks: {', '.join(f'{k} ({t.description})' for k, t in haystack.TASKS.items())}"
    )
    lengths: str = opt("1k,2k,4k,8k,16k", "Prompt lengths in tokens, chat template included (k = 1024)")
    depths: str = opt("0,0.25,0.5,0.75,1", "Needle depths: fractions of the document (0 = start), or a count (5)")
    trials: int = opt(1, "Cases per task, length and depth (each its own text and code)", min=1)
    mode: ModeOrBoth = opt("direct", MODE_HELP + "; both: every case in each mode")
    max_new_tokens: int = opt(512, "Tokens to generate at most in reasoning mode (trace + answer)", short="-n", min=1)
    max_new_tokens_direct: int = opt(32, "Tokens to generate at most in direct mode (the code and a few words)", min=1)
    haystack: str | None = opt(None, "A UTF-8 text file to use as the haystack (default: generated Russian text)")
    haystack_seed: int = opt(0, "Seed of the generated cases (texts, codes, distractor places)")
    tokenizer: str | None = opt(
        None, "Tokenizer that counts lengths for --endpoint (hub id or dir; default: the embedded model's)"
    )
    # 1: a long case's time is its prefill, which is compute-bound on a CPU (batching saves nothing there), and rows
    # of a batch pad to a common width (KV and attention over the padding). Batch where answers are long (reasoning).
    batch: int = opt(
        1,
        "Cases decoded together by the local engine (1 = one at a time; more pays off for long answers)",
        min=1,
        max=64,
    )
    out: str | None = opt(None, "Run directory (default runs/long/MODEL). Run again to resume.", short="-o")
    progress: bool = opt(True, "A progress bar (--no-progress: one log line per case)")

    def __post_init__(self):
        super().__post_init__()
        try:
            self.grid()
        except ValueError as e:
            raise RunError(str(e)) from None
        if self.haystack is not None and not Path(self.haystack).is_file():
            raise RunError(f"--haystack {self.haystack} does not exist; give a UTF-8 text file or leave it out")

    def grid(self) -> tuple[list[str], list[int], list[float]]:
        tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        bad = [t for t in tasks if t not in haystack.TASKS]
        if bad or not tasks:
            raise ValueError(f"unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(haystack.TASKS)}")
        return tasks, haystack.parse_lengths(self.lengths), haystack.parse_depths(self.depths)

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / "long" / (Path(self.model).name if self.model else (self.api_model or "endpoint"))


# what decides a record: a resumed run must agree on these (the grid may grow or shrink)
RESULT_KEYS = (
    "model", "endpoint", "api_model", "dtype", "weights", "rope_scaling", "draft", "haystack", "haystack_seed",
    "tokenizer", "temperature", "top_p", "top_k", "seed", "max_new_tokens", "max_new_tokens_direct",
)  # fmt: skip


@dataclass
class Job:
    task: str
    length: int
    depth: float
    trial: int
    mode: str

    @property
    def key(self) -> tuple:
        return (self.task, self.length, round(self.depth, 4), self.trial, self.mode)


def job_key(rec: dict) -> tuple:
    return (rec["task"], rec["length"], round(rec["depth"], 4), rec["trial"], rec["mode"])


def plan(cfg: LongConfig, done: set) -> list[Job]:
    """Shortest lengths first (a partial run already has the short end of every row; a batch holds like lengths)."""
    tasks, lengths, depths = cfg.grid()
    jobs = [
        Job(t, n, d, k, m) for n in lengths for t in tasks for d in depths for k in range(cfg.trials) for m in cfg.modes
    ]
    return [j for j in jobs if j.key not in done]


# ------------------------------------------------------------------------------------------------ counting


@dataclass
class Counter:
    """Counts tokens the way the model will see them: ``count(text)`` and the chat template's ``overhead(mode)``."""

    tokenizer: object

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def overhead(self, mode: str) -> int:
        from tpro.models.chat import build_prompt

        return len(build_prompt(self.tokenizer, [{"role": "user", "content": ""}], mode).input_ids)


def _counter(cfg: LongConfig, generator: Generator) -> Counter:
    engine = getattr(generator, "engine", None)
    if engine is not None:
        return Counter(engine.tokenizer)
    from transformers import AutoTokenizer

    from tpro.models.loading import checkpoint_source

    return Counter(AutoTokenizer.from_pretrained(cfg.tokenizer or checkpoint_source("default", progress=False)))


def context_of(generator: Generator) -> int | None:
    """The context the generator accepts: the local engine's (RoPE scaling included), or what an endpoint's
    ``/models`` says (``max_model_len``: tpro serve and vLLM report it); None when unknown."""
    engine = getattr(generator, "engine", None)
    if engine is not None:
        return engine.context_length
    client, base = getattr(generator, "client", None), getattr(generator, "base", None)
    if client is None:
        return None
    try:
        data = client.get(f"{base}/models").json().get("data") or []
        row = next((m for m in data if m.get("id") == generator.name), data[0] if data else {})
        return int(row["max_model_len"]) if row.get("max_model_len") else None
    except Exception:  # noqa: BLE001 - the context is advisory; the server still answers an over-long prompt
        return None


def check_context(lengths: list[int], budget: int, context: int | None) -> None:
    """Refuse a grid whose longest prompt plus answer budget is over ``context``, naming the fix."""
    if context is None:
        return
    over = [n for n in lengths if n + budget > context]
    if over:
        raise RunError(
            f"length(s) {', '.join(map(str, over))} + {budget} answer tokens are over the model's context of "
            f"{context} tokens. Fix: drop them from --lengths, or extend the context with --rope-scaling yarn:F "
            f"(e.g. yarn:2 doubles it; local models only, an endpoint's server sets its own)"
        )


# ------------------------------------------------------------------------------------------------ the run


def record(job: Job, case: haystack.Case, gen, generator: str) -> dict:
    return {
        "task": job.task,
        "length": job.length,
        "depth": job.depth,
        "trial": job.trial,
        "mode": job.mode,
        "generator": generator,
        "gold": case.gold,
        "distractors": case.distractors,
        "answer": gen.answer,
        "output": gen.text,
        "correct": haystack.score(gen.answer, case.gold, case.distractors),
        "prompt_tokens": gen.prompt_tokens,
        "haystack_tokens": case.haystack_tokens,
        "output_tokens": gen.output_tokens,
        "latency_s": round(gen.latency_s, 4),
        "ttft_s": None if gen.ttft_s is None else round(gen.ttft_s, 4),
        "finish_reason": gen.finish_reason,
    }


def open_run_dir(out: Path, cfg: LongConfig) -> set:
    out.mkdir(parents=True, exist_ok=True)
    conf_path, new = out / "config.json", cfg.to_dict()
    if conf_path.exists():
        old = json.loads(conf_path.read_text(encoding="utf-8"))
        diff = [k for k in RESULT_KEYS if old.get(k) != new.get(k)]
        if diff:
            raise RunError(
                f"{out} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}); "
                "use another --out, or the same settings to resume"
            )
    write_json(conf_path, new)
    return {job_key(r) for r in read_records(out / "items.jsonl")}


def run_long(
    cfg: LongConfig,
    out: str | Path | None = None,
    *,
    generator: Generator | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the grid of ``cfg`` into ``out`` -> the summary (also written as summary.json, report.md
    and heatmaps)."""
    out = Path(out) if out is not None else cfg.run_dir()
    progress = cfg.progress if progress is None else progress
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_run_dir(out)
    try:
        done = open_run_dir(out, cfg)
        jobs = plan(cfg, done)
        tasks, lengths, depths = cfg.grid()
        total = len(tasks) * len(lengths) * len(depths) * cfg.trials * len(cfg.modes)
        log(f"{total} cases ({len(tasks)} task(s) x {len(lengths)} lengths x {len(depths)} depths x {cfg.trials} "
            f"trial(s) x {len(cfg.modes)} mode(s)); {total - len(jobs)} done already, {len(jobs)} to go -> {out}")  # fmt: skip
        if jobs:
            own = generator is None
            generator = generator or make_generator(cfg, log)
            try:
                _run_jobs(cfg, jobs, generator, out / "items.jsonl", progress, log)
            finally:
                if own and hasattr(generator, "close"):
                    generator.close()
        summary = write_outputs(out)
    finally:
        lock.close()
    return summary


def _run_jobs(cfg: LongConfig, jobs: list[Job], generator: Generator, items: Path, progress: bool, log) -> None:
    counter = _counter(cfg, generator)
    check_context(sorted({j.length for j in jobs}), max(cfg.budget(m) for m in cfg.modes), context_of(generator))
    overhead = {m: counter.overhead(m) for m in cfg.modes}

    def one(job: Job):
        case = haystack.build_case(
            job.task, job.length, job.depth, job.trial, counter.count,
            seed=cfg.haystack_seed, overhead=overhead[job.mode], haystack=cfg.haystack,
        )  # fmt: skip
        params = cfg.sampling(max_new_tokens=cfg.budget(job.mode))
        return case, generator.generate([{"role": "user", "content": case.prompt}], job.mode, params)

    failures, right, n = [], 0, 0
    bar = _bar(progress, len(jobs), f"long context on {generator.name}")
    try:
        for job, result in bounded(one, jobs, generator_concurrency(generator, cfg)):
            try:
                case, gen = result()
            except (EndpointError, ValueError) as e:  # not written: the next run retries it
                failures.append((job, str(e)))
                continue
            rec = record(job, case, gen, generator.name)
            append_jsonl(items, [rec])
            n, right = n + 1, right + rec["correct"]
            if bar is not None:
                bar[0].update(bar[1], advance=1, description=f"long context on {generator.name}: {right}/{n} found")
            else:
                log(
                    f"[{n}/{len(jobs)}] {job.task} {job.length} tokens depth {job.depth:g} {job.mode}: "
                    f"{'found' if rec['correct'] else 'missed'} (gold {case.gold}, answer {gen.answer[:60]!r}), "
                    f"prompt {gen.prompt_tokens} tokens, {gen.latency_s:.1f} s"
                )
    finally:
        if bar is not None:
            bar[0].stop()
    for job, err in failures:
        log(f"failed {job.task} {job.length} depth {job.depth:g} {job.mode}: {err}")
    if failures:
        log(f"{len(failures)} case(s) failed and were not recorded; run again to retry them")


def _bar(progress: bool, total: int, what: str):
    if not progress:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    p.start()
    return p, p.add_task(what, total=total)


# ------------------------------------------------------------------------------------------------ report


def summarize(records: list[dict]) -> dict:
    """Per task and mode: accuracy per (length, depth) cell and per length; prompt tokens and time to first token
    (the prefill, on the local engine) per length."""
    out: dict = {"cases": len(records), "accuracy": None, "tasks": {}}
    if not records:
        return out
    out["accuracy"] = sum(r["correct"] for r in records) / len(records)
    for task in sorted({r["task"] for r in records}):
        for mode in sorted({r["mode"] for r in records if r["task"] == task}):
            rs = [r for r in records if r["task"] == task and r["mode"] == mode]
            lengths = sorted({r["length"] for r in rs})
            depths = sorted({round(r["depth"], 4) for r in rs})
            cells = {}
            for n in lengths:
                for d in depths:
                    c = [r["correct"] for r in rs if r["length"] == n and round(r["depth"], 4) == d]
                    if c:
                        cells[f"{n}|{d:g}"] = {"accuracy": sum(c) / len(c), "n": len(c)}
            per_length = {}
            for n in lengths:
                rn = [r for r in rs if r["length"] == n]
                ttft = [r["ttft_s"] for r in rn if r.get("ttft_s") is not None]
                per_length[str(n)] = {
                    "accuracy": sum(r["correct"] for r in rn) / len(rn),
                    "n": len(rn),
                    "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in rn if r["prompt_tokens"])
                    if any(r["prompt_tokens"] for r in rn)
                    else None,
                    "ttft_s": statistics.median(ttft) if ttft else None,
                    "latency_s": statistics.median(r["latency_s"] for r in rn),
                }
            out["tasks"][f"{task}/{mode}"] = {
                "task": task,
                "mode": mode,
                "accuracy": sum(r["correct"] for r in rs) / len(rs),
                "lengths": lengths,
                "depths": depths,
                "cells": cells,
                "per_length": per_length,
            }
    return out


def markdown(summary: dict, config: dict) -> str:
    lines = [
        f"# Long-context retrieval: {config.get('model') or config.get('api_model') or config.get('endpoint')}",
        "",
        f"{summary['cases']} cases; overall {100 * (summary['accuracy'] or 0):.1f}% found. Settings: dtype "
        f"{config.get('dtype')}, weights {config.get('weights')}, RoPE scaling {config.get('rope_scaling') or 'none'}, "
        f"haystack {config.get('haystack') or 'generated Russian text'} (seed {config.get('haystack_seed')}).",
        "",
    ]
    for key, t in summary["tasks"].items():
        lines += [f"## {key}: {100 * t['accuracy']:.1f}% found", ""]
        head = (
            "| length (tokens) | "
            + " | ".join(f"depth {d:g}" for d in t["depths"])
            + " | all | prompt tokens | TTFT p50, s |"
        )
        lines += [head, "|" + "---|" * (len(t["depths"]) + 4)]
        for n in t["lengths"]:
            row = [str(n)]
            for d in t["depths"]:
                c = t["cells"].get(f"{n}|{d:g}")
                row.append("–" if c is None else f"{100 * c['accuracy']:.0f}%" + (f" ({c['n']})" if c["n"] > 1 else ""))
            pl = t["per_length"][str(n)]
            row.append(f"{100 * pl['accuracy']:.0f}%")
            row.append("–" if pl["prompt_tokens"] is None else f"{pl['prompt_tokens']:.0f}")
            row.append("–" if pl["ttft_s"] is None else f"{pl['ttft_s']:.1f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def heatmaps(summary: dict, out_dir: Path) -> list[Path]:
    """plots/heatmap_TASK.png: accuracy per length (rows) x depth (columns), one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in sorted({t["task"] for t in summary["tasks"].values()}):
        panels = [t for t in summary["tasks"].values() if t["task"] == task]
        fig, axes = plt.subplots(1, len(panels), figsize=(1.6 + 1.1 * len(panels[0]["depths"]) * len(panels), 3.8),
                                 squeeze=False)  # fmt: skip
        for ax, t in zip(axes[0], panels):
            grid = [
                [(t["cells"].get(f"{n}|{d:g}") or {}).get("accuracy", float("nan")) for d in t["depths"]]
                for n in t["lengths"]
            ]
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(t["depths"])), [f"{d:g}" for d in t["depths"]])
            ax.set_yticks(
                range(len(t["lengths"])), [f"{n // 1024}k" if n % 1024 == 0 else str(n) for n in t["lengths"]]
            )
            ax.set_xlabel("needle depth (0 = start)")
            ax.set_ylabel("prompt tokens")
            ax.set_title(f"{task}, {t['mode']}: {100 * t['accuracy']:.0f}% found")
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    if v == v:  # not NaN
                        ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), label="found")
        p = out_dir / f"heatmap_{task}.png"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


def write_outputs(run_dir: Path) -> dict:
    """summary.json, report.md and the heatmaps of a (possibly partial) run directory -> the summary."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    summary = summarize(read_records(run_dir / "items.jsonl"))
    summary["written"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(run_dir / "summary.json", summary)
    pngs = heatmaps(summary, run_dir / "plots") if summary["cases"] else []
    text = markdown(summary, config) + "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in pngs) + "\n"
    atomic_write(run_dir / "report.md", text)
    return summary
