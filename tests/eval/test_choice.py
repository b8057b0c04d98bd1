"""Multiple choice: letter extraction, gold normalisation, log-likelihood against a hand computation on a tiny model,
the normalisations, per-subject and macro accuracy, the specs and the 20-question Russian set, both scoring paths
end to end (loglik resumed, generate with a scripted generator), and the errors (endpoint + loglik, empty files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tpro.eval.benchmarks import BenchmarkError, load_benchmark_with_report, load_spec
from tpro.eval.choice import argmax, extract_letter, gold_letter, normalised, option_logprobs
from tpro.eval.cli import app
from tpro.eval.report import read_records, subject_accuracy
from tpro.eval.runner import EvalConfig, Generation, RunError, run_eval

RU_MC20 = Path(__file__).resolve().parents[1] / "assets" / "ru_mc20.jsonl"
quiet = dict(progress=False, log=lambda s: None)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ letters

LETTER_CASES = [
    ("B", "B"),
    ("B.", "B"),
    ("Ответ: B", "B"),
    ("**Ответ:** C", "C"),
    ("Правильный ответ — вариант D.", "D"),
    ("Правильный вариант: С)", "C"),  # Cyrillic С
    ("The answer is (A).", "A"),
    ("**C**", "C"),
    ("Думаю, что верно (D)", "D"),
    ("\\boxed{A}", "A"),
    ("Итак, \\boxed{\\text{B}}", "B"),
    ("B) Париж", "B"),
    ("<answer>D</answer>", "D"),
    ("Сначала (A), но нет.\n<answer> C </answer>", "C"),
    ("Ответ: В", "B"),  # Cyrillic В standing alone is the letter
    ("Ответ:\n\n**Е**", "E"),  # Cyrillic Е, with 5 options
    ("<think>Сначала A? Нет, скорее C.</think>Ответ: C", "C"),
    ("Сначала кажется, что ответ: A. Но проверим ещё раз. Ответ: D", "D"),  # the last stated answer
    # none
    ("<think>Ответ: A", None),  # an unclosed trace has no answer
    ("В Париже", None),  # a preposition, not a letter
    ("Ответ: В том, что Земля круглая", None),
    ("Ответ: E", None),  # only 4 options
    ("A. Москва — нет\nB. Киев — нет\nC. Минск — да", None),  # options listed back, no choice made
    ("Париж", None),
    ("b", None),
    ("", None),
]


@pytest.mark.parametrize("text,want", LETTER_CASES)
def test_extract_letter(text, want):
    n = 5 if "Е" in text else 4
    assert extract_letter(text, n) == want


def test_gold_letter_from_letter_index_or_text():
    opts = ["Москва", "Киев", "Минск", "Рига"]
    assert [gold_letter(g, opts) for g in ("C", "(c)", 2, 2.0, "2", "минск ")] == ["C"] * 6
    for bad, why in ((4, "outside 0..3"), ("E", "only 4 options"), ("Таллин", "not a letter"), (None, "not a letter")):
        with pytest.raises(ValueError, match=why):
            gold_letter(bad, opts)
    assert gold_letter("1", ["0", "1", "2", "3"]) == "B"  # an option's text wins over an index


# ------------------------------------------------------------------------------------------------ log-likelihood


def test_option_logprobs_equal_a_hand_computation(tiny_qwen2):
    """Each option's summed log-prob from the batched forward equals one computed from the model's logits over the
    whole text alone: log_softmax at position t-1 gives token t. Options of different token lengths exercise the
    padding; reading position t instead of t-1 (or any other offset) would not match."""
    import torch

    model, tok = tiny_qwen2.model, tiny_qwen2.tokenizer
    context = "Вопрос: Столица России?\nОтвет:"
    options = [" Москва", " Киев, столица Украины", " Минск", " 391"]
    logprobs, n_tokens = option_logprobs(model, tok, context, options)
    ctx = tok.encode(context)
    for option, lp, n in zip(options, logprobs, n_tokens):
        whole = tok.encode(context + option)
        assert whole[: len(ctx)] == ctx and n == len(whole) - len(ctx) > 0
        with torch.no_grad():
            logits = model(torch.tensor([whole])).logits[0].float()  # [T, V]
        logp = torch.log_softmax(logits, -1)
        hand = sum(logp[t - 1, whole[t]].item() for t in range(len(ctx), len(whole)))
        assert lp == pytest.approx(hand, abs=1e-4)
        shifted = sum(logp[t, whole[t]].item() for t in range(len(ctx), len(whole)))  # off by one token
        assert lp != pytest.approx(shifted, abs=1e-3)
    assert len(set(n_tokens)) > 1  # the batch was padded


def test_normalisations_pick_different_winners():
    # A: the most probable in total; B: the most probable per token; C: the most probable per character
    logprobs, n_tokens, texts = [-2.0, -3.0, -4.0], [1, 6, 4], ["x" * 20, "y" * 6, "z" * 80]
    scores = normalised(logprobs, n_tokens, texts)
    assert {norm: "ABC"[argmax(s)] for norm, s in scores.items()} == {"sum": "A", "token": "B", "char": "C"}
    assert scores["token"][1] == pytest.approx(-0.5) and scores["char"][2] == pytest.approx(-0.05)
    assert argmax([-1.0, -1.0, -2.0]) == 0  # ties: the first


def test_subject_and_macro_accuracy():
    def rec(i, subject, correct, sample=0):
        return {"id": i, "subject": subject, "correct": correct, "sample": sample}

    recs = [rec("a", "гео", True), rec("b", "гео", True), rec("c", "гео", False), rec("d", "мат", True)]
    recs += [rec("e", "мат", True), rec("e", "мат", False, sample=1)]  # two samples: the item scores 0.5
    acc = subject_accuracy(recs)
    assert acc["subjects"] == {
        "гео": {"items": 3, "accuracy": pytest.approx(2 / 3)},
        "мат": {"items": 2, "accuracy": 0.75},
    }
    assert acc["macro_accuracy"] == pytest.approx((2 / 3 + 0.75) / 2)  # each subject weighs the same
    assert acc["accuracy"] == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)  # each item weighs the same


# ------------------------------------------------------------------------------------------------ specs and data


def test_the_20_question_set_loads_through_the_spec():
    spec, items, report = load_benchmark_with_report("choice-jsonl", RU_MC20)
    assert spec.metric == "choice" and len(items) == 20 and not report.skipped
    assert {it.subject for it in items} == {"география", "история", "наука", "литература", "математика"}
    assert all(sum(it.subject == s for it in items) == 4 for s in {it.subject for it in items})
    assert {len(it.options) for it in items} == {4, 5, 6}
    assert all(it.answer in "ABCDEF"[: len(it.options)] for it in items)
    gagarin = next(it for it in items if "Гагарин" in it.question)
    assert gagarin.options["ABCD".index(gagarin.answer)] == "1961"
    prompt = spec.render(items[8], "direct")
    assert "C. Au" in prompt and "(A, B, C, D, E или F)" in prompt
    assert spec.render(items[8], "loglik") == "Вопрос: Какой химический символ у золота?\nОтвет:"


def test_choice_specs_valid():
    for name in ("choice-jsonl", "ru-mmlu-pro", "mera-rummlu", "mera-ruopenbookqa"):
        spec = load_spec(name)
        assert spec.metric == "choice" and spec.fields["options"]
        assert all("{options}" in spec.prompt[m] for m in ("direct", "reasoning")) and "loglik" in spec.prompt
    assert load_spec("ru-mmlu-pro").source["hub"]["path"] == "t-tech/ruMMLU-pro"


def test_malformed_rows_are_counted_exclusions(tmp_path):
    rows = [
        {"question": "Сколько будет 2 + 2?", "options": ["3", "4", "5", "6"], "answer": 1},  # index
        {"question": "Столица Франции?", "A": "Лион", "B": "Париж", "C": "Ницца", "D": "Марсель", "answer": "Париж"},
        {"question": "Три варианта?", "options": ["a", "b", "c"], "answer": "A"},
        {"question": "Ответ вне списка?", "options": ["a", "b", "c", "d"], "answer": "F"},
        {"question": "Пустой вариант?", "options": ["a", "", "c", "d"], "answer": "A"},
        {"question": "Без вариантов?", "answer": "A"},
    ]
    _, items, report = load_benchmark_with_report("choice-jsonl", write_jsonl(tmp_path / "mc.jsonl", rows))
    assert [(it.answer, it.options[:2]) for it in items] == [("B", ["3", "4"]), ("B", ["Лион", "Париж"])]
    assert [why for _, why in report.skipped] == [
        "3 options; 4 to 10 are needed",
        "gold letter F but only 4 options",
        "option B is empty",
        "no options (field 'options', or fields A, B, C, D)",
    ]


def test_mera_layout_reads_nested_fields(tmp_path):
    """MERA rows nest the question and options under inputs (as its lm-eval tasks read them); a local copy in the
    hub's layout runs with --path."""
    row = {
        "instruction": "{text}\nA {option_a}\n...",
        "inputs": {
            "text": "Чему равен косинус 0?",
            "option_a": "-1",
            "option_b": "0",
            "option_c": "1",
            "option_d": "π/2",
        },
        "outputs": "C",
        "meta": {"id": 6, "domain": "high_school_mathematics"},
    }
    row["inputs"]["subject"] = "Математика"
    _, items, _ = load_benchmark_with_report("mera-rummlu", write_jsonl(tmp_path / "rummlu.jsonl", [row]))
    assert [(it.id, it.question, it.options, it.answer, it.subject) for it in items] == [
        ("6", "Чему равен косинус 0?", ["-1", "0", "1", "π/2"], "C", "Математика")
    ]


def test_offline_hub_names_path(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(BenchmarkError, match="t-tech/ruMMLU-pro.*--path"):
        load_benchmark_with_report("ru-mmlu-pro")


def test_a_file_with_no_usable_rows_is_an_error(tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("vm\n")
    with pytest.raises(
        BenchmarkError,
        match=r"no usable items \(0 JSON rows read; 1 skipped: line 1: not valid JSON.*Fix: give a JSONL",
    ):
        load_benchmark_with_report("jsonl", hostname)
    few = write_jsonl(tmp_path / "few.jsonl", [{"question": "q?", "options": ["a", "b"], "answer": "A"}] * 5)
    with pytest.raises(
        BenchmarkError, match=r"5 JSON rows read; 5 skipped: mc-0001: 2 options; 4 to 10 are needed.*; \.\.\.\)"
    ):
        load_benchmark_with_report("choice-jsonl", few)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BenchmarkError, match=r"no usable items \(0 JSON rows read\)"):
        load_benchmark_with_report("jsonl", empty)


def test_cli_exits_2_on_a_file_with_no_usable_rows(tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("vm\n")
    for bench in ("jsonl", "choice-jsonl"):
        r = CliRunner().invoke(app, ["run", "--bench", bench, "--path", str(hostname), "--out", str(tmp_path / bench)])
        assert r.exit_code == 2, r.output
        assert f"error: {hostname}: no usable items" in r.stderr and "not valid JSON" in r.stderr
        assert not (tmp_path / bench / "report.md").exists()


# ------------------------------------------------------------------------------------------------ runs


def test_loglik_run_end_to_end_and_resumed(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    cfg = EvalConfig(
        bench="choice-jsonl", path=str(RU_MC20), scoring="loglik", model=str(tiny_qwen2_dir), dtype="float32"
    )
    assert cfg.modes == ["loglik"] and cfg.run_dir().name.endswith("-loglik")
    out = tmp_path / "run"
    summary = run_eval(cfg, out, **quiet)
    recs = read_records(out / "items.jsonl")
    assert len(recs) == 20 and {r["mode"] for r in recs} == {"loglik"}
    r = recs[8]
    assert len(r["logprobs"]) == len(r["options"]) == 6 and set(r["chosen"]) == {"sum", "token", "char"}
    assert r["correct"] == r["correct_by"]["char"] == (r["chosen"]["char"] == r["gold"] == "C")
    # the record holds what option_logprobs gives for the item's context and options
    lps, _ = option_logprobs(tiny_qwen2.model, tiny_qwen2.tokenizer, r["prompt"], [" " + o for o in r["options"]])
    assert r["logprobs"] == pytest.approx(lps, abs=1e-5)
    m = summary["modes"]["loglik"]
    assert m["items"] == 20 and set(m["by_norm"]) == {"sum", "token", "char"} and len(m["subjects"]) == 5
    for norm in ("sum", "token", "char"):
        assert m["by_norm"][norm]["accuracy"] == pytest.approx(sum(x["correct_by"][norm] for x in recs) / 20)
    report = (out / "report.md").read_text()
    assert "| subject | items | sum | token | char |" in report and "| география | 4 |" in report
    assert "| macro (mean of 5 subjects) | 20 |" in report
    logs = []
    run_eval(cfg, out, progress=False, log=logs.append)  # resumed: nothing left to score
    assert any("20 done already, 0 to go" in line for line in logs)
    assert len(read_records(out / "items.jsonl")) == 20


class Letters:
    """Answers every question with a scripted text per mode (the first option, or the gold in reasoning mode)."""

    name = "letters"

    def __init__(self, golds: dict):
        self.golds = golds

    def generate(self, messages, mode, params):
        question = messages[0]["content"].split("\n")[0]
        text = "A" if mode == "direct" else f"<think>Вариант A? Нет.</think>Ответ: **{self.golds[question]}**"
        return Generation(text, "", text.split("</think>")[-1], 10, 3, 0.01, finish_reason="stop")


def test_generate_run_scores_letters(tmp_path):
    _, items, _ = load_benchmark_with_report("choice-jsonl", RU_MC20)
    gen = Letters({it.question: it.answer for it in items})
    cfg = EvalConfig(bench="choice-jsonl", path=str(RU_MC20), mode="both")
    summary = run_eval(cfg, tmp_path / "run", generator=gen, **quiet)
    d, r = summary["modes"]["direct"], summary["modes"]["reasoning"]
    assert r["pass@1"] == 1.0 and r["no_answer"] == 0.0
    assert d["pass@1"] == pytest.approx(sum(it.answer == "A" for it in items) / 20) == 0.2
    assert d["subjects"]["математика"]["accuracy"] == 0.25 and r["macro_accuracy"] == 1.0
    recs = read_records(tmp_path / "run" / "items.jsonl")
    assert {(x["mode"], x["extracted"], x["n_options"] >= 4) for x in recs if x["id"] == "ru-mc-02"} == {
        ("direct", "A", True),
        ("reasoning", "E", True),
    }
    assert "| литература | 4 | 1.000 |" in (tmp_path / "run" / "report.md").read_text()


def test_loglik_needs_a_local_model_and_a_choice_benchmark(tmp_path):
    with pytest.raises(RunError, match="needs a local model"):
        EvalConfig(endpoint="http://127.0.0.1:9/v1", scoring="loglik")
    with pytest.raises(RunError, match="--samples"):
        EvalConfig(scoring="loglik", samples=4)
    math = write_jsonl(tmp_path / "m.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(RunError, match="multiple-choice"):
        run_eval(EvalConfig(bench="jsonl", path=str(math), scoring="loglik"), tmp_path / "r", **quiet)
    r = CliRunner().invoke(app, ["run", "--bench", "choice-jsonl", "--scoring", "loglik", "--endpoint", "http://x"])
    assert r.exit_code == 2 and "local model" in r.stderr
