"""tpro eval arena: questions and published answers in both arena-hard formats, both judge orders, verdict retries
and unparseable counting, the reasoning trace kept from the judge, the leaderboard order a judge's preference
implies, resume after a finished run and after a torn line, and the whole path on a tiny local model."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from tpro.eval.arena_run import (
    ArenaConfig,
    load_answer_sets,
    load_judge_prompt,
    load_questions,
    run_arena,
    slug,
)
from tpro.eval.runner import Generation, RunError
from tpro.io import write_jsonl

A_START, A_END = "<|The Start of Assistant A's Answer|>\n", "\n<|The End of Assistant A's Answer|>"
B_START, B_END = "<|The Start of Assistant B's Answer|>\n", "\n<|The End of Assistant B's Answer|>"
TRACE = "СЛЕД-РАССУЖДЕНИЯ"


def _between(s: str, start: str, end: str) -> str:
    return s.split(start, 1)[1].split(end, 1)[0]


class Answerer:
    """The model under test: '<text>: <question>' per mode; in reasoning mode behind a trace the judge must not see."""

    name = "answerer"

    def __init__(self, text: str = "ответ", concurrency: int = 1):
        self.text, self.concurrency, self.calls = text, concurrency, []

    def generate(self, messages, mode, params):
        self.calls.append((messages[-1]["content"], mode, params.max_new_tokens, params.seed))
        answer = f"{self.text}: {messages[-1]['content']}"
        reasoning = f"{TRACE} {messages[-1]['content']}" if mode == "reasoning" else ""
        text = f"<think>{reasoning}</think>{answer}" if reasoning else answer
        return Generation(text, reasoning, answer, 12, len(answer.split()), 0.01, finish_reason="stop")


class Judge:
    """``decide(answer_a, answer_b, messages, params) -> judge text``; records every call."""

    name = "judge"

    def __init__(self, decide, concurrency: int = 1):
        self.decide, self.concurrency, self.calls = decide, concurrency, []

    def generate(self, messages, mode, params):
        user = messages[1]["content"]
        a, b = _between(user, A_START, A_END), _between(user, B_START, B_END)
        self.calls.append({"a": a, "b": b, "messages": messages, "seed": params.seed, "mode": mode})
        text = self.decide(a, b, messages, params)
        return Generation(text, "", text, 500, 30, 0.02, finish_reason="stop")


def questions_file(tmp_path, n: int = 4, fmt: str = "v0.1"):
    if fmt == "v0.1":
        rows = [{"question_id": i, "category": "общее", "turns": [{"content": f"Вопрос номер {i}?"}]} for i in range(n)]
    else:
        rows = [{"uid": f"u{i}", "category": "hard", "prompt": f"Вопрос номер {i}?"} for i in range(n)]
    p = tmp_path / f"questions-{fmt}.jsonl"
    write_jsonl(p, rows)
    return p


def published(tmp_path, model: str, text: str, n: int = 4, fmt: str = "v0.1", key: str = "question_id"):
    """A model_answer file: v0.1 (model_id, choices) or v2 (model, messages with content.answer)."""
    ids = [i if key == "question_id" else f"u{i}" for i in range(n)]
    if fmt == "v0.1":
        rows = [{key: q, "model_id": model, "choices": [{"index": 0, "turns": [{"content": f"{text} {q}"}]}],
                 "conv_metadata": {"token_len": 7}} for q in ids]  # fmt: skip
    else:
        rows = [{key: q, "model": model, "messages": [{"role": "user", "content": "?"},
                 {"role": "assistant", "content": {"answer": f"{text} {q}"}}]} for q in ids]  # fmt: skip
    d = tmp_path / "published"
    d.mkdir(exist_ok=True)
    write_jsonl(d / f"{model}.jsonl", rows)
    return d / f"{model}.jsonl"


def config(tmp_path, qfile, answers, **kw) -> ArenaConfig:
    base = dict(questions=str(qfile), answers=[str(a) for a in answers], baseline="base", name="m", mode="direct",
                judge_local="fake-judge", rounds=10, progress=False, out=str(tmp_path / "run"))  # fmt: skip
    return ArenaConfig(**{**base, **kw})


def quiet(_):
    pass


# ------------------------------------------------------------------------------------------------ inputs


def test_questions_in_both_formats_with_a_limit_and_clear_errors(tmp_path):
    q1 = load_questions(config(tmp_path, questions_file(tmp_path, 5), [], limit=3))
    assert [(q.id, q.raw_id, q.key, q.prompt) for q in q1] == [
        ("0", 0, "question_id", "Вопрос номер 0?"), ("1", 1, "question_id", "Вопрос номер 1?"),
        ("2", 2, "question_id", "Вопрос номер 2?"),
    ]  # fmt: skip
    q2 = load_questions(config(tmp_path, questions_file(tmp_path, 2, "v2"), []))
    assert [(q.id, q.key, q.category) for q in q2] == [("u0", "uid", "hard"), ("u1", "uid", "hard")]

    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"question_id": 1, "turns": [{"content": "a"}]}, {"question_id": 1, "turns": [{"content": "b"}]}])
    with pytest.raises(RunError, match="appears twice"):
        load_questions(config(tmp_path, bad, []))
    write_jsonl(bad, [{"question_id": 1, "turns": []}])
    with pytest.raises(RunError, match="row 1: no question text"):
        load_questions(config(tmp_path, bad, []))
    with pytest.raises(RunError, match="exactly one question source"):
        ArenaConfig(judge_local="j").check_sources()  # a YAML file or --print-config may leave sources out
    with pytest.raises(RunError, match="exactly one question source"):
        run_arena(ArenaConfig(judge_local="j"), tmp_path / "r", log=lambda _: None)  # a run may not
    with pytest.raises(RunError, match="does not exist"):
        ArenaConfig(questions=str(tmp_path / "none.jsonl"), judge_local="j")
    with pytest.raises(RunError, match="exactly one judge"):
        ArenaConfig(questions=str(bad)).check_sources()


def test_an_endpoint_judge_takes_its_own_api_key_and_falls_back_to_the_shared_one(tmp_path, monkeypatch):
    from tpro.eval.arena_run import make_judge

    qfile = questions_file(tmp_path, 1)
    monkeypatch.setenv("TPRO_API_KEY", "shared-key")
    monkeypatch.setenv("TPRO_JUDGE_API_KEY", "judge-key")
    cfg = ArenaConfig(questions=str(qfile), judge_endpoint="http://judge:8000", judge_model="gpt-judge")
    judge = make_judge(cfg, quiet)
    assert judge.client.headers["Authorization"] == "Bearer judge-key"
    assert (judge.base, judge.name, cfg.judge_base()) == ("http://judge:8000/v1", "gpt-judge", "gpt-judge")
    monkeypatch.delenv("TPRO_JUDGE_API_KEY")
    assert make_judge(cfg, quiet).client.headers["Authorization"] == "Bearer shared-key"
    with pytest.raises(RunError, match="--judge-model names a model at --judge-endpoint"):
        ArenaConfig(questions=str(qfile), judge_local="x", judge_model="y")


def test_hub_questions_fail_offline_naming_the_dataset_and_the_fix(tmp_path, monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RunError, match=r"Vikhrmodels/ru-arena-general.*no network.*--questions"):
        load_questions(ArenaConfig(hub=True, judge_local="j"))


def test_published_answers_in_both_formats(tmp_path):
    published(tmp_path, "v01-model", "старый", 3)
    published(tmp_path, "v2-model", "новый <think>скрыто</think> видно", 3, fmt="v2", key="uid")
    stemless = tmp_path / "published" / "from-stem.jsonl"  # no model field: the file's stem names the model
    write_jsonl(stemless, [{"question_id": "x", "choices": [{"turns": [{"content": "<think>мысли</think>Итог"}]}]}])
    sets = load_answer_sets([tmp_path / "published"])
    assert sorted(sets) == ["from-stem", "v01-model", "v2-model"]
    assert sets["v01-model"]["1"].text == "старый 1" and sets["v01-model"]["1"].tokens == 7
    assert sets["v2-model"]["u2"].text == "новый  видно u2" and sets["from-stem"]["x"].text == "Итог"

    with pytest.raises(RunError, match="both"):  # one model in two files
        load_answer_sets([tmp_path / "published", tmp_path / "published" / "v01-model.jsonl"])
    write_jsonl(stemless, [{"question_id": "x", "text": "no choices"}])
    with pytest.raises(RunError, match="not an arena-hard answer"):
        load_answer_sets([stemless])


def test_judge_prompt_is_data_and_answers_with_braces_render_intact(tmp_path):
    p = load_judge_prompt()
    assert "[[A>>B]]" in p.system and "русском" in p.system and "own answer" in p.system
    msgs = p.messages("Вопрос {q}?", "ответ {a} $\\frac{1}{2}$", "ответ B")
    assert msgs[0]["role"] == "system" and "ответ {a} $\\frac{1}{2}$" in msgs[1]["content"]
    assert _between(msgs[1]["content"], A_START, A_END) == "ответ {a} $\\frac{1}{2}$"
    bad = tmp_path / "j.yaml"
    bad.write_text("system: s\ntemplate: '{question} {answer_a}'\nretry: r\n", encoding="utf-8")
    with pytest.raises(RunError, match=r"lacks \{answer_b\}"):
        load_judge_prompt(bad)


# ------------------------------------------------------------------------------------------------ the run


def test_both_orders_are_judged_and_a_position_bias_cancels(tmp_path):
    qfile = questions_file(tmp_path, 4, "v2")
    cfg = config(tmp_path, qfile, [published(tmp_path, "base", "база", fmt="v2", key="uid")])
    gen, judge = Answerer(), Judge(lambda a, b, m, p: "Мой ответ... Итог: [[A>B]]")  # always the first answer
    s = run_arena(cfg, generator=gen, judge=judge, log=quiet)

    assert len(gen.calls) == 4 and len(judge.calls) == 8
    by_q = {}
    for c in judge.calls:
        by_q.setdefault(re.search(r"Вопрос номер (\d)", c["messages"][1]["content"]).group(1), []).append(c)
    for q, (g1, g2) in by_q.items():
        assert g1["a"] == f"база u{q}" and g1["b"] == f"ответ: Вопрос номер {q}?"  # game 1: the baseline is A
        assert (g2["a"], g2["b"]) == (g1["b"], g1["a"])  # game 2: swapped
    recs = [json.loads(x) for x in (tmp_path / "run" / "judgments" / "fake-judge" / "m-direct.jsonl").open()]
    assert [r["uid"] for r in recs] == ["u0", "u1", "u2", "u3"]
    assert all([g["score"] for g in r["games"]] == ["A>B", "A>B"] and "[[A>B]]" in r["games"][0]["judgment"]
               for r in recs)  # fmt: skip
    answers = [json.loads(x) for x in (tmp_path / "run" / "answers" / "m-direct.jsonl").open()]
    assert answers[0]["uid"] == "u0" and answers[0]["model"] == "m [direct]"
    assert answers[0]["choices"][0]["turns"][0] == {"content": "ответ: Вопрос номер 0?", "token_len": 4}

    rows = {r["model"]: r for r in s["plain"]}
    assert s["battles"] == 8 and rows["m [direct]"]["battles"] == 8
    assert rows["base"]["score"] == pytest.approx(1000) and rows["m [direct]"]["score"] == pytest.approx(1000, abs=1)
    assert s["unparseable"]["fake-judge"] == {"games": 8, "unparseable": 0, "rate": 0.0}
    assert "length" in s["style_coefficients"] and len(s["style_controlled"]) == 2
    for f in ("leaderboard.json", "leaderboard.md"):
        assert (tmp_path / "run" / f).stat().st_size > 100
    assert (tmp_path / "run" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


def test_retries_recover_a_verdict_and_unparseable_games_are_counted_not_dropped(tmp_path):
    qfile = questions_file(tmp_path, 3)
    base = published(tmp_path, "base", "база", 3)
    prompt = load_judge_prompt()

    def late(a, b, messages, params):  # the label comes only after the follow-up turn
        return "[[B>A]]" if messages[-1]["content"] == prompt.retry else "Длинное рассуждение без метки."

    judge = Judge(late)
    s = run_arena(config(tmp_path, qfile, [base], out=str(tmp_path / "r1")), generator=Answerer(), judge=judge,
                  log=quiet)  # fmt: skip
    assert len(judge.calls) == 12  # 3 questions x 2 games x 2 attempts
    assert judge.calls[1]["messages"][2] == {"role": "assistant", "content": "Длинное рассуждение без метки."}
    rec = json.loads((tmp_path / "r1" / "judgments" / "fake-judge" / "m-direct.jsonl").read_text().splitlines()[0])
    assert [(g["score"], g["attempts"]) for g in rec["games"]] == [("B>A", 2), ("B>A", 2)]
    assert "без метки" in rec["games"][0]["judgment"] and "[[B>A]]" in rec["games"][0]["judgment"]
    assert s["unparseable"]["fake-judge"]["unparseable"] == 0

    # a judge that never gives one label (it echoes the list): 1 + retries attempts, then recorded as unparseable
    never = Judge(lambda a, b, m, p: "Варианты: [[A>B]] или [[B>A]]")
    s = run_arena(config(tmp_path, qfile, [base], judge_retries=2, judge_temperature=0.7, seed=5,
                         out=str(tmp_path / "r2")), generator=Answerer(), judge=never, log=quiet)  # fmt: skip
    assert len(never.calls) == 3 * 2 * 3
    seeds = [c["seed"] for c in never.calls[:6]]  # question 0: game 1's three attempts, then game 2's
    assert len(set(seeds)) == 6 and None not in seeds  # sampling: every attempt its own seed
    recs = [json.loads(x) for x in (tmp_path / "r2" / "judgments" / "fake-judge" / "m-direct.jsonl").open()]
    assert len(recs) == 3 and all(g["score"] is None and g["attempts"] == 3 for r in recs for g in r["games"])
    assert s["unparseable"]["fake-judge"] == {"games": 6, "unparseable": 6, "rate": 1.0}
    assert s["plain"] == [] and s["battles"] == 0
    md = (tmp_path / "r2" / "leaderboard.md").read_text(encoding="utf-8")
    assert "6 of 6 games unparseable (100.0%)" in md and "No leaderboard yet" in md


def test_the_judge_never_sees_the_reasoning_trace(tmp_path):
    qfile = questions_file(tmp_path, 3)
    judge = Judge(lambda a, b, m, p: "[[A=B]]", concurrency=3)
    gen = Answerer(concurrency=3)
    cfg = config(tmp_path, qfile, [published(tmp_path, "base", "база", 3)], mode="both")
    s = run_arena(cfg, generator=gen, judge=judge, log=quiet)
    assert sorted(m for _, m, _, _ in gen.calls) == ["direct"] * 3 + ["reasoning"] * 3
    assert len(judge.calls) == 2 * 3 * 2
    for c in judge.calls:
        assert TRACE not in c["messages"][1]["content"] and c["mode"] == "direct"
    assert sum("ответ: Вопрос номер 1?" in c["messages"][1]["content"] for c in judge.calls) == 4
    rec = json.loads((tmp_path / "run" / "answers" / "m-reasoning.jsonl").read_text().splitlines()[0])
    assert rec["reasoning"].startswith(TRACE) and TRACE not in rec["choices"][0]["turns"][0]["content"]
    assert {r["model"] for r in s["plain"]} == {"base", "m [direct]", "m [reasoning]"}


def test_the_leaderboard_ranks_models_as_the_judge_prefers(tmp_path):
    n = 6
    qfile = questions_file(tmp_path, n)
    files = []
    for model, word in (("base", "норма"), ("strong", "супер")):  # every answer 22 characters, as the answerer's
        files.append(tmp_path / f"{model}.jsonl")
        rows = [{"question_id": q, "model": model, "choices": [{"turns": [{"content": f"{word}: Вопрос номер {q}?"}]}]}
                for q in range(n)]  # fmt: skip
        write_jsonl(files[-1], rows)
    rank = {"супер": 2, "норма": 1, "ответ": 0}

    def prefer(a, b, messages, params):
        ra, rb = rank[a.split(":")[0]], rank[b.split(":")[0]]
        if "Вопрос номер 0?" in messages[1]["content"]:
            return "Почти одинаково: [[A=B]]"  # one tie, so nobody wins everything
        return "[[A>>B]]" if ra > rb else "[[B>A]]" if rb > ra else "[[A=B]]"

    s = run_arena(config(tmp_path, qfile, files), generator=Answerer(), judge=Judge(prefer), log=quiet)
    for table in ("plain", "style_controlled"):
        assert [r["model"] for r in s[table]] == ["strong", "base", "m [direct]"], table
    plain = {r["model"]: r for r in s["plain"]}
    assert plain["strong"]["score"] > 1100 and plain["m [direct]"]["score"] < 900
    assert plain["strong"]["win_rate"] > 0.75 and plain["base"]["win_rate"] == pytest.approx(0.5)
    assert plain["strong"]["battles"] == plain["m [direct]"]["battles"] == 2 * n
    assert s["style_coefficients"] == {}  # equal lengths, no markdown: nothing for style control to hold equal
    md = s["markdown"]
    assert "## Bradley-Terry scores" in md and "## Style-controlled" in md and "| 1 | strong |" in md


def test_a_run_resumes_without_redoing_work_even_after_a_torn_line(tmp_path):
    qfile = questions_file(tmp_path, 4)
    cfg = config(tmp_path, qfile, [published(tmp_path, "base", "база")])
    gen, judge = Answerer(), Judge(lambda a, b, m, p: "[[B>A]]")
    run_arena(cfg, generator=gen, judge=judge, log=quiet)
    assert (len(gen.calls), len(judge.calls)) == (4, 8)
    run_arena(cfg, generator=gen, judge=judge, log=quiet)  # finished: nothing to do
    assert (len(gen.calls), len(judge.calls)) == (4, 8)

    run = tmp_path / "run"
    for f in (run / "answers" / "m-direct.jsonl", run / "judgments" / "fake-judge" / "m-direct.jsonl"):
        data = f.read_bytes()
        f.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 40])  # a kill in the middle of the last line
    s = run_arena(cfg, generator=gen, judge=judge, log=quiet)
    assert (len(gen.calls), len(judge.calls)) == (5, 10)  # question 3's answer, and its two games, redone
    assert gen.calls[-1][0] == "Вопрос номер 3?"
    for f in (run / "answers" / "m-direct.jsonl", run / "judgments" / "fake-judge" / "m-direct.jsonl"):
        rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
        assert sorted(r["question_id"] for r in rows) == [0, 1, 2, 3]
    assert s["battles"] == 8

    with pytest.raises(RunError, match="max_new_tokens: 4096 -> 64"):  # other answer settings: refused
        run_arena(config(tmp_path, qfile, cfg.answers, max_new_tokens_direct=64), generator=gen, judge=judge,
                  log=quiet)  # fmt: skip
    with pytest.raises(RunError, match="temperature: 0.0 -> 0.5"):  # another judge sampling: refused
        run_arena(config(tmp_path, qfile, cfg.answers, judge_temperature=0.5), generator=gen, judge=judge,
                  log=quiet)  # fmt: skip
    assert (len(gen.calls), len(judge.calls)) == (5, 10)


def test_a_missing_baseline_stops_the_run_before_any_answer(tmp_path):
    qfile = questions_file(tmp_path, 2)
    gen = Answerer()
    with pytest.raises(RunError, match=r"'gpt' has no answers. Fix: pass one of: base, m \[direct\]"):
        run_arena(config(tmp_path, qfile, [published(tmp_path, "base", "b", 2)], baseline="gpt"), generator=gen,
                  judge=Judge(lambda *a: ""), log=quiet)  # fmt: skip
    with pytest.raises(RunError, match="--baseline is required"):
        run_arena(config(tmp_path, qfile, [], baseline=None), generator=gen, judge=Judge(lambda *a: ""), log=quiet)
    assert gen.calls == []
    # the model under test's own modes can be the baseline: reasoning judged against direct
    s = run_arena(config(tmp_path, qfile, [], baseline="m [direct]", mode="both"), generator=gen,
                  judge=Judge(lambda a, b, m, p: "[[A=B]]"), log=quiet)  # fmt: skip
    assert s["contestants"] == {"m [reasoning]": {"questions": 2, "games": 4, "unparseable": 0, "chars": 44}}
    assert slug("T-pro it/2.0 [reasoning]") == "T-pro_it_2.0-reasoning"


# ------------------------------------------------------------------------------------------------ end to end


def test_cli_end_to_end_on_a_tiny_local_model(tiny_qwen2_dir, tmp_path):
    """The tiny model answers and judges (one engine); its verdicts are noise without labels: counted, not lost."""
    from tpro.eval.cli import app

    qfile = questions_file(tmp_path, 3)
    base = published(tmp_path, "base", "Базовый ответ", 3)
    out = tmp_path / "run"
    args = ["arena", "--questions", str(qfile), "--answers", str(base), "--baseline", "base", "-m", str(tiny_qwen2_dir),
            "--judge-local", str(tiny_qwen2_dir), "--dtype", "float32", "--mode", "direct",
            "--max-new-tokens-direct", "6", "--judge-max-new-tokens", "6", "--judge-retries", "1", "--batch", "4",
            "--rounds", "10", "--no-progress", "-o", str(out)]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    name = f"{tiny_qwen2_dir.name} [direct]"
    answers = [json.loads(x) for x in (out / "answers" / f"{slug(name)}.jsonl").open()]
    assert len(answers) == 3 and all(a["output_tokens"] <= 6 and a["model"] == name for a in answers)
    judge_dir = out / "judgments" / slug(tiny_qwen2_dir.name)
    recs = [json.loads(x) for x in (judge_dir / f"{slug(name)}.jsonl").open()]
    assert len(recs) == 3 and all(len(r["games"]) == 2 for r in recs)
    unparsed = sum(g["score"] is None for r in recs for g in r["games"])
    assert all(g["attempts"] == (2 if g["score"] is None else 1) for r in recs for g in r["games"])
    board = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert board["unparseable"][slug(tiny_qwen2_dir.name)] == {"games": 6, "unparseable": unparsed,
                                                               "rate": unparsed / 6}  # fmt: skip
    assert f"{unparsed} of 6 games unparseable" in r.output  # the markdown is printed

    again = CliRunner().invoke(app, args)  # resumed: nothing left to generate or judge
    assert again.exit_code == 0 and "0 to generate" in again.output and "0 question(s) to judge" in again.output


# ------------------------------------------------------------------------------------------------ published judgments


def _judgment_rows(model: str, scores: list[tuple[str | None, str | None]]) -> list[dict]:
    """Rows as arena-hard's gen_judgment.py writes them (game 1: the baseline's answer is A)."""
    return [{"question_id": q, "model": model, "judge": "gpt-4-1106-preview",
             "games": [{"user_prompt": "...", "judgment": "...", "score": g1},
                       {"user_prompt": "...", "judgment": "...", "score": g2}]}
            for q, (g1, g2) in enumerate(scores)]  # fmt: skip


def test_published_judgments_give_the_closed_form_win_rate_and_style_control_only_with_answers(tmp_path):
    # One model against the baseline: the Bradley-Terry fit's win rate is the weighted share of won battles
    # (ties half, >> three times): here wins 3*2 + 1 = 7, losses 1 + 3 = 4, ties 2 halves -> (7 + 1) / (7 + 4 + 2)
    scores = [("B>>A", "A>>B"), ("B>A", "A=B"), ("A>B", "B>>A"), ("A=B", None), (None, None)]
    d = tmp_path / "model_judgment" / "gpt-4-1106-preview"
    d.mkdir(parents=True)
    write_jsonl(d / "m.jsonl", _judgment_rows("m", scores))
    write_jsonl(d / "base.jsonl", _judgment_rows("base", [("A=B", "A=B")]))  # the baseline vs itself: skipped
    cfg = ArenaConfig(judgments=[str(d)], baseline="base", rounds=20, out=str(tmp_path / "pub"))
    s = run_arena(cfg, log=quiet)
    m = next(r for r in s["plain"] if r["model"] == "m")
    assert m["win_rate"] == pytest.approx(8 / 13, abs=1e-4)
    assert s["unparseable"] == {"gpt-4-1106-preview": {"games": 10, "unparseable": 3, "rate": 0.3}}
    assert s["style_controlled"] == [] and (tmp_path / "pub" / "leaderboard.png").is_file()
    # with both models' answers, style control is fitted too
    published(tmp_path, "base", "норма", n=5)
    published(tmp_path, "m", "**ответ** подлиннее, с выделением", n=5)
    cfg = ArenaConfig(judgments=[str(d)], baseline="base", answers=[str(tmp_path / "published")], rounds=20,
                      out=str(tmp_path / "pub2"))  # fmt: skip
    assert [r["model"] for r in run_arena(cfg, log=quiet)["style_controlled"]] == ["m", "base"]


def test_published_judgments_bad_input_and_the_cli(tmp_path):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"question_id": 1, "model": "m", "games": [{"score": "A>B"}]}])
    with pytest.raises(RunError, match="two games"):
        run_arena(ArenaConfig(judgments=[str(bad)], baseline="base", out=str(tmp_path / "x")), log=quiet)
    with pytest.raises(RunError, match="--judgments needs --baseline"):
        ArenaConfig(judgments=[str(bad)]).check_sources()
    good = tmp_path / "good.jsonl"
    write_jsonl(good, _judgment_rows("m", [("B>A", "A>B"), ("A>B", "B>A")]))
    from tpro.eval.cli import app

    r = CliRunner().invoke(app, ["arena", "--judgments", str(good), "--baseline", "base", "-o", str(tmp_path / "o"),
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {row["model"] for row in out["plain"]} == {"m", "base"} and out["battles"] == 4
    r = CliRunner().invoke(app, ["arena", "--judgments", str(bad), "--baseline", "base", "-o", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "not an arena-hard judgment" in r.stderr


def test_a_contestant_missing_answers_is_counted_not_hidden(tmp_path):
    qfile = questions_file(tmp_path, 4)
    base = published(tmp_path, "base", "норма", n=4)
    partial = published(tmp_path, "partial", "частично", n=2)  # answers to questions 0 and 1 only
    logs = []
    s = run_arena(config(tmp_path, qfile, [base, partial]), generator=Answerer(), judge=Judge(lambda *a: "[[A=B]]"),
                  log=logs.append)  # fmt: skip
    assert "warning: partial has no answer to 2 of 4 question(s); not judged there" in logs
    assert s["contestants"]["partial"]["questions"] == 2 and s["contestants"]["m [direct]"]["questions"] == 4
