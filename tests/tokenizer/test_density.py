import json

from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from tpro.tokenizer.density import bar_chart, measure, to_json, to_markdown


def _word_level():
    """A tokenizer whose tokens we can count by hand: whitespace-split words from a fixed vocabulary."""
    vocab = {"[UNK]": 0, "мама": 1, "мыла": 2, "раму": 3, ".": 4, ",": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return tok


def _char_level():
    chars = ["[UNK]", *dict.fromkeys("мамылару.по-русски ")]
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    return tok


def test_hand_counted_word_level():
    d = measure(_word_level(), ["мама мыла раму.", "", "мама, раму"])
    assert (d.lines, d.words, d.tokens) == (2, 5, 7)
    assert d.tokens_per_word == round(7 / 5, 4)
    assert d.words_1_token == 1.0 and d.words_le2_tokens == 1.0
    assert d.chars == len("мама мыла раму.") + len("мама, раму")


def test_hand_counted_char_level_and_hyphen_words():
    # "по-русски": two words (по, русски); every character one token, spaces included.
    d = measure(_char_level(), ["мы по-русски"])
    assert d.words == 3 and d.tokens == len("мы по-русски")
    assert d.words_1_token == 0.0  # no word is a single character
    assert d.words_le2_tokens == round(2 / 3, 4)  # "мы" and "по"
    assert d.chars_per_token == 1.0


def test_outputs(tmp_path):
    rows = [
        measure(_word_level(), ["мама мыла раму."], "words", "ru"),
        measure(_char_level(), ["мама мыла раму."], "chars", "ru"),
    ]
    md = to_markdown(rows)
    assert "| ru | 3 | chars |" in md and "+" in md
    assert json.loads(to_json(rows))[0]["tokenizer"] == "words"
    bar_chart(rows, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
