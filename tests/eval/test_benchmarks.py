"""Benchmark specs and loaders: shipped data, repairs, field overrides, hub path errors, the generic JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpro.eval.benchmarks import (
    BenchmarkError,
    list_benchmarks,
    load_benchmark,
    load_benchmark_with_report,
    load_spec,
    repair_latex_control_chars,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_builtins_listed_and_specs_valid():
    names = list_benchmarks()
    for name in ("t-math", "mgsm-ru", "mgsm-en", "math-500", "aime-2024", "aime-2025", "gsm8k", "jsonl"):
        assert name in names
        spec = load_spec(name)
        assert spec.name == name
        assert "{question}" in spec.prompt["direct"] and "{question}" in spec.prompt["reasoning"]
        assert spec.source.get("local") or spec.source.get("hub") or name == "jsonl"


def test_t_math_shipped_offline_with_repairs():
    spec, items, report = load_benchmark_with_report("t-math")
    assert len(items) == 325 and report.rows == 325
    byid = {it.id: it for it in items}
    assert "\\right)" in byid["tmath-0147"].question and "\r" not in byid["tmath-0147"].question
    assert byid["tmath-0203"].question.count("\\times") == 3 and "\t" not in byid["tmath-0203"].question
    assert {i for i, _ in report.repaired} == {"tmath-0147", "tmath-0203"}
    assert not any(ch in it.question for it in items for ch in "\r\t\x0c\x08")
    assert byid["tmath-0016"].meta["flag"] == "no actual question"
    assert byid["tmath-0001"].answer == "80"
    prompt = spec.render(byid["tmath-0001"], "reasoning")
    assert prompt.startswith(byid["tmath-0001"].question) and "\\boxed{...}" in prompt


def test_shipped_t_math_equals_the_shared_copy():
    if not (SHARED / "t-math" / "t_math.jsonl").exists():
        pytest.skip("no shared data folder")
    shared = [json.loads(x) for x in (SHARED / "t-math" / "t_math.jsonl").read_text(encoding="utf-8").splitlines()]
    ours = load_benchmark("t-math")
    assert [r["id"] for r in shared] == [it.id for it in ours]
    assert [r["answer"] for r in shared] == [it.answer for it in ours]


def test_limit_and_math500_real_tabs_kept():
    assert [it.id for it in load_benchmark("t-math", limit=3)] == ["tmath-0001", "tmath-0002", "tmath-0003"]
    byid = {it.id: it for it in load_benchmark("math-500")}
    assert "\treturn" in byid["math500-0018"].question  # a real tab in code, not a broken \t command


def test_repair_rules():
    fixed, notes = repair_latex_control_chars("\\left( x \right) \times 2 \x0crac{1}{2} \x08eta")
    assert fixed == "\\left( x \\right) \\times 2 \\frac{1}{2} \\beta" and len(notes) == 4
    keep = "line\nequal\tand\ttabs"
    assert repair_latex_control_chars(keep) == (keep, [])
    assert repair_latex_control_chars("a\x01b")[0] == "ab"


def test_generic_jsonl_fields_and_broken_rows(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text(
        json.dumps({"problem": "2+2?", "sol": 4})
        + "\n"
        + "{not json\n"
        + json.dumps({"problem": "", "sol": 1})
        + "\n"
        + json.dumps({"problem": "1/2 of 3?", "sol": 1.5})
        + "\n"
        + json.dumps({"problem": "No answer", "sol": None})
        + "\n"
        + json.dumps({"problem": "Tab \times", "sol": "5.0"})
        + "\n",
        encoding="utf-8",
    )
    spec, items, report = load_benchmark_with_report("jsonl", path=p, fields={"question": "problem", "answer": "sol"})
    assert [(it.id, it.question, it.answer) for it in items] == [
        ("item-0001", "2+2?", "4"),
        ("item-0003", "1/2 of 3?", "1.5"),
        ("item-0005", "Tab \\times", "5.0"),
    ]
    assert ("line 2", "not valid JSON (Expecting property name enclosed in double quotes)") in report.skipped
    assert {why.split(" (")[0] for _, why in report.skipped} == {
        "not valid JSON",
        "no question in field 'problem'",
        "no answer in field 'sol'",
    }
    with pytest.raises(BenchmarkError, match="--question-field"):
        load_benchmark_with_report("jsonl", path=p)
    with pytest.raises(BenchmarkError, match="--path"):
        load_benchmark("jsonl")


def test_mgsm_loader_on_a_local_jsonl(tmp_path):
    # MGSM has no offline copy: its hub rows look like this (answer_number, no id).
    rows = [
        {
            "question": "У Маши 3 яблока, у Пети на 2 больше. Сколько у Пети?",
            "answer": None,
            "answer_number": 5,
            "equation_solution": None,
        },
        {"question": "Сколько будет 6*7?", "answer": None, "answer_number": 42.0, "equation_solution": None},
    ]
    p = write_jsonl(tmp_path / "mgsm_ru.jsonl", rows)
    spec = load_spec("mgsm-ru")
    assert spec.source["hub"] == {"path": "juletxara/mgsm", "name": "ru", "split": "test"}
    _, items, _ = load_benchmark_with_report("mgsm-ru", path=p, fields=spec.hub_fields | {"id": None})
    assert [(it.id, it.answer) for it in items] == [("mgsm-ru-0001", "5"), ("mgsm-ru-0002", "42")]


def test_gsm8k_hub_style_answers(tmp_path):
    p = write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "3 + 4 = 7\n#### 1,250"}])
    assert load_benchmark("gsm8k", path=p)[0].answer == "1250"


def test_hub_error_is_clear(monkeypatch):
    import tpro.eval.benchmarks as b

    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", boom)
    with pytest.raises(BenchmarkError, match="--path"):
        b.load_benchmark("aime-2024")


def test_unknown_benchmark_and_user_spec(tmp_path):
    with pytest.raises(BenchmarkError, match="built in"):
        load_spec("nope")
    data = write_jsonl(tmp_path / "d.jsonl", [{"q": "1+1?", "a": "2"}])
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        "name: mine\nsource: {}\nfields: {question: q, answer: a}\nprompt: {direct: 'Q: {question}', reasoning: '{question}'}\n"
    )
    s, items, _ = load_benchmark_with_report(str(spec), path=data)
    assert s.render(items[0], "direct") == "Q: 1+1?"
    exact = tmp_path / "exact.yaml"
    exact.write_text("name: exact\nmetric: exact\nsource: {}\n")
    assert load_spec(str(exact)).metric == "exact"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: wrong\nmetric: bleu\n")
    with pytest.raises(BenchmarkError, match="unknown metric"):
        load_spec(str(wrong))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\npromt: {}\n")
    with pytest.raises(BenchmarkError, match="unknown spec keys"):
        load_spec(str(bad))
