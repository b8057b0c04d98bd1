import numpy as np
import pytest
import torch

from tpro.data.io import DataError
from tpro.data.tagging import (
    DEFAULT_LABELS,
    BalanceConfig,
    EmbeddingTagger,
    ZeroShotTagger,
    balance,
    detect_language,
    lang_quota,
    load_labels,
    semantic_duplicates,
)


@pytest.mark.parametrize(
    "text,lang",
    [
        ("Hello, world", "en"),
        ("Привет, мир", "ru"),
        ("Қазақстан Республикасы", "kk"),
        ("Прывітанне, як справы? Ўсё добра", "be"),
        ("Привіт, як справи", "uk"),
        ("Здраво, како си? Ѓорѓи", "mk"),
        ("Татарстан Республикасы җир", "tt"),
        ("12345 !!", "other"),
    ],
)
def test_detect_language(text, lang):
    assert detect_language(text) == lang


@pytest.mark.parametrize(
    "available,caps",
    [
        ({"ru": 90, "en": 50}, {"en": 0.1}),
        ({"ru": 90, "en": 5}, {"en": 0.1}),
        ({"ru": 80, "en": 50, "kk": 50}, {"en": 0.1, "kk": 0.2}),
        ({"ru": 10, "en": 3, "kk": 500}, {"en": 0.1, "kk": 0.5}),
    ],
)
def test_lang_quota_respects_every_cap_and_keeps_what_it_can(available, caps):
    quota = lang_quota(available, caps)
    total = sum(n for lang, n in available.items() if lang not in caps) + sum(quota.values())
    for lang, share in caps.items():
        assert quota[lang] <= available[lang]
        assert quota[lang] <= share * total + 1e-9
        # maximal: one more row of this language would break its cap (or there is none left)
        assert quota[lang] == available[lang] or quota[lang] + 1 > share * (total + 1)


def test_balance_caps_tags_and_english_share():
    rows = [{"text": f"Вопрос номер {i}", "tags": ["math" if i % 2 else "code"]} for i in range(40)]
    rows += [{"text": f"Question number {i}", "tags": ["math"]} for i in range(40)]
    kept, counts = balance(rows, BalanceConfig(max_per_tag=15, lang_cap=["en=0.1"]))
    assert counts["per_tag_out"]["code"] == 15 and counts["per_tag_out"]["math"] <= 15
    assert counts["per_lang_out"].get("en", 0) <= 0.1 * len(kept)
    assert kept == sorted(kept) and kept[0] == 0  # earlier rows win, order kept
    assert counts["per_lang_in"] == {"en": 40, "ru": 40}
    with pytest.raises(DataError):
        BalanceConfig(lang_cap=["en=0.6", "ru=0.5"])


def test_semantic_duplicates_only_within_a_tag():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 16))
    emb = np.concatenate([base, base[:2] + 0.01 * rng.normal(size=(2, 16)), base[2:3]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    groups = ["a", "a", "b", "b", "a", "x", "b"]  # row 5 copies row 1 but has another tag
    kept, clusters = semantic_duplicates(emb, groups, threshold=0.95, chunk=2)
    assert kept == [0, 1, 2, 3, 5]
    assert sorted((c["kept"], sorted(m["index"] for m in c["members"])) for c in clusters) == [(0, [0, 4]), (2, [2, 6])]


def test_labels_file(tmp_path):
    p = tmp_path / "labels.yaml"
    p.write_text("math: Solve a math problem.\npoetry: Write a poem.\n")
    assert load_labels(str(p)) == {"math": "Solve a math problem.", "poetry": "Write a poem."}
    p.write_text("- a\n- b\n")
    with pytest.raises(DataError, match="mapping"):
        load_labels(str(p))
    assert load_labels(None) == DEFAULT_LABELS


@pytest.fixture(scope="module")
def minilm():
    from tpro.data.tagging import Embedder

    return Embedder()


def test_embedding_tagger_on_english_requests(minilm):
    probes = {
        "Solve the equation x^2 - 5x + 6 = 0": "math",
        "Write a Python function that reverses a list": "code",
        "Write a poem about autumn rain": "writing",
        "Who was the first president of the United States?": "knowledge",
        "Translate 'good morning' into French": "language",
        "Hi! How are you today?": "chitchat",
        "Why is the sky blue? Explain the physics": "science",
        "What should I pack for a week-long hiking trip?": "advice",
    }
    res = EmbeddingTagger(DEFAULT_LABELS, minilm, top_k=2, min_score=0.99).tag(list(probes))
    assert [r.tags for r in res] == [[t] for t in probes.values()]  # min_score keeps the second tag out
    assert set(res[0].scores) == set(DEFAULT_LABELS) and all(-1 <= s <= 1 for s in res[0].scores.values())
    e = minilm(["a", "b"])
    assert e.shape == (2, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)


def test_zero_shot_tagger_reads_calibrated_label_name_probabilities(tiny_qwen2):
    from tpro.engine import Engine

    engine = Engine.from_loaded(tiny_qwen2)
    labels = {"math": "math problems", "code": "programming", "talk": "small talk"}
    text = "Сколько будет 2+2?"

    def probs(t):  # the next-token distribution over the labels' first tokens, computed here by hand
        prompt = engine.prompt(ZeroShotTagger(engine, labels, calibrate=False).messages(t), "direct")
        ids = [tiny_qwen2.tokenizer.encode(n, add_special_tokens=False)[0] for n in labels]
        with torch.no_grad():
            logits = tiny_qwen2.model(torch.tensor([prompt.input_ids])).logits[0, -1]
        return torch.softmax(logits[ids], -1)

    raw = ZeroShotTagger(engine, labels, top_k=3, calibrate=False)
    assert list(raw.scores(text).values()) == pytest.approx(probs(text).tolist(), abs=1e-4)
    cal = ZeroShotTagger(engine, labels, top_k=3)
    expected = probs(text) / probs("N/A")
    expected = expected / expected.sum()
    scores = cal.scores(text)
    assert list(scores.values()) == pytest.approx(expected.tolist(), abs=1e-3)
    assert cal.tag([text])[0].tags == sorted(labels, key=lambda t: -scores[t])
    assert "- math: math problems" in cal.messages(text)[0]["content"]
    with pytest.raises(DataError, match="distinct tokens"):
        ZeroShotTagger(engine, {"ab": "x", "ab2": "y"})


@pytest.mark.embedded
def test_zero_shot_tagger_on_the_embedded_model(embedded):
    from tpro.engine import Engine

    tagger = ZeroShotTagger(Engine.from_loaded(embedded), DEFAULT_LABELS)
    res = tagger.tag(
        [
            "Напишите на Python функцию, которая сортирует список строк по длине.",
            "Напиши стихотворение об осеннем дожде.",
        ]
    )
    assert [r.tags[0] for r in res] == ["code", "writing"]
