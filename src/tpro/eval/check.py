"""Answer checking: pull the final answer out of a model's text, compare it with the gold (math, exact names, and
multiple-choice letters, whose extraction lives in ``tpro.eval.choice``).

``extract_answer(text)`` finds the final answer: the last ``\\boxed{…}``; else the last ``<answer>…</answer>``;
else the last "Ответ: …" / "answer is …" / "#### …" phrase; else the last number in the text (not in an output
cut by the token limit). ``is_correct(text, gold)`` extracts, then
compares with ``answers_equal``: exact numbers first (our own rules, below), then ``math-verify`` (sympy
equivalence of LaTeX/expressions: ``\\frac{3}{4}`` = ``0.75``, ``2^{40}`` = ``1099511627776``, ``x=5`` = ``5``).

Why our own number rules in front of math-verify (each measured with math-verify 0.9):
  - decimal comma: it reads ``0,75`` as the set {0, 75}, so ``0,75`` != ``0.75``;
  - thousands grouped with spaces (Russian typography): ``\\boxed{2 125}`` parsed as 127;
  - percentages outside ``\\boxed{}``: ``75\\%`` parsed as 75, never equal to ``0.75``;
  - a gold rounded to d decimals (T-Math stores ``0.618``) should accept a prediction that rounds to it.
A comma followed by exactly three digits (``2,125``) is ambiguous (English thousands vs Russian decimal), so it
stands for both 2125 and 2.125: a prediction matches if either reading does. The pinned behaviour is the test
table in ``tests/eval/test_check.py``.

This module knows nothing about models, prompts or benchmarks: strings in, bool out.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

# A number as people write it: -1 234,5 | 1,234,567 | 0,75 | 3.5 | 3/4, optionally followed by a percent sign.
# Spaces inside a number are only thousands groups (exactly three digits after each space).
_SPACE = "[ \u00a0\u2009\u202f]"
NUMBER = (
    rf"[-−]?(?:\d{{1,3}}(?:{_SPACE}\d{{3}})+(?:[.,]\d+)?"  # 1 234 567(,5)
    rf"|\d{{1,3}}(?:,\d{{3}}){{2,}}(?:\.\d+)?"  # 1,234,567(.5)
    rf"|\d+(?:[.,]\d+)?(?:/\d+)?)"  # 2125 | 2,125 | 0.75 | 3/4
    rf"(?:{_SPACE}?\\?%)?"
)
_NUMBER_RE = re.compile(rf"(?<![\w.,]){NUMBER}(?![\w])")
_FRAC_RE = re.compile(r"[-−]?\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}|[-−]?\\[dt]?frac\s*(\d)(\d)")

# "Ответ: 42", "**Ответ:** 42", "Окончательный ответ — 42", "answer is 42", "Final Answer: 42", "#### 42".
_PHRASE_RE = re.compile(
    r"(?:(?<![<\w/])(?:ответ|answer)\b(?:\s+(?:is|равен|равна|равно|будет))?\s*(?:[:—–]|-(?=\s))?"
    r"|####)\s*(?P<rest>[^\n]+)",
    re.IGNORECASE,
)
_MATH_SEG_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_WORDY_RE = re.compile(r"[^\W\d_]{3,}")  # a word of 3+ letters: the candidate is prose, not a formula
_LATEX_CMD_RE = re.compile(r"\\[a-zA-Z]+")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` / ``\\fbox{…}`` (balanced braces), or None."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            best = text[m.end() : i - 1]
    if best is None:  # "\boxed 5" (no braces) is valid LaTeX
        found = re.findall(r"\\boxed\s+([^\s$]+)", text)
        best = found[-1] if found else None
    return best.strip() if best is not None else None


def clean(s: str) -> str:
    """Strip markdown emphasis, math delimiters, trailing punctuation and ``\\text{…}`` wrappers."""
    s = s.replace("**", "").replace("__", "").strip()
    s = re.sub(r"^\$+|\$+$", "", s.strip()).strip()
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s).strip()
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\[,;!: ]", " ", s)  # LaTeX spacing commands
    return s.strip().rstrip(".;:!").strip()


def _from_phrase(rest: str) -> str:
    """Turn the rest of an "Ответ: …" line into an answer: a math segment, a formula, or its first number."""
    boxed = last_boxed(rest)
    if boxed is not None:
        return boxed
    seg = _MATH_SEG_RE.search(rest)
    if seg:
        return clean(next(g for g in seg.groups() if g is not None))
    cand = clean(rest)
    if not _WORDY_RE.search(_LATEX_CMD_RE.sub("", cand)):
        return cand
    m = _NUMBER_RE.search(cand)  # "на 3-м этаже", "80 человек": the number inside the prose
    return m.group(0) if m else cand


def extract_answer(text: str | None, last_number: bool = True) -> str | None:
    """The final answer in a model output (a string to compare), or None when there is none.

    ``last_number=False``: no fallback to the last number, for an output cut by the token limit (its last
    number is wherever the model was, e.g. restating "8 \\times 8", not an answer).
    """
    if not text:
        return None
    if "</think>" in text:  # a full output with its trace: the answer comes after the trace
        text = text.rsplit("</think>", 1)[1]
    boxed = last_boxed(text)
    if boxed is not None:
        return clean(boxed)
    tagged = re.findall(r"<answer>(.*?)(?:</answer>|$)", text, re.DOTALL | re.IGNORECASE)  # R1-style tags
    if tagged and tagged[-1].strip():
        return extract_answer(tagged[-1], last_number) or clean(tagged[-1]) or None
    phrases = list(_PHRASE_RE.finditer(text))
    if phrases:
        ans = _from_phrase(phrases[-1].group("rest"))
        if re.search(r"\w", ans):  # "Ответ:" followed by nothing usable is no answer: look further
            return ans
    if not last_number:
        return None
    numbers = _NUMBER_RE.findall(text)
    fracs = list(_FRAC_RE.finditer(text))
    if fracs and (not numbers or fracs[-1].end() >= text.rfind(numbers[-1])):
        return fracs[-1].group(0)
    return numbers[-1].strip() if numbers else None


# ---------------------------------------------------------------------------------------------- numbers


def _strip_units(s: str) -> str:
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s)  # degrees
    s = re.sub(r"^[a-zA-Zа-яА-Я]\w*\s*=\s*", "", s)  # "x = 5" -> "5"
    # trailing words after a number: "80 человек", "3-й", "5 cm", "12 \text{ dollars}" (already unwrapped)
    s = re.sub(r"(?<=[\d%])\s*-?[^\W\d_]+\.?(?:\s+[^\W\d_]+\.?)*$", "", s)
    return s.strip()


def number_values(s: str) -> set[Fraction] | None:
    """All readings of ``s`` as one number (exact), or None if it is not a plain number.

    ``2,125`` -> {2125, 2.125}; ``0,75`` -> {0.75}; ``1 234`` -> {1234}; ``75%`` -> {75, 0.75};
    ``\\frac{3}{4}`` / ``3/4`` -> {0.75}; ``$-5$`` -> {-5}.
    """
    s = _strip_units(clean(s)).replace("−", "-").replace("\\%", "%")
    s = re.sub(r"^\\[dt]?frac\s*(\d)(\d)$", r"\1/\2", s)
    s = re.sub(r"^(-?)\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}$", r"\1\2/\3", s)
    s = re.sub(r"^(-?)\s*\{?\s*(\d+)\s*\}?\s*/\s*\{?\s*(\d+)\s*\}?$", r"\1\2/\3", s)
    if not re.fullmatch(NUMBER, s):
        return None
    percent = s.endswith("%")
    s = s.rstrip("%").strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("-")
    readings: set[Fraction] = set()
    if "/" in s:
        num, den = s.split("/")
        if int(den) == 0:
            return None
        readings.add(Fraction(int(num), int(den)))
    elif re.fullmatch(rf"\d{{1,3}}(?:{_SPACE}\d{{3}})+(?:[.,]\d+)?", s):
        readings.add(Fraction(re.sub(_SPACE, "", s).replace(",", ".")))
    elif re.fullmatch(r"\d{1,3}(?:,\d{3}){2,}(?:\.\d+)?", s):
        readings.add(Fraction(s.replace(",", "")))
    elif re.fullmatch(r"\d{1,3},\d{3}", s) and not s.startswith("0,"):
        readings |= {Fraction(s.replace(",", "")), Fraction(s.replace(",", "."))}  # ambiguous: both
    else:
        readings.add(Fraction(s.replace(",", ".")))
    readings = {sign * r for r in readings}
    if percent:
        readings |= {r / 100 for r in readings}
    return readings


def _decimals(gold: str) -> int | None:
    m = re.fullmatch(r"-?\d+[.,](\d+)", clean(gold).replace(" ", ""))
    return len(m.group(1)) if m and not re.fullmatch(r"\d{1,3},\d{3}", clean(gold)) else None


def _numbers_equal(pred: set[Fraction], gold: set[Fraction], gold_decimals: int | None) -> bool:
    for p in pred:
        for g in gold:
            if p == g:
                return True
            # a gold rounded to d places (T-Math "0.618") accepts an unrounded prediction (0.6180339…), but only
            # one that has at least d+2 places: 0.75 is not a reading of "0.8".
            if gold_decimals is not None and (p * 10 ** (gold_decimals + 1)).denominator != 1:
                if round(p, gold_decimals) == g:
                    return True
            if abs(p - g) <= Fraction(1, 10**6) * max(1, abs(g)):  # 0.333333 vs 1/3
                return True
    return False


def _math_verify_equal(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify times out through SIGALRM, which only the main thread may set: no timeout elsewhere.
    t = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        g = parse(f"${gold}$", parsing_timeout=t)
        p = parse(f"${pred}$", parsing_timeout=t)
        return bool(g and p and verify(g, p, timeout_seconds=t))
    except Exception:  # sympy can raise on exotic input; an unparsable answer is not a correct one
        return False


def answers_equal(pred: str, gold: str) -> bool:
    """Is the extracted answer ``pred`` equal to the ``gold`` answer string?"""
    p, g = clean(pred), clean(gold)
    if not p:
        return False
    if p == g or p.replace(" ", "") == g.replace(" ", ""):
        return True
    pn, gn = number_values(p), number_values(g)
    if pn is not None and gn is not None:  # two plain numbers: our rules decide, math-verify is not asked
        return _numbers_equal(pn, gn, _decimals(g))
    return _math_verify_equal(p, g)


def exact_equal(pred: str, gold: str) -> bool:
    """String equality after cleaning (case and inner spaces ignored): for answers that are names, not maths."""
    return clean(pred).casefold().replace(" ", "") == clean(gold).casefold().replace(" ", "")


def letters_equal(pred: str, gold: str) -> bool:
    """Multiple choice: the extracted option letter is the gold letter (both already letters A..J)."""
    return pred.strip().upper() == gold.strip().upper()


# A benchmark spec's ``metric`` names one of these comparisons of (extracted answer, gold).
METRICS = {"math": answers_equal, "exact": exact_equal, "choice": letters_equal}


def extract_for(metric: str, text: str | None, last_number: bool = True, n_options: int | None = None) -> str | None:
    """What ``metric`` compares, pulled out of a model's answer: the option letter for ``choice``
    (``tpro.eval.choice.extract_letter``; ``n_options`` bounds the letters), else ``extract_answer``."""
    if metric == "choice":
        from tpro.eval.choice import MAX_OPTIONS, extract_letter

        return extract_letter(text, n_options or MAX_OPTIONS)
    return extract_answer(text, last_number)


def is_correct(predicted_text: str | None, gold: str) -> bool:
    """Extract the final answer from ``predicted_text`` and compare it with ``gold``."""
    ans = extract_answer(predicted_text)
    return ans is not None and answers_equal(ans, gold)
