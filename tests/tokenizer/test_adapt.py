import json
import math

import pytest

from tpro.tokenizer.adapt import CYRILLIC_PIECE, AdaptConfig, adapt, removal_order
from tpro.tokenizer.bpe import load_base, token_bytes, token_text

from .conftest import SMALL_CORPUS, SMALL_KEEP


def test_swap_keeps_size_ids_and_bytes(adapted_tiny, tiny_qwen2_dir):
    out, report = adapted_tiny
    base, new = load_base(str(tiny_qwen2_dir)), load_base(str(out))
    assert len(new.vocab) == len(base.vocab) and new.vocab_size == base.vocab_size
    assert new.added == base.added
    id_base = {i: t for t, i in base.vocab.items()}
    swap = json.loads((out / "swap.json").read_text())
    assert len(swap) == report["swapped"] == 40
    swapped_ids = {row["id"] for row in swap}
    for t, i in new.vocab.items():
        if i not in swapped_ids:
            assert id_base[i] == t  # kept: same id, same bytes
    for row in swap:
        assert id_base[row["id"]] == row["removed"] and new.vocab[row["added"]] == row["id"]
        assert CYRILLIC_PIECE.fullmatch(token_text(row["added"]))  # only Cyrillic word pieces come in
        assert len(token_bytes(row["removed"])) > 1  # byte tokens never go
        assert row["added"] not in base.vocab


def test_every_added_token_is_reachable_and_merges_are_consistent(adapted_tiny):
    out, _ = adapted_tiny
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    new = load_base(str(out))
    for row in json.loads((out / "swap.json").read_text()):
        assert tok.encode(row["added_text"], add_special_tokens=False).ids == [row["id"]]
    for a, b in new.merges:  # every merge joins two vocabulary entries into a third
        assert a in new.vocab and b in new.vocab and a + b in new.vocab


def test_cyrillic_denser_english_unchanged(adapted_tiny, tiny_qwen2_dir):
    from tokenizers import Tokenizer

    out, report = adapted_tiny
    base = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json"))
    new = Tokenizer.from_file(str(out / "tokenizer.json"))
    ru = "Сегодня в городе прошла большая конференция, посвящённая развитию науки и образования."
    en = "The committee will publish its report on Monday; def f(x): return x**2 + 12345"
    assert len(new.encode(ru).ids) < len(base.encode(ru).ids)
    assert new.encode(en).ids == base.encode(en).ids
    d = report["density_on_corpus"]
    assert d["cyrillic"]["adapted"] < d["cyrillic"]["base"]
    assert d[SMALL_KEEP[0]]["adapted"] == d[SMALL_KEEP[0]]["base"]


def test_removal_order_is_closed_and_protects(tiny_qwen2_dir):
    from collections import Counter

    base = load_base(str(tiny_qwen2_dir))
    # Arbitrary scores: removal must stay closed whatever they are.
    score = Counter({i: (i * 7919) % 13 for i in base.vocab.values()})
    order, eff = removal_order(base, score, protect_ascii=False)
    assert not set(order) & set(base.added)
    assert all(len(token_bytes(t)) > 1 for t in order)
    for k in (1, 10, 57, len(order) // 2, len(order)):
        removed = set(order[:k])
        for a, b in base.merges:
            if a + b not in removed:  # a kept merge never uses a removed token
                assert a not in removed and b not in removed
    order_ascii, _ = removal_order(base, score, protect_ascii=True)
    assert all(max(token_bytes(t)) >= 128 for t in order_ascii)
    # A token's effective score is at least that of anything built from it.
    for a, b in base.merges:
        if a + b in eff and eff[a + b] < math.inf:
            assert eff[a] >= eff[a + b] and eff[b] >= eff[a + b]


def test_swap_larger_than_removable_is_a_clear_error(tiny_qwen2_dir, tmp_path):
    with pytest.raises(ValueError, match="removable"):
        adapt(
            AdaptConfig(
                base=str(tiny_qwen2_dir),
                out=str(tmp_path / "o"),
                swap=100_000,
                corpus=SMALL_CORPUS,
                keep_corpus=SMALL_KEEP,
                trainer_words=20_000,
            ),
            show_progress=False,
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.embedded
@pytest.mark.slow
def test_adapt_embedded_qwen_vocab(embedded, tmp_path):
    """The real 151k Qwen2.5 vocabulary, small swap: ids/bytes kept, new tokens reachable, English unchanged."""
    from tokenizers import Tokenizer

    out = tmp_path / "q"
    report = adapt(
        AdaptConfig(
            base=embedded.source,
            out=str(out),
            swap=300,
            corpus=["wordfreq:ru:20000"],
            keep_corpus=["wordfreq:en:10000@2"],
            trainer_words=200_000,
        ),
        show_progress=False,
    )
    assert report["swapped"] == 300 and report["reachable_fraction"] > 0.8
    base, new = load_base(embedded.source), load_base(str(out))
    assert len(new.vocab) == len(base.vocab) and new.added == base.added
    changed = [t for t, i in base.vocab.items() if new.vocab.get(t) != i]
    assert len(changed) == 300
    b = Tokenizer.from_file(str(base.directory / "tokenizer.json"))
    n = Tokenizer.from_file(str(out / "tokenizer.json"))
    en = "import numpy as np\nfor i in range(10):\n    print(i ** 2)  # squares 0..81"
    assert n.encode(en).ids == b.encode(en).ids
    ru = "Правительство утвердило новую программу поддержки молодых учёных и преподавателей."
    assert len(n.encode(ru).ids) < len(b.encode(ru).ids)
    assert n.decode(n.encode(ru).ids) == ru
