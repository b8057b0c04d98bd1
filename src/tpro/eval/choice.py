"""Multiple choice (MERA / ruMMLU-Pro style): options as letters, the letter a model answered, options scored by
log-likelihood.

- ``render_options`` / ``letters_phrase``: "A. …\\nB. …" and "A, B, C или D" for a prompt (letters A..J, 4-10 options);
- ``gold_letter``: a dataset's gold (a letter, a 0-based index or the option's text) as a letter;
- ``extract_letter``: the letter a generated answer settles on ("Ответ: B", "**C**", "(D)", "\\boxed{A}", "B) текст",
  Cyrillic look-alikes А В С Е), the last one stated after any reasoning trace; None when there is none;
- ``option_logprobs``: the summed log-probability of each option as a continuation of one context, all options in
  one forward; ``normalised`` and ``argmax``: the option each normalisation picks;
- ``score_jobs``: the ``--scoring loglik`` loop of ``tpro eval run`` (one record per item, appended as it finishes).

What log-likelihood scores: the option *text*, cloze style, as lm-evaluation-harness's ARC and HellaSwag tasks do:
context = the spec's ``loglik`` prompt (the question, options not listed), continuation = " " + option text. We do
not score " A" after a listed set of options (lm-eval's MMLU): that asks whether a model maps letters to answers,
which small models mostly cannot, and with one-character continuations the per-token and per-character
normalisations could not differ. The normalisations (lm-eval's names in brackets):
  - ``sum``: the summed log-probability (acc);
  - ``token``: divided by the option's token count;
  - ``char``: divided by the option text's length in characters (acc_norm; the leading space not counted). It is
    the one a record's ``correct`` uses (``PRIMARY``): it does not favour short options the way ``sum`` does.

This module knows nothing about benchmark files or run directories beyond the record it writes; ``torch`` is
imported only by the scoring functions.
"""

from __future__ import annotations

import re
import time

from tpro.eval.check import clean, last_boxed

LETTERS = "ABCDEFGHIJ"
MIN_OPTIONS, MAX_OPTIONS = 4, 10
NORMS = ("sum", "token", "char")
PRIMARY = "char"
LOGLIK_PROMPT = "Вопрос: {question}\nОтвет:"  # a spec without a ``loglik`` prompt gets this one


# ------------------------------------------------------------------------------------------------ prompts


def render_options(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def letters_phrase(n: int) -> str:
    """``4`` -> "A, B, C или D"."""
    return ", ".join(LETTERS[: n - 1]) + f" или {LETTERS[n - 1]}"


def gold_letter(value, options: list[str]) -> str:
    """The gold answer as a letter. ``value``: a letter ("B", "(b)"), a 0-based index (2, "2") or an option's text;
    a string that is a letter is a letter first, then an option's text, then an index. ValueError says why not."""
    n = len(options)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < n:
            return LETTERS[value]
        raise ValueError(f"gold index {value} is outside 0..{n - 1}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"gold answer {value!r} is not a letter, an index or an option's text")
    s = value.strip()
    m = re.fullmatch(r"[(\[]?\s*([A-Ja-j])\s*[)\].]?", s)
    if m:
        letter = m.group(1).upper()
        if letter not in LETTERS[:n]:
            raise ValueError(f"gold letter {letter} but only {n} options")
        return letter
    hits = [i for i, o in enumerate(options) if o.strip().casefold() == s.casefold()]
    if len(hits) == 1:
        return LETTERS[hits[0]]
    if len(hits) > 1:
        raise ValueError(f"gold text {s!r} is the text of {len(hits)} options")
    if s.isdigit():
        return gold_letter(int(s), options)
    raise ValueError(f"gold {s!r} is not a letter A-{LETTERS[n - 1]}, a 0-based index or an option's text")


# ------------------------------------------------------------------------------------------------ letters

# Cyrillic capitals that look like Latin option letters. Only these four: a model writing А/Б/В/Г means the Russian
# alphabet's order, where В is the third option, so Б and Г (and lowercase в, с: prepositions) are never read.
_CYRILLIC = {"А": "A", "В": "B", "С": "C", "Е": "E"}
_WORDCH = r"[^\W_]"  # a letter or a digit, any script
# A Latin letter standing alone, or a Cyrillic look-alike not followed by a word on its line ("В Париже" is a
# preposition, "В)" / "**В**" / "Ответ: В." are letters).
_LETTER = rf"(?<!{_WORDCH})(?:(?P<lat>[A-J])(?!{_WORDCH})|(?P<cyr>[АВСЕ])(?![ \t]*{_WORDCH}))"
_OPEN = r"[\s*_`\"«'(\[]*"
_CLOSE = r"[\s*_`\"»')\].:;,!]*"

# "Ответ: B", "**Ответ:** (C)", "Правильный ответ — вариант D", "Правильный вариант: B", "The answer is (A)".
_PHRASE_RE = re.compile(
    r"(?<!\w)(?i:ответ\w*|answer|(?:правильн|верн)\w*\s+(?:вариант|буква)\w*|correct\s+(?:option|choice|letter))"
    r"(?i:\s*(?:is|является|будет|:|—|–|-|=))*" + _OPEN + r"(?i:(?:вариант|option|буква|letter)\s*)?" + _OPEN + _LETTER
)
_ALONE_RE = re.compile(rf"^{_OPEN}{_LETTER}{_CLOSE}$")  # the whole answer is a letter: "B", "**B**", "(B)."
_BOLD_RE = re.compile(rf"\*\*\s*\(?{_LETTER}\)?[.)]?\s*\*\*")  # "**C**", "**(C)**"
_BRACKETED_RE = re.compile(rf"[(\[]{_LETTER}[)\]]")  # "(D)", "[A]"
_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)  # small models imitate XML answer tags
_LEADING_RE = re.compile(rf"(?m)^[ \t>#*_-]*{_LETTER}\s*[).:]")  # "B) текст", "C. текст" at the start of a line


def _letter(m: re.Match, valid: str) -> str | None:
    letter = m.group("lat") or _CYRILLIC[m.group("cyr")]
    return letter if letter in valid else None


def _last(patterns: tuple[re.Pattern, ...], text: str, valid: str) -> str | None:
    """The valid letter of the match of any of ``patterns`` that starts last in ``text``."""
    for m in sorted((m for p in patterns for m in p.finditer(text)), key=lambda m: m.start(), reverse=True):
        if letter := _letter(m, valid):
            return letter
    return None


def extract_letter(text: str | None, n_options: int = MAX_OPTIONS) -> str | None:
    """The option letter (Latin, within the first ``n_options``) a model's answer settles on, or None.

    After a reasoning trace (``</think>``) only the answer counts; an unclosed trace has no answer. Inside
    ``<answer>…</answer>`` tags only the last tagged text counts. Then, first
    found wins: the last ``\\boxed{}`` holding a letter; the last "Ответ: X" / "answer is X" / "правильный вариант
    X"; the whole answer being a letter; the last bold or bracketed letter ("**C**", "(D)"); a letter opening a
    line ("B) текст") when every such line names the same one.
    """
    if not text:
        return None
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return None
    valid = LETTERS[: max(1, min(n_options, MAX_OPTIONS))]
    if tagged := _TAG_RE.findall(text):  # "<answer>E</answer>": the last tagged answer is the answer
        text = tagged[-1]
    boxed = last_boxed(text)
    if boxed is not None and (m := _ALONE_RE.match(clean(boxed)) or _LEADING_RE.match(clean(boxed))):
        if letter := _letter(m, valid):
            return letter
    if letter := _last((_PHRASE_RE,), text, valid):
        return letter
    if (m := _ALONE_RE.match(text.strip())) and (letter := _letter(m, valid)):
        return letter
    if letter := _last((_BOLD_RE, _BRACKETED_RE), text, valid):
        return letter
    leading = {_letter(m, valid) for m in _LEADING_RE.finditer(text)} - {None}
    return leading.pop() if len(leading) == 1 else None


# ------------------------------------------------------------------------------------------------ log-likelihood


def option_logprobs(model, tokenizer, context: str, continuations: list[str]) -> tuple[list[float], list[int]]:
    """Summed log-probability of each continuation's tokens after ``context`` -> (log-probs, token counts).

    A continuation's tokens are those of ``context + continuation`` past the context's own (lm-eval's rule: the
    text is tokenised as the model would read it whole); where the context's tokens are not a prefix of the
    whole's, the continuation is tokenised alone. All options go through one forward, right-padded: they share the
    context, so continuation token j of every row sits at position C + j, and no attention mask is needed (causal
    attention never lets a real token see the padding after it).
    """
    import torch

    ctx = tokenizer.encode(context)
    if not ctx:
        raise ValueError("the context has no tokens")
    conts = []
    for text in continuations:
        whole = tokenizer.encode(context + text)
        conts.append(
            whole[len(ctx) :] if whole[: len(ctx)] == ctx else tokenizer.encode(text, add_special_tokens=False)
        )
    if not all(conts):
        raise ValueError("an option has no tokens")
    n, c, k = len(conts), len(ctx), max(map(len, conts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = torch.full((n, c + k), pad, dtype=torch.long)  # [N, C+K]: context, option, padding
    ids[:, :c] = torch.tensor(ctx)
    real = torch.zeros(n, k, dtype=torch.bool)  # [N, K]: which continuation slots hold a real token
    for i, toks in enumerate(conts):
        ids[i, c : c + len(toks)] = torch.tensor(toks)
        real[i, : len(toks)] = True
    with torch.inference_mode():
        # logits of the last K+1 positions, C-1 .. C+K-1 ([N, K+1, V]): position C-1+j predicts continuation token j;
        # the last one predicts past the longest option and is dropped
        logits = model(input_ids=ids.to(model.device), use_cache=False, logits_to_keep=k + 1).logits[:, :-1].float()
    target = ids[:, c:].to(logits.device)  # [N, K]
    # log p(token) = logit(token) - logsumexp(logits): no [N, K, V] log-softmax copy
    logp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [N, K]
    sums = torch.where(real.to(logp.device), logp, 0.0).sum(-1)  # [N]
    return sums.tolist(), [len(t) for t in conts]


def normalised(logprobs: list[float], n_tokens: list[int], texts: list[str]) -> dict[str, list[float]]:
    """Each option's score under each normalisation in ``NORMS``."""
    return {
        "sum": list(logprobs),
        "token": [lp / max(1, n) for lp, n in zip(logprobs, n_tokens)],
        "char": [lp / max(1, len(t)) for lp, t in zip(logprobs, texts)],
    }


def argmax(scores: list[float]) -> int:
    """The best option; the first of equal ones."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def loglik_record(job, spec, context: str, logprobs, n_tokens, generator: str, latency_s: float) -> dict:
    """The ``items.jsonl`` record of one item scored by log-likelihood (the fields the report reads, as for a
    generation: ``extracted`` and ``correct`` are the ``PRIMARY`` normalisation's)."""
    item = job.item
    scores = normalised(logprobs, n_tokens, item.options)
    chosen = {norm: LETTERS[argmax(s)] for norm, s in scores.items()}
    correct_by = {norm: chosen[norm] == item.answer for norm in NORMS}
    return {
        "id": item.id,
        "mode": "loglik",
        "sample": 0,
        "bench": spec.name,
        "generator": generator,
        "prompt": context,
        "subject": item.subject,
        "options": item.options,
        "gold": item.answer,
        "logprobs": [round(x, 6) for x in logprobs],
        "option_tokens": n_tokens,
        "chosen": chosen,
        "correct_by": correct_by,
        "extracted": chosen[PRIMARY],
        "correct": correct_by[PRIMARY],
        "prompt_tokens": None,
        "output_tokens": None,
        "latency_s": round(latency_s, 4),
        "ttft_s": None,
        "tokens_per_s": None,
        "finish_reason": "",
        "flag": item.meta.get("flag"),
    }


def score_jobs(jobs, spec, lm, items_path, on_record=None) -> list[tuple]:
    """Score every job's options with ``lm`` (a ``tpro.models.LoadedModel``) and append a record per item to
    ``items_path`` -> failures (job, error), not recorded. Jobs are ``tpro.eval.runner.Job``s of mode "loglik"."""
    from tpro.io import append_jsonl

    failures = []
    for job in jobs:
        # trailing whitespace belongs to the continuation's first token (" Париж"), as lm-eval moves it
        context = spec.render(job.item, "loglik").rstrip()
        t0 = time.perf_counter()
        try:
            logprobs, n_tokens = option_logprobs(lm.model, lm.tokenizer, context, [" " + o for o in job.item.options])
        except ValueError as e:
            failures.append((job, str(e)))
            continue
        rec = loglik_record(job, spec, context, logprobs, n_tokens, lm.name, time.perf_counter() - t0)
        append_jsonl(items_path, [rec])
        if on_record:
            on_record(rec)
    return failures
