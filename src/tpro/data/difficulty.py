"""Difficulty selection: keep problems the current model solves sometimes but not always.

For each problem, sample N answers with the model through ``tpro.engine.Engine`` (temperature > 0, seeded
per problem and sample so a resumed run draws the same samples), check each with the evaluation harness's
``tpro.eval.check.is_correct``, and keep problems whose pass rate lies in ``[low, high]`` (T-pro's "zone of
proximal development": 0 teaches nothing the model can use, 1 teaches nothing new). Also a histogram of pass
rates (JSON + PNG). This module does not define answer equivalence (``tpro.eval.check`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tpro.data.io import DataError

PROMPT = "{question}\n\nPut the final answer in \\boxed{{}}."


@dataclass
class DifficultyConfig:
    question_field: str = "question"
    answer_field: str = "answer"  # gold answer, compared by tpro.eval.check.is_correct
    samples: int = 4  # answers sampled per problem
    temperature: float = 0.7  # > 0: pass rates need diverse samples
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0  # sample j of problem i uses seed + 1000 * i + j
    low: float = 0.2  # keep pass rates in [low, high]
    high: float = 0.8
    mode: str = "direct"  # direct | reasoning (tpro.models chat modes)
    prompt: str = PROMPT  # {question} is replaced

    def __post_init__(self):
        if self.samples < 1 or self.temperature <= 0:
            raise DataError("difficulty needs --samples >= 1 and --temperature > 0 (pass rates need diverse samples)")
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise DataError(f"the band must satisfy 0 <= low <= high <= 1, got [{self.low}, {self.high}]")


def sample_problem(engine, question: str, gold: str, cfg: DifficultyConfig, index: int) -> dict:
    """N sampled answers for one problem -> ``{"pass_rate", "correct": [...], "tokens": [...]}``."""
    from tpro.engine import SamplingParams
    from tpro.eval.check import extract_answer, is_correct

    correct, extracted, tokens = [], [], []
    messages = [{"role": "user", "content": cfg.prompt.replace("{question}", question)}]
    for j in range(cfg.samples):
        params = SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed + 1000 * index + j,
        )
        done = engine.complete(messages, params, mode=cfg.mode)
        text = done.answer or done.text
        correct.append(bool(is_correct(text, gold)))
        extracted.append(extract_answer(text))
        tokens.append(len(done.token_ids))
    return {"pass_rate": sum(correct) / len(correct), "correct": correct, "extracted": extracted, "tokens": tokens}


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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def select(
    rows: list[dict],
    engine,
    cfg: DifficultyConfig,
    done: dict[int, dict] | None = None,
    on_result: Callable[[int, dict], None] | None = None,
) -> tuple[list[int], list[dict]]:
    """-> (indices of rows in the band, per-row results). ``done``: results from an earlier (killed) run,
    reused as they are; ``on_result(i, result)`` is called for each newly sampled row (progress, resume)."""
    results = []
    for i, row in enumerate(rows):
        if done and i in done:
            res = done[i]
        else:
            for f in (cfg.question_field, cfg.answer_field):
                if f not in row:
                    raise DataError(
                        f"row {i} has no field {f!r} (fields: {sorted(row)}); pass --question-field/--answer-field"
                    )
            res = sample_problem(engine, str(row[cfg.question_field]), str(row[cfg.answer_field]), cfg, i)
            if on_result:
                on_result(i, res)
        results.append(res)
    return [i for i, r in enumerate(results) if in_band(r["pass_rate"], cfg)], results
