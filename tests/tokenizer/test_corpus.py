import hashlib

import pytest
from tokenizers import Regex, pre_tokenizers

from tpro.tokenizer import corpus
from tpro.tokenizer.corpus import (
    DEFAULT_CYRILLIC,
    PROFILES,
    CorpusError,
    MissingSourceError,
    default_cyrillic_specs,
    language_weights,
    load_corpus,
    read_source,
    split_weight,
)

PRE = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r" ?\w+| ?[^\w\s]+|\s+"), "isolated")]).pre_tokenize_str


@pytest.fixture
def hunspell_dir(tmp_path, monkeypatch):
    """A hunspell directory holding only ru_RU.dic and uk_UA.dic (disjoint words), in place of /usr/share/hunspell."""
    d = tmp_path / "hunspell"
    d.mkdir()
    (d / "ru_RU.dic").write_text("3\nмама/AB\nрама\n# a comment line\n", encoding="utf-8")
    (d / "uk_UA.dic").write_text("2\nїжак/X\nґанок\n", encoding="utf-8")
    monkeypatch.setattr(corpus, "HUNSPELL_DIR", d)
    return d


def _weight_of(counts, words):
    return sum(v for k, v in counts.items() if k.strip().lower() in words)


def test_text_jsonl_tsv_sources(tmp_path):
    (tmp_path / "a.txt").write_text("Мама мыла раму.\nМама спит.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "мама мыла"}\n{"text": "раму"}\n', encoding="utf-8")
    (tmp_path / "c.tsv").write_text("мама\t10\nраму\t2\n", encoding="utf-8")
    a = read_source(str(tmp_path / "a.txt"), PRE).counts
    assert a["Мама"] == 2 and a[" мыла"] == 1 and a["."] == 2
    b = read_source(str(tmp_path / "b.jsonl") + ":text", PRE).counts
    assert b == {"мама": 1, " мыла": 1, "раму": 1}
    c = read_source(str(tmp_path / "c.tsv"), PRE).counts
    # Word lists become running-text chunks: mostly lower case with the leading space, some capitalised, and a
    # tenth of those at a line's start (no space), the forms running text shows.
    assert c[" мама"] == pytest.approx(8.0) and c[" Мама"] == pytest.approx(1.8) and c["Мама"] == pytest.approx(0.2)
    assert c[" раму"] == pytest.approx(1.6) and c["Раму"] == pytest.approx(0.04)
    assert sum(c.values()) == pytest.approx(12.0)  # the list's weight, only redistributed


def test_weights_normalise_each_source(tmp_path):
    (tmp_path / "a.txt").write_text("один два три\n" * 50, encoding="utf-8")
    (tmp_path / "b.txt").write_text("four\n", encoding="utf-8")
    total = load_corpus([str(tmp_path / "a.txt"), str(tmp_path / "b.txt") + "@3"], PRE).counts
    # a.txt: 4 chunks per line ("один", " два", " три", "\n") share weight 1; b.txt: "four", "\n" share 3.
    assert sum(v for k, v in total.items() if k.strip() in ("один", "два", "три")) == pytest.approx(0.75)
    assert total["four"] == pytest.approx(1.5) and total["\n"] == pytest.approx(0.25 + 1.5)
    assert split_weight("wordfreq:ru@0.5") == ("wordfreq:ru", 0.5)


def test_wordfreq_and_errors(tmp_path):
    ru = read_source("wordfreq:ru:100", PRE).counts
    assert " и" in ru and "И" in ru and len(ru) <= 300  # 100 words: " w", " W", "W"
    with pytest.raises(CorpusError, match="wordfreq has no list"):
        read_source("wordfreq:xx", PRE)
    (tmp_path / "bad.tsv").write_text("слово\tмного\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="word<TAB>count"):
        read_source(str(tmp_path / "bad.tsv"), PRE)
    with pytest.raises(CorpusError, match="no field"):
        (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
        read_source(str(tmp_path / "x.jsonl") + ":text", PRE)


def test_default_corpus_is_a_fixed_list(hunspell_dir):
    # Whatever is installed (here: two of the seven dictionaries), the default names the same sources.
    assert default_cyrillic_specs() == list(DEFAULT_CYRILLIC)
    hunspell = {split_weight(s)[0] for s in DEFAULT_CYRILLIC if s.startswith("hunspell")}
    stems = {f"hunspell:{x}" for x in ("ru", "uk", "bg", "kk", "mn")}
    assert hunspell == stems | {"hunspell-forms:be", "hunspell-forms:sr"}


def test_missing_source_stops_unless_allowed(hunspell_dir):
    specs = ["hunspell:ru", "hunspell:kk@0.5", "hunspell:be"]
    with pytest.raises(MissingSourceError) as e:
        load_corpus(specs, PRE)
    msg = str(e.value)
    # Every missing source at once, each with its package and the fix; the installed one is not named.
    assert "apt-get install hunspell-kk" in msg and "apt-get install hunspell-be" in msg and "--allow-missing" in msg
    assert "hunspell-ru" not in msg
    got = load_corpus(specs, PRE, allow_missing=True)
    assert [s.spec for s in got.sources] == ["hunspell:ru"]
    assert len(got.missing) == 2 and "hunspell-kk" in got.missing[0] and "hunspell-be" in got.missing[1]
    assert _weight_of(got.counts, {"мама", "рама"}) == pytest.approx(1.0)


def test_hunspell_reader_skips_count_and_comment_lines(hunspell_dir):
    words = corpus.hunspell_words("ru")
    assert words == {"мама": 1.0, "рама": 1.0}


# A Serbian-like dictionary with numeric flags (FLAG num, as sr_RS has), a rule with a condition, a rule whose
# "add" part is malformed (a bracket class, as some kk_KZ rules), and NEEDAFFIX (a stem that is never a word).
FORMS_AFF = """SET UTF-8
FLAG num
NEEDAFFIX 99

SFX 1 Y 3
SFX 1 а е а
SFX 1 а ом а
SFX 1 0 ами [^а]

SFX 2 Y 1
SFX 2 0 [ао]ш .

SFX 3 Y 1
SFX 3 к ски к
"""


@pytest.fixture
def forms_dir(tmp_path, monkeypatch):
    d = tmp_path / "hunspell"
    d.mkdir()
    (d / "sr_RS.aff").write_text(FORMS_AFF, encoding="utf-8")
    (d / "sr_RS.dic").write_text("4\nкућа/1\nград/1,2\nпотк/3,99\n2020\n", encoding="utf-8")
    monkeypatch.setattr(corpus, "HUNSPELL_DIR", d)
    return d


def test_hunspell_forms_expand_one_level_of_suffixes(forms_dir):
    forms = corpus.hunspell_forms("sr")
    # кућа: -а -> -е, -ом (the condition "а" holds); the -ами rule needs a stem not ending in а.
    # град: + -ами (condition [^а] holds), and flag 2's bracket "add" is dropped; потк: NEEDAFFIX, so only its form.
    assert set(forms) == {"кућа", "куће", "кућом", "град", "градами", "потски"}
    assert corpus.hunspell_forms("xx") is None
    assert corpus.hunspell_words("sr") == {"кућа": 1.0, "град": 1.0, "потк": 1.0}  # stems only, flags cut
    assert len(corpus._evenly_spaced(forms, 3)) == 3


def test_hunspell_forms_order_does_not_follow_the_hash_seed(forms_dir):
    # The forms are thinned to HUNSPELL_MAX by position, so their order decides which go in: it must not depend on
    # Python's string hashing (spylls keeps an entry's flags in a set). Many flags per stem make a wrong order likely.
    import os
    import subprocess
    import sys

    rules = "".join(f"SFX {k} Y 1\nSFX {k} 0 {chr(0x430 + k)}{k} .\n\n" for k in range(1, 25))
    (forms_dir / "sr_RS.aff").write_text("SET UTF-8\nFLAG num\n\n" + rules, encoding="utf-8")
    flags = ",".join(str(k) for k in range(1, 25))
    (forms_dir / "sr_RS.dic").write_text(f"2\nдом/{flags}\nлес/{flags}\n", encoding="utf-8")
    code = (
        "import sys; from pathlib import Path; from tpro.tokenizer import corpus; "
        "corpus.HUNSPELL_DIR = Path(sys.argv[1]); print(list(corpus.hunspell_forms('sr')))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, str(forms_dir)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1 and outs.pop().count("дом") == 25


def test_hunspell_forms_source_is_recorded_and_weighted(forms_dir):
    got = load_corpus(["hunspell-forms:sr", "hunspell:sr"], PRE, {"sr": 2.0})
    rec = [s.record() for s in got.sources]
    assert rec[0]["kind"] == "hunspell-forms" and rec[0]["language"] == "sr" and rec[0]["weight"] == 2.0
    assert rec[1]["weight"] == 2.0  # the language weight reaches both kinds
    aff, dic = (forms_dir / "sr_RS.aff").read_bytes(), (forms_dir / "sr_RS.dic").read_bytes()
    both = hashlib.sha256(dic).hexdigest() + hashlib.sha256(aff).hexdigest()
    assert rec[0]["sha256"] == hashlib.sha256(both.encode()).hexdigest() and rec[0]["bytes"] == len(aff) + len(dic)
    assert "spylls" in rec[0]["version"] and rec[0]["chunks"] == 6 * 3
    # The rules are part of the data: a changed .aff changes the hash, and the forms.
    (forms_dir / "sr_RS.aff").write_text(FORMS_AFF.replace("SFX 1 а ом а", "SFX 1 а ою а"), encoding="utf-8")
    again = load_corpus(["hunspell-forms:sr"], PRE).sources[0]
    assert again.record()["sha256"] != rec[0]["sha256"] and " кућою" in again.counts
    with pytest.raises(MissingSourceError, match="apt-get install hunspell-kk"):
        load_corpus(["hunspell-forms:kk"], PRE)
    (forms_dir / "sr_RS.aff").unlink()  # a .dic without its rules: named, nothing read
    with pytest.raises(MissingSourceError, match=r"needs the affix rules .*sr_RS\.aff.*hunspell:sr \(stems only\)"):
        load_corpus(["hunspell-forms:sr"], PRE)


def test_hunspell_forms_without_spylls_names_the_fix(forms_dir, monkeypatch):
    def no_spylls():
        raise MissingSourceError("the spylls package (hunspell affix rules) is not installed. Fix: pip install x")

    monkeypatch.setattr(corpus, "_spylls", no_spylls)
    with pytest.raises(MissingSourceError, match="hunspell-forms:sr: the spylls package") as e:
        load_corpus(["hunspell-forms:sr", "hunspell:sr"], PRE)
    assert "--allow-missing" in str(e.value)
    got = load_corpus(["hunspell-forms:sr", "hunspell:sr"], PRE, allow_missing=True)
    assert [s.spec for s in got.sources] == ["hunspell:sr"] and "spylls" in got.missing[0]


def test_sources_are_recorded_with_version_size_and_hash(hunspell_dir, tmp_path):
    text = tmp_path / "ru.txt"
    text.write_text("Мама мыла раму.\n", encoding="utf-8")
    got = load_corpus(["wordfreq:ru:50@2", "hunspell:uk", str(text)], PRE, {"ru": 3.0})
    wf, hs, tx = (s.record() for s in got.sources)

    import wordfreq

    data = corpus.Path(wordfreq.available_languages("best")["ru"])
    assert wf["kind"] == "wordfreq" and wf["language"] == "ru" and wf["weight"] == 6.0  # @2 x ru's 3
    assert wf["version"].startswith("wordfreq 3.") and wf["bytes"] == data.stat().st_size
    assert wf["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest() and wf["chunks"] == len(got.sources[0].counts)
    dic = (hunspell_dir / "uk_UA.dic").read_bytes()
    assert hs["kind"] == "hunspell" and hs["language"] == "uk" and hs["weight"] == 1.0
    assert (
        hs["bytes"] == len(dic) and hs["sha256"] == hashlib.sha256(dic).hexdigest() and hs["chunks"] == 6
    )  # 2 stems x (" w", " W", "W")
    assert tx["kind"] == "text" and tx["language"] is None and tx["version"] is None
    assert tx["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    # The hash follows the data: one changed word, another hash (same size, so not a size check in disguise).
    text.write_text("Мама мыла рамы.\n", encoding="utf-8")
    again = load_corpus([str(text)], PRE).sources[0].record()
    assert again["bytes"] == tx["bytes"] and again["sha256"] != tx["sha256"]


def test_language_weights_reach_the_corpus(hunspell_dir):
    specs = ["hunspell:ru@0.5", "hunspell:uk"]
    even = load_corpus(specs, PRE, language_weights("even")).counts
    assert _weight_of(even, {"мама", "рама"}) == pytest.approx(0.5)
    assert _weight_of(even, {"їжак", "ґанок"}) == pytest.approx(1.0)
    ru_first = load_corpus(specs, PRE, language_weights("ru-first")).counts
    assert _weight_of(ru_first, {"мама", "рама"}) == pytest.approx(0.5 * PROFILES["ru-first"]["ru"])
    assert _weight_of(ru_first, {"їжак", "ґанок"}) == pytest.approx(PROFILES["ru-first"]["uk"])
    # A weight of 0 leaves the language out altogether.
    none = load_corpus(specs, PRE, language_weights("ru-first", ["uk=0"])).counts
    assert _weight_of(none, {"їжак", "ґанок"}) == 0 and not any("жак" in k for k in none)


def test_profiles_and_overrides():
    w = language_weights("ru-first")
    assert max(w, key=w.get) == "ru" and all(w["ru"] > v for k, v in w.items() if k != "ru")
    assert language_weights("even") == {}
    assert language_weights("even", ["ru=4,uk=1.5", "kk=2"]) == {"kk": 2.0, "ru": 4.0, "uk": 1.5}
    assert language_weights("ru-first", ["ru=5"])["ru"] == 5.0
    for bad in ("ru:4", "ru=", "=2", "ru=-1", "ru=lots"):
        with pytest.raises(CorpusError, match="LANG=WEIGHT"):
            language_weights("even", [bad])
    with pytest.raises(CorpusError, match="unknown profile"):
        language_weights("kk-first")
