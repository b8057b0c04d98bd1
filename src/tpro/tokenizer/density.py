"""Tokenizer density on running text: tokens per word, share of words in 1 and in <=2 tokens, chars per token.

How words are counted (the docs quote this): a *word* is a maximal run of Unicode letters, combining marks and
digits (the regex ``[^\\W_]+``), so "по-русски" is two words and "T-pro 2.0" is three ("T", "pro", "2", "0" are
four runs: digits split at the dot too). Each line of a file is encoded on its own with no special tokens.
- tokens per word = all tokens of the file (spaces and punctuation included) / words in it, the figure
  T-pro 2.0 reports;
- a word's own token count = the tokens whose character span overlaps the word (a token " слово" that
  carries the space before the word counts for the word; a token spanning two words counts for both);
- chars per token = characters (code points, newlines excluded) / tokens.

It knows nothing about how the tokenizers were made.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from tpro.config import Config, ConfigError, opt
from tpro.io import atomic_path, atomic_write

WORD = re.compile(r"[^\W_]+")


@dataclass(kw_only=True)
class ReportConfig(Config):
    """``tpro tokenizer report``: tokenizers to compare, texts to measure them on, where to write the table."""

    tokenizer: list[str] = opt(
        [],
        "Tokenizer (dir, tokenizer.json, hub id), repeatable, at least one; LABEL=SPEC to name it. The first is "
        "the reference for the relative column.",
    )
    text: list[str] = opt(
        [],
        "Text file (one sentence or paragraph per line), repeatable, at least one; LABEL=FILE to name it "
        "(e.g. ru=ud/ru_test.txt).",
    )
    out_dir: str | None = opt(None, "Write density.md, density.json and density.png here.")


@dataclass
class Density:
    tokenizer: str
    text: str
    lines: int
    words: int
    tokens: int
    chars: int
    tokens_per_word: float
    words_1_token: float  # share of words encoded in one token
    words_le2_tokens: float  # share of words in at most two tokens
    chars_per_token: float


def load_tokenizer(spec: str):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, a directory or a hub id."""
    from tokenizers import Tokenizer

    from tpro.tokenizer.bpe import resolve_tokenizer_file

    path, _ = resolve_tokenizer_file(spec)
    return Tokenizer.from_file(str(path))


def labelled(specs: list[str]) -> dict[str, str]:
    """``LABEL=SPEC`` (or a bare SPEC, named after its file or directory) -> {label: spec}."""
    out = {}
    for s in specs:
        label, sep, rest = s.partition("=")
        if sep and not Path(s).exists():
            out[label] = rest
        else:
            out[Path(s).name if Path(s).name != "tokenizer.json" else Path(s).parent.name] = s
    return out


def report(cfg: ReportConfig) -> list[Density]:
    """Measure every tokenizer on every text; with ``cfg.out_dir``, write density.md/.json/.png there."""
    if not cfg.tokenizer or not cfg.text:
        raise ConfigError("pass at least one --tokenizer and one --text")
    toks = {name: load_tokenizer(spec) for name, spec in labelled(cfg.tokenizer).items()}
    texts = {}
    for name, f in labelled(cfg.text).items():
        if not Path(f).is_file():
            raise ConfigError(f"text file {f!r} does not exist. Fix: pass a UTF-8 text file, one line per sentence")
        texts[name] = Path(f).read_text(encoding="utf-8").splitlines()
    rows = density_table(toks, texts)
    if cfg.out_dir is not None:
        out = Path(cfg.out_dir)
        atomic_write(out / "density.md", to_markdown(rows) + "\n")
        atomic_write(out / "density.json", to_json(rows))
        with atomic_path(out / "density.png") as tmp:
            bar_chart(rows, tmp)
    return rows


def measure(tok, lines: list[str], tokenizer_name: str = "", text_name: str = "") -> Density:
    lines = [ln.rstrip("\n") for ln in lines if ln.strip()]
    encs = tok.encode_batch(lines, add_special_tokens=False)
    words = tokens = chars = one = two = 0
    for line, enc in zip(lines, encs):
        tokens += len(enc.ids)
        chars += len(line)
        spans = enc.offsets
        j = 0
        for m in WORD.finditer(line):
            s, e = m.span()
            words += 1
            # Offsets are in increasing order: skip tokens that end before the word, count those overlapping it.
            while j < len(spans) and spans[j][1] <= s:
                j += 1
            k, n = j, 0
            while k < len(spans) and spans[k][0] < e:
                n += spans[k][1] > s
                k += 1
            one += n == 1
            two += n <= 2
    return Density(
        tokenizer=tokenizer_name,
        text=text_name,
        lines=len(lines),
        words=words,
        tokens=tokens,
        chars=chars,
        tokens_per_word=round(tokens / max(1, words), 4),
        words_1_token=round(one / max(1, words), 4),
        words_le2_tokens=round(two / max(1, words), 4),
        chars_per_token=round(chars / max(1, tokens), 4),
    )


def density_table(tokenizers: dict[str, object], texts: dict[str, list[str]]) -> list[Density]:
    return [measure(tok, lines, tn, xn) for xn, lines in texts.items() for tn, tok in tokenizers.items()]


def to_markdown(rows: list[Density]) -> str:
    names = list(dict.fromkeys(r.tokenizer for r in rows))
    first = names[0]
    by = {(r.text, r.tokenizer): r for r in rows}
    head = "| text | words | tokenizer | tokens/word | vs " + first + " | 1 token | <=2 tokens | chars/token |"
    out = [head, "|" + "---|" * 8]
    for text in dict.fromkeys(r.text for r in rows):
        for name in names:
            r = by[(text, name)]
            rel = r.tokens_per_word / by[(text, first)].tokens_per_word - 1
            out.append(
                f"| {text} | {r.words} | {name} | {r.tokens_per_word:.3f} | {rel:+.1%} | {r.words_1_token:.1%} | "
                f"{r.words_le2_tokens:.1%} | {r.chars_per_token:.2f} |"
            )
    return "\n".join(out)


def to_json(rows: list[Density]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=1)


def bar_chart(rows: list[Density], path: Path) -> None:
    """Grouped bars: tokens per word per text, one bar per tokenizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    texts = list(dict.fromkeys(r.text for r in rows))
    names = list(dict.fromkeys(r.tokenizer for r in rows))
    by = {(r.text, r.tokenizer): r.tokens_per_word for r in rows}
    x = np.arange(len(texts))
    w = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(texts) + 2), 4))
    for i, name in enumerate(names):
        ax.bar(x + i * w - 0.4 + w / 2, [by[(t, name)] for t in texts], w, label=name)
    ax.set_xticks(x, texts, rotation=30, ha="right")
    ax.set_ylabel("tokens per word (lower is denser)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
