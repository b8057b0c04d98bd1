"""One table across benchmarks, as the paper's tables: math, multiple-choice and arena runs of several models side
by side, each cell a score with what it cost (mean output tokens, mean latency), per model and mode.

A row is a (model, mode) pair; a column is a benchmark. Where the rows come from:
  - an eval run (``tpro eval run --out DIR``: ``config.json`` + ``items.jsonl``): per mode its summary's
    ``score`` (``tpro.eval.report.headline``: pass@1 for math, macro accuracy for multiple choice); the model is
    the run's generator (the endpoint's model name or the local model), the column the benchmark name;
  - an arena run (``tpro eval arena --out DIR``: ``leaderboard.json`` + ``answers/``): per contestant
    ``"NAME [mode]"`` its win rate against the arena's baseline in percent (arena-hard's "score", as ru_llm_arena
    publishes it), the style-controlled one when the run fitted it; the model is the answers' generator (published
    answers: the contestant's name), the column ``arena (judge J, vs B)``; tokens and latency from its answers.

Models are matched across runs by that name, so a model evaluated through one endpoint lines up by itself; a
local model path and an endpoint name of the same model do not (name the arena contestant with ``--name``).

This module reads run directories; it knows nothing about models, judges or checking.
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tpro.io import read_jsonl

_CONTESTANT = re.compile(r"^(?P<name>.*) \[(?P<mode>[^\]]+)\]$")


@dataclass
class Cell:
    model: str
    mode: str
    bench: str
    score: float | None  # 0-100: accuracy in percent or win rate vs the baseline in percent
    lower: float | None = None  # 95% interval where the run has one (arena)
    upper: float | None = None
    tokens: float | None = None  # mean output tokens per answer
    latency_s: float | None = None  # mean seconds per answer
    n: int = 0  # items or judged questions


def kind_of(run_dir: Path) -> str:
    """``eval`` | ``arena``; anything else is an error naming what a run directory holds."""
    if (run_dir / "leaderboard.json").is_file():
        return "arena"
    if (run_dir / "config.json").is_file():
        return "eval"
    raise FileNotFoundError(
        f"{run_dir}: neither an eval run (config.json from tpro eval run --out) nor an arena run "
        "(leaderboard.json from tpro eval arena --out)"
    )


def eval_cells(summary: dict) -> list[Cell]:
    """Cells of one eval run's summary (``tpro.eval.report.summarize``)."""
    from tpro.eval.report import headline

    out = []
    for mode, m in summary["modes"].items():
        score = headline(m)
        out.append(
            Cell(
                model=str(summary["generator"]),
                mode=mode,
                bench=str(summary["bench"]),
                score=None if score is None else 100 * score,
                tokens=m.get("mean_output_tokens"),
                latency_s=m.get("mean_latency_s"),
                n=m.get("items", 0),
            )
        )
    return out


def _answer_stats(run_dir: Path) -> dict[str, dict]:
    """{contestant: {generator, tokens, latency_s}} from the arena run's own answers (``answers/*.jsonl``)."""
    stats: dict[str, dict] = {}
    for f in sorted((run_dir / "answers").glob("*.jsonl")) if (run_dir / "answers").is_dir() else []:
        rows = read_jsonl(f, on_error="skip")
        by: dict[str, list[dict]] = {}
        for r in rows:
            by.setdefault(r.get("model", f.stem), []).append(r)
        for model, rs in by.items():
            tok = [r["output_tokens"] for r in rs if r.get("output_tokens") is not None]
            lat = [r["latency_s"] for r in rs if r.get("latency_s") is not None]
            stats[model] = {
                "generator": next((r["generator"] for r in rs if r.get("generator")), None),
                "tokens": statistics.fmean(tok) if tok else None,
                "latency_s": statistics.fmean(lat) if lat else None,
            }
    return stats


def arena_cells(run_dir: Path) -> list[Cell]:
    """Cells of one arena run: each contestant but the baseline, its win rate vs the baseline."""
    s = json.loads((run_dir / "leaderboard.json").read_text(encoding="utf-8"))
    rows = s.get("style_controlled") or s.get("plain") or []
    baseline = s.get("baseline")
    what = "style-controlled" if s.get("style_controlled") else "plain"
    bench = f"arena ({s.get('judge')}, vs {baseline}, {what})"
    stats = _answer_stats(run_dir)
    contestants = s.get("contestants", {})
    out = []
    for r in rows:
        if r["model"] == baseline or r.get("win_rate") is None:
            continue
        m = _CONTESTANT.match(r["model"])
        name, mode = (m["name"], m["mode"]) if m else (r["model"], "direct")
        st = stats.get(r["model"], {})
        out.append(
            Cell(
                model=st.get("generator") or name,
                mode=mode,
                bench=bench,
                score=100 * r["win_rate"],
                lower=100 * r["win_rate_lower"],
                upper=100 * r["win_rate_upper"],
                tokens=st.get("tokens"),
                latency_s=st.get("latency_s"),
                n=contestants.get(r["model"], {}).get("questions", 0),
            )
        )
    return out


def benches(cells: list[Cell]) -> list[str]:
    return list(dict.fromkeys(c.bench for c in cells))


def _fmt(c: Cell | None) -> str:
    if c is None or c.score is None:
        return "–"
    text = f"{c.score:.1f}"
    if c.lower is not None and c.upper is not None:
        text += f" ({c.lower:.1f}–{c.upper:.1f})"
    cost = []
    if c.tokens is not None:
        cost.append(f"{c.tokens:.0f} tok")
    if c.latency_s is not None:
        cost.append(f"{c.latency_s:.1f} s")
    return text + (f" · {', '.join(cost)}" if cost else "")


def markdown(cells: list[Cell]) -> str:
    """Models x modes down, benchmarks across; each cell ``score (interval) · tokens, latency``."""
    cols = benches(cells)
    index = {(c.model, c.mode, c.bench): c for c in cells}
    rows = list(dict.fromkeys((c.model, c.mode) for c in cells))
    lines = [
        "## Across benchmarks",
        "",
        "Score in percent (accuracy; arena: win rate vs its baseline with the 95% bootstrap interval) · mean output "
        "tokens, mean latency per answer.",
        "",
        "| model | mode | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for model, mode in rows:
        lines.append(f"| {model} | {mode} | " + " | ".join(_fmt(index.get((model, mode, b))) for b in cols) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: list[Cell], path: Path) -> Path | None:
    """score_vs_tokens.png: one panel per benchmark, a point per model and mode (score against mean tokens)."""
    points = [c for c in cells if c.score is not None and c.tokens is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = benches(points)
    colors = {"direct": "tab:blue", "reasoning": "tab:orange"}
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 4.2), squeeze=False)
    for ax, bench in zip(axes[0], cols):
        here = [c for c in points if c.bench == bench]
        several = len({c.model for c in here}) > 1  # one model: the legend's modes say it all
        for c in here:
            yerr = None
            if c.lower is not None and c.upper is not None:
                yerr = [[max(0.0, c.score - c.lower)], [max(0.0, c.upper - c.score)]]
            seen = ax.get_legend_handles_labels()[1]
            ax.errorbar(c.tokens, c.score, yerr=yerr, fmt="o", color=colors.get(c.mode, "gray"), capsize=3,
                        label=None if c.mode in seen else c.mode)  # fmt: skip
            if several:
                ax.annotate(c.model[:24], (c.tokens, c.score), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_title("\n".join(textwrap.wrap(bench, 40)), fontsize=8)
        ax.set_xlabel("mean output tokens")
        ax.set_ylabel("score, %")
        ax.set_ylim(-2, 102)
        ax.margins(x=0.15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
