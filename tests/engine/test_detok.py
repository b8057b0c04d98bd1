from hypothesis import given, settings
from hypothesis import strategies as st

from tpro.engine.detok import IncrementalDetokenizer, StopMatcher


def test_cyrillic_split_across_byte_tokens_streams_whole_chars(tiny_qwen2):
    tok = tiny_qwen2.tokenizer
    text = "Ёжик в тумане 🦔 — ёлка"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    d = IncrementalDetokenizer(tok)
    pieces = [d.push([i]) for i in ids] + [d.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="абвгд<>/stop\n ", max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_stop_matcher_equals_find_on_whole_text(text, cuts):
    stops = ["stop", "</s>"]
    m, out, prev, stopped = StopMatcher(stops), "", 0, False
    for c in sorted(set(c for c in cuts if c <= len(text))) + [len(text)]:
        piece, stopped = m.push(text[prev:c])
        out += piece
        prev = c
        if stopped:
            break
    if not stopped:
        out += m.flush()
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    assert out == (text[: min(hits)] if hits else text)
    assert stopped == bool(hits)
