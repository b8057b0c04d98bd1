import pytest
from tokenizers import Regex, pre_tokenizers

from tpro.tokenizer.corpus import CorpusError, load_corpus, read_source, split_weight

PRE = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r" ?\w+| ?[^\w\s]+|\s+"), "isolated")]).pre_tokenize_str


def test_text_jsonl_tsv_sources(tmp_path):
    (tmp_path / "a.txt").write_text("Мама мыла раму.\nМама спит.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "мама мыла"}\n{"text": "раму"}\n', encoding="utf-8")
    (tmp_path / "c.tsv").write_text("мама\t10\nраму\t2\n", encoding="utf-8")
    a = read_source(str(tmp_path / "a.txt"), PRE)
    assert a["Мама"] == 2 and a[" мыла"] == 1 and a["."] == 2
    b = read_source(str(tmp_path / "b.jsonl") + ":text", PRE)
    assert b == {"мама": 1, " мыла": 1, "раму": 1}
    c = read_source(str(tmp_path / "c.tsv"), PRE)
    # Word lists become running-text chunks: mostly lower case with the leading space, some capitalised.
    assert c[" мама"] == pytest.approx(8.0) and c[" Мама"] == pytest.approx(2.0) and c[" раму"] == pytest.approx(1.6)


def test_weights_normalise_each_source(tmp_path):
    (tmp_path / "a.txt").write_text("один два три\n" * 50, encoding="utf-8")
    (tmp_path / "b.txt").write_text("four\n", encoding="utf-8")
    total = load_corpus([str(tmp_path / "a.txt"), str(tmp_path / "b.txt") + "@3"], PRE)
    # a.txt: 4 chunks per line ("один", " два", " три", "\n") share weight 1; b.txt: "four", "\n" share 3.
    assert sum(v for k, v in total.items() if k.strip() in ("один", "два", "три")) == pytest.approx(0.75)
    assert total["four"] == pytest.approx(1.5) and total["\n"] == pytest.approx(0.25 + 1.5)
    assert split_weight("wordfreq:ru@0.5") == ("wordfreq:ru", 0.5)


def test_wordfreq_and_errors(tmp_path):
    ru = read_source("wordfreq:ru:100", PRE)
    assert " и" in ru and len(ru) <= 200
    with pytest.raises(CorpusError, match="wordfreq has no list"):
        read_source("wordfreq:xx", PRE)
    (tmp_path / "bad.tsv").write_text("слово\tмного\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="word<TAB>count"):
        read_source(str(tmp_path / "bad.tsv"), PRE)
    with pytest.raises(CorpusError, match="no field"):
        (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
        read_source(str(tmp_path / "x.jsonl") + ":text", PRE)
