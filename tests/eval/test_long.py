"""tpro.eval.haystack and tpro eval long: deterministic cases of the asked size, needles where asked, scoring,
resumable runs that only add new cells, the context check, and the whole path on a tiny model."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from click.testing import CliRunner

from tpro.eval import haystack
from tpro.eval.long import Counter, LongConfig, check_context, context_of, run_long
from tpro.eval.report import read_records
from tpro.eval.runner import EndpointGenerator, Generation, RunError


@pytest.fixture(scope="module")
def counter(tiny_qwen2):
    return Counter(tiny_qwen2.tokenizer)


def _doc(prompt: str) -> str:
    return prompt.split("<документ>\n", 1)[1].split("\n</документ>", 1)[0]


def test_cases_are_deterministic_by_seed_and_of_the_asked_size(counter, tiny_qwen2):
    from tpro.models.chat import build_prompt

    a = haystack.build_case("passkey", 700, 0.5, 0, counter.count, seed=3, overhead=counter.overhead("direct"))
    b = haystack.build_case("passkey", 700, 0.5, 0, counter.count, seed=3, overhead=counter.overhead("direct"))
    c = haystack.build_case("passkey", 700, 0.5, 0, counter.count, seed=4, overhead=counter.overhead("direct"))
    d = haystack.build_case("passkey", 700, 0.5, 1, counter.count, seed=3, overhead=counter.overhead("direct"))
    assert a == b
    assert a.prompt != c.prompt and a.gold != c.gold and a.prompt != d.prompt  # another seed / trial, another case
    n = len(build_prompt(tiny_qwen2.tokenizer, [{"role": "user", "content": a.prompt}], "direct").input_ids)
    assert 700 - 60 <= n <= 700  # filled up to the budget (within a sentence of the tiny vocabulary), never over
    assert a.prompt.rstrip().endswith("Ответьте только числом.")  # the question comes last


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_the_needle_sits_at_its_depth(counter, depth):
    case = haystack.build_case("passkey", 1500, depth, 0, counter.count)
    doc = _doc(case.prompt)
    needle = f"Секретный код доступа к архиву — {case.gold}."
    assert doc.count(case.gold) == 2  # the needle says it twice, nothing else does
    where = doc.index(needle) / len(doc)
    if depth == 0.0:
        assert doc.startswith(needle)
    elif depth == 1.0:
        assert doc.rstrip().endswith(f"Запомните его: {case.gold}.")
    else:
        assert abs(where - depth) < 0.08


def test_multikey_has_distinct_distractors_and_asks_for_one(counter):
    case = haystack.build_case("multikey", 1200, 0.25, 0, counter.count, seed=1)
    doc = _doc(case.prompt)
    assert len(case.distractors) == 3 and len({case.gold, *case.distractors}) == 4
    for v in (case.gold, *case.distractors):
        assert doc.count(v) == 1
    asked = re.search(r"у отдела «(.+?)»", case.prompt.rsplit("Вопрос:", 1)[1]).group(1)
    assert f"Код доступа отдела «{asked}» — {case.gold}." in doc


def test_score_and_numbers():
    assert haystack.score("Код: 58 314.", "58314", [])
    assert haystack.score("58314", "58314", ["11111"])
    assert not haystack.score("58313", "58314", [])
    assert not haystack.score("58314 или 11111", "58314", ["11111"])  # naming every code is not an answer
    assert not haystack.score("", "58314", [])


def test_grid_parsing_and_bad_values():
    assert haystack.parse_lengths("2k, 1k,1024, 3000") == [1024, 2048, 3000]
    assert haystack.parse_depths("5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert haystack.parse_depths("1,0,0.5") == [0.0, 0.5, 1.0]
    for bad in ("1x", "", "64"):
        with pytest.raises(ValueError, match="length"):
            haystack.parse_lengths(bad)
    with pytest.raises(ValueError, match="0..1"):
        haystack.parse_depths("0,1.5")
    with pytest.raises(RunError, match="unknown task"):
        LongConfig(tasks="passkey,needle")
    with pytest.raises(RunError, match="bad length"):
        LongConfig(lengths="1k,two")
    with pytest.raises(RunError, match="does not exist"):
        LongConfig(haystack="/nonexistent/file.txt")


class Oracle:
    """Finds the needle when it is in the first half of the document (a model whose attention fades)."""

    name = "oracle"

    def __init__(self, tokenizer):
        self.calls, self.engine = 0, type("E", (), {"tokenizer": tokenizer, "context_length": 10**6})()

    def generate(self, messages, mode, params):
        self.calls += 1
        doc = _doc(messages[0]["content"])
        m = re.search(r"архиву — (\d+)", doc)
        answer = m.group(1) if m and m.start() < len(doc) / 2 else "не знаю"
        return Generation(answer, "", answer, 100, 3, 0.1, ttft_s=0.05, finish_reason="stop")


def test_run_reports_cells_resumes_and_only_adds_new_cells(tiny_qwen2, tmp_path):
    out = tmp_path / "run"
    g = Oracle(tiny_qwen2.tokenizer)
    cfg = LongConfig(lengths="600,900", depths="0,0.25,0.75,1", progress=False)
    s = run_long(cfg, out, generator=g, log=lambda _: None)
    assert g.calls == 8 and s["cases"] == 8
    t = s["tasks"]["passkey/direct"]
    assert [t["cells"][f"600|{d:g}"]["accuracy"] for d in (0, 0.25, 0.75, 1)] == [1, 1, 0, 0]
    assert t["accuracy"] == 0.5 and t["per_length"]["900"]["ttft_s"] == 0.05
    assert (out / "plots" / "heatmap_passkey.png").stat().st_size > 1000
    assert "| 600 | 100% | 100% | 0% | 0% | 50% |" in (out / "report.md").read_text(encoding="utf-8")

    run_long(cfg, out, generator=g, log=lambda _: None)  # resumed: nothing to do
    assert g.calls == 8
    more = LongConfig(lengths="600,900,1200", depths="0,0.25,0.75,1", progress=False)
    s = run_long(more, out, generator=g, log=lambda _: None)
    assert g.calls == 12 and s["cases"] == 12 and len(read_records(out / "items.jsonl")) == 12
    with pytest.raises(RunError, match="haystack_seed"):
        run_long(LongConfig(lengths="600", haystack_seed=1, progress=False), out, generator=g, log=lambda _: None)


def test_a_length_over_the_context_is_refused_naming_the_fix(tiny_qwen2_dir, tmp_path):
    with pytest.raises(RunError, match="over the model's context of 2048.*--rope-scaling"):
        check_context([1024, 4096], 32, 2048)
    check_context([1024, 2000], 32, 2048)
    check_context([10**6], 32, None)  # unknown context: the server answers for itself

    from tpro.eval.cli import app

    r = CliRunner().invoke(
        app,
        ["long", "-m", str(tiny_qwen2_dir), "--dtype", "float32", "--lengths", "1k,4k",
         "--no-progress", "-o", str(tmp_path / "r")],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "4096" in r.output and "--rope-scaling" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r" / "items.jsonl").exists()


def test_an_endpoints_context_comes_from_its_models_list():
    def handler(req):
        return httpx.Response(200, json={"data": [{"id": "t-pro", "max_model_len": 32768}]})

    g = EndpointGenerator("http://srv", transport=httpx.MockTransport(handler))
    assert context_of(g) == 32768
    g = EndpointGenerator("http://srv", "m", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    assert context_of(g) is None


def test_local_tiny_model_end_to_end_both_modes(tiny_qwen2_dir, tmp_path):
    out = tmp_path / "run"
    cfg = LongConfig(
        model=str(tiny_qwen2_dir), dtype="float32", lengths="700,1000", depths="0,1", mode="both", batch=2,
        max_new_tokens=8, max_new_tokens_direct=4, tasks="passkey,multikey", progress=False,
    )  # fmt: skip
    s = run_long(cfg, out, log=lambda _: None)
    recs = read_records(out / "items.jsonl")
    assert s["cases"] == len(recs) == 16
    for r in recs:
        assert r["length"] - 60 <= r["prompt_tokens"] <= r["length"]  # counted with the model's own tokenizer
        assert r["output_tokens"] <= (8 if r["mode"] == "reasoning" else 4)
    assert {k for k in s["tasks"]} == {"passkey/direct", "passkey/reasoning", "multikey/direct", "multikey/reasoning"}
    assert json.loads((out / "summary.json").read_text())["cases"] == 16
