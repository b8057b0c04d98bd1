"""The data step runner: what every ``tpro data`` step does around its own work, callable from Python.

A step is a config dataclass deriving from ``StepConfig``: its input (``source``), its output (``out``) and its
settings, one class for the command line, a YAML file and Python, plus an ``execute(run)`` method doing the
step's own work. ``run_step(cfg)`` (or ``cfg.run()``) adds what every step shares:

- **manifest**: ``OUT.manifest.json`` records the inputs (sha256, rows), parameters, counts, library versions,
  outputs and the input's own history (``tpro.data.manifest``);
- **skip if done**: when that manifest records the same inputs and parameters and OUT is unchanged, nothing
  runs (``force=True`` reruns);
- **resume**: per-row work (``run.per_row``, or ``tpro.engine.samples`` through ``run.progress_path``) appends
  each finished row to ``OUT.<key>.progress.jsonl``, the key a hash of inputs + parameters, so a killed run
  redoes only what is missing and never reuses rows made with other settings;
- **atomic output**: OUT and side outputs are written to a temporary file renamed over the target
  (``tpro.io``), the manifest last; the progress files go once OUT is complete.

    from tpro.data.dedup import DedupConfig

    result = DedupConfig(source="raw.jsonl", out="dedup.jsonl", threshold=0.8).run()
    result.counts["removed"], result.skipped

This module knows what a step is, not what any step computes.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tpro.config import Config, ConfigError, opt
from tpro.data.io import DataError, read_rows, write_rows
from tpro.data.manifest import Manifest, is_done, manifest_path, read_manifest
from tpro.io import append_jsonl, iter_jsonl


@dataclass(kw_only=True)
class StepConfig(Config):
    """Where a step reads and writes. A step's config adds its settings, ``step`` and ``execute``."""

    source: str | None = opt(
        None, "Input: .jsonl, .parquet, a datasets directory, or hf:<name>[:split]", positional=True
    )
    out: str | None = opt(
        None, "Output file (.jsonl or .parquet); OUT.manifest.json goes beside it [required]", short="-o"
    )
    force: bool = opt(False, "Rerun even if OUT's manifest says it is up to date")

    step: ClassVar[str] = ""  # the step's name in manifests (its command's name)
    # settings that say how to run, not what comes out: left out of the manifest's parameters and key
    run_settings: ClassVar[tuple[str, ...]] = ("source", "out", "force", "threads", "workers", "report")

    def params(self) -> dict:
        """The parameters the manifest records; the same inputs and parameters make an output up to date."""
        return {k: v for k, v in self.to_dict().items() if k not in self.run_settings}

    def inputs(self) -> list[str]:
        """The files whose content decides the output (hashed into the manifest)."""
        return [self.source]

    def execute(self, run: StepRun) -> list[dict] | None:
        """The step's own work -> OUT's rows (None when it wrote OUT itself); counts go into ``run.counts``."""
        raise NotImplementedError

    def run(self, show_progress: bool = True) -> StepResult:
        return run_step(self, show_progress=show_progress)


@dataclass
class StepResult:
    out: Path
    counts: dict
    skipped: bool = False  # OUT was up to date: nothing ran
    manifest: Path | None = None


class StepRun:
    """One run of a step, handed to its ``execute``: the input rows, progress bars, resumable per-row work and
    side outputs, each recorded in the manifest."""

    def __init__(self, cfg: StepConfig, manifest: Manifest, show_progress: bool = True):
        self.cfg, self.manifest, self.show_progress = cfg, manifest, show_progress
        self.out = Path(cfg.out)
        self.counts = manifest.counts
        self.progress_path = self.out.with_name(f"{self.out.name}.{manifest.key}.progress.jsonl")
        self.side: list[tuple[Path, int | None, str]] = []

    def rows(self, limit: int | None = None) -> list[dict]:
        """The input's rows (the first ``limit``)."""
        rows = read_rows(self.cfg.source, limit)
        if not rows:
            raise DataError(f"input {self.cfg.source!r} has no rows")
        self.manifest.inputs[0]["rows"] = len(rows)
        return rows

    def write_side(self, path: str | Path, rows: Sequence[dict], role: str) -> None:
        """A side output (a report) written now and recorded in the manifest."""
        write_rows(path, rows)
        self.record(path, len(rows), role)

    def record(self, path: str | Path, rows: int | None, role: str) -> None:
        """A side output the step wrote itself (a plot, a JSON), for the manifest."""
        self.side.append((Path(path), rows, role))

    @contextmanager
    def bar(self, label: str, total: int, completed: int = 0) -> Iterator[Callable[..., None]]:
        """A progress bar on stderr (none when ``show_progress`` is off); yields ``tick(n=1)``."""
        if not self.show_progress:
            yield lambda n=1: None
            return
        from rich.console import Console
        from rich.progress import MofNCompleteColumn, Progress

        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=Console(stderr=True)) as p:
            task = p.add_task(label, total=total, completed=completed)
            yield lambda n=1: p.advance(task, n)

    def done_rows(self, field: str = "result") -> dict[int, Any]:
        """What an earlier (killed) run of the same step left in the progress file, by row index."""
        if not self.progress_path.is_file():
            return {}
        return {r["index"]: r[field] for r in iter_jsonl(self.progress_path, on_error="truncated")}

    def per_row(self, n: int, work: Callable[[list[int]], list], label: str, batch: int = 1) -> list:
        """``work(indices) -> results`` for rows ``0..n-1``, resumable: finished rows are appended to the
        progress file, and rows found there are not redone. -> every row's result, in order."""
        done = self.done_rows()
        todo = [i for i in range(n) if i not in done]
        self.counts["resumed_rows"] = n - len(todo)
        with self.bar(label, n, n - len(todo)) as tick:
            for s in range(0, len(todo), batch):
                idx = todo[s : s + batch]
                results = work(idx)
                append_jsonl(self.progress_path, [{"index": i, "result": r} for i, r in zip(idx, results)])
                done.update(zip(idx, results))
                tick(len(idx))
        return [done[i] for i in range(n)]


def start_manifest(cfg: StepConfig) -> Manifest:
    """The manifest a run of ``cfg`` starts with (its ``key`` names the progress file)."""
    return Manifest.start(cfg.step, cfg.params(), cfg.inputs())


def run_step(cfg: StepConfig, show_progress: bool = True) -> StepResult:
    """Run a step with its manifest, skip-if-done, resume and atomic output (module docstring)."""
    missing = [name for name, value in (("SOURCE", cfg.source), ("--out", cfg.out)) if not value]
    if missing:
        raise ConfigError(f"missing setting(s): {', '.join(missing)}. Fix: pass them, or set them in --config FILE")
    out = Path(cfg.out)
    m = start_manifest(cfg)
    if not cfg.force and is_done(out, m):
        return StepResult(out, read_manifest(out)["counts"], skipped=True, manifest=manifest_path(out))
    run = StepRun(cfg, m, show_progress)
    rows = cfg.execute(run)
    if rows is not None:
        write_rows(out, rows)
    m.add_output(out, len(rows) if rows is not None else m.counts.get("rows_out"))
    for path, n, role in run.side:
        m.add_output(path, n, role=role)
    if m.inputs[0]["rows"] is None:
        m.inputs[0]["rows"] = m.counts.get("rows_in")
    path = m.write(out)
    for progress in glob.glob(glob.escape(str(out)) + ".*progress.jsonl"):  # OUT is complete: progress is moot
        Path(progress).unlink(missing_ok=True)
    return StepResult(out, m.counts, manifest=path)
