"""Difficulty selection: keep problems the current model solves sometimes but not always.

For each problem, sample N answers with the model (``tpro.engine.samples.sample_answers``: temperature > 0,
sample ``j`` of problem ``i`` seeded with ``seed + 1000 * i + j``, so a resumed run draws the same samples),
check each with the evaluation harness's ``tpro.eval.check.is_correct``, and keep problems whose pass rate lies
in ``[low, high]`` (T-pro's "zone of proximal development": 0 teaches nothing the model can use, 1 teaches
nothing new). Also a histogram of pass rates (JSON + PNG). This module does not define answer equivalence
(``tpro.eval.check`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tpro.config import like, opt
from tpro.data.io import DataError
from tpro.data.steps import StepConfig, StepRun
from tpro.io import atomic_path, write_json
from tpro.options import MODE_HELP, BatchOptions, Mode, ModelOptions, SamplingOptions

PROMPT = "{question}\n\nPut the final answer in \\boxed{{}}."


@dataclass(kw_only=True)
class DifficultyConfig(StepConfig, ModelOptions, SamplingOptions, BatchOptions):
    """``tpro data difficulty``: the problems' fields, samples per problem, how to sample, the band kept."""

    step: ClassVar[str] = "difficulty"

    question_field: str = opt("question", "Field holding the problem")
    answer_field: str = opt("answer", "Gold answer, checked with tpro.eval.check.is_correct")
    samples: int = opt(4, "Answers sampled per problem", min=1)
    band: str = opt("0.2,0.8", "LOW,HIGH: keep problems with pass rate in [LOW, HIGH]")
    mode: Mode = opt("direct", MODE_HELP, flags={"--reasoning": "reasoning"})
    limit: int | None = opt(None, "First N problems only", min=1)
    prompt: str = opt(PROMPT, "The user message; {question} is replaced by the problem")
    # The recipe's sampling, not the shared greedy one: pass rates need diverse samples (temperature > 0) that a
    # resumed run draws again (a fixed seed).
    temperature: float = like(SamplingOptions, "temperature", 0.7)
    top_p: float = like(SamplingOptions, "top_p", 0.95)
    seed: int | None = like(SamplingOptions, "seed", 0)

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise DataError("difficulty needs --temperature > 0 (pass rates need diverse samples)")
        low, high = self.low, self.high
        if not 0.0 <= low <= high <= 1.0:
            raise DataError(f"the band must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")

    @property
    def low(self) -> float:
        return _band(self.band)[0]

    @property
    def high(self) -> float:
        return _band(self.band)[1]

    def execute(self, run: StepRun) -> list[dict]:
        rows = run.rows(self.limit)
        check_fields(rows, self)
        from tpro.engine import Engine

        engine = Engine.from_loaded(self.load_model(progress=run.show_progress))
        run.counts["resumed_rows"] = len(run.done_rows("samples"))
        with run.bar("difficulty", len(rows), run.counts["resumed_rows"]) as tick:
            _, results = select(rows, engine, self, progress_path=run.progress_path, on_prompt=lambda i, s: tick())
        rates = [r["pass_rate"] for r in results]
        hist = histogram(rates, self.samples)
        hist_json, hist_png = (run.out.with_name(f"{run.out.name}.histogram.{ext}") for ext in ("json", "png"))
        pass_rates = {rows[i].get("id", i): rates[i] for i in range(len(rows))}
        write_json(
            hist_json,
            {"samples": self.samples, "band": [self.low, self.high], "histogram": hist, "pass_rates": pass_rates},
        )
        plot_histogram(hist, self, hist_png)
        run.record(hist_json, None, "histogram")
        run.record(hist_png, None, "plot")
        kept = [{**rows[i], "pass_rate": rates[i]} for i in range(len(rows)) if in_band(rates[i], self)]
        mean = round(sum(rates) / len(rates), 4)
        run.counts.update(rows_in=len(rows), rows_out=len(kept), histogram=hist, mean_pass_rate=mean)
        return kept


def _band(band: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in band.split(","))
    except ValueError:
        raise DataError(f"--band wants LOW,HIGH (e.g. 0.2,0.8), got {band!r}") from None
    return low, high


def select(
    rows: list[dict], engine, cfg: DifficultyConfig, progress_path: str | Path | None = None, on_prompt=None
) -> tuple[list[int], list[dict]]:
    """-> (indices of rows in the band, per-row ``score`` results). ``cfg.samples`` answers per row through
    ``tpro.engine.samples.sample_answers``: ``progress_path`` resumes a killed run, ``on_prompt(i, samples)``
    is called for each newly sampled row."""
    from tpro.engine.samples import sample_answers

    check_fields(rows, cfg)
    prompts = [
        [{"role": "user", "content": cfg.prompt.replace("{question}", str(r[cfg.question_field]))}] for r in rows
    ]
    samples = sample_answers(
        engine,
        prompts,
        cfg.samples,
        cfg.sampling(),
        cfg.mode,
        progress_path=progress_path,
        on_prompt=on_prompt,
        show_progress=False,
        batch=cfg.batch,
    )
    results = [score(s, str(r[cfg.answer_field])) for s, r in zip(samples, rows)]
    return [i for i, r in enumerate(results) if in_band(r["pass_rate"], cfg)], results


def check_fields(rows: list[dict], cfg: DifficultyConfig) -> None:
    for i, row in enumerate(rows):
        for f in (cfg.question_field, cfg.answer_field):
            if f not in row:
                raise DataError(
                    f"row {i} has no field {f!r} (fields: {sorted(row)}); pass --question-field/--answer-field"
                )


def score(samples: list[dict], gold: str) -> dict:
    """One problem's sampled answers (``tpro.engine.samples.answer_record``) checked against ``gold`` ->
    ``{"pass_rate", "correct", "extracted", "tokens"}``."""
    from tpro.eval.check import extract_answer, is_correct

    texts = [s["answer"] or s["text"] for s in samples]
    correct = [bool(is_correct(t, gold)) for t in texts]
    return {
        "pass_rate": sum(correct) / len(correct),
        "correct": correct,
        "extracted": [extract_answer(t) for t in texts],
        "tokens": [s["tokens"] for s in samples],
    }


def in_band(rate: float, cfg: DifficultyConfig) -> bool:
    return cfg.low - 1e-9 <= rate <= cfg.high + 1e-9


def histogram(rates: list[float], samples: int) -> dict:
    """Counts per possible pass rate k/N (N = samples per problem)."""
    counts = {f"{k}/{samples}": 0 for k in range(samples + 1)}
    for r in rates:
        counts[f"{round(r * samples)}/{samples}"] += 1
    return counts


def plot_histogram(hist: dict, cfg: DifficultyConfig, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(hist)
    rates = [int(k.split("/")[0]) / cfg.samples for k in labels]
    colors = ["tab:green" if in_band(r, cfg) else "tab:gray" for r in rates]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, list(hist.values()), color=colors)
    ax.set_xlabel(f"pass rate (correct of {cfg.samples} samples)")
    ax.set_ylabel("problems")
    ax.set_title(f"difficulty: kept band [{cfg.low}, {cfg.high}] in green")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
