"""The playground's streaming client against a real ``tpro serve`` (tiny model) over a socket."""

from __future__ import annotations

from tests.serve.conftest import API_KEY, free_port
from tpro.playground.client import PaneSettings, list_models, request_body, stream_chat


def settings(url: str, **kw) -> PaneSettings:
    model = list_models(url, API_KEY)[0]["id"]
    return PaneSettings(url=url, model=model, api_key=API_KEY, **kw)


def run(s: PaneSettings, prompt: str = "Привет!"):
    events = list(stream_chat(s, [{"role": "user", "content": prompt}]))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    return events, events[-1][1]


def test_streams_answer_with_server_telemetry(tiny_server):
    events, res = run(settings(tiny_server, max_tokens=24))
    assert res.error is None
    pieces = [p for k, p in events if k == "content"]
    assert len(pieces) > 3  # arrived as a stream
    assert "".join(pieces).strip() == res.answer
    assert res.usage["completion_tokens"] == 24 and res.finish_reason == "length"
    assert res.telemetry["generated_tokens"] == 24 and res.telemetry["decoder"] == "vanilla"
    assert res.total_s >= res.ttft_s > 0
    line = res.summary()
    assert "24 tokens" in line and "tok/s" in line and "end to end" in line


def test_reasoning_arrives_apart(tiny_server):
    events, res = run(settings(tiny_server, max_tokens=16, reasoning=True))
    assert res.reasoning and [k for k, _ in events if k == "reasoning"]
    assert res.answer == ""  # 16 tokens of a random model never close the trace


def test_speculative_switch_sent_only_when_set():
    s = PaneSettings(url="http://h:1", model="m")
    assert "speculative" not in request_body(s, [])
    assert request_body(PaneSettings(url="http://h:1/v1/", model="m", speculative=False), [])["speculative"] is False
    assert PaneSettings(url="http://h:1/v1/", model="m").base == "http://h:1/v1"


def test_errors_become_results(tiny_server):
    _, res = run(PaneSettings(url=tiny_server, model="nope", api_key=API_KEY))
    assert "HTTP 404" in res.error and "does not exist" in res.error
    _, res = run(PaneSettings(url=tiny_server, model="nope", api_key="wrong"))
    assert "HTTP 401" in res.error
    _, res = run(PaneSettings(url=f"http://127.0.0.1:{free_port()}", model="m"))
    assert "ConnectError" in res.error
    assert res.summary().startswith("error:")
