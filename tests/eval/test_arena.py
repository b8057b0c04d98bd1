"""Arena leaderboards: judge verdicts -> battles, Bradley-Terry recovery of known strengths, bootstrap coverage,
style control removing a length bias, the leaderboard table and plot. Synthetic battles come from known BT
strengths with seeded numpy, so every assertion has a ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tpro.eval.arena import (
    ArenaError,
    bootstrap,
    bradley_terry,
    leaderboard,
    markdown_counts,
    markdown_table,
    parse_verdict,
    plot,
    style_controlled,
    style_features,
    verdicts_to_battles,
    win_rate_vs,
)

TRUE = {"base": 1000.0, "strong": 1150.0, "good": 1060.0, "weak": 900.0, "bad": 780.0}


def p_win(ra: float, rb: float) -> float:
    return 1 / (1 + 10 ** ((rb - ra) / 400))


def synthetic(n: int, rng: np.random.Generator, true: dict = TRUE, tie_rate: float = 0.0) -> list[dict]:
    """``n`` battles between random pairs, outcomes drawn from the BT model (ties: half a win each way in
    expectation, so they do not bias the strengths)."""
    names = list(true)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        if rng.random() < tie_rate:
            winner = "tie" if rng.random() < 0.5 else "tie (bothbad)"
        else:
            winner = "model_a" if rng.random() < p_win(true[a], true[b]) else "model_b"
        out.append({"model_a": a, "model_b": b, "winner": winner})
    return out


# --- verdicts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [
        ("My final verdict is: [[A>>B]]", "A>>B"),
        ("[[A>B]]", "A>B"),
        ("Ничья: [[A=B]].", "A=B"),
        ("[[B>A]]", "B>A"),
        ("Итог: [[B>>A]]", "B>>A"),
        ("[[ A >> B ]]", "A>>B"),  # spaces inside
        ("［［Ｂ＞Ａ］］", "B>A"),  # full-width brackets and letters
        ("[[А>В]]", "A>B"),  # Cyrillic А and В
        ("[[А>>Б]]", "A>>B"),  # Cyrillic А and Б
        ("[[a=b]]", "A=B"),
        ("[[B<A]]", "A>B"),  # arena-hard v2 spellings
        ("[[A<<B]]", "B>>A"),
        ("[[B=A]]", "A=B"),
        ("A is better: [[A>B]]. To restate, my final verdict is [[A>B]]", "A>B"),  # the same verdict twice
        ("Options: [[A>>B]], [[A>B]], [[A=B]]. Verdict: [[A>B]]", None),  # different verdicts: none (arena-hard)
        ("Assistant A is better. A>B", None),  # no brackets
        ("[A>B]", None),
        ("[[A>A]]", None),
        ("[[C>B]]", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


def test_two_games_to_battles():
    # game 1: baseline is answer A; game 2: the model is answer A. Both say the baseline is much better.
    got = verdicts_to_battles("q1", "m", "base", "[[A>>B]]", "B>>A")
    assert [(b["model_a"], b["model_b"], b["winner"], b["weight"], b["game"]) for b in got] == [
        ("base", "m", "model_a", 3, 1),
        ("base", "m", "model_a", 3, 2),
    ]
    got = verdicts_to_battles("q2", "m", "base", "B>A", "A>B")  # the model wins in both orders, not strongly
    assert [(b["winner"], b["weight"]) for b in got] == [("model_b", 1), ("model_b", 1)]
    got = verdicts_to_battles("q3", "m", "base", "A=B", "judge rambled, no verdict")  # unparseable game dropped
    assert [(b["winner"], b["game"], b["question_id"]) for b in got] == [("tie", 1, "q3")]
    got = verdicts_to_battles("q4", "m", "base", "A>B", "A>B")  # position bias: each answer wins once when first
    assert [b["winner"] for b in got] == ["model_a", "model_b"]
    assert verdicts_to_battles("q5", "m", "base", None, "[[A>B]] or [[B>A]]") == []
    ms, bs = style_features("## Plan\n- one\n- **two**"), style_features("short")
    got = verdicts_to_battles("q6", "m", "base", "A>B", None, model_style=ms, baseline_style=bs)
    assert (got[0]["len_a"], got[0]["len_b"]) == (5, len("## Plan\n- one\n- **two**"))
    assert got[0]["md_b"] == {"headers": 1, "lists": 2, "bold": 1}
    assert got[0]["md_a"] == {"headers": 0, "lists": 0, "bold": 0}


def test_markdown_counts_skip_code():
    text = "# T\n## U\n1. a\n2. b\n* c\n**x** and __y__\n```\n# not a header\n- not a list\n```\n"
    assert markdown_counts(text) == {"headers": 2, "lists": 3, "bold": 2}


# --- Bradley-Terry -----------------------------------------------------------------------------------------------


def test_recovers_known_strengths():
    battles = synthetic(3000, np.random.default_rng(1))
    got = bradley_terry(battles, baseline="base")
    assert got["base"] == pytest.approx(1000.0)
    assert sorted(got, key=got.get) == sorted(TRUE, key=TRUE.get)
    for m, r in TRUE.items():
        assert abs(got[m] - r) < 45, (m, got[m], r)  # ~1.5 standard errors at 3000 battles
    centred = bradley_terry(battles)  # no baseline: same gaps, mean at 1000
    assert np.mean(list(centred.values())) == pytest.approx(1000.0)
    assert centred["strong"] - centred["bad"] == pytest.approx(got["strong"] - got["bad"], abs=0.01)
    half = bradley_terry(battles, baseline="base", scale=200)  # the scale only stretches the scores
    assert half["strong"] - 1000 == pytest.approx((got["strong"] - 1000) / 2, abs=0.01)


def test_ties_weights_and_positions():
    rng = np.random.default_rng(2)
    battles = synthetic(300, rng, tie_rate=0.3)
    base = bradley_terry(battles, "base")
    # a tie is half a win each way; "tie (bothbad)" is a tie
    split = []
    for b in battles:
        if b["winner"].startswith("tie"):
            split += [{**b, "winner": "model_a", "weight": 0.5}, {**b, "winner": "model_b", "weight": 0.5}]
        else:
            split.append(b)
    assert bradley_terry(split, "base") == pytest.approx(base, abs=1e-3)
    # weight 3 = three copies
    heavy = [{**b, "weight": 3} if i % 7 == 0 else b for i, b in enumerate(battles)]
    copies = [c for i, b in enumerate(battles) for c in ([b] * (3 if i % 7 == 0 else 1))]
    assert bradley_terry(heavy, "base") == pytest.approx(bradley_terry(copies, "base"), abs=1e-3)
    assert bradley_terry(heavy, "base") != pytest.approx(base, abs=1e-3)
    # the side a model sits on does not matter
    swap = {"model_a": "model_b", "model_b": "model_a"}
    flipped = [{**b, "model_a": b["model_b"], "model_b": b["model_a"], "winner": swap.get(b["winner"], b["winner"])}
               for b in battles]  # fmt: skip
    assert bradley_terry(flipped, "base") == pytest.approx(base, abs=1e-3)
    # ties only: equal scores
    tied = [{"model_a": "x", "model_b": "y", "winner": "tie"}] * 5
    assert bradley_terry(tied, "x") == pytest.approx({"x": 1000.0, "y": 1000.0}, abs=1e-6)


def test_one_sided_and_self_battles():
    # a model that won every battle gets a large finite lead (the weak ridge), not an error or infinity
    got = bradley_terry([{"model_a": "x", "model_b": "y", "winner": "model_a"}] * 3, "y")
    assert 1400 < got["x"] < 5000 and got["y"] == 1000
    with_self = [{"model_a": "x", "model_b": "x", "winner": "model_a"}] + synthetic(200, np.random.default_rng(3))
    assert bradley_terry(with_self, "base") == pytest.approx(bradley_terry(with_self[1:], "base"))


def test_errors_name_the_problem():
    ok = {"model_a": "x", "model_b": "y", "winner": "model_a"}
    with pytest.raises(ArenaError, match="winner 'a' is not one of"):
        bradley_terry([ok, {**ok, "winner": "a"}])
    with pytest.raises(ArenaError, match="lacks model_b"):
        bradley_terry([{"model_a": "x", "winner": "tie"}])
    with pytest.raises(ArenaError, match="baseline 'z' is in no battle"):
        bradley_terry([ok], baseline="z")
    with pytest.raises(ArenaError, match="no battles between two different models"):
        bradley_terry([{**ok, "model_b": "x"}])
    with pytest.raises(ArenaError, match="style control needs .*battle 0 lacks len_a"):
        style_controlled([ok])
    with pytest.raises(ArenaError, match="weight"):
        bradley_terry([{**ok, "weight": 0}])


def test_win_rate_vs():
    got = win_rate_vs({"b": 1000.0, "x": 1400.0, "y": 1000.0, "z": 800.0}, "b")
    assert got["b"] == 0.5 and got["y"] == 0.5
    assert got["x"] == pytest.approx(10 / 11)
    assert got["z"] == pytest.approx(1 / (1 + 10**0.5))
    with pytest.raises(ArenaError, match="baseline 'q'"):
        win_rate_vs({"b": 1000.0}, "q")


# --- bootstrap ---------------------------------------------------------------------------------------------------


def test_bootstrap_deterministic_by_seed():
    battles = synthetic(300, np.random.default_rng(4))
    a = bootstrap(battles, rounds=20, seed=7, baseline="base")
    assert a == bootstrap(battles, rounds=20, seed=7, baseline="base")
    assert a != bootstrap(battles, rounds=20, seed=8, baseline="base")
    assert a["base"] == (1000.0, 1000.0, 1000.0)
    point = bradley_terry(battles, "base")
    for m, (score, lo, hi) in a.items():
        assert score == pytest.approx(point[m]) and lo <= score <= hi


def test_bootstrap_intervals_cover_the_truth():
    """95% intervals over 20 independent synthetic arenas: the true strength inside at about the nominal rate;
    and not by being huge (an interval of +-1000 would cover everything)."""
    rng = np.random.default_rng(5)
    hits, widths = [], []
    for rep in range(20):
        battles = synthetic(600, rng)
        ci = bootstrap(battles, rounds=50, seed=rep, baseline="base")
        for m, r in TRUE.items():
            if m != "base":
                hits.append(ci[m][1] <= r <= ci[m][2])
                widths.append(ci[m][2] - ci[m][1])
    coverage = np.mean(hits)
    assert coverage >= 0.8, coverage
    assert 40 < np.median(widths) < 200, np.median(widths)  # ~2 x 1.96 x the standard error at 600 battles


# --- style control -----------------------------------------------------------------------------------------------


def verbose_arena(n: int, rng: np.random.Generator, gamma: float = 2.0) -> tuple[list[dict], dict]:
    """A "verbose" model as strong as the baseline that writes about 2.5x longer answers (lengths overlap with the
    others', so length and model are not confounded); voters reward length:
    logit(a wins) = ln 10 (Ra - Rb) / 400 + gamma (la - lb) / (la + lb). Markdown counts grow with length at the
    same density for every model: noise for the markdown coefficients."""
    true = {"base": 1000.0, "verbose": 1000.0, "good": 1080.0, "weak": 920.0}
    names = list(true)
    battles = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        la, lb = (float(rng.integers(1200, 3000) if m == "verbose" else rng.integers(200, 1500)) for m in (a, b))
        logit = math.log(10) * (true[a] - true[b]) / 400 + gamma * (la - lb) / (la + lb)
        md = [{"headers": int(rng.poisson(ln / 500)), "lists": int(rng.poisson(ln / 150)),
               "bold": int(rng.poisson(ln / 300))} for ln in (la, lb)]  # fmt: skip
        battles.append({"model_a": a, "model_b": b, "len_a": la, "len_b": lb, "md_a": md[0], "md_b": md[1],
                        "winner": "model_a" if rng.random() < 1 / (1 + math.exp(-logit)) else "model_b"})  # fmt: skip
    return battles, true


def test_style_control_removes_the_length_bias():
    battles, true = verbose_arena(3000, np.random.default_rng(6))
    raw = bradley_terry(battles, "base")
    styled, coefs = style_controlled(battles, "base")
    assert raw["verbose"] > 1100  # length alone buys it >100 points in the plain fit
    assert styled["verbose"] < raw["verbose"] - 80
    assert abs(styled["verbose"] - true["verbose"]) < 50
    for m in ("good", "weak"):  # the others stay near the truth
        assert abs(styled[m] - true[m]) < 50
    assert set(coefs) == {"length", "headers", "lists", "bold"}
    assert coefs["length"] > 0.3
    assert all(abs(coefs[k]) < 0.15 for k in ("headers", "lists", "bold"))  # noise features: about zero


def test_style_control_without_a_length_effect_changes_little():
    battles, _ = verbose_arena(2000, np.random.default_rng(7), gamma=0.0)
    raw = bradley_terry(battles, "base")
    styled, coefs = style_controlled(battles, "base")
    assert abs(coefs["length"]) < 0.15
    assert all(abs(styled[m] - raw[m]) < 40 for m in raw)


# --- leaderboard ----------------------------------------------------------------------------------------------------


def test_leaderboard_rows_table_and_plot(tmp_path):
    battles = synthetic(1500, np.random.default_rng(8))
    rows = leaderboard(battles, baseline="base", rounds=20, seed=0)
    assert [r["model"] for r in rows] == sorted(TRUE, key=TRUE.get, reverse=True)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    by = {r["model"]: r for r in rows}
    assert by["base"]["win_rate"] == 0.5 and by["base"]["lower"] == by["base"]["upper"] == 1000.0
    scores = {r["model"]: r["score"] for r in rows}
    assert by["strong"]["win_rate"] == pytest.approx(win_rate_vs(scores, "base")["strong"])
    assert by["strong"]["win_rate_lower"] < by["strong"]["win_rate"] < by["strong"]["win_rate_upper"]
    assert sum(r["battles"] for r in rows) == 2 * len(battles)
    assert by["strong"]["battles"] == sum(1 for b in battles if "strong" in (b["model_a"], b["model_b"]))

    table = markdown_table(rows, "base")
    lines = table.strip().splitlines()
    assert lines[0].startswith("| # | model | score | 95% CI | win rate vs base")
    assert lines[2].startswith("| 1 | strong | ") and lines[-1].startswith("| 5 | bad | ")
    assert "| 1000 | -0 / +0 | 50.0% (50.0–50.0) |" in table
    s = by["strong"]
    assert f"| {s['score']:.0f} | -{s['score'] - s['lower']:.0f} / +{s['upper'] - s['score']:.0f} |" in table
    assert "win rate" not in markdown_table(leaderboard(battles, rounds=10), None)

    png = plot(rows, tmp_path / "sub" / "board.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_style_control_column():
    battles, _ = verbose_arena(800, np.random.default_rng(9))
    rows = leaderboard(battles, "base", rounds=10, style_control=True)
    by = {r["model"]: r for r in rows}
    assert by["verbose"]["raw_score"] > by["verbose"]["score"]
    assert "raw BT" in markdown_table(rows, "base")
