"""Property tests over the request schema: whatever a client sends, the server answers 2xx or a 4xx in
OpenAI's error format, never a 5xx, and keeps serving.

Two generators: schemathesis derives requests from the server's own OpenAPI document (valid and invalid
against it), and hypothesis throws arbitrary JSON at the endpoint. Generations are capped at 4 tokens
(``max_tokens_limit``) so a hundred requests stay cheap on the tiny model.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tpro.serve import ServeConfig, build_app

FUZZ_CONFIG = ServeConfig(max_tokens_limit=4, max_new_tokens=4, timeout_s=60)


@pytest.fixture(scope="module")
def fuzz_app(engine):
    return build_app(engine, FUZZ_CONFIG)


@pytest.fixture(scope="module")
def chat_operation(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)["/v1/chat/completions"]["POST"]


def assert_answer_shape(status: int, payload) -> None:
    assert status < 500, payload
    if status >= 400:
        assert set(payload["error"]) == {"message", "type", "param", "code"}
        assert payload["error"]["message"]


# Drawn inside the test (st.data) because the strategy comes from the app's live OpenAPI document; schemathesis'
# own pytest decorator does not run under pytest 9.
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_schema_driven_requests_never_5xx(data, chat_operation, fuzz_app, engine):
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    case = data.draw(chat_operation.as_strategy(generation_mode=mode))
    if isinstance(case.body, dict) and data.draw(st.booleans()):
        case.body["model"] = engine.name  # a served name, so valid bodies reach the engine
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_answer_shape(response.status_code, response.json())
    assert fuzz_app.state.server.runner.pending == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = {
    "model": st.text(max_size=10) | st.just("{name}") | st.integers(),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "x"]), "content": st.text(max_size=30) | JSON}
        ),
        max_size=3,
    )
    | JSON,
    "max_tokens": st.integers(-5, 10**6) | JSON,
    "temperature": st.floats(-1, 5, allow_nan=False) | JSON,
    "top_p": st.floats(-0.5, 1.5, allow_nan=False),
    "top_k": st.integers(-3, 10**6),
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=20),
    "seed": st.integers(-10, 2**70),
    "n": st.integers(-1, 3),
    "stream": st.booleans() | JSON,
    "chat_template_kwargs": st.fixed_dictionaries({"enable_thinking": st.booleans() | JSON}) | JSON,
    "speculative": st.booleans() | JSON,
}


@given(body=st.fixed_dictionaries({}, optional=FIELDS) | JSON, raw=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_json_never_5xx(engine, body, raw):
    with TestClient(build_app(engine, FUZZ_CONFIG)) as client:
        text = json.dumps(body).replace("{name}", engine.name)
        if raw:  # also as truncated bytes: malformed JSON
            text = text[: max(1, len(text) // 2)]
        r = client.post("/v1/chat/completions", content=text.encode(), headers={"Content-Type": "application/json"})
        assert_answer_shape(r.status_code, r.json() if r.headers["content-type"].startswith("application/json") else {})
        ok = client.post(
            "/v1/chat/completions",
            json={"model": engine.name, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert ok.status_code == 200
