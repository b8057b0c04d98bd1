"""Corpora for tokenizer adaptation, as weighted chunk counts, and a record of exactly what went in.

Every source becomes a ``Counter`` of text chunks -> weight. A chunk is what the base pre-tokenizer would cut
from running text (a word with its leading space, a punctuation run, ...): BPE never merges across chunks, so a
weighted list of chunks carries everything the trainer and the frequency scorer need, and is far smaller than
the text. Each source is normalised to total weight 1 and scaled by its own weight, so a 700k-word list does
not drown a 30k-word one.

Source specs (``--corpus`` / ``--keep-corpus``):
  ``wordfreq:LANG[:N]``  the N (default 150000) most frequent words of the ``wordfreq`` package for LANG
  ``hunspell:LANG``      the stems of Debian's hunspell dictionary (``/usr/share/hunspell``, package hunspell-LANG)
  ``hunspell-forms:LANG``  the same stems and the inflected forms their own suffix rules make (one level, via
                         ``spylls``): running text is mostly inflected forms, which a stem list never shows
  ``code``               Python source of the standard library on this machine (the "code" part of a keep mix)
  ``math``               a small built-in sample of math notation written for this project
  ``PATH.txt`` / ``PATH.md``   running text
  ``PATH.jsonl:FIELD``   running text in FIELD of each JSON line
  ``PATH.tsv``           ``word<TAB>count`` lines (a word-frequency list)
  ``hf:NAME[:CONFIG]:SPLIT:FIELD``   a ``datasets`` dataset (downloads; the user's path)
Any spec may end with ``@WEIGHT`` (default 1). In the Cyrillic corpus a word list's weight is also multiplied by
its language's weight (a profile, ``PROFILES``, and ``--lang-weights``); files and datasets have no language.

The default Cyrillic corpus is one fixed list (``DEFAULT_CYRILLIC``), the same on every machine: a source that
is not installed stops the run (``MissingSourceError``) unless the caller allows it, and every source read is
described (version, bytes, sha256 of its data, chunks) for ``report.json``.

It knows nothing about BPE merges or vocabularies.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tpro.io import JSONLError, read_jsonl

HUNSPELL_FILES = {
    "ru": "ru_RU",
    "uk": "uk_UA",
    "be": "be_BY",
    "bg": "bg_BG",
    "sr": "sr_RS",
    "kk": "kk_KZ",
    "mn": "mn_MN",
}
HUNSPELL_DIR = Path("/usr/share/hunspell")

# The default Cyrillic corpus, the same sources on every machine (scripts/setup.sh installs the hunspell
# packages; adapt stops when one is missing unless --allow-missing). wordfreq ships frequency lists for ru, uk, bg
# and mk (CC BY-SA 4.0); Debian's hunspell dictionaries (MPL/LGPL/GPL or CC BY-SA, see
# /usr/share/doc/hunspell-LANG/copyright) give stems for be, sr, kk and mn, which wordfreq lacks, and more stems
# for ru, uk and bg. Within a language the weights add up to 1, so a language's weight in the profile is its share:
# where both exist, real frequencies carry 0.75 and frequency-less stems 0.25 (breadth without drowning the
# frequent words); where one list is all a language has, it carries all of it. Belarusian and Serbian, Slavic
# languages with only a stem list, read it with its inflected forms (``hunspell-forms``): most words of their
# running text are forms a stem list never shows (on Qwen3's vocabulary, held-out Belarusian 2.869 -> 2.765
# tokens/word, Serbian 2.432 -> 2.430, the 8-language average 2.404 -> 2.394; docs/benchmarks.md, issue 14).
# Kazakh and Mongolian keep stems: Kazakh's forms made it worse (2.563 -> 2.659: 1.4M agglutinated forms thinned to
# 60k leave about one long suffix chain per stem in place of the stem), and Mongolian's rules make 44M forms.
# No Russian running text is in the default: the only Russian text on a Debian machine, gettext catalogs
# (/usr/share/locale/ru), is what docs/benchmarks.md holds out to measure density.
DEFAULT_CYRILLIC = (
    "wordfreq:ru@0.75",
    "hunspell:ru@0.25",
    "wordfreq:uk@0.75",
    "hunspell:uk@0.25",
    "wordfreq:bg@0.75",
    "hunspell:bg@0.25",
    "wordfreq:mk",
    "hunspell-forms:be",
    "hunspell-forms:sr",
    "hunspell:kk",
    "hunspell:mn",
)
DEFAULT_KEEP = ("wordfreq:en:100000@2", "code@1", "math@0.5")

# Language weights of the Cyrillic corpus (a language not listed weighs 1). Candidates are ranked by tokens saved
# on the weighted corpus, so a language gets new tokens roughly in proportion to weight x how much its words still
# split. With every language at 1 (the old default, "even"), Russian had ~16% of the corpus and gained least
# (Qwen3 2.45 -> 2.07 tokens/word on held-out text, -15%; Gemma-3 1.90) because Qwen3 already covers it best.
# "ru-first" gives Russian 3.3 of 9.55 (~35%, about twice its new tokens) and keeps the other languages of the
# 8-language target (uk be bg sr mk kk; ky has no list and learns from kk) at 1 each; Mongolian, outside the
# target, rides along at 0.25. Every other Cyrillic language is guarded by protection (adapt.py), not weight.
# (Russian was 3 until Belarusian and Serbian got their forms; then Russian came out 2.127 tokens/word against
# Gemma-3's 2.128, and 3.3 keeps a margin: 2.124, at +0.0006 on the 8-language average.)
PROFILES: dict[str, dict[str, float]] = {
    "ru-first": {"ru": 3.3, "uk": 1.0, "be": 1.0, "bg": 1.0, "sr": 1.0, "mk": 1.0, "kk": 1.0, "mn": 0.25},
    "even": {},
}

# Share of a word list's weight given to the capitalised form: word lists are lower-case, running text starts
# sentences and names with capitals.
CAPITALISED_SHARE = 0.2
# Share of the capitalised form written without the leading space: running text starts lines, and words after an
# opening quote, bracket or hyphen, with no space before them ("Как", "«Петербург" -> "«", "Петербург"), and a
# word list alone never shows the trainer or the scorer those chunks (base tokens like "Как" and "например" were
# removed for it). On the embedded model's vocabulary, held-out UD Russian went 2.1763 -> 2.1684 tokens/word
# (docs/benchmarks.md, issue 14).
LINE_START_SHARE = 0.1

# Our own sample of math notation (written for this project, Apache-2.0 like the rest of it).
MATH_SAMPLE = r"""Solve $x^2 - 5x + 6 = 0$: the roots are $x = 2$ and $x = 3$, so the answer is \boxed{5}.
Let $f(x) = \frac{1}{x+1}$. Then $f'(x) = -\frac{1}{(x+1)^2}$ and $\int_0^1 f(x)\,dx = \ln 2$.
\sum_{k=1}^{n} k = \frac{n(n+1)}{2}, \quad \prod_{i=1}^{n} i = n!, \quad \sqrt{a^2+b^2} \le a + b.
If $a \cdot b = 12$ and $a + b = 7$, then $a^2 + b^2 = 49 - 24 = 25$. Hence $\gcd(12, 18) = 6$.
\begin{align} \lim_{x \to 0} \frac{\sin x}{x} &= 1 \\ e^{i\pi} + 1 &= 0 \end{align}
Probability: $P(A \cap B) = P(A) P(B \mid A)$; expected value $\mathbb{E}[X] = \sum_x x\,p(x)$.
Найдите $x$, если $3x + 7 = 22$. Решение: $3x = 15$, значит $x = 5$. Ответ: \boxed{5}.
"""


class CorpusError(ValueError):
    """A corpus spec could not be read; the message names the spec and the fix."""


class MissingSourceError(CorpusError):
    """Corpus sources that are not installed on this machine; the message names each package and the fix."""


@dataclass
class Source:
    """One source, read: its chunk counts and what they came from (``record()`` is its report.json entry)."""

    spec: str  # as given, @WEIGHT included
    kind: str  # wordfreq | hunspell | hunspell-forms | code | math | text | jsonl | tsv | hf
    language: str | None
    weight: float  # @WEIGHT x the language's weight
    version: str | None  # of the package or data the words come from; None for a plain file
    data: str  # the file (or description) the sha256 is of
    bytes: int
    sha256: str
    counts: Counter = field(repr=False)

    def record(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "language": self.language,
            "weight": self.weight,
            "version": self.version,
            "data": self.data,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "chunks": len(self.counts),
        }


@dataclass
class Corpus:
    """The weighted union of sources: chunk -> weight, the sources read and the ones skipped as missing."""

    counts: Counter
    sources: list[Source]
    missing: list[str]


def split_weight(spec: str) -> tuple[str, float]:
    if "@" in spec:
        head, _, w = spec.rpartition("@")
        try:
            return head, float(w)
        except ValueError:
            pass
    return spec, 1.0


def language_weights(profile: str, overrides: list[str] = ()) -> dict[str, float]:
    """The profile's language weights with ``LANG=WEIGHT[,LANG=WEIGHT...]`` overrides applied, sorted by language."""
    if profile not in PROFILES:
        raise CorpusError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    weights = dict(PROFILES[profile])
    for item in (x.strip() for group in overrides for x in group.split(",")):
        if not item:
            continue
        lang, eq, w = item.partition("=")
        try:
            value = float(w)
        except ValueError:
            value = -1.0
        if not eq or not lang.strip() or value < 0:
            raise CorpusError(f"--lang-weights {item!r}: expected LANG=WEIGHT with WEIGHT >= 0, e.g. ru=4,uk=1")
        weights[lang.strip()] = value
    return dict(sorted(weights.items()))


def source_language(head: str) -> str | None:
    """The language of a word-list spec (``wordfreq:LANG[:N]``, ``hunspell[-forms]:LANG``); None otherwise."""
    kind, _, rest = head.partition(":")
    return rest.partition(":")[0] if kind in ("wordfreq", "hunspell", "hunspell-forms") else None


# ------------------------------------------------------------------------------------------------ readers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _word_chunks(words: dict[str, float]) -> Counter:
    """Word list -> chunks as running text shows them: ' word' (mostly), ' Word' and 'Word' (a line's start)."""
    out: Counter = Counter()
    for w, f in words.items():
        w = w.strip()
        if not w or any(c.isspace() for c in w):
            continue
        cap = w[:1].upper() + w[1:]
        capitalised = f if cap == w else f * CAPITALISED_SHARE
        if cap != w:
            out[" " + w] += f * (1 - CAPITALISED_SHARE)
        out[" " + cap] += capitalised * (1 - LINE_START_SHARE)
        out[cap] += capitalised * LINE_START_SHARE
    return out


def _wordfreq():
    try:
        import wordfreq
    except ImportError as e:
        raise MissingSourceError(
            "the wordfreq package is not installed. Fix: pip install 'tpro[tokenizer]' (bash scripts/setup.sh)"
        ) from e
    return wordfreq


def wordfreq_words(lang: str, n: int = 150_000) -> dict[str, float]:
    wordfreq = _wordfreq()
    langs = wordfreq.available_languages(wordlist="best")
    if lang not in langs:
        raise CorpusError(f"wordfreq has no list for {lang!r}; it has {', '.join(sorted(langs))}")
    d = wordfreq.get_frequency_dict(lang, wordlist="best")
    return dict(list(d.items())[:n])


HUNSPELL_MAX = 60_000  # stems per dictionary (evenly spaced): uk_UA alone has ~330k, and stems carry no frequency


def hunspell_path(lang: str) -> Path:
    return HUNSPELL_DIR / f"{HUNSPELL_FILES.get(lang, lang)}.dic"


def hunspell_words(lang: str, limit: int = HUNSPELL_MAX) -> dict[str, float] | None:
    """Stems of the installed hunspell dictionary, each weight 1 (no frequencies); None if not installed."""
    dic = hunspell_path(lang)
    if not dic.is_file():
        return None
    words: dict[str, float] = {}
    # Line 1 is the entry count; some files (mn_MN) carry '#' comment lines; an entry is 'stem[/FLAGS]'.
    for line in dic.read_bytes().decode("utf-8", errors="ignore").splitlines()[1:]:
        w = line.split("/", 1)[0].strip()
        if w and not w[0].isdigit() and not w.startswith("#"):
            words[w] = 1.0
    return _evenly_spaced(words, limit)


def _evenly_spaced(words: dict[str, float], limit: int) -> dict[str, float]:
    """At most ``limit`` of ``words``, evenly spaced through the file's order (every letter range stays in)."""
    if len(words) <= limit:
        return words
    keys = list(words)
    step = len(keys) / limit
    return {keys[int(i * step)]: 1.0 for i in range(limit)}


def _spylls():
    try:
        from spylls.hunspell import Dictionary
    except ImportError as e:
        raise MissingSourceError(
            "the spylls package (hunspell affix rules) is not installed. Fix: pip install 'tpro[tokenizer]' "
            "(bash scripts/setup.sh)"
        ) from e
    return Dictionary


# A form is letters, digits, apostrophes and hyphens: some dictionaries carry rules whose "add" part holds a
# bracket class by mistake (kk_KZ: "...[аоуұыэ]ңу"), which would teach the trainer brackets.
FORM = re.compile(r"[\w'’-]+")


def hunspell_forms(lang: str, limit: int = HUNSPELL_MAX) -> dict[str, float] | None:
    """Stems of the installed hunspell dictionary and the forms their own suffix rules make, each weight 1.

    One level of suffixes, no prefixes and no continuation classes: that is what a word list of running text
    needs (Belarusian 82k stems -> ~770k forms, Serbian 252k -> ~3M), while the full closure explodes (Mongolian's
    multi-level rules give 267M with hunspell's ``unmunch``, which also cannot read Serbian's numeric flags).
    spylls parses the .aff/.dic pair (flag formats, aliases, conditions); the expansion is these few lines because
    neither spylls nor hunspell's own tools offer a bounded one. None if the dictionary is not installed."""
    dic = hunspell_path(lang)
    if not dic.is_file():
        return None
    d = _spylls().from_files(str(dic.with_suffix("")))
    need_affix = d.aff.NEEDAFFIX
    words: dict[str, float] = {}
    for entry in d.dic.words:
        stem = entry.stem
        if not stem or stem[0].isdigit():
            continue
        if not (need_affix and need_affix in entry.flags) and FORM.fullmatch(stem):
            words[stem] = 1.0
        for flag in sorted(entry.flags):  # a set: its order follows the hash seed, and the subsample the order
            for sfx in d.aff.SFX.get(flag, ()):
                if stem.endswith(sfx.strip) and sfx.cond_regexp.search(stem):
                    form = stem[: len(stem) - len(sfx.strip)] + sfx.add
                    if FORM.fullmatch(form):
                        words[form] = 1.0
    return _evenly_spaced(words, limit)


def dpkg_version(path: Path) -> str | None:
    """'package version' of the Debian package that installed ``path``; None without dpkg or a package."""
    try:
        owner = subprocess.run(["dpkg-query", "-S", str(path)], capture_output=True, text=True, check=False)
        package = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
        if not package:
            return None
        v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return f"{package} {v.stdout.strip()}" if v.returncode == 0 and v.stdout.strip() else None


def python_code_text(max_files: int = 60) -> str:
    """Source of standard-library modules on this machine: a license-clean, always-present code sample."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size < 200_000)[:max_files]
    return "\n".join(p.read_text(encoding="utf-8", errors="ignore") for p in files)


def text_chunks(texts, pre_tokenize) -> Counter:
    """Running text -> chunk counts, cut by the base pre-tokenizer (``pre_tokenize(str) -> [(piece, (s, e))]``)."""
    out: Counter = Counter()
    for text in texts:
        for _, (s, e) in pre_tokenize(text):
            out[text[s:e]] += 1
    return out


def missing_reason(head: str) -> str | None:
    """What is not installed for a spec (weight removed), with the fix; None when it can be read."""
    kind, _, rest = head.partition(":")
    if kind in ("hunspell", "hunspell-forms") and not hunspell_path(rest).is_file():
        return (
            f"{kind}:{rest} needs {hunspell_path(rest)} (Debian package hunspell-{rest}). "
            f"Fix: apt-get install hunspell-{rest} (bash scripts/setup.sh installs the default's)"
        )
    if kind == "wordfreq":
        try:
            _wordfreq()
        except MissingSourceError as e:
            return f"wordfreq:{rest}: {e}"
    if kind == "hunspell-forms" and not hunspell_path(rest).with_suffix(".aff").is_file():
        aff = hunspell_path(rest).with_suffix(".aff")
        return (
            f"hunspell-forms:{rest} needs the affix rules {aff} beside the .dic (Debian package hunspell-{rest}). "
            f"Fix: apt-get install --reinstall hunspell-{rest}, or use hunspell:{rest} (stems only)"
        )
    if kind == "hunspell-forms":
        try:
            _spylls()
        except MissingSourceError as e:
            return f"hunspell-forms:{rest}: {e}"
    return None


def read_source(spec: str, pre_tokenize, weight: float = 1.0, language_weight: float = 1.0) -> Source:
    """One corpus spec (weight suffix already removed) -> its chunk counts (unnormalised) and description."""
    kind, _, rest = spec.partition(":")
    w = weight * language_weight
    if kind == "wordfreq":
        lang, _, n = rest.partition(":")
        counts = _word_chunks(wordfreq_words(lang, int(n) if n else 150_000))
        data = Path(_wordfreq().available_languages(wordlist="best")[lang])
        version = f"wordfreq {importlib.metadata.version('wordfreq')}"
        return Source(spec, kind, lang, w, version, data.name, data.stat().st_size, _sha256_file(data), counts)
    if kind == "hunspell":
        words = hunspell_words(rest)
        if words is None:
            raise MissingSourceError(missing_reason(spec))
        dic = hunspell_path(rest).resolve()
        counts = _word_chunks(words)
        return Source(spec, kind, rest, w, dpkg_version(dic), str(dic), dic.stat().st_size, _sha256_file(dic), counts)
    if kind == "hunspell-forms":
        words = hunspell_forms(rest)
        if words is None:
            raise MissingSourceError(missing_reason(spec))
        dic = hunspell_path(rest).resolve()
        aff = dic.with_suffix(".aff")
        h = hashlib.sha256((_sha256_file(dic) + _sha256_file(aff)).encode())  # the forms depend on both files
        version = f"{dpkg_version(dic)}; spylls {importlib.metadata.version('spylls')}"
        size = dic.stat().st_size + aff.stat().st_size
        return Source(spec, kind, rest, w, version, f"{dic} + {aff.name}", size, h.hexdigest(), _word_chunks(words))
    if spec in ("code", "math"):
        text = python_code_text() if spec == "code" else MATH_SAMPLE
        lines = [text] if spec == "code" else text.splitlines(keepends=True)
        version = f"python {platform.python_version()} stdlib" if spec == "code" else "built-in"
        n = len(text.encode("utf-8"))
        return Source(spec, spec, None, w, version, spec, n, _sha256_text(text), text_chunks(lines, pre_tokenize))
    if kind == "hf":
        return _read_dataset(spec, rest, pre_tokenize, w)
    path_s, _, fld = spec.partition(":") if ".jsonl:" in spec else (spec, "", "")
    path = Path(path_s).expanduser()
    if not path.is_file():
        raise CorpusError(
            f"corpus {spec!r}: no such file. Use a file (.txt, .md, .jsonl:FIELD, .tsv), wordfreq:LANG, "
            "hunspell:LANG, hunspell-forms:LANG, code, math or hf:NAME:SPLIT:FIELD"
        )
    described = dict(version=None, data=str(path), bytes=path.stat().st_size, sha256=_sha256_file(path))
    if path.suffix == ".jsonl":
        return Source(spec, "jsonl", None, w, counts=_jsonl_chunks(path, fld, spec, pre_tokenize), **described)
    if path.suffix == ".tsv":
        return Source(spec, "tsv", None, w, counts=_word_chunks(_tsv_words(path)), **described)
    with path.open(encoding="utf-8") as f:
        counts = text_chunks(f, pre_tokenize)
    return Source(spec, "text", None, w, counts=counts, **described)


def _jsonl_chunks(path: Path, fld: str, spec: str, pre_tokenize) -> Counter:
    if not fld:
        raise CorpusError(f"corpus {spec!r}: name the JSON field, e.g. {path}:text")
    try:
        rows = read_jsonl(path)
    except JSONLError as e:
        raise CorpusError(str(e)) from e
    missing = next((i for i, row in enumerate(rows, 1) if fld not in row), None)
    if missing is not None:
        raise CorpusError(f"{path}: row {missing} has no field {fld!r}. Fix: name a field every row has")
    return text_chunks((str(row[fld]) for row in rows), pre_tokenize)


def _tsv_words(path: Path) -> dict[str, float]:
    words: dict[str, float] = {}
    for i, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        w, _, c = line.rstrip("\n").partition("\t")
        try:
            words[w] = words.get(w, 0.0) + float(c)
        except ValueError as e:
            raise CorpusError(f"{path}:{i}: expected 'word<TAB>count', got {line.strip()!r}") from e
    return words


def _read_dataset(spec: str, rest: str, pre_tokenize, w: float) -> Source:
    parts = rest.split(":")
    if len(parts) not in (3, 4):
        raise CorpusError(f"dataset spec {spec!r} must be hf:NAME[:CONFIG]:SPLIT:FIELD")
    import datasets

    name, config, split, fld = parts if len(parts) == 4 else (parts[0], None, parts[1], parts[2])
    ds = datasets.load_dataset(name, config, split=split)
    h, n = hashlib.sha256(), 0

    def texts():
        nonlocal n
        for row in ds:
            b = str(row[fld]).encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)
            n += len(b)
            yield str(row[fld])

    counts = text_chunks(texts(), pre_tokenize)
    version = f"datasets {datasets.__version__}, {ds.info.version or 'no version'}"
    return Source(spec, "hf", None, w, version, f"{name} {config or ''} {split} {fld}", n, h.hexdigest(), counts)


# ------------------------------------------------------------------------------------------------- corpus


def default_cyrillic_specs() -> list[str]:
    """The default Cyrillic corpus: the fixed ``DEFAULT_CYRILLIC`` list, whatever is installed."""
    return list(DEFAULT_CYRILLIC)


def _normalised(counts: Counter, weight: float) -> Counter:
    total = sum(counts.values())
    if total <= 0 or weight <= 0:  # a weight of 0 leaves the source out (the trainer would still see each chunk)
        return Counter()
    return Counter({k: v * weight / total for k, v in counts.items()})


def load_corpus(
    specs: list[str], pre_tokenize, lang_weights: dict[str, float] | None = None, allow_missing: bool = False
) -> Corpus:
    """Weighted union of ``specs``, each source normalised to @WEIGHT x its language's weight (default 1).

    A source that is not installed raises ``MissingSourceError`` naming every such source before anything is
    read, unless ``allow_missing``: then it is skipped and listed in ``Corpus.missing``."""
    lang_weights = lang_weights or {}
    missing = [r for spec in specs if (r := missing_reason(split_weight(spec)[0])) is not None]
    if missing and not allow_missing:
        raise MissingSourceError(
            "corpus sources not installed on this machine:\n  "
            + "\n  ".join(missing)
            + "\nThe default corpus is a fixed list so every machine builds the same tokenizer: install them, or "
            "pass --allow-missing to adapt without them (the tokenizer then differs from the default one)."
        )
    total: Counter = Counter()
    sources = []
    for spec in specs:
        head, weight = split_weight(spec)
        if missing_reason(head) is not None:
            continue
        lang = source_language(head)
        src = read_source(head, pre_tokenize, weight, lang_weights.get(lang, 1.0) if lang else 1.0)
        src.spec = spec
        if not src.counts:
            print(f"warning: corpus {spec!r} is empty", file=sys.stderr)
        total.update(_normalised(src.counts, src.weight))
        sources.append(src)
    return Corpus(total, sources, missing)
