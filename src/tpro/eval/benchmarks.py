"""Benchmarks as data: a YAML spec per benchmark (``tpro/eval/tasks/*.yaml``), loaded into ``Item`` lists.

A spec names its source (a JSONL shipped in ``tpro/eval/data``, a Hugging Face hub dataset for users, or any
local JSONL given with ``path=``), the fields to read (a dotted name reads a nested field: ``inputs.text``), the
prompt template per mode (``{question}``, and for multiple choice ``{options}`` and ``{letters}``, are replaced; no
other braces are special), how to clean the gold answer, the metric, and rows flagged as unanswerable.
Loaders repair broken rows in code and say what they repaired and skipped (``LoadReport``); the data files
stay as they came. A file or dataset that yields no usable item is an error that says why.

Multiple choice (``metric: choice``): ``fields.options`` names a field holding a list of 4-10 options (or, when a
row lacks it, fields A, B, C, ... are read), or lists one field per option; the gold becomes a letter
(``tpro.eval.choice.gold_letter``); ``fields.subject`` gives per-subject accuracy.

Built in: t-math (shipped), math-500 (shipped), aime-2024, aime-2025, gsm8k, mgsm-ru, mgsm-en (hub), and
``jsonl`` (any file, fields by name); multiple choice: ru-mmlu-pro, mera-rummlu, mera-ruopenbookqa (hub) and
``choice-jsonl``. A path to a user's own ``.yaml`` spec works wherever a name does.

This module knows nothing about models or answer checking.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tpro.eval import choice
from tpro.io import read_jsonl

log = logging.getLogger("tpro.eval")

TASKS_DIR = Path(__file__).parent / "tasks"
DATA_DIR = Path(__file__).parent / "data"


class BenchmarkError(ValueError):
    """A benchmark could not be loaded; the message says why and what to do."""


@dataclass
class Item:
    id: str
    question: str
    answer: str  # multiple choice: the gold letter
    meta: dict = field(default_factory=dict)
    options: list[str] = field(default_factory=list)  # multiple choice: the option texts, A first
    subject: str | None = None


@dataclass
class BenchmarkSpec:
    name: str
    description: str = ""
    language: str = ""
    source: dict = field(default_factory=dict)  # {local: file in tpro/eval/data, hub: {path, name, split}}
    # id, question, answer; multiple choice adds options (a field or a list of fields) and subject
    fields: dict = field(default_factory=lambda: {"id": "id", "question": "question", "answer": "answer"})
    hub_fields: dict | None = None  # field names in the hub dataset when they differ from the local file's
    id_prefix: str = "item-"  # ids for rows without one: prefix + 1-based row number, 4 digits
    answer_after: str | None = None  # keep only what follows this marker in the gold (GSM8K's "#### 18")
    repair: list[str] = field(default_factory=list)  # repairs applied to every text field (see REPAIRS)
    # per mode: direct, reasoning, and for multiple choice loglik (the context options are scored after)
    prompt: dict = field(default_factory=lambda: {"direct": "{question}", "reasoning": "{question}"})
    metric: str = "math"  # a name in tpro.eval.check.METRICS: math (numbers, then math-verify) | exact | choice
    flags: dict = field(default_factory=dict)  # item id -> why it cannot be answered as stored

    def render(self, item: Item, mode: str) -> str:
        template = self.prompt.get(mode, choice.LOGLIK_PROMPT if mode == "loglik" else None)
        if template is None:
            raise BenchmarkError(f"benchmark {self.name} has no prompt for mode {mode!r}; it has {sorted(self.prompt)}")
        values = {"question": item.question}
        if item.options:
            values |= {
                "options": choice.render_options(item.options),
                "letters": choice.letters_phrase(len(item.options)),
            }
        # one pass: a question or option that contains "{options}" stays as it is
        return re.sub(r"\{(question|options|letters)\}", lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass
class LoadReport:
    source: str = ""
    rows: int = 0
    repaired: list[tuple[str, str]] = field(default_factory=list)  # (item id, what was repaired)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (row id or number, why)

    def lines(self) -> list[str]:
        out = [f"{self.rows} rows from {self.source}"]
        out += [f"repaired {i}: {what}" for i, what in self.repaired]
        out += [f"skipped {i}: {why}" for i, why in self.skipped]
        return out


# ------------------------------------------------------------------------------------------------ repairs

# A JSON writer that did not escape LaTeX's backslash turns "\right" into CR + "ight", "\times" into TAB +
# "imes", "\frac" into FF + "rac". We restore a backslash command only where a control character is followed
# by the rest of a known command name: MATH-500 has real tabs ("\treturn", "have\tequal") that must stay.
_LATEX_TAILS = {
    "\r": "ight|ightarrow|ho|angle|ceil|floor|brace|m",
    "\t": "imes|ext|extbf|extit|heta|au|an|o|frac|riangle|ilde|op|hinspace",
    "\f": "rac|orall|lat|box",
    "\b": "eta|inom|ar|ig|igg|egin|oxed|ot|ullet|mod|ackslash",
    "\a": "lpha|pprox|ngle|st",
    "\v": "ec|arepsilon|arphi|ee|dots",
    "\n": "eq|abla|otin|exists|eg|ewline|subseteq|mid",
}
_ESCAPE_LETTER = {"\r": "r", "\t": "t", "\f": "f", "\b": "b", "\a": "a", "\v": "v", "\n": "n"}
_CHAR_NAME = {"\r": "CR", "\t": "TAB", "\f": "FF", "\b": "BS", "\a": "BEL", "\v": "VT", "\n": "LF"}
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control chars other than \t \n \r


def repair_latex_control_chars(text: str) -> tuple[str, list[str]]:
    """-> (repaired text, descriptions of what changed)."""
    notes: list[str] = []
    for ch, tails in _LATEX_TAILS.items():
        letter = _ESCAPE_LETTER[ch]
        # the tail must end the command name: TAB + "and" is a tab before a word, not "\\tan" + "d"
        text, n = re.subn(re.escape(ch) + rf"(?=(?:{tails})(?![a-zA-Z]))", "\\\\" + letter, text)
        if n:
            notes.append(f"{n}x {_CHAR_NAME[ch]} -> backslash-{letter} (unescaped LaTeX)")
    text, n = _CONTROL_RE.subn("", text)
    if n:
        notes.append(f"{n} other control character(s) removed")
    if "\r" in text:  # a lone CR that was not a LaTeX command: line ending debris
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        notes.append("stray carriage return(s) -> newline")
    return text, notes


REPAIRS = {"latex_control_chars": repair_latex_control_chars}


# ------------------------------------------------------------------------------------------------ specs


def list_benchmarks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def describe_benchmarks(language: str | None = None) -> list[dict]:
    """The built-in benchmarks as rows: name, language, source (shipped / hub / --path), description."""
    rows = []
    for name in list_benchmarks():
        s = load_spec(name)
        if language and s.language not in (language, "any"):
            continue
        hub = s.source.get("hub")
        src = ", ".join(
            x for x in ("shipped" if s.source.get("local") else "", f"hub {hub['path']}" if hub else "") if x
        )
        rows.append({"name": name, "language": s.language, "source": src or "--path", "description": s.description})
    return rows


def load_spec(name: str) -> BenchmarkSpec:
    """A built-in name (``t-math``) or a path to a user's YAML spec."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = TASKS_DIR / f"{name}.yaml"
    if not path.exists():
        raise BenchmarkError(
            f"unknown benchmark {name!r}; built in: {', '.join(list_benchmarks())} (or a path to a .yaml spec)"
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = set(BenchmarkSpec.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise BenchmarkError(f"{path}: unknown spec keys {sorted(unknown)}; allowed: {sorted(known)}")
    if "name" not in raw:
        raise BenchmarkError(f"{path}: a spec needs a name")
    from tpro.eval.check import METRICS

    if raw.get("metric", "math") not in METRICS:
        raise BenchmarkError(f"{path}: unknown metric {raw['metric']!r}; choose one of {sorted(METRICS)}")
    spec = BenchmarkSpec(**raw)
    if spec.metric == "choice":
        if not spec.fields.get("options"):
            raise BenchmarkError(f"{path}: a multiple-choice spec needs fields.options (a field, or one per option)")
        lacking = [m for m in ("direct", "reasoning") if m in spec.prompt and "{options}" not in spec.prompt[m]]
        if lacking:
            raise BenchmarkError(f"{path}: the {'/'.join(lacking)} prompt must show the options: put {{options}} in it")
    return spec


# ------------------------------------------------------------------------------------------------ loading


def _read_jsonl(path: Path, report: LoadReport) -> list[dict]:
    """The rows of a benchmark file; bad lines are skipped and listed in ``report``."""
    skipped: list[tuple[int, str]] = []
    rows = read_jsonl(path, on_error="skip", skipped=skipped)
    report.skipped += [(f"line {n}", why) for n, why in skipped]
    return rows


def _read_hub(hub: dict) -> list[dict]:
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise BenchmarkError("loading from the hub needs `datasets`: pip install 'tpro[eval]'") from e
    try:
        ds = load_dataset(hub["path"], hub.get("name"), split=hub.get("split", "test"))
    except Exception as e:  # no network, gated dataset, renamed split: say which and how to avoid it
        raise BenchmarkError(
            f"could not load {hub['path']} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "check the network or give a local JSONL with --path"
        ) from e
    return [dict(r) for r in ds]


def _get(row: dict, name: str | None) -> Any:
    """``row[name]``; a dotted name that is not a key walks nested dicts (MERA's ``inputs.text``)."""
    if name is None:
        return None
    if name in row or "." not in name:
        return row.get(name)
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _has(row: dict, name: str) -> bool:
    if name in row:
        return True
    head, _, rest = name.partition(".")
    return bool(rest) and isinstance(row.get(head), dict) and _has(row[head], rest)


def _options(row: dict, spec_field: str | list[str]) -> list[str]:
    """A row's options: one field per option, a field holding a list (or a {letter: text} dict), or, when the row
    has no such field, the fields A, B, C, ... ValueError says what is wrong."""
    if isinstance(spec_field, list):
        raw = [_get(row, f) for f in spec_field]
        while raw and raw[-1] is None:  # a spec may list more option fields than a row fills
            raw.pop()
    elif _has(row, spec_field):
        raw = _get(row, spec_field)
        if isinstance(raw, dict):
            raw = [raw[k] for k in sorted(raw)]
        if not isinstance(raw, list):
            raise ValueError(f"field {spec_field!r} is not a list of options")
    else:
        raw = []
        for letter in choice.LETTERS:
            if letter not in row:
                break
            raw.append(row[letter])
        if not raw:
            raise ValueError(f"no options (field {spec_field!r}, or fields A, B, C, D)")
    if not choice.MIN_OPTIONS <= len(raw) <= choice.MAX_OPTIONS:
        raise ValueError(f"{len(raw)} options; {choice.MIN_OPTIONS} to {choice.MAX_OPTIONS} are needed")
    options = []
    for letter, value in zip(choice.LETTERS, raw):
        text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        if not text:
            raise ValueError(f"option {letter} is empty")
        options.append(text)
    return options


def _gold(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():  # MGSM stores answer_number as a float in some copies
        value = int(value)
    return str(value).strip()


def items_from_rows(spec: BenchmarkSpec, rows: list[dict], fields: dict, report: LoadReport) -> list[Item]:
    items: list[Item] = []
    seen: set[str] = set()
    repair_fns = [REPAIRS[r] for r in spec.repair]
    for n, row in enumerate(rows, 1):
        id_field = fields.get("id")
        row_id = _get(row, id_field)
        item_id = str(row_id) if row_id not in (None, "") else f"{spec.id_prefix}{n:04d}"
        q, a = _get(row, fields["question"]), _get(row, fields["answer"])
        if not isinstance(q, str) or not q.strip():
            report.skipped.append((item_id, f"no question in field {fields['question']!r}"))
            continue
        if a is None or (isinstance(a, str) and not a.strip()):
            report.skipped.append((item_id, f"no answer in field {fields['answer']!r}"))
            continue
        if item_id in seen:
            report.skipped.append((item_id, "duplicate id"))
            continue
        options, subject = [], None
        if spec.metric == "choice":
            try:
                options = _options(row, fields["options"])
                a = choice.gold_letter(a, options)
            except ValueError as e:
                report.skipped.append((item_id, str(e)))
                continue
            s = _get(row, fields.get("subject"))
            subject = str(s).strip() if s not in (None, "") else None
        a = _gold(a)
        if spec.answer_after and spec.answer_after in a:
            a = a.rsplit(spec.answer_after, 1)[1].strip().replace(",", "")
        for fn in repair_fns:
            q, notes_q = fn(q)
            a, notes_a = fn(a)
            for note in notes_q + notes_a:
                report.repaired.append((item_id, note))
        read = {fields["question"], fields["answer"], id_field, fields.get("subject")}
        if spec.metric == "choice":  # the options live in item.options
            read |= (
                set(fields["options"]) if isinstance(fields["options"], list) else {fields["options"], *choice.LETTERS}
            )
        meta = {k: v for k, v in row.items() if k not in read}
        if item_id in spec.flags:
            meta["flag"] = spec.flags[item_id]
        seen.add(item_id)
        items.append(Item(item_id, q.strip(), a, meta, options, subject))
    return items


def _no_items_error(spec: BenchmarkSpec, report: LoadReport, fields: dict, given_path: bool) -> BenchmarkError:
    """A source that yields no usable item: what was read, why rows were skipped (the first few), the fix."""
    why = "; ".join(f"{i}: {reason}" for i, reason in report.skipped[:3]) + ("; ..." if len(report.skipped) > 3 else "")
    need = [fields["question"], fields["answer"]]
    if spec.metric == "choice":
        opts = fields["options"]
        need.append(f"{opts} (4-10 options)" if isinstance(opts, str) else "/".join(opts))
    fix = f"one JSON object per line with the fields {', '.join(need)}"
    if given_path:
        fix = f"give a JSONL file of {spec.name} items, {fix}"
        fix += "" if spec.metric == "choice" else " (name others with --question-field/--answer-field)"
    else:
        fix = f"check the source (a split without answers?), or give a local JSONL with --path, {fix}"
    skipped = f"; {len(report.skipped)} skipped: {why}" if report.skipped else ""
    return BenchmarkError(f"{report.source}: no usable items ({report.rows} JSON rows read{skipped}). Fix: {fix}")


def load_benchmark_with_report(
    name: str,
    path: str | Path | None = None,
    limit: int | None = None,
    fields: dict | None = None,
    hub: bool = False,
) -> tuple[BenchmarkSpec, list[Item], LoadReport]:
    """Load a benchmark -> (spec, items, report). ``path``: a local JSONL instead of the spec's source;
    ``fields``: field-name overrides (``{"question": "problem"}``); ``limit``: the first N items;
    ``hub``: read the hub dataset even when a copy ships with tpro."""
    spec = load_spec(name)
    report = LoadReport()
    use = dict(spec.fields)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise BenchmarkError(f"{path}: no such file (give a JSONL with one problem per line)")
        rows, report.source = _read_jsonl(path, report), str(path)
    elif spec.source.get("local") and not (hub and spec.source.get("hub")):
        local = DATA_DIR / spec.source["local"]
        rows, report.source = _read_jsonl(local, report), f"{spec.source['local']} (shipped with tpro)"
    elif spec.source.get("hub"):
        rows, report.source = _read_hub(spec.source["hub"]), f"hub {spec.source['hub']['path']}"
        use.update(spec.hub_fields or {})
        if not (spec.hub_fields or {}).get("id"):
            use["id"] = None
    else:
        raise BenchmarkError(f"benchmark {spec.name} has no built-in source: give a JSONL file with --path")
    use.update(fields or {})
    if rows and not _has(rows[0], use["question"]):
        raise BenchmarkError(
            f"{report.source}: no field {use['question']!r} in the rows (fields: {sorted(rows[0])}); "
            "name the question field (--question-field)"
        )
    if rows and not _has(rows[0], use["answer"]):
        raise BenchmarkError(
            f"{report.source}: no field {use['answer']!r} in the rows (fields: {sorted(rows[0])}); "
            "name the answer field (--answer-field)"
        )
    report.rows = len(rows)
    items = items_from_rows(spec, rows, use, report)
    if not items:
        raise _no_items_error(spec, report, use, path is not None)
    if limit is not None:
        items = items[: max(0, limit)]
    for line in report.lines()[1:]:
        log.info("%s: %s", spec.name, line)
    return spec, items, report


def load_benchmark(name: str, path: str | Path | None = None, limit: int | None = None) -> list[Item]:
    """The items of benchmark ``name`` (built in or a spec path), from ``path`` if given, the first ``limit``."""
    return load_benchmark_with_report(name, path, limit)[1]
