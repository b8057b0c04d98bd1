"""Russian long-context retrieval tasks: a haystack of running text, needles at chosen depths, a question at the end.

Pure functions, deterministic by seed (``random.Random`` seeded with a string is stable across Python runs and
machines), no model and no I/O beyond reading an optional haystack file:

  - ``filler_sentences(rng)``: an endless stream of generated Russian sentences. Each joins a time phrase, a
    subject, a predicate and a place, every slot a complete phrase in its own case, so every combination is
    grammatical (present tense, third person singular: no agreement to get wrong). ~350k distinct sentences:
    text the project writes itself, so it ships with no licence question (RULER's "noise" haystack repeats
    one sentence; this one varies). ``--haystack FILE`` swaps in a user's own text (a book, Wikipedia dump).
  - tasks (``TASKS``): ``passkey`` (one number to find: RULER's passkey / niah_single), ``multikey`` (four
    "access codes" of named departments scattered through the text; the question names one: the others are
    distractors, RULER's niah_multikey).
  - ``build_case(...)``: the haystack cut to a token budget (counted with the model's tokenizer, sentence by
    sentence), the needle inserted at the sentence boundary closest to ``depth`` (0 = start, 1 = end), the
    question appended; -> ``Case`` with the prompt, the gold value and the distractor values.
  - ``score(answer, case)``: right when the answer names the gold value and no distractor value.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------- filler text

# fmt: off
_TIMES = (
    "Каждое утро", "По вечерам", "Обычно", "Летом", "Зимой", "Весной", "Осенью", "Иногда", "По субботам",
    "В начале месяца", "Перед рассветом", "После обеда", "В дождливую погоду", "Время от времени", "Как правило",
    "По традиции", "В праздничные дни", "Ранним утром", "Поздно вечером", "Раз в неделю",
)
_SUBJECTS = (
    "старый рыбак", "молодая учительница", "сосед с третьего этажа", "местный библиотекарь", "городской садовник",
    "известный художник", "пожилой почтальон", "школьный сторож", "главный инженер завода", "повар небольшого кафе",
    "студентка консерватории", "водитель трамвая", "лесник", "продавец газет", "сельский врач", "молодой архитектор",
    "хозяйка гостиницы", "экскурсовод", "бригадир строителей", "начальник станции", "капитан речного парохода",
    "пчеловод", "фотограф из редакции", "часовщик", "смотритель маяка",
)
_PREDICATES = (
    "чинит старые сети", "читает свежие газеты", "поливает цветы", "рассказывает детям сказки",
    "пишет письма родственникам", "считает проезжающие машины", "пьёт крепкий чай с лимоном",
    "собирает грибы и ягоды", "рисует акварелью пейзажи", "проверяет показания приборов", "кормит голубей",
    "разбирает почту", "настраивает пианино", "выгуливает собаку", "готовит пироги с капустой",
    "обсуждает новости с друзьями", "ремонтирует велосипед", "играет в шахматы", "записывает наблюдения в тетрадь",
    "слушает радио", "подметает дорожки", "фотографирует облака", "учит наизусть стихи", "точит карандаши",
    "вспоминает молодость",
)
_PLACES = (
    "у причала", "на набережной", "в городском парке", "возле вокзала", "на краю деревни", "в тихом переулке",
    "у старой мельницы", "на центральной площади", "в читальном зале", "под высокой липой", "на берегу реки",
    "во дворе музея", "у школьного стадиона", "на балконе", "в оранжерее", "около рынка", "на опушке леса",
    "в маленькой мастерской", "у фонтана", "на крыльце дома",
)
_ASIDES = (
    "", "", "", "", " Погода стоит ясная.", " Вокруг почти никого нет.", " Об этом знают все соседи.",
    " Так продолжается уже много лет.", " Никто не помнит, когда это началось.", " Рядом шумит ветер.",
)
# fmt: on


def filler_sentences(rng: random.Random) -> Iterator[str]:
    """Endless generated Russian sentences, e.g. "Летом пчеловод играет в шахматы у фонтана. Рядом шумит ветер."."""
    while True:
        yield (
            f"{rng.choice(_TIMES)} {rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)} {rng.choice(_PLACES)}."
            + rng.choice(_ASIDES)
        )


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def file_sentences(path: str | Path, rng: random.Random) -> Iterator[str]:
    """Sentences of a user's UTF-8 text file, endlessly, from a seeded starting sentence (so cases differ)."""
    text = Path(path).read_text(encoding="utf-8")
    sents = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    if len(sents) < 10:
        raise ValueError(f"haystack file {path} has {len(sents)} sentences; give at least 10 (any running text)")
    i = rng.randrange(len(sents))
    while True:
        yield sents[i]
        i = (i + 1) % len(sents)


# ------------------------------------------------------------------------------------------------- tasks

_DEPARTMENTS = (
    "Сокол", "Янтарь", "Берёза", "Маяк", "Север", "Гранит", "Орион", "Ладога", "Кедр", "Полюс", "Радуга", "Вега",
)  # fmt: skip
INSTRUCTION = (
    "Ниже дан длинный текст. В нём спрятана важная информация. Прочитайте текст и ответьте на вопрос после него."
)


@dataclass
class Task:
    name: str
    description: str
    # rng -> (needle sentences, gold value, distractor values, question)
    make: Callable[[random.Random], tuple[list[str], str, list[str], str]] = field(repr=False)


def _number(rng: random.Random, taken: set[str]) -> str:
    while (n := str(rng.randrange(10000, 100000))) in taken:
        pass
    taken.add(n)
    return n


def _passkey(rng: random.Random):
    key = _number(rng, set())
    needle = f"Секретный код доступа к архиву — {key}. Запомните его: {key}."
    return [needle], key, [], "Какой секретный код доступа к архиву назван в тексте? Ответьте только числом."


def _multikey(rng: random.Random, keys: int = 4):
    names = rng.sample(_DEPARTMENTS, keys)
    taken: set[str] = set()
    values = [_number(rng, taken) for _ in names]
    needles = [f"Код доступа отдела «{n}» — {v}." for n, v in zip(names, values)]
    # the asked needle is the first (it goes at the requested depth); the others land elsewhere
    question = f"Какой код доступа у отдела «{names[0]}»? Ответьте только числом."
    return needles, values[0], values[1:], question


TASKS: dict[str, Task] = {
    "passkey": Task("passkey", "one five-digit access code to find", _passkey),
    "multikey": Task("multikey", "four department codes; the question names one (three distractors)", _multikey),
}


# ------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    task: str
    length: int  # the nominal prompt length in tokens
    depth: float  # where the (asked) needle sits: 0 = first sentence, 1 = last
    trial: int
    prompt: str  # the user message: instruction, document, question
    gold: str
    distractors: list[str]
    haystack_tokens: int  # tokens of the document as counted (sentence by sentence)


def case_seed(seed: int, task: str, length: int, depth: float, trial: int) -> str:
    """The string a case's ``random.Random`` is seeded with: one case, one text, whatever else the run holds."""
    return f"tpro-long|{seed}|{task}|{length}|{depth:.4f}|{trial}"


def build_case(
    task: str,
    length: int,
    depth: float,
    trial: int,
    count_tokens: Callable[[str], int],
    *,
    seed: int = 0,
    overhead: int = 0,
    haystack: str | Path | None = None,
) -> Case:
    """One retrieval case whose prompt is about ``length`` tokens (``overhead``: tokens the chat template adds).

    The document is filled sentence by sentence until its token count (each sentence counted with a leading
    space, as it is joined) reaches ``length`` minus the instruction, needles, question and ``overhead``; then the
    asked needle goes in at the sentence boundary nearest ``depth``, distractor needles at seeded other places.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} is outside 0..1 (0 = start of the document, 1 = its end)")
    rng = random.Random(case_seed(seed, task, length, depth, trial))
    needles, gold, distractors, question = TASKS[task].make(rng)
    frame = f"{INSTRUCTION}\n\n<документ>\n{{}}\n</документ>\n\nВопрос: {question}"
    fixed = count_tokens(frame.format("")) + sum(count_tokens(" " + n) for n in needles) + 2  # 2: the seams
    budget = length - overhead - fixed
    if budget < 16:
        raise ValueError(f"length {length} leaves no room for a document ({fixed + overhead} tokens are fixed)")
    source = file_sentences(haystack, rng) if haystack else filler_sentences(rng)
    sents, used, misses = [], 0, 0
    for s in source:  # fill to the budget; at the end, shorter sentences may still fit where a long one did not
        n = count_tokens(" " + s)
        if used + n > budget:
            misses += 1
            if misses > 30 or budget - used < 4:
                break
            continue
        sents.append(s)
        used += n
    # insertion points are sentence boundaries 0..len(sents); the asked needle at `depth`
    at = round(depth * len(sents))
    places = [at] + [rng.randrange(len(sents) + 1) for _ in needles[1:]]
    for pos, needle in sorted(zip(places, needles), key=lambda p: -p[0]):  # from the back: positions stay valid
        sents.insert(pos, needle)
    prompt = frame.format(" ".join(sents))
    return Case(task, length, depth, trial, prompt, gold, distractors, used)


_NUMBER = re.compile(r"\d[\d\s\u00a0]*\d|\d")


def answer_numbers(answer: str) -> list[str]:
    """Digit runs in ``answer``, with thousands spaces removed ("58 314" -> "58314")."""
    return [re.sub(r"[\s\u00a0]", "", m) for m in _NUMBER.findall(answer)]


def score(answer: str, gold: str, distractors: list[str]) -> bool:
    """Right when the answer names the gold value and none of the distractors (naming every code is not an answer)."""
    found = set(answer_numbers(answer))
    return gold in found and not found & set(distractors)


def parse_lengths(spec: str) -> list[int]:
    """``"1k,2k,4k,16384"`` -> [1024, 2048, 4096, 16384] (k = 1024 tokens)."""
    out = []
    for part in spec.split(","):
        p = part.strip().lower()
        if not p:
            continue
        try:
            n = int(float(p[:-1]) * 1024) if p.endswith("k") else int(p)
        except ValueError:
            raise ValueError(f"bad length {part!r} in {spec!r}; write tokens like 1k,2k,4k or 1024,2048") from None
        if n < 128:
            raise ValueError(f"length {part!r} is under 128 tokens: too short for a document")
        out.append(n)
    if not out:
        raise ValueError("no lengths given; e.g. --lengths 1k,2k,4k")
    return sorted(set(out))


def parse_depths(spec: str) -> list[float]:
    """``"0,0.25,0.5,0.75,1"`` -> depths in 0..1; ``"5"`` alone -> five evenly spaced depths."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) == 1 and parts[0].isdigit() and int(parts[0]) > 1:
        n = int(parts[0])
        return [round(i / (n - 1), 4) for i in range(n)]
    try:
        depths = sorted({round(float(p), 4) for p in parts})
    except ValueError:
        raise ValueError(f"bad depths {spec!r}; write fractions like 0,0.25,0.5,0.75,1 or a count like 5") from None
    if not depths or any(not 0 <= d <= 1 for d in depths):
        raise ValueError(f"depths {spec!r} must be fractions in 0..1 (0 = start of the document, 1 = its end)")
    return depths
