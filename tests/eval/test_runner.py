"""Runners and run directories: the local engine on a tiny model, an endpoint through httpx.MockTransport,
resume after a real kill, refusal to mix settings, and the metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tpro.config import ConfigError
from tpro.engine.samples import sample_seed
from tpro.eval.report import mode_metrics, read_records, summarize
from tpro.eval.runner import (
    EndpointError,
    EndpointGenerator,
    EvalConfig,
    Generation,
    LocalGenerator,
    RunError,
    run_eval,
)
from tpro.io import append_jsonl

ITEMS = [{"id": f"q{i}", "question": f"Сколько будет {i} + {i}?", "answer": str(2 * i)} for i in range(1, 9)]


@pytest.fixture
def bench_file(tmp_path) -> Path:
    p = tmp_path / "add.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ITEMS), encoding="utf-8")
    return p


class Scripted:
    """A generator that answers from a table (for the run loop and metrics; the real ones are tested below)."""

    name = "scripted"

    def __init__(self, answers: dict):
        self.answers, self.calls = answers, []

    def generate(self, messages, mode, params):
        self.calls.append((messages[0]["content"], mode, params.max_new_tokens, params.seed))
        q = messages[0]["content"].split("?")[0]
        text = self.answers[(q, mode)]
        return Generation(
            text=text,
            reasoning="",
            answer=text,
            prompt_tokens=10,
            output_tokens=len(text.split()),
            latency_s=0.01 * len(text),
            finish_reason="stop",
        )


def test_local_engine_run_on_tiny_model(tiny_qwen2_dir, bench_file, tmp_path):
    cfg = EvalConfig(
        bench="jsonl",
        path=str(bench_file),
        limit=2,
        model=str(tiny_qwen2_dir),
        max_new_tokens_direct=6,
        max_new_tokens=8,
    )
    out = tmp_path / "run"
    summary = run_eval(cfg, out, progress=False, log=lambda s: None)
    recs = read_records(out / "items.jsonl")
    # batched (the default): records are appended as generations finish, in whatever order that is
    assert sorted((r["id"], r["mode"]) for r in recs) == [
        ("q1", "direct"),
        ("q1", "reasoning"),
        ("q2", "direct"),
        ("q2", "reasoning"),
    ]
    for r in recs:
        assert r["output_tokens"] <= (6 if r["mode"] == "direct" else 8) and r["latency_s"] > 0
        assert r["prompt"].startswith("Сколько будет") and r["gold"] in ("2", "4")
    # the reasoning prompt opens <think> for a template without enable_thinking: the record shows the whole trace
    assert all(r["output"].startswith("<think>") for r in recs if r["mode"] == "reasoning")
    assert set(summary["modes"]) == {"direct", "reasoning"} and summary["modes"]["direct"]["items"] == 2
    assert json.loads((out / "summary.json").read_text())["bench"] == "jsonl"
    assert "| direct |" in (out / "report.md").read_text()
    for png in ("accuracy_vs_tokens.png", "latency.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_batched_run_gives_the_sequential_runs_answers(tiny_qwen2_dir, bench_file, tmp_path):
    """--batch N (continuous batching) and --batch 1 (one at a time) write the same generations, greedy and
    sampled, in fp32; the batched one had several in flight."""
    outs = {}
    for batch in (1, 8):
        cfg = EvalConfig(
            bench="jsonl",
            path=str(bench_file),
            limit=6,
            model=str(tiny_qwen2_dir),
            dtype="float32",
            mode="both",
            samples=2,
            temperature=0.9,
            seed=3,
            max_new_tokens_direct=10,
            max_new_tokens=14,
            batch=batch,
        )
        run_eval(cfg, tmp_path / f"b{batch}", progress=False, log=lambda s: None)
        recs = read_records(tmp_path / f"b{batch}" / "items.jsonl")
        outs[batch] = {(r["id"], r["mode"], r["sample"]): (r["output"], r["output_tokens"]) for r in recs}
        if batch > 1:
            assert max(r["extra"]["batch_size"] for r in recs) > 1  # mean rows per forward, recorded per generation
    assert len(outs[1]) == 24 and outs[8] == outs[1]
    # samples of one item differ (their own seeds): the comparison above is not of identical texts
    assert outs[1][("q1", "direct", 0)] != outs[1][("q1", "direct", 1)]


def test_resume_skips_finished_and_refuses_other_settings(bench_file, tmp_path):
    answers = {
        (it["question"].split("?")[0], m): f"Ответ: {it['answer'] if m == 'reasoning' else 0}"
        for it in ITEMS
        for m in ("direct", "reasoning")
    }
    out = tmp_path / "run"
    cfg = EvalConfig(bench="jsonl", path=str(bench_file), limit=3, model="scripted")
    g = Scripted(answers)
    run_eval(cfg, out, generator=g, progress=False, log=lambda s: None)
    assert len(g.calls) == 6
    g2 = Scripted(answers)
    s = run_eval(cfg, out, generator=g2, progress=False, log=lambda s: None)
    assert g2.calls == []  # nothing redone
    assert s["modes"]["reasoning"]["pass@1"] == 1.0 and s["modes"]["direct"]["pass@1"] == 0.0
    assert s["paired"]["only_reasoning_right"] == ["q1", "q2", "q3"]
    with pytest.raises(RunError, match="temperature"):
        run_eval(
            EvalConfig(bench="jsonl", path=str(bench_file), limit=3, model="scripted", temperature=0.7),
            out,
            generator=g2,
            progress=False,
            log=lambda s: None,
        )
    from tpro.eval.runner import _lock_run_dir

    held = _lock_run_dir(out)  # a second run on the same directory at the same time is refused
    with pytest.raises(RunError, match="another tpro eval run"):
        run_eval(cfg, out, generator=g2, progress=False, log=lambda s: None)
    held.close()
    # a larger limit is the same run, extended
    run_eval(
        EvalConfig(bench="jsonl", path=str(bench_file), limit=4, model="scripted"),
        out,
        generator=g2,
        progress=False,
        log=lambda s: None,
    )
    assert [c[1] for c in g2.calls] == ["direct", "reasoning"]


def test_cut_last_line_is_ignored_and_not_glued(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"id": "a", "mode": "direct", "sample": 0}\n{"id": "b", "mo', encoding="utf-8")
    assert [r["id"] for r in read_records(p)] == ["a"]
    append_jsonl(p, [{"id": "c", "mode": "direct", "sample": 0}])  # how the runner appends: the torn tail goes
    assert [r["id"] for r in read_records(p)] == ["a", "c"]
    assert p.read_text(encoding="utf-8").count("\n") == 2


def test_record_of_a_cut_output_has_no_last_number_answer():
    from tpro.eval.benchmarks import Item, load_spec
    from tpro.eval.runner import Job, record

    spec = load_spec("t-math")
    job = Job(Item("t1", "Квадрат 8 на 8?", "8"), "direct", 0)
    cut = Generation(
        text="квадрат 8 на 8",
        reasoning="",
        answer="квадрат 8 на 8",
        prompt_tokens=5,
        output_tokens=128,
        latency_s=2.0,
        finish_reason="length",
    )
    assert record(job, spec, "p", cut, "g")["extracted"] is None
    cut.finish_reason = "stop"
    r = record(job, spec, "p", cut, "g")
    assert (r["extracted"], r["correct"], r["tokens_per_s"]) == ("8", True, 64.0)


def test_config_errors():
    with pytest.raises(RunError, match="exactly one"):
        EvalConfig(model="default", endpoint="http://x")
    with pytest.raises(ConfigError, match="key 'mode': 'fast' is not one of direct, reasoning, both"):
        EvalConfig(mode="fast")
    with pytest.raises(RunError, match="--path"):
        EvalConfig(question_field="q")
    with pytest.raises(RunError, match="local engine"):
        EvalConfig(endpoint="http://x", draft="auto")
    assert EvalConfig().model == "default" and EvalConfig(endpoint="http://x").model is None
    assert EvalConfig(mode="both").modes == ["direct", "reasoning"]


def test_samples_follow_the_one_seed_rule(bench_file, tmp_path):
    """Sample j of item i is seeded by tpro.engine.samples.sample_seed(seed, i, j); greedy runs send no seed."""
    answers = {(it["question"].split("?")[0], m): "Ответ: 1" for it in ITEMS for m in ("direct", "reasoning")}
    g = Scripted(answers)
    cfg = EvalConfig(bench="jsonl", path=str(bench_file), limit=3, mode="reasoning", samples=2, temperature=0.7, seed=5)
    run_eval(cfg, tmp_path / "s", generator=g, progress=False, log=lambda s: None)
    assert [c[3] for c in g.calls] == [sample_seed(5, i, j) for i in range(3) for j in range(2)]
    assert {c[2] for c in g.calls} == {512}  # the reasoning budget
    g = Scripted(answers)
    run_eval(EvalConfig(bench="jsonl", path=str(bench_file), limit=2), tmp_path / "g", generator=g, log=lambda s: None)
    assert {c[3] for c in g.calls} == {None} and [c[2] for c in g.calls[:2]] == [256, 512]


def test_a_run_dir_of_the_earlier_format_resumes(bench_file, tmp_path):
    """config.json written before the one vocabulary (modes, max_tokens, fields, draft: null, seed 0) resumes with
    the same settings spelled today, and still refuses other ones."""
    out = tmp_path / "old"
    out.mkdir()
    old = {
        "bench": "jsonl",
        "path": str(bench_file),
        "fields": {},
        "hub": False,
        "limit": 2,
        "modes": ["direct", "reasoning"],
        "samples": 1,
        "max_tokens": {"direct": 128, "reasoning": 256},
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "seed": 0,
        "model": "default",
        "endpoint": None,
        "api_model": None,
        "draft": None,
        "dtype": "auto",
        "threads": 1,
        "concurrency": 4,
        "timeout_s": 600.0,
        "retries": 3,
    }
    (out / "config.json").write_text(json.dumps(old))
    answers = {(it["question"].split("?")[0], m): "Ответ: 1" for it in ITEMS for m in ("direct", "reasoning")}
    g = Scripted(answers)
    cfg = EvalConfig(bench="jsonl", path=str(bench_file), limit=2, max_new_tokens_direct=128, max_new_tokens=256)
    s = run_eval(cfg, out, generator=g, progress=False, log=lambda s: None)
    assert len(g.calls) == 4 and s["sampling"]["max_tokens"] == {"direct": 128, "reasoning": 256}
    with pytest.raises(RunError, match="max_tokens"):
        run_eval(EvalConfig(bench="jsonl", path=str(bench_file)), out, generator=g, log=lambda s: None)


def test_metrics_pass_avg_maj():
    def rec(i, k, extracted, correct, mode="reasoning"):
        return {
            "id": i,
            "mode": mode,
            "sample": k,
            "extracted": extracted,
            "correct": correct,
            "output_tokens": 100,
            "latency_s": 2.0,
            "finish_reason": "stop",
            "generator": "g",
        }

    recs = [
        rec("a", 0, "1", False),
        rec("a", 1, "2", True),
        rec("a", 2, "2,0", True),  # maj right, first wrong
        rec("b", 0, "5", True),
        rec("b", 1, "6", False),
        rec("b", 2, "6", False),  # maj wrong, first right
        rec("c", 0, None, False),
        rec("c", 1, "x", False),
        rec("c", 2, "y", False),
    ]
    m = mode_metrics(recs)
    assert m["pass@1"] == pytest.approx(1 / 3)
    assert m["avg@k"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["maj@k"] == pytest.approx(1 / 3)
    assert m["pass@k"] == pytest.approx(2 / 3)
    assert m["acc_per_1k_tokens"] == pytest.approx(m["avg@k"] * 10)
    assert m["no_answer"] == pytest.approx(1 / 9)
    s = summarize({"modes": ["direct", "reasoning"], "bench": "b"}, recs)
    assert list(s["modes"]) == ["reasoning"] and "paired" not in s


# ------------------------------------------------------------------------------------------------ endpoint


def chat_response(content, reasoning=None, tokens=7):
    msg = {"role": "assistant", "content": content}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    return {
        "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": tokens},
    }


def test_endpoint_reads_reasoning_content_and_sends_thinking_flag():
    seen = []

    def handler(req: httpx.Request):
        if req.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served"}]})
        body = json.loads(req.content)
        seen.append(body)
        if body["chat_template_kwargs"]["enable_thinking"]:
            return httpx.Response(200, json=chat_response("Ответ: 4", reasoning="2+2=4"))
        return httpx.Response(200, json=chat_response("<think>hm</think>\\boxed{5}"))

    from tpro.engine import SamplingParams

    g = EndpointGenerator("http://srv", transport=httpx.MockTransport(handler))
    assert g.model == "served"
    r = g.generate([{"role": "user", "content": "2+2?"}], "reasoning", SamplingParams(max_new_tokens=9, seed=3))
    assert (r.reasoning, r.answer, r.output_tokens, r.prompt_tokens) == ("2+2=4", "Ответ: 4", 7, 12)
    d = g.generate([{"role": "user", "content": "2+2?"}], "direct", SamplingParams(max_new_tokens=9))
    assert (d.reasoning, d.answer) == ("hm", "\\boxed{5}")  # no reasoning_content: split here
    assert seen[0]["max_tokens"] == 9 and seen[0]["seed"] == 3 and seen[0]["model"] == "served"
    assert seen[1]["chat_template_kwargs"] == {"enable_thinking": False}


def test_endpoint_retries_with_backoff_then_gives_up():
    from tpro.engine import SamplingParams

    attempts = []

    def flaky(req):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise httpx.ConnectError("refused")
        if len(attempts) == 2:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"message": "busy"}})
        if len(attempts) == 3:
            return httpx.Response(503, json={"error": {"message": "loading"}})
        return httpx.Response(200, json=chat_response("\\boxed{1}"))

    g = EndpointGenerator("http://srv/v1", "m", retries=3, backoff_s=0.01, transport=httpx.MockTransport(flaky))
    assert g.generate([{"role": "user", "content": "q"}], "direct", SamplingParams()).answer == "\\boxed{1}"
    assert len(attempts) == 4

    g = EndpointGenerator(
        "http://srv",
        "m",
        retries=2,
        backoff_s=0.01,
        transport=httpx.MockTransport(lambda r: httpx.Response(500, text="boom")),
    )
    with pytest.raises(EndpointError, match="3 tries"):
        g.generate([{"role": "user", "content": "q"}], "direct", SamplingParams())
    calls = []
    g = EndpointGenerator(
        "http://srv",
        "m",
        retries=5,
        backoff_s=0.01,
        transport=httpx.MockTransport(lambda r: calls.append(1) or httpx.Response(400, text="bad model")),
    )
    with pytest.raises(EndpointError, match="400"):
        g.generate([{"role": "user", "content": "q"}], "direct", SamplingParams())
    assert len(calls) == 1  # a 4xx other than 408/429 is not retried


def test_endpoint_run_bounded_concurrency_and_failures_not_recorded(bench_file, tmp_path):
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def handler(req):
        body = json.loads(req.content)
        q = body["messages"][0]["content"]
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        if q.startswith("Сколько будет 3 "):
            return httpx.Response(400, text="nope")  # fails: not written, retried by the next run
        n = int(q.split()[2])
        return httpx.Response(200, json=chat_response(f"Ответ: {2 * n}"))

    cfg = EvalConfig(bench="jsonl", path=str(bench_file), endpoint="http://srv", api_model="m", concurrency=3)
    g = EndpointGenerator("http://srv", "m", transport=httpx.MockTransport(handler))
    out = tmp_path / "run"
    logs = []
    s = run_eval(cfg, out, generator=g, progress=False, log=logs.append)
    assert state["max"] == 3
    recs = read_records(out / "items.jsonl")
    assert len(recs) == 14 and {r["id"] for r in recs} == {f"q{i}" for i in range(1, 9)} - {"q3"}
    assert all(r["correct"] for r in recs) and s["modes"]["direct"]["pass@1"] == 1.0
    assert any("2 generation(s) failed" in line for line in logs)


# ------------------------------------------------------------------------------------------------ kill + resume


@pytest.mark.slow
def test_killed_subprocess_run_resumes_without_redoing(tiny_qwen2_dir, bench_file, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "tpro.cli",
        "eval",
        "run",
        "--bench",
        "jsonl",
        "--path",
        str(bench_file),
        "--limit",
        "4",
        "--model",
        str(tiny_qwen2_dir),
        "--mode",
        "both",
        "--max-tokens-direct",
        "200",
        "--max-tokens-reasoning",
        "200",
        "--threads",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = out / "items.jsonl"
    deadline = time.monotonic() + 120
    # 200-token generations leave time to kill between records on an idle machine too (with 12 tokens, all 8
    # finished inside one poll interval there and the test saw no mid-way kill).
    while time.monotonic() < deadline and (not items.exists() or len(read_records(items)) < 1):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = items.read_text(encoding="utf-8")
    done_before = read_records(items)
    assert 1 <= len(done_before) < 8, "the run should be killed mid-way"
    assert not (out / "summary.json").exists()

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{len(done_before)} done already, {8 - len(done_before)} to go" in res.stderr
    after = read_records(items)
    keys = [(r["mode"], r["id"], r["sample"]) for r in after]
    assert len(after) == 8 and len(set(keys)) == 8  # every generation once
    # finished lines are untouched (the cut line, if any, is left behind and ignored)
    assert items.read_text(encoding="utf-8").startswith(before.rsplit("\n", 1)[0])
    assert after[: len(done_before)] == done_before
    assert json.loads((out / "summary.json").read_text())["modes"]["reasoning"]["items"] == 4


# ------------------------------------------------------------------------------------------------ real server


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_endpoint_runner_against_tpro_serve_over_a_socket(tiny_qwen2_dir, tiny_qwen2, bench_file, tmp_path):
    """`tpro serve` in a subprocess on the tiny model: the endpoint runner's greedy answers equal the local engine's."""
    from tpro.engine import Engine

    pytest.importorskip("tpro.serve.cli")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tpro.cli",
            "serve",
            "--model",
            str(tiny_qwen2_dir),
            "--dtype",  # the local engine's: fp32 weights as in the checkpoint (serve defaults to --weights auto)
            "float32",
            "--weights",
            "bf16",
            "--port",
            str(port),
            "--threads",
            "1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"tpro serve did not come up: {server.stderr.read() if server.poll() is not None else 'timeout'}"
                )
            time.sleep(0.3)
        common = dict(bench="jsonl", path=str(bench_file), limit=2, max_new_tokens_direct=10, max_new_tokens=10)
        remote = run_eval(
            EvalConfig(**common, endpoint=f"http://127.0.0.1:{port}", concurrency=2),
            tmp_path / "remote",
            progress=False,
            log=lambda s: None,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    local = run_eval(
        EvalConfig(**common, model=str(tiny_qwen2_dir)),
        tmp_path / "local",
        generator=LocalGenerator(Engine.from_loaded(tiny_qwen2)),
        progress=False,
        log=lambda s: None,
    )
    key = lambda r: (r["id"], r["mode"])  # noqa: E731
    r_recs = sorted(read_records(tmp_path / "remote" / "items.jsonl"), key=key)
    l_recs = sorted(read_records(tmp_path / "local" / "items.jsonl"), key=key)
    assert len(r_recs) == 4
    for r, lo in zip(r_recs, l_recs):
        assert (r["id"], r["mode"], r["output_tokens"]) == (lo["id"], lo["mode"], lo["output_tokens"])
        assert (r["reasoning"], r["answer"]) == (lo["reasoning"], lo["answer"])
    assert remote["modes"]["reasoning"]["items"] == local["modes"]["reasoning"]["items"] == 2


def test_local_run_with_eagle_draft_is_lossless(tiny_qwen2_dir, tiny_qwen2, bench_file, tmp_path):
    """--draft DIR loads an EAGLE head through tpro.eagle.load_decoder; greedy answers equal the plain run's."""
    pytest.importorskip("tpro.eagle.decoder")
    from tpro.eagle.head import init_head, save_head

    head_dir = save_head(init_head(tiny_qwen2.model, seed=1), tmp_path / "head")
    from tpro.engine import Engine

    common = dict(
        bench="jsonl",
        path=str(bench_file),
        limit=1,
        model=str(tiny_qwen2_dir),
        max_new_tokens_direct=6,
        max_new_tokens=6,
    )
    run_eval(
        EvalConfig(**common),
        tmp_path / "plain",
        generator=LocalGenerator(Engine.from_loaded(tiny_qwen2)),
        progress=False,
        log=lambda s: None,
    )
    # --batch 1: every generation through the draft (batched, it would speculate only while alone)
    cfg = EvalConfig(**common, draft=str(head_dir), batch=1)
    run_eval(cfg, tmp_path / "eagle", progress=False, log=lambda s: None)
    plain = read_records(tmp_path / "plain" / "items.jsonl")
    eagle = read_records(tmp_path / "eagle" / "items.jsonl")
    assert [r["output"] for r in eagle] == [r["output"] for r in plain]
    assert all(r["extra"]["acceptance_length"] >= 1.0 for r in eagle) and "+" in eagle[0]["generator"]
