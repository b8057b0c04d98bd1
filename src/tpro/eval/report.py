"""Metrics, the markdown report and the plots of one or more run directories.

Per run and mode, from ``items.jsonl`` alone (so a partial or killed run can be reported too):
  - pass@1: accuracy of sample 0 of each item (greedy runs: the accuracy);
  - avg@K: mean accuracy over all K samples of each item, averaged over items (the paper's AIME avg@8);
  - maj@K: accuracy of the most frequent extracted answer per item (equal numbers vote together);
  - pass@K: an item counts when any of its K samples is right;
  - mean output tokens, mean/median/p90 latency, tokens/s (all tokens / all seconds), accuracy per 1k output
    tokens (avg@K / mean tokens × 1000: what a point of accuracy costs), truncated and no-answer shares.
The report puts modes and runs side by side and says, where a run has both modes, what the reasoning trace
bought (accuracy) for what it cost (tokens, latency), and on which items the modes disagree.
Multiple choice adds, where records carry a subject, accuracy per subject and the macro accuracy (the mean over
subjects, each subject weighted alike, beside the accuracy over all items), and for ``--scoring loglik`` runs
(mode "loglik") the accuracy under each normalisation (sum, per token, per character).

This module reads run directories (``tpro.eval.runner`` writes them and calls it, never the other way); it knows
nothing about models or endpoints.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tpro.config import Config, opt
from tpro.eval.check import clean, number_values
from tpro.io import atomic_write, read_jsonl, write_json
from tpro.options import expand_modes


@dataclass(kw_only=True)
class ReportConfig(Config):
    """``tpro eval report``: which runs to compare and where the report goes."""

    run_dirs: list[str] = opt(
        [],
        "One or more run directories: tpro eval run --out (math, multiple choice) or tpro eval arena --out",
        positional=True,
    )
    out: str | None = opt(
        None,
        "Where to write report.md and plots/ (default: the run dir when there is one run; required for several)",
        short="-o",
    )
    recheck: bool = opt(False, "Extract and check the stored answers again with the current checker (no generation)")


def read_records(path: str | Path) -> list[dict]:
    """Records of ``items.jsonl`` (none when it does not exist yet); a bad line (the last one, cut by a kill) is
    skipped."""
    path = Path(path)
    return read_jsonl(path, on_error="skip") if path.is_file() else []


def modes_of(config: dict) -> list[str]:
    """A run's modes from its ``config.json`` (``mode: both``; before the one vocabulary, ``modes: [...]``;
    ``scoring: loglik``: the one mode "loglik")."""
    if config.get("scoring") == "loglik":
        return ["loglik"]
    return list(config["modes"]) if "modes" in config else expand_modes(config.get("mode", "both"))


def budgets_of(config: dict) -> dict[str, int]:
    """Max new tokens per mode from a ``config.json`` (earlier runs stored ``max_tokens: {mode: n}``)."""
    if "max_tokens" in config:
        return dict(config["max_tokens"])
    return {"direct": config.get("max_new_tokens_direct"), "reasoning": config.get("max_new_tokens")}


def load_run(run_dir: Path, recheck: bool = False) -> tuple[dict, list[dict]]:
    """-> (config, records). ``recheck``: extract and compare again with today's checker (after a checker fix,
    without generating again)."""
    from tpro.eval.benchmarks import BenchmarkError, load_spec
    from tpro.eval.check import METRICS, extract_for

    run_dir = Path(run_dir)
    conf = run_dir / "config.json"
    if not conf.exists():
        raise FileNotFoundError(f"{run_dir}: no config.json, not an eval run directory (tpro eval run --out DIR)")
    config = json.loads(conf.read_text(encoding="utf-8"))
    metric = "math"
    if recheck:
        try:
            metric = load_spec(config["bench"]).metric
        except BenchmarkError:  # a user spec that moved: the default comparison
            pass
    seen, records = set(), []
    for r in read_records(run_dir / "items.jsonl"):  # the first record of a generation wins
        key = (r["mode"], r["id"], r["sample"])
        if key not in seen:
            seen.add(key)
            if recheck and r["mode"] != "loglik":  # a log-likelihood choice has no text to read again
                last_number = r.get("finish_reason") != "length"
                r["extracted"] = extract_for(metric, r["answer"], last_number, r.get("n_options"))
                r["correct"] = r["extracted"] is not None and METRICS[metric](r["extracted"], r["gold"])
            records.append(r)
    return config, records


def _vote_key(extracted: str | None):
    if extracted is None:
        return None
    nums = number_values(extracted)
    return ("num", min(nums)) if nums and len(nums) == 1 else ("str", clean(extracted).replace(" ", ""))


def _majority_correct(recs: list[dict]) -> bool:
    votes = Counter(_vote_key(r["extracted"]) for r in recs if r["extracted"] is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(k for k in (_vote_key(r["extracted"]) for r in recs) if k is not None and votes[k] == top)
    return next(r["correct"] for r in recs if _vote_key(r["extracted"]) == winner)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def subject_accuracy(records: list[dict], correct=lambda r: r["correct"]) -> dict:
    """Accuracy per subject and over subjects. An item's score is the mean of ``correct`` over its samples (greedy:
    right or wrong); a subject's accuracy is the mean over its items; ``macro_accuracy`` the mean over subjects;
    ``accuracy`` the mean over all items. Records without a subject count as the subject "-"."""
    by_item: dict[str, list[dict]] = {}
    for r in records:
        by_item.setdefault(r["id"], []).append(r)
    by_subject: dict[str, list[float]] = {}
    for recs in by_item.values():
        score = statistics.fmean(float(correct(r)) for r in recs)
        by_subject.setdefault(recs[0].get("subject") or "-", []).append(score)
    subjects = {s: {"items": len(v), "accuracy": statistics.fmean(v)} for s, v in sorted(by_subject.items())}
    return {
        "accuracy": statistics.fmean(x for v in by_subject.values() for x in v) if by_item else None,
        "macro_accuracy": statistics.fmean(v["accuracy"] for v in subjects.values()) if subjects else None,
        "subjects": subjects,
    }


def mode_metrics(records: list[dict]) -> dict:
    by_item: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["sample"]):
        by_item.setdefault(r["id"], []).append(r)
    if not by_item:
        return {"items": 0, "generations": 0}
    first = [recs[0] for recs in by_item.values() if recs[0]["sample"] == 0]
    tokens = [r["output_tokens"] for r in records if r["output_tokens"] is not None]
    lat = [r["latency_s"] for r in records]
    avg_k = statistics.fmean(statistics.fmean(float(r["correct"]) for r in recs) for recs in by_item.values())
    mean_tokens = statistics.fmean(tokens) if tokens else None
    return {
        "items": len(by_item),
        "generations": len(records),
        "samples": max(len(v) for v in by_item.values()),
        "pass@1": statistics.fmean(float(r["correct"]) for r in first) if first else None,
        "avg@k": avg_k,
        "maj@k": statistics.fmean(float(_majority_correct(v)) for v in by_item.values()),
        "pass@k": statistics.fmean(float(any(r["correct"] for r in v)) for v in by_item.values()),
        "mean_output_tokens": mean_tokens,
        "mean_latency_s": statistics.fmean(lat),
        "median_latency_s": statistics.median(lat),
        "p90_latency_s": _pct(lat, 0.9),
        "tokens_per_s": sum(tokens) / sum(lat) if tokens and sum(lat) > 0 else None,
        "acc_per_1k_tokens": avg_k / mean_tokens * 1000 if mean_tokens else None,
        "truncated": statistics.fmean(float(r["finish_reason"] == "length") for r in records),
        "no_answer": statistics.fmean(float(r["extracted"] is None) for r in records),
        **_choice_metrics(records),
    }


def _choice_metrics(records: list[dict]) -> dict:
    """Multiple-choice extras of a mode: per-subject and macro accuracy when records carry subjects; for loglik
    records the same under each normalisation (``by_norm``). Nothing for other benchmarks."""
    out = {}
    if any(r.get("subject") for r in records):
        acc = subject_accuracy(records)
        out = {"macro_accuracy": acc["macro_accuracy"], "subjects": acc["subjects"]}
    if records and all("correct_by" in r for r in records):
        out["by_norm"] = {
            norm: subject_accuracy(records, lambda r, norm=norm: r["correct_by"][norm])
            for norm in records[0]["correct_by"]
        }
    return out


def headline(m: dict) -> float | None:
    """The one number of a mode's metrics for tables across benchmarks: macro accuracy where items have subjects
    (multiple choice; for loglik runs under the per-character normalisation), else avg@K (pass@1 when K = 1)."""
    return m.get("macro_accuracy", m.get("avg@k"))


def summarize(config: dict, records: list[dict]) -> dict:
    modes = [m for m in modes_of(config) if any(r["mode"] == m for r in records)]
    out = {
        "bench": config.get("bench"),
        "scoring": config.get("scoring", "generate"),
        "generator": next((r["generator"] for r in records), config.get("endpoint") or config.get("model")),
        "sampling": {
            **{k: config.get(k) for k in ("temperature", "top_p", "top_k", "seed", "samples")},
            "max_tokens": budgets_of(config),
        },
        "modes": {m: mode_metrics([r for r in records if r["mode"] == m]) for m in modes},
    }
    if "direct" in out["modes"] and "reasoning" in out["modes"]:
        d = {r["id"]: r["correct"] for r in records if r["mode"] == "direct" and r["sample"] == 0}
        s = {r["id"]: r["correct"] for r in records if r["mode"] == "reasoning" and r["sample"] == 0}
        both = sorted(set(d) & set(s))
        out["paired"] = {
            "items": len(both),
            "only_reasoning_right": [i for i in both if s[i] and not d[i]],
            "only_direct_right": [i for i in both if d[i] and not s[i]],
        }
    return out


def _f(x, fmt="{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(runs: list[tuple[str, dict]], title: bool = True) -> str:
    """A report comparing modes within each run and runs with each other. ``runs``: (label, summary)."""
    lines = ["# Evaluation report", ""] if title else []
    lines += [
        "| run | bench | generator | mode | items | K | pass@1 | avg@K | maj@K | pass@K | mean out tokens "
        "| mean latency s | p90 latency s | tokens/s | acc per 1k tokens | truncated | no answer |",
        "|" + "---|" * 17,
    ]
    for label, s in runs:
        for mode, m in s["modes"].items():
            lines.append(
                f"| {label} | {s['bench']} | {s['generator']} | {mode} | {m['items']} | {m['samples']} | "
                f"{_f(m['pass@1'])} | {_f(m['avg@k'])} | {_f(m['maj@k'])} | {_f(m['pass@k'])} | "
                f"{_f(m['mean_output_tokens'], '{:.0f}')} | {_f(m['mean_latency_s'], '{:.1f}')} | "
                f"{_f(m['p90_latency_s'], '{:.1f}')} | {_f(m['tokens_per_s'], '{:.1f}')} | "
                f"{_f(m['acc_per_1k_tokens'])} | {m['truncated']:.0%} | {m['no_answer']:.0%} |"
            )
    lines.append("")
    for label, s in runs:
        md = s["modes"]
        sp = s["sampling"]
        if s.get("scoring") == "loglik":
            lines.append(f"**{label}**: no generation; each option's text scored by the model's log-likelihood.")
        else:
            lines.append(
                f"**{label}**: sampling temperature {sp['temperature']}, top_p {sp['top_p']}, top_k {sp['top_k']}, "
                f"seed {sp['seed']}, K={sp['samples']}, max tokens {sp['max_tokens']}."
            )
        if "paired" in s:
            d, r, p = md["direct"], md["reasoning"], s["paired"]
            tok = (r["mean_output_tokens"] / d["mean_output_tokens"]) if d["mean_output_tokens"] else None
            lat = r["mean_latency_s"] / d["mean_latency_s"] if d["mean_latency_s"] else None
            lines.append(
                f"Reasoning vs direct: accuracy {_f(r['avg@k'])} vs {_f(d['avg@k'])} "
                f"({(r['avg@k'] - d['avg@k']) * 100:+.1f} points) for {_f(tok, '{:.1f}')}× the output tokens and "
                f"{_f(lat, '{:.1f}')}× the latency; on {p['items']} paired items, "
                f"{len(p['only_reasoning_right'])} right only with reasoning "
                f"({', '.join(p['only_reasoning_right'][:10]) or 'none'}), "
                f"{len(p['only_direct_right'])} right only direct ({', '.join(p['only_direct_right'][:10]) or 'none'})."
            )
        lines.append("")
    return "\n".join(lines)


def choice_markdown(runs: list[tuple[str, dict]]) -> str:
    """Per-subject accuracy tables of multiple-choice runs (one per run and mode), macro and all-item rows last;
    loglik runs get a column per normalisation. Empty for runs without subjects or normalisations."""
    lines = []
    for label, s in runs:
        for mode, m in s["modes"].items():
            if "subjects" not in m and "by_norm" not in m:
                continue
            if "by_norm" in m:
                norms = list(m["by_norm"])
                cols = {n: m["by_norm"][n] for n in norms}
                heading = (
                    f"**{label}**, options scored by log-likelihood (sum: summed log-probability; token: per token; "
                    "char: per character, lm-eval's acc_norm, the one the table above reports):"
                )
            else:
                norms = ["accuracy"]
                cols = {
                    "accuracy": {
                        "subjects": m["subjects"],
                        "macro_accuracy": m["macro_accuracy"],
                        "accuracy": m["avg@k"],
                    }
                }
                heading = f"**{label}**, {mode} (accuracy: avg@K):"
            subjects = cols[norms[0]]["subjects"]
            lines += [heading, "", "| subject | items | " + " | ".join(norms) + " |", "|" + "---|" * (2 + len(norms))]
            for subj, row in subjects.items():
                accs = " | ".join(_f(cols[n]["subjects"][subj]["accuracy"]) for n in norms)
                lines.append(f"| {subj} | {row['items']} | {accs} |")
            lines.append(
                f"| macro (mean of {len(subjects)} subjects) | {m['items']} | "
                + " | ".join(_f(cols[n]["macro_accuracy"]) for n in norms)
                + " |"
            )
            lines.append(f"| all items | {m['items']} | " + " | ".join(_f(cols[n]["accuracy"]) for n in norms) + " |")
            lines.append("")
    return "\n".join(["## Multiple choice: accuracy per subject", "", *lines]) if lines else ""


def plots(runs: list[tuple[str, dict, list[dict]]], out_dir: Path) -> list[Path]:
    """accuracy_vs_tokens.png (one point per run and mode) and latency.png (latency per run and mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    colors = {"direct": "tab:blue", "reasoning": "tab:orange"}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, s, _ in runs:
        for mode, m in s["modes"].items():
            if m.get("mean_output_tokens") is None:
                continue
            ax.scatter(
                m["mean_output_tokens"],
                m["avg@k"],
                color=colors.get(mode, "gray"),
                s=60,
                label=mode if mode not in ax.get_legend_handles_labels()[1] else None,
            )
            ax.annotate(
                f"{label}" if len(runs) > 1 else mode,
                (m["mean_output_tokens"], m["avg@k"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
    ax.set_xlabel("mean output tokens per answer")
    ax.set_ylabel("accuracy (avg@K)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Accuracy vs output tokens, per mode")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a loglik-only report has no generated tokens to plot
        ax.legend()
    fig.tight_layout()
    p1 = out_dir / "accuracy_vs_tokens.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    data, names, cols = [], [], []
    for label, s, records in runs:
        for mode in s["modes"]:
            data.append([r["latency_s"] for r in records if r["mode"] == mode])
            names.append(mode if len(runs) == 1 else f"{label}\n{mode}")
            cols.append(colors.get(mode, "gray"))
    if data:
        parts = ax.boxplot(data, patch_artist=True)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=8)
        for patch, c in zip(parts["boxes"], cols):
            patch.set_facecolor(c)
            patch.set_alpha(0.5)
        for i, d in enumerate(data, 1):  # every generation as a dot: with 20 items a box alone hides the shape
            ax.scatter([i] * len(d), d, color="black", s=8, alpha=0.6, zorder=3)
    ax.set_ylabel("latency per generation, s")
    ax.set_title("Latency distribution, per mode")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    p2 = out_dir / "latency.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def write_outputs(
    run_dirs: list[Path], out: Path | None = None, recheck: bool = False
) -> tuple[Path, list[Path], list[dict]]:
    """Summaries (each eval run's summary.json), report.md and plots. One run: all inside it. Several: under ``out``.
    Arena run directories (``tpro eval arena --out``) join the table across benchmarks (``tpro.eval.board``), which
    the report starts with when its runs cover more than one benchmark."""
    from tpro.eval import board

    runs, cells, summaries = [], [], []
    for d in map(Path, run_dirs):
        if board.kind_of(d) == "arena":
            arena = board.arena_cells(d)
            cells += arena
            summaries.append({"kind": "arena", "run": str(d), "cells": [asdict(c) for c in arena]})
            continue
        config, records = load_run(d, recheck)
        s = summarize(config, records)
        write_json(d / "summary.json", s)
        runs.append((d.name, s, records))
        cells += board.eval_cells(s)
        summaries.append({"kind": "eval", **s})
    target = Path(out) if out is not None else Path(run_dirs[0])
    target.mkdir(parents=True, exist_ok=True)
    report_path = target / "report.md"
    text, pngs = "# Evaluation report\n\n", []
    if len(board.benches(cells)) > 1 or len(runs) < len(run_dirs):
        text += board.markdown(cells) + "\n"
        png = board.plot(cells, target / "plots" / "score_vs_tokens.png")
        pngs += [png] if png else []
        write_json(target / "board.json", [asdict(c) for c in cells])
    if runs:
        pngs += plots(runs, target / "plots")
        text += markdown([(label, s) for label, s, _ in runs], title=False)
        choice = choice_markdown([(label, s) for label, s, _ in runs])
        text += "\n" + choice + "\n" if choice else ""
    text += "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in pngs) + "\n"
    atomic_write(report_path, text)
    return report_path, pngs, summaries
