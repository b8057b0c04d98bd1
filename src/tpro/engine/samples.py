"""K sampled answers per prompt, seeded and resumable: the loop behind difficulty selection (``tpro data
difficulty``), on-policy pairs (``tpro train build-pairs``) and repeated samples in evaluation.

One seed rule (``sample_seed``): sample ``j`` of prompt ``i`` is drawn with ``seed + 1000 * i + j``, so a rerun, a
resumed run or a run over a superset of the prompts draws the same text for the same (i, j). Finished prompts are
appended to a progress JSONL as they complete; a killed run rereads it (a torn last line is ignored) and samples
only what is missing. With ``batch`` > 1 the samples decode together through ``tpro.engine.BatchEngine`` (the K
samples of a prompt share its prefill; prompts are queued a few batches ahead, so the batch stays full while
finished prompts are written in order). A request's text does not depend on what else is in the batch, so a
batched run and a one-at-a-time run of the same seeds agree (greedy: exactly in fp32). This module knows nothing
about what the answers are for (scoring is the caller's).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tpro.io import append_jsonl, iter_jsonl

SEED_STRIDE = 1000  # samples per prompt the seed rule leaves room for


def sample_seed(seed: int, index: int, j: int) -> int:
    """The seed of sample ``j`` of prompt ``index``."""
    return seed + SEED_STRIDE * index + j


def answer_record(done) -> dict:
    """What is kept of one sampled answer (an engine ``Done``)."""
    return {
        "text": done.text,
        "reasoning": done.reasoning,
        "answer": done.answer,
        "tokens": len(done.token_ids),
        "finish_reason": done.finish_reason,
    }


def completion_text(sample: dict, mode: str) -> str:
    """An ``answer_record`` as an assistant message's content: reasoning mode keeps its trace in ``<think>`` tags."""
    if mode == "reasoning":
        return f"<think>\n{sample['reasoning']}\n</think>\n\n{sample['answer']}"
    return sample["answer"] or sample["text"]


def read_progress(path: str | Path | None) -> dict[int, list[dict]]:
    """Samples already written by an earlier run, by prompt index."""
    if path is None or not Path(path).is_file():
        return {}
    return {row["index"]: row["samples"] for row in iter_jsonl(path, on_error="truncated")}


def sample_answers(
    engine,
    prompts: Sequence[Any],
    k: int,
    params,
    mode: str = "direct",
    *,
    progress_path: str | Path | None = None,
    on_prompt: Callable[[int, list[dict]], None] | None = None,
    show_progress: bool = True,
    desc: str = "sampling",
    batch: int = 1,
) -> list[list[dict]]:
    """``k`` answers for each prompt (a string or chat messages) -> per prompt, ``k`` ``answer_record`` dicts.

    ``params`` (``tpro.engine.SamplingParams``) gives the budget and sampling settings; its ``seed`` (None = 0) is
    the base of ``sample_seed``. ``progress_path``: JSONL of finished prompts (``{"index", "samples"}``), read to
    resume and appended to. ``on_prompt(i, samples)`` is called for each newly sampled prompt. ``batch``:
    sequences decoded together (1: one at a time through the engine's own decoder)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    done = read_progress(progress_path)
    base = params.seed or 0
    bar = None
    if show_progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(desc, total=len(prompts), completed=sum(i in done for i in range(len(prompts))))
    todo = [i for i in range(len(prompts)) if i not in done]

    def seeded(i: int) -> list:
        return [replace(params, seed=sample_seed(base, i, j)) for j in range(k)]

    def finished(i: int, samples: list[dict]) -> None:
        if progress_path is not None:
            append_jsonl(progress_path, [{"index": i, "samples": samples}])
        done[i] = samples
        if on_prompt:
            on_prompt(i, samples)
        if bar:
            bar.advance(task)

    try:
        if batch <= 1:
            for i in todo:
                finished(i, [answer_record(engine.complete(prompts[i], p, mode=mode)) for p in seeded(i)])
        else:
            _sample_batched(engine, prompts, todo, k, seeded, mode, batch, finished)
    finally:
        if bar:
            bar.stop()
    return [done[i] for i in range(len(prompts))]


def _sample_batched(engine, prompts, todo: list[int], k: int, seeded, mode: str, batch: int, finished) -> None:
    """``todo``'s prompts through one ``BatchEngine``: about two batches' worth of sequences queued ahead of the
    prompt being collected, so rows freed by finished samples refill at once."""
    from tpro.engine.batch import BatchEngine, last_event

    be = BatchEngine(engine, max_batch=batch)
    cancel = threading.Event()  # set on the way out: an error or a kill stops whatever is still queued
    ahead = max(1, -(-2 * batch // k))  # prompts in flight
    queued: deque[tuple[int, list[Iterator]]] = deque()
    pending = iter(todo)
    try:
        while True:
            while len(queued) < ahead and (i := next(pending, None)) is not None:
                queued.append((i, be.submit_many([prompts[i]] * k, seeded(i), mode=mode, cancel=cancel)))
            if not queued:
                break
            i, streams = queued.popleft()
            finished(i, [answer_record(last_event(s)) for s in streams])
    finally:
        cancel.set()
        be.close()
