"""The chat data format: inference-identical prompts, loss masks on assistant turns only, tokenizer round trip,
in both modes, for the tiny Qwen2/Qwen3 templates, the official Qwen3 template (shipped inside TRL) and the
embedded default's template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpro.models import build_prompt
from tpro.models.tiny import train_tiny_tokenizer
from tpro.train.chat import (
    DataError,
    encode_chat,
    encode_row,
    end_of_turn,
    preference_as_text,
    read_rows,
)

CONV = [
    {"role": "user", "content": "Сколько будет 17*23?"},
    {"role": "assistant", "content": "<think>17*23 = 17*20 + 17*3 = 340 + 51 = 391</think>Ответ: 391"},
    {"role": "user", "content": "А 2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "два плюс два"},
]


def qwen3_official():
    import trl

    tok = train_tiny_tokenizer(qwen3=True)
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    return tok


TOKENIZERS = {
    "tiny-qwen2": lambda: train_tiny_tokenizer(),
    "tiny-qwen3": lambda: train_tiny_tokenizer(qwen3=True),
    "qwen3-official": qwen3_official,
}


def trained_text(tok, enc) -> str:
    """The text of the masked-in tokens, run by run (a run = one assistant turn)."""
    runs, cur = [], []
    for i, m in zip(enc.input_ids, enc.assistant_masks):
        if m:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def check_conversation(tok, mode):
    encs = encode_chat(tok, CONV, mode)
    eot = end_of_turn(tok)
    assert eot == "<|im_end|>"
    runs = [r for e in encs for r in trained_text(tok, e)]
    # Every assistant turn is trained exactly once, closed by the end-of-turn token; no user text is trained.
    assert len(runs) == 2
    assert all(r.endswith(eot) for r in runs)
    assert not any("Сколько" in r or "2+2" in r for r in runs)
    for enc in encs:
        # The tokenizer round trip: ids decode to the text and re-encode to the same ids.
        assert tok.decode(enc.input_ids) == enc.text
        assert tok(enc.text, add_special_tokens=False)["input_ids"] == enc.input_ids
    # The context of the first turn is exactly what inference sends (build_prompt), untrained.
    first = encs[0]
    k = first.assistant_masks.index(1)
    prompt = build_prompt(tok, CONV[:1], mode)
    assert first.text.startswith(prompt.text)
    assert tok.decode(first.input_ids[:k]) == prompt.text or prompt.text.startswith(tok.decode(first.input_ids[:k]))
    if mode == "reasoning":
        assert "17*20" in runs[0] and "</think>" in runs[0] and runs[0].rstrip(eot).endswith("Ответ: 391")
        assert "два плюс два" in runs[1]
    else:
        assert "17*20" not in runs[0] and runs[0] == "Ответ: 391" + eot and runs[1] == "4" + eot
    return encs


@pytest.mark.parametrize("name", list(TOKENIZERS))
@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_masks_and_round_trip(name, mode):
    check_conversation(TOKENIZERS[name](), mode)


def test_qwen3_drops_history_reasoning_so_turns_split():
    # Qwen3's template removes earlier traces from the history: the second turn's context does not extend the
    # first sequence, so it must be its own sequence (training on a context inference never shows is wrong).
    encs = encode_chat(qwen3_official(), CONV, "reasoning")
    assert len(encs) == 2
    assert "17*20" not in encs[1].text


def test_prefix_preserving_template_keeps_one_sequence():
    encs = encode_chat(train_tiny_tokenizer(), CONV, "direct")
    assert len(encs) == 1


@pytest.mark.embedded
@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_embedded_template(embedded, mode):
    encs = check_conversation(embedded.tokenizer, mode)
    if mode == "reasoning":  # Qwen2.5 has no enable_thinking: the prompt pre-fills "<think>\n" (not trained)
        assert "<think>\n" not in trained_text(embedded.tokenizer, encs[0])[0]


def test_row_formats(tmp_path):
    tok = train_tiny_tokenizer()
    alpaca = {"instruction": "Переведи на английский.", "instances": [{"input": "Кот", "output": "Cat"}]}
    (e,) = encode_row(tok, alpaca)
    assert "Переведи на английский.\n\nКот" in e.text and trained_text(tok, e) == ["Cat<|im_end|>"]
    (e,) = encode_row(tok, {"prompt": "Привет", "completion": "Здравствуйте"})
    assert trained_text(tok, e) == ["Здравствуйте<|im_end|>"]
    (e,) = encode_row(tok, {"text": "Мама мыла раму."})
    assert all(e.assistant_masks) and e.text == "Мама мыла раму." + tok.eos_token
    (e,) = encode_row(tok, alpaca, loss_on="all")
    assert all(e.assistant_masks)
    with pytest.raises(DataError, match="not a known format"):
        encode_row(tok, {"foo": 1})


def test_preference_rendering_follows_mode():
    tok = train_tiny_tokenizer(qwen3=True)
    row = {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "<think>x</think>4"}],
        "rejected": [{"role": "assistant", "content": "<think>y</think>5"}],
    }
    p = preference_as_text(tok, row)
    assert p["prompt"] == build_prompt(tok, row["prompt"], "reasoning").text
    assert p["chosen"] == "<think>\nx\n</think>\n\n4<|im_end|>" and p["rejected"].endswith("5<|im_end|>")
    d = preference_as_text(tok, {**row, "meta": {"mode": "direct"}})
    assert d["prompt"].endswith("<think>\n\n</think>\n\n") and d["chosen"] == "4<|im_end|>"


def test_read_rows_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_rows(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_rows(empty)
    txt = tmp_path / "t.txt"
    txt.write_text("a\n\nb\n")
    assert read_rows(txt) == [{"text": "a"}, {"text": "b"}]
