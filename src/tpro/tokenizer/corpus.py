"""Corpora for tokenizer adaptation, as weighted word counts.

Every source becomes a ``Counter`` of text chunks -> weight. A chunk is what the base pre-tokenizer would cut
from running text (a word with its leading space, a punctuation run, ...): BPE never merges across chunks, so a
weighted list of chunks carries everything the trainer and the frequency scorer need, and is far smaller than
the text. Each source is normalised to total weight 1 and scaled by its own weight, so a 700k-word list does
not drown a 30k-word one.

Source specs (``--corpus`` / ``--keep-corpus``):
  ``wordfreq:LANG[:N]``  the N (default 150000) most frequent words of the ``wordfreq`` package for LANG
  ``hunspell:LANG``      the stems of Debian's hunspell dictionary (``/usr/share/hunspell``), if installed
  ``code``               Python source of the standard library on this machine (the "code" part of a keep mix)
  ``math``               a small built-in sample of math notation written for this project
  ``PATH.txt`` / ``PATH.md``   running text
  ``PATH.jsonl:FIELD``   running text in FIELD of each JSON line
  ``PATH.tsv``           ``word<TAB>count`` lines (a word-frequency list)
  ``hf:NAME[:CONFIG]:SPLIT:FIELD``   a ``datasets`` dataset (downloads; the user's path)
Any spec may end with ``@WEIGHT`` (default 1).

It knows nothing about BPE merges or vocabularies.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tpro.io import JSONLError, read_jsonl

# Word-list languages behind the default Cyrillic corpus. wordfreq ships ru/uk/bg/mk frequency lists; Debian's
# hunspell packages add be/kk/sr (and more stems for ru/uk/bg) when installed; without them the default still
# works on wordfreq alone.
DEFAULT_WORDFREQ = ("ru", "uk", "bg", "mk")
DEFAULT_HUNSPELL = ("ru", "uk", "be", "bg", "sr", "kk")
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

# Share of a word list's weight given to the capitalised form: word lists are lower-case, running text starts
# sentences and names with capitals.
CAPITALISED_SHARE = 0.2

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


def split_weight(spec: str) -> tuple[str, float]:
    if "@" in spec:
        head, _, w = spec.rpartition("@")
        try:
            return head, float(w)
        except ValueError:
            pass
    return spec, 1.0


def _normalised(counts: Counter, weight: float) -> Counter:
    total = sum(counts.values())
    if total <= 0:
        return Counter()
    return Counter({k: v * weight / total for k, v in counts.items()})


def _word_chunks(words: dict[str, float]) -> Counter:
    """Word list -> chunks as running text shows them: ' word' (mostly) and ' Word'."""
    out: Counter = Counter()
    for w, f in words.items():
        w = w.strip()
        if not w or any(c.isspace() for c in w):
            continue
        cap = w[:1].upper() + w[1:]
        if cap == w:
            out[" " + w] += f
        else:
            out[" " + w] += f * (1 - CAPITALISED_SHARE)
            out[" " + cap] += f * CAPITALISED_SHARE
    return out


def wordfreq_words(lang: str, n: int = 150_000) -> dict[str, float]:
    import wordfreq

    langs = wordfreq.available_languages(wordlist="best")
    if lang not in langs:
        raise CorpusError(f"wordfreq has no list for {lang!r}; it has {', '.join(sorted(langs))}")
    d = wordfreq.get_frequency_dict(lang, wordlist="best")
    return dict(list(d.items())[:n])


HUNSPELL_MAX = 60_000  # stems per dictionary (evenly spaced): uk_UA alone has ~1M, and stems carry no frequency


def hunspell_words(lang: str, limit: int = HUNSPELL_MAX) -> dict[str, float] | None:
    """Stems of the installed hunspell dictionary, each weight 1 (no frequencies); None if not installed."""
    name = HUNSPELL_FILES.get(lang, lang)
    dic = HUNSPELL_DIR / f"{name}.dic"
    if not dic.is_file():
        return None
    words: dict[str, float] = {}
    for line in dic.read_bytes().decode("utf-8", errors="ignore").splitlines()[1:]:
        w = line.split("/", 1)[0].strip()
        if w and not w[0].isdigit():
            words[w] = 1.0
    if len(words) > limit:
        keys = list(words)
        step = len(keys) / limit
        words = {keys[int(i * step)]: 1.0 for i in range(limit)}
    return words


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


def read_source(spec: str, pre_tokenize) -> Counter:
    """One corpus spec (weight suffix already removed) -> chunk counts (unnormalised)."""
    kind, _, rest = spec.partition(":")
    if kind == "wordfreq":
        lang, _, n = rest.partition(":")
        return _word_chunks(wordfreq_words(lang, int(n) if n else 150_000))
    if kind == "hunspell":
        words = hunspell_words(rest)
        if words is None:
            raise CorpusError(
                f"hunspell dictionary for {rest!r} is not installed. Fix: apt-get install hunspell-{rest} "
                "(or drop this source)"
            )
        return _word_chunks(words)
    if spec == "code":
        return text_chunks([python_code_text()], pre_tokenize)
    if spec == "math":
        return text_chunks(MATH_SAMPLE.splitlines(keepends=True), pre_tokenize)
    if kind == "hf":
        parts = rest.split(":")
        if len(parts) not in (3, 4):
            raise CorpusError(f"dataset spec {spec!r} must be hf:NAME[:CONFIG]:SPLIT:FIELD")
        from datasets import load_dataset

        name, config, split, field = parts if len(parts) == 4 else (parts[0], None, parts[1], parts[2])
        ds = load_dataset(name, config, split=split)
        return text_chunks((row[field] for row in ds), pre_tokenize)
    path_s, _, field = spec.partition(":") if ".jsonl:" in spec else (spec, "", "")
    path = Path(path_s).expanduser()
    if not path.is_file():
        raise CorpusError(
            f"corpus {spec!r}: no such file. Use a file (.txt, .md, .jsonl:FIELD, .tsv), wordfreq:LANG, "
            "hunspell:LANG, code, math or hf:NAME:SPLIT:FIELD"
        )
    if path.suffix == ".jsonl":
        if not field:
            raise CorpusError(f"corpus {spec!r}: name the JSON field, e.g. {path}:text")
        try:
            rows = read_jsonl(path)
        except JSONLError as e:
            raise CorpusError(str(e)) from e
        missing = next((i for i, row in enumerate(rows, 1) if field not in row), None)
        if missing is not None:
            raise CorpusError(f"{path}: row {missing} has no field {field!r}. Fix: name a field every row has")
        return text_chunks((str(row[field]) for row in rows), pre_tokenize)
    if path.suffix == ".tsv":
        words: dict[str, float] = {}
        for i, line in enumerate(path.open(encoding="utf-8"), 1):
            if not line.strip():
                continue
            w, _, c = line.rstrip("\n").partition("\t")
            try:
                words[w] = words.get(w, 0.0) + float(c)
            except ValueError as e:
                raise CorpusError(f"{path}:{i}: expected 'word<TAB>count', got {line.strip()!r}") from e
        return _word_chunks(words)
    return text_chunks(path.open(encoding="utf-8"), pre_tokenize)


def default_cyrillic_specs() -> list[str]:
    """The offline default: wordfreq lists plus whichever hunspell dictionaries are installed."""
    specs = [f"wordfreq:{lang}" for lang in DEFAULT_WORDFREQ]
    # Stems without frequencies: a small share where wordfreq already covers the language, a full share where
    # hunspell is the only source (be, sr, kk), so no language is left to the others' spill-over.
    specs += [
        f"hunspell:{lang}@{0.3 if lang in DEFAULT_WORDFREQ else 1.0}"
        for lang in DEFAULT_HUNSPELL
        if hunspell_words_available(lang)
    ]
    return specs


def hunspell_words_available(lang: str) -> bool:
    return (HUNSPELL_DIR / f"{HUNSPELL_FILES.get(lang, lang)}.dic").is_file()


DEFAULT_KEEP = ("wordfreq:en:100000@2", "code@1", "math@0.5")


def load_corpus(specs: list[str], pre_tokenize) -> Counter:
    """Weighted union of ``specs``; each source normalised to its weight."""
    total: Counter = Counter()
    for spec in specs:
        head, weight = split_weight(spec)
        counts = read_source(head, pre_tokenize)
        if not counts:
            print(f"warning: corpus {spec!r} is empty", file=sys.stderr)
        total.update(_normalised(counts, weight))
    return total
