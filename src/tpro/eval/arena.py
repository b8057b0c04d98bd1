"""Arena leaderboards from pairwise battles: judge verdicts -> battles -> Bradley-Terry scores with bootstrap
intervals, optionally style-controlled; the method of lmsys arena-hard-auto (``show_result.py``, ``utils_math.py``).

A battle is a dict ``{"model_a", "model_b", "winner"}`` with ``winner`` one of ``model_a | model_b | tie |
tie (bothbad)``, optionally ``"weight"`` (default 1; a strong judge verdict counts 3) and per-answer style features
for style control: ``"len_a"``/``"len_b"`` (answer length, tokens or characters: one unit across the battles) and
``"md_a"``/``"md_b"`` (markdown counts, ``{"headers": n, "lists": n, "bold": n}`` from ``markdown_counts``, or one
number).

The model (arena-hard's ``compute_mle_elo``): P(a beats b) = 1 / (1 + base^((R_b - R_a) / scale)), fitted by
maximum likelihood as a logistic regression without intercept on rows x = +ln(base) at a's column, -ln(base) at
b's. A tie counts as half a win each way (arena-hard duplicates every battle and gives one copy to each side;
here: the same rows with sample weights). Scores are on the Elo scale: R = scale * coef + init, shifted so the
baseline scores ``init`` (1000), or so the mean is ``init`` when there is no baseline.

Style control (arena-hard's ``construct_style_matrices``, as in LMSYS's style-controlled arena): extra columns for
the answers' normalised differences, length (la - lb) / (la + lb) and markdown density per kind
(da - db) / (da + db + 1) with d = count / length; the model coefficients are then strengths with style held
equal, and the style coefficients say how much a judge or voter rewards style. Each style column is divided by
its root mean square but, unlike arena-hard, not centred: a difference a - b is antisymmetric, and centring would
add a bias towards one position (harmless in arena-hard, whose baseline is always model_a; not for human votes).

Regularisation: a very weak ridge (C = 1e6) instead of none: the maximum-likelihood estimate is unchanged for
practical purposes, but a model that won (or lost) every battle gets a large finite score instead of a diverging
fit, and the result is unique (scikit-learn >= 1.8 deprecates ``penalty=None`` too).

What this module does not know: models, judges, prompts, answers (beyond counting markdown in a text), files.
"""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}  # a's share of the win
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
STRONG_WEIGHT = 3  # arena-hard's default --weight: a ">>" verdict counts as three battles
_C = 1e6  # inverse ridge strength; see the module docstring


class ArenaError(ValueError):
    """Battles or arguments that cannot be scored; the message names the problem and the fix."""


# --- judge verdicts ----------------------------------------------------------------------------------------------

# arena-hard's regex is \[\[([AB<>=]+)\]\]; this one also allows spaces inside ("[[ A >> B ]]"), lower case and,
# after NFKC folding (full-width ［［Ａ＞Ｂ］］ -> [[A>B]]), Cyrillic look-alikes a Russian judge may type: А for A,
# В and Б for B.
_VERDICT = re.compile(r"\[\[\s*([AB])\s*(>>|<<|>|<|=)\s*([AB])\s*\]\]")
_CYRILLIC = str.maketrans({"А": "A", "а": "A", "В": "B", "в": "B", "Б": "B", "б": "B"})
_CANONICAL = {  # every spelling -> one of VERDICTS (v2's "A<B", "B<<A", "B=A" included)
    ("A", ">>", "B"): "A>>B", ("B", "<<", "A"): "A>>B",
    ("A", ">", "B"): "A>B", ("B", "<", "A"): "A>B",
    ("A", "=", "B"): "A=B", ("B", "=", "A"): "A=B",
    ("B", ">", "A"): "B>A", ("A", "<", "B"): "B>A",
    ("B", ">>", "A"): "B>>A", ("A", "<<", "B"): "B>>A",
}  # fmt: skip


def parse_verdict(text: str | None) -> str | None:
    """The judge's verdict in ``text`` as one of ``VERDICTS``, or None when there is none or they disagree.

    arena-hard's rule (``get_score``): every ``[[...]]`` verdict in the text must be the same (a judge restating
    its verdict is fine); none, or two different ones (say, the prompt's list of options echoed back), is no
    verdict, and that game is dropped rather than guessed from the last one."""
    if not text:
        return None
    folded = unicodedata.normalize("NFKC", text).translate(_CYRILLIC).upper()
    found = {_CANONICAL.get(m.groups()) for m in _VERDICT.finditer(folded)}
    found.discard(None)  # "A>A" and the like
    return found.pop() if len(found) == 1 else None


def _game(verdict: str | None) -> tuple[str, int] | None:
    """A verdict (label or judge text) -> (winner between answer A and answer B, weight), None when unparseable."""
    label = verdict if verdict in VERDICTS else parse_verdict(verdict)
    if label is None:
        return None
    return {"A>>B": ("A", STRONG_WEIGHT), "A>B": ("A", 1), "A=B": ("tie", 1), "B>A": ("B", 1),
            "B>>A": ("B", STRONG_WEIGHT)}[label]  # fmt: skip


def verdicts_to_battles(
    question_id,
    model: str,
    baseline: str,
    game1_verdict: str | None,
    game2_verdict: str | None,
    model_style: dict | None = None,
    baseline_style: dict | None = None,
) -> list[dict]:
    """The two judged games of one question -> 0, 1 or 2 battles, ``model_a`` = baseline, ``model_b`` = model.

    As arena-hard: game 1 shows the baseline's answer as A and the model's as B, game 2 swaps them (so position
    bias cancels); a verdict is a label (``"A>B"``) or the judge's whole text; a strong verdict (>>) has weight 3;
    an unparseable game gives no battle. ``*_style``: ``style_features(answer)`` of each answer, copied into the
    battle for style control."""
    out = []
    for game, verdict, first in ((1, game1_verdict, "baseline"), (2, game2_verdict, "model")):
        g = _game(verdict)
        if g is None:
            continue
        side, weight = g
        winner = "tie" if side == "tie" else ("model_a" if (side == "A") == (first == "baseline") else "model_b")
        battle = {"question_id": question_id, "game": game, "model_a": baseline, "model_b": model,
                  "winner": winner, "weight": weight}  # fmt: skip
        if model_style is not None and baseline_style is not None:
            battle |= {"len_a": baseline_style["len"], "len_b": model_style["len"],
                       "md_a": baseline_style["md"], "md_b": model_style["md"]}  # fmt: skip
        out.append(battle)
    return out


_CODE = re.compile(r"```[^`]*```")


def markdown_counts(text: str) -> dict[str, int]:
    """Headers, list items and bold spans in ``text`` outside code blocks (arena-hard's ``add_markdown_info``)."""
    text = _CODE.sub("", text)
    return {
        "headers": len(re.findall(r"^#{1,6}\s", text, re.MULTILINE)),
        "lists": len(re.findall(r"^\s*(?:\d+\.|[-*+])\s", text, re.MULTILINE)),
        "bold": len(re.findall(r"\*\*[^*\n]+\*\*", text)) + len(re.findall(r"__[^_\n]+__", text)),
    }


def style_features(text: str) -> dict:
    """``{"len": characters, "md": markdown_counts(text)}``: one answer's style, for ``len_*`` / ``md_*``."""
    return {"len": len(text), "md": markdown_counts(text)}


# --- the design matrix -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """Battles as regression inputs. ``X``: [n, p + k] (p model columns, then k style columns); ``share``: [n],
    model_a's share of the win (1, 0 or 0.5); ``weight``: [n]; ``features``: the k style columns' names."""

    models: list[str]
    X: np.ndarray
    share: np.ndarray
    weight: np.ndarray
    features: list[str]


def _check(battles: list[dict]) -> list[dict]:
    """Validated battles without self-battles (a model against itself says nothing about strengths)."""
    for i, b in enumerate(battles):
        missing = [k for k in ("model_a", "model_b", "winner") if k not in b]
        if missing:
            raise ArenaError(f"battle {i} lacks {', '.join(missing)}. Fix: give model_a, model_b and winner")
        if b["winner"] not in WINNERS:
            raise ArenaError(f"battle {i}: winner {b['winner']!r} is not one of {', '.join(WINNERS)}")
        if not b.get("weight", 1) > 0:
            raise ArenaError(f"battle {i}: weight {b.get('weight')!r} must be positive")
    kept = [b for b in battles if b["model_a"] != b["model_b"]]
    if len({m for b in kept for m in (b["model_a"], b["model_b"])}) < 2:
        raise ArenaError("no battles between two different models. Fix: add battles (votes, judged games)")
    return kept


def _style_columns(battles: list[dict]) -> tuple[np.ndarray, list[str]]:
    """[n, k] normalised style differences (a - b), each column divided by its RMS; constant-zero columns dropped."""
    need = ("len_a", "len_b", "md_a", "md_b")
    for i, b in enumerate(battles):
        if any(k not in b for k in need):
            raise ArenaError(
                f"style control needs {', '.join(need)} in every battle; battle {i} lacks "
                f"{', '.join(k for k in need if k not in b)}. Fix: add style_features(answer) of both answers, "
                "or turn style control off"
            )

    def counts(md) -> dict:
        return md if isinstance(md, dict) else {"markdown": md}

    kinds = sorted({k for b in battles for md in (b["md_a"], b["md_b"]) for k in counts(md)})
    la = np.array([b["len_a"] for b in battles], dtype=float)
    lb = np.array([b["len_b"] for b in battles], dtype=float)
    cols = [np.divide(la - lb, la + lb, out=np.zeros_like(la), where=la + lb > 0)]
    for kind in kinds:
        da = np.array([counts(b["md_a"]).get(kind, 0) for b in battles], dtype=float) / np.maximum(la, 1)
        db = np.array([counts(b["md_b"]).get(kind, 0) for b in battles], dtype=float) / np.maximum(lb, 1)
        cols.append((da - db) / (da + db + 1))
    F, names = np.stack(cols, axis=1), ["length", *kinds]
    rms = np.sqrt((F**2).mean(axis=0))
    keep = rms > 0
    return F[:, keep] / rms[keep], [n for n, k in zip(names, keep) if k]


def design(battles: list[dict], base: float = 10, style_control: bool = False) -> Design:
    """Battles -> the regression inputs (self-battles dropped; models in order of first appearance)."""
    battles = _check(battles)
    models = list(dict.fromkeys(m for b in battles for m in (b["model_a"], b["model_b"])))
    col = {m: j for j, m in enumerate(models)}
    n, p = len(battles), len(models)
    X = np.zeros((n, p))
    rows = np.arange(n)
    X[rows, [col[b["model_a"]] for b in battles]] = math.log(base)
    X[rows, [col[b["model_b"]] for b in battles]] = -math.log(base)
    features: list[str] = []
    if style_control:
        F, features = _style_columns(battles)
        X = np.concatenate([X, F], axis=1)
    share = np.array([WINNERS[b["winner"]] for b in battles])
    weight = np.array([float(b.get("weight", 1)) for b in battles])
    return Design(models, X, share, weight, features)


# --- fitting -----------------------------------------------------------------------------------------------------


def _logistic(X: np.ndarray, share: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Coefficients of the weighted logistic regression: each battle is a row won by a with weight w * share and a
    row lost by a with weight w * (1 - share) (arena-hard's duplicated battles, ties split)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        raise ArenaError("Bradley-Terry fitting needs scikit-learn. Fix: pip install 'tpro[eval]'") from e
    Xd = np.concatenate([X, X])
    y = np.concatenate([np.ones(len(X)), np.zeros(len(X))])
    w = np.concatenate([weight * share, weight * (1 - share)])
    keep = w > 0
    Xd, y, w = Xd[keep], y[keep], w[keep]
    if len(np.unique(y)) < 2:  # every battle won by model_a: add the mirror image (same likelihood, both classes)
        Xd, y, w = np.concatenate([Xd, -Xd]), np.concatenate([y, 1 - y]), np.concatenate([w, w])
    # Newton-Cholesky: a handful of iterations on p + k columns; lbfgs took ~10x longer per fit (9 iterations, and
    # BLAS threads fighting over busy cores: 64 ms vs 3.5 ms a fit on 2000 battles), which the bootstrap multiplies
    lr = LogisticRegression(C=_C, fit_intercept=False, solver="newton-cholesky", tol=1e-8, max_iter=1000)
    return lr.fit(Xd, y, sample_weight=w).coef_[0]


def fit(
    d: Design,
    rows: np.ndarray | None = None,
    baseline: str | None = None,
    scale: float = 400,
    init: float = 1000,
) -> tuple[dict[str, float], dict[str, float]]:
    """Fit on ``d``, or on the battles ``rows`` (indices of a bootstrap sample, repeats allowed) -> (scores, style
    coefficients).

    Scores are on the Elo scale, the baseline at ``init`` (or their mean at ``init``); a model with no battle in
    ``rows`` scores NaN, and so does every model when the baseline has none (nothing to anchor to)."""
    n, p = len(d.share), len(d.models)
    times = np.ones(n) if rows is None else np.bincount(rows, minlength=n)  # a battle drawn twice: twice the weight
    idx = np.flatnonzero(times)
    coef = _logistic(d.X[idx], d.share[idx], d.weight[idx] * times[idx])
    present = np.abs(d.X[idx, :p]).sum(axis=0) > 0
    elo = scale * coef[:p] + init
    if baseline is not None:
        j = d.models.index(baseline)
        elo = elo - elo[j] + init if present[j] else np.full(p, np.nan)
    else:
        elo = elo - elo[present].mean() + init
    elo[~present] = np.nan
    return dict(zip(d.models, elo.tolist())), dict(zip(d.features, coef[p:].tolist()))


def _baseline_in(d: Design, baseline: str | None) -> None:
    if baseline is not None and baseline not in d.models:
        raise ArenaError(f"baseline {baseline!r} is in no battle. Models: {', '.join(d.models)}")


def bradley_terry(
    battles: list[dict], baseline: str | None = None, scale: float = 400, base: float = 10, init: float = 1000
) -> dict[str, float]:
    """Maximum-likelihood Bradley-Terry scores on the Elo scale (baseline = ``init`` when given)."""
    d = design(battles, base)
    _baseline_in(d, baseline)
    return fit(d, baseline=baseline, scale=scale, init=init)[0]


def style_controlled(
    battles: list[dict], baseline: str | None = None, scale: float = 400, base: float = 10, init: float = 1000
) -> tuple[dict[str, float], dict[str, float]]:
    """Bradley-Terry scores with style held equal, and the style coefficients ({"length": c, "bold": c, ...}:
    log-odds of winning per RMS unit of the normalised difference; positive = that style wins votes)."""
    d = design(battles, base, style_control=True)
    _baseline_in(d, baseline)
    return fit(d, baseline=baseline, scale=scale, init=init)


def bootstrap(
    battles: list[dict],
    rounds: int = 100,
    seed: int = 0,
    baseline: str | None = None,
    style_control: bool = False,
    scale: float = 400,
    base: float = 10,
    init: float = 1000,
    level: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """{model: (score, lower, upper)}: the fit on all battles and the ``level`` percentile interval of the fits on
    ``rounds`` resamples of the battles with replacement (arena-hard: 100 rounds, 2.5 and 97.5 percentiles).
    Deterministic for a seed. A battle is resampled as a unit with its weight (arena-hard resamples the three
    copies of a strong verdict independently, which makes its intervals a little narrower)."""
    if rounds < 1:
        raise ArenaError(f"rounds must be at least 1, got {rounds}")
    d = design(battles, base, style_control)
    _baseline_in(d, baseline)
    score = fit(d, baseline=baseline, scale=scale, init=init)[0]
    rng = np.random.default_rng(seed)
    n = len(d.share)
    samples = np.array(
        [list(fit(d, rng.integers(0, n, n), baseline, scale, init)[0].values()) for _ in range(rounds)]
    )  # [rounds, p]; NaN where a model (or the baseline) drew no battle
    tail = (1 - level) / 2 * 100
    lower = np.nanpercentile(samples, tail, axis=0)
    upper = np.nanpercentile(samples, 100 - tail, axis=0)
    return {m: (score[m], float(lo), float(hi)) for m, lo, hi in zip(d.models, lower, upper)}


def win_rate_vs(scores: dict[str, float], baseline: str, scale: float = 400, base: float = 10) -> dict[str, float]:
    """Predicted probability that each model beats ``baseline`` (0.5 for the baseline itself), from BT scores."""
    if baseline not in scores:
        raise ArenaError(f"baseline {baseline!r} has no score. Models: {', '.join(scores)}")
    ref = scores[baseline]
    return {m: 1 / (1 + base ** ((ref - s) / scale)) for m, s in scores.items()}


# --- the leaderboard ---------------------------------------------------------------------------------------------


def leaderboard(
    battles: list[dict],
    baseline: str | None = None,
    rounds: int = 100,
    seed: int = 0,
    style_control: bool = False,
    scale: float = 400,
    base: float = 10,
) -> list[dict]:
    """Rows sorted by score, best first: model, score, lower, upper (95% bootstrap interval), win_rate with
    win_rate_lower/upper against the baseline (None without one), battles (records the model is in); with
    style control the scores are style-controlled and ``raw_score`` is the plain Bradley-Terry score."""
    ci = bootstrap(battles, rounds, seed, baseline, style_control, scale, base)
    raw = bradley_terry(battles, baseline, scale, base) if style_control else None
    count = {m: 0 for m in ci}
    for b in battles:
        if b["model_a"] != b["model_b"]:
            count[b["model_a"]] += 1
            count[b["model_b"]] += 1

    def rate(s: float) -> float | None:  # against a baseline fixed at the anchor, win rate is monotone in score
        return None if baseline is None else 1 / (1 + base ** ((ci[baseline][0] - s) / scale))

    rows = []
    for m, (score, lo, hi) in ci.items():
        row = {"model": m, "score": score, "lower": lo, "upper": hi, "win_rate": rate(score),
               "win_rate_lower": rate(lo), "win_rate_upper": rate(hi), "battles": count[m]}  # fmt: skip
        if raw is not None:
            row["raw_score"] = raw[m]
        rows.append(row)
    return sorted(rows, key=lambda r: -r["score"])


def markdown_table(rows: list[dict], baseline: str | None = None) -> str:
    """The leaderboard as a markdown table: rank, model, score with its interval, win rate vs the baseline."""
    style = any("raw_score" in r for r in rows)
    head = ["#", "model", "score", "95% CI"] + (["raw BT"] if style else [])
    head += [f"win rate vs {baseline} (95% CI)"] if baseline else []
    lines = ["| " + " | ".join(head + ["battles"]) + " |", "|" + "---|" * (len(head) + 1)]
    for i, r in enumerate(rows, 1):
        ci = f"-{r['score'] - r['lower']:.0f} / +{r['upper'] - r['score']:.0f}"
        cells = [str(i), r["model"], f"{r['score']:.0f}", ci]
        cells += [f"{r['raw_score']:.0f}"] if style else []
        if baseline:
            wr = r["win_rate"]
            cells.append(f"{100 * wr:.1f}% ({100 * r['win_rate_lower']:.1f}–{100 * r['win_rate_upper']:.1f})")
        lines.append("| " + " | ".join(cells + [str(r["battles"])]) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str | Path, title: str = "Bradley-Terry scores, 95% bootstrap intervals") -> Path:
    """Scores as points with interval whiskers, best at the top; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = rows[::-1]  # matplotlib draws y = 0 at the bottom
    y = np.arange(len(rows))
    score = np.array([r["score"] for r in rows])
    # a percentile interval need not contain the full-data score (all ties: 1000 vs 1000 +- float noise): clamp at 0
    err = np.array(
        [[max(0.0, r["score"] - r["lower"]) for r in rows], [max(0.0, r["upper"] - r["score"]) for r in rows]]
    )
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(rows)))
    ax.errorbar(score, y, xerr=err, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=4)
    ax.set_yticks(y, [r["model"] for r in rows], fontsize=8)
    ax.set_xlabel("score (Elo scale)")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
