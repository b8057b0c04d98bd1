import pytest

from tpro.models.chat import THINK_PREFILL, build_prompt, normalize_messages, supports_enable_thinking


def test_qwen3_template_uses_enable_thinking(tiny_qwen3):
    tok = tiny_qwen3.tokenizer
    assert supports_enable_thinking(tok)
    direct = build_prompt(tok, "Привет", "direct")
    reasoning = build_prompt(tok, "Привет", "reasoning")
    assert direct.text.endswith("<think>\n\n</think>\n\n")  # the template closes an empty trace
    assert reasoning.text.endswith("<|im_start|>assistant\n")
    assert not direct.started_in_think and not reasoning.started_in_think
    assert tok.decode(reasoning.input_ids) == reasoning.text  # ids are the rendered text, no extra BOS


def test_fallback_reasoning_mode_prefills_think(tiny_qwen2):
    tok = tiny_qwen2.tokenizer
    assert not supports_enable_thinking(tok)
    direct = build_prompt(tok, "Привет", "direct")
    reasoning = build_prompt(
        tok, [{"role": "system", "content": "Будь краток."}, {"role": "user", "content": "Привет"}], "reasoning"
    )
    assert "<think>" not in direct.text and not direct.started_in_think
    assert reasoning.text.endswith(THINK_PREFILL) and reasoning.started_in_think
    assert "Будь краток." in reasoning.text and "<think>" in reasoning.text.split("<|im_start|>user")[0]


def test_history_reasoning_is_dropped():
    msgs = normalize_messages(
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>считаю</think>4"},
            {"role": "user", "content": "а 3+3?"},
        ]
    )
    assert msgs[1]["content"] == "4"


def test_openai_content_parts_are_joined():
    msgs = normalize_messages(
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert msgs[0]["content"] == "ab"


@pytest.mark.parametrize(
    "bad,msg",
    [
        ([], "empty"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user", "content": 5}], "content"),
    ],
)
def test_bad_messages_are_named(bad, msg):
    with pytest.raises(ValueError, match=msg):
        normalize_messages(bad)


def test_unknown_mode(tiny_qwen2):
    with pytest.raises(ValueError, match="mode"):
        build_prompt(tiny_qwen2.tokenizer, "x", "fast")
