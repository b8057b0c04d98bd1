"""``tpro eval arena``: a judged arena, the Arena-Hard method (lmsys arena-hard-auto) as Russian arenas use it.

Three stages in one resumable run directory, each the arena-hard script of the same name:
  1. answers: the model under test (``--model`` or ``--endpoint``) answers every question, in direct and/or
     reasoning mode; each mode is its own contestant, ``"NAME [mode]"``. Written to ``RUN/answers/NAME-mode.jsonl``
     in arena-hard's ``model_answer`` format (``question_id``/``uid``, ``model``, ``choices[0].turns[0].content``
     and ``token_len``) plus tpro's fields (mode, reasoning trace, latency, tokens, settings). The judged answer
     is the answer without the reasoning trace. Answers of other models (the baseline's, published ones) come
     from ``--answers`` files in either arena-hard format.
  2. judgments: a judge (``--judge-endpoint`` or ``--judge-local``) compares every contestant with
     ``--baseline`` on every question twice, the baseline's answer first as A (game 1), then second (game 2),
     so a judge's position bias cancels. A judgment with no single verdict label is asked again (arena-hard's
     follow-up turn, a new seed when sampling) up to ``--judge-retries`` times, then kept as unparseable: it
     counts in the unparseable rate and gives no battle. ``RUN/judgments/JUDGE/CONTESTANT.jsonl`` holds both
     games' raw judge text, labels (``score``, as arena-hard names it) and both answers' style features.
  3. leaderboard: battles (``tpro.eval.arena.verdicts_to_battles``; a ``>>`` verdict weighs 3) -> Bradley-Terry
     scores with bootstrap intervals, plain and style-controlled (answer length in characters and markdown
     density), written as ``RUN/leaderboard.{md,json,png}`` with the unparseable-verdict rate of each judge.

Every answer and judgment is appended and fsync'd as it finishes; a killed run started again redoes nothing
finished (a torn last line is dropped and redone). A run directory gathers contestants across runs: every answer
set in ``RUN/answers`` and ``--answers`` except the baseline is judged, so the models of several runs share one
leaderboard. Settings that decide an answer or a judgment are stored with it; resuming with other settings is
refused (another ``--name``, judge or ``--out`` starts a new set).

Style length is counted in characters, not tokens: published answers carry tiktoken counts and ours the model's
own tokenizer's, and style control needs one unit across all battles.

What this module does not know: how scores are fitted (``tpro.eval.arena``), how a model is loaded or served
(``tpro.eval.runner``'s generators).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpro.config import like, opt
from tpro.engine.samples import sample_seed
from tpro.eval.arena import (
    leaderboard,
    markdown_table,
    parse_verdict,
    plot,
    style_controlled,
    style_features,
    verdicts_to_battles,
)
from tpro.eval.report import read_records
from tpro.eval.runner import (
    EndpointError,
    EndpointGenerator,
    Generator,
    GeneratorOptions,
    ModeBudgets,
    RunError,
    _lock_run_dir,
    bounded,
    generator_concurrency,
    make_generator,
)
from tpro.io import JSONLError, append_jsonl, atomic_write, read_jsonl, write_json
from tpro.options import MAX_TEMPERATURE, MODE_HELP, Mode, ModeOrBoth, SamplingOptions

# ru_llm_arena's questions (github.com/VikhrModels/ru_llm_arena, "General": 500 prompts of the LMSYS online
# arena in 50 topics, arena-hard v0.1 format: question_id, cluster, category, turns). Its dataset card declares no
# licence, so tpro ships no copy: --hub loads it for the user. T-Tech publishes another set,
# t-tech/ru-arena-hard (Apache-2.0 per its card, with gpt-4-0613 baseline answers); download it and pass the
# files to --questions / --answers.
HUB_QUESTIONS = "Vikhrmodels/ru-arena-general"
JUDGE_PROMPT = Path(__file__).parent / "data" / "arena_judge.yaml"


@dataclass(kw_only=True)
class ArenaConfig(ModeBudgets, GeneratorOptions, SamplingOptions):
    """``tpro eval arena``: questions, the model under test (local engine or endpoint), published answers, the
    judge, the baseline and the bootstrap."""

    questions: str | None = opt(
        None, "Questions JSONL in arena-hard's format (v0.1: question_id, category, turns; v2: uid, category, prompt)"
    )
    hub: bool = opt(False, f"Load ru_llm_arena's questions ({HUB_QUESTIONS}) from the Hugging Face hub")
    limit: int | None = opt(None, "Only the first N questions", min=1)
    answers: list[str] = opt(
        [], "Published answers: arena-hard model_answer JSONL files or directories of them (repeatable)"
    )
    judgments: list[str] = opt(
        [],
        "Published judgments: arena-hard model_judgment JSONL files or directories of them (game 1: baseline as A). "
        "Only the leaderboard is fitted from them: no answers, no judge (--questions, if given, selects questions)",
    )
    baseline: str | None = opt(
        None, "Contestant every answer is judged against: a model in --answers or RUN/answers, or 'NAME [mode]'"
    )
    name: str | None = opt(
        None, "Contestant name of the model under test (default: its directory name or --api-model); + ' [mode]'"
    )
    mode: ModeOrBoth = opt("both", MODE_HELP + "; both: each mode is its own contestant")
    # arena-hard gives every answer max_tokens 4096
    max_new_tokens: int = like(SamplingOptions, "max_new_tokens", 4096, help="Answer budget in reasoning mode")
    max_new_tokens_direct: int = opt(4096, "Answer budget in direct mode", min=1)
    seed: int | None = like(
        SamplingOptions, "seed", help="Seed of sampled answers and judgments (when sampling) and of the bootstrap"
    )
    judge_endpoint: str | None = opt(
        None, "Judge: an OpenAI-compatible base URL (API key from $TPRO_JUDGE_API_KEY, else $TPRO_API_KEY)"
    )
    judge_model: str | None = opt(None, "Model name sent to --judge-endpoint (default: its first model)")
    judge_local: str | None = opt(None, "Judge: a local model spec run by tpro's engine (hub id | dir | .gguf)")
    judge_name: str | None = opt(None, "Judge name for RUN/judgments/NAME (default: the judge model's name)")
    judge_mode: Mode = opt("direct", "Judge's mode; its verdict is read from the answer after any reasoning trace")
    judge_max_new_tokens: int = opt(4096, "Judge budget per judgment (its own answer, comparison, verdict)", min=1)
    judge_temperature: float = opt(0.0, "Judge temperature (arena-hard: 0)", min=0.0, max=MAX_TEMPERATURE)
    judge_retries: int = opt(2, "Follow-up turns asking for the verdict label when a judgment has none", min=0, max=10)
    judge_concurrency: int = opt(4, "Judge endpoint requests in flight", min=1)
    judge_prompt: str | None = opt(None, "YAML with system, template and retry keys (default: the shipped one)")
    rounds: int = opt(100, "Bootstrap rounds for the 95% intervals", min=10, max=10000)
    style_control: bool = opt(True, "Also fit style-controlled scores (answer length and markdown held equal)")
    out: str | None = opt(None, "Run directory (default runs/arena/QUESTIONS). Run again to resume.", short="-o")
    progress: bool = opt(True, "Progress bars (--no-progress: one log line per answer or judgment)")

    def __post_init__(self):
        super().__post_init__()
        if self.questions is not None and not Path(self.questions).is_file():
            raise RunError(f"--questions {self.questions} does not exist. Fix: pass an arena-hard question JSONL")
        if self.judge_model and not self.judge_endpoint:
            raise RunError("--judge-model names a model at --judge-endpoint; give the endpoint too")
        for p in [*self.answers, *self.judgments, *([self.judge_prompt] if self.judge_prompt else [])]:
            if not Path(p).exists():
                raise RunError(f"{p} does not exist. Fix: pass an existing file or directory")

    def check_sources(self) -> None:
        """What a run needs beyond valid settings (``--print-config`` and YAML files may leave them out): one question
        source and one judge (published judgments: a baseline only)."""
        if self.judgments:
            if not self.baseline:
                raise RunError("--judgments needs --baseline: the model every published judgment compared against")
            if self.hub:
                raise RunError("--judgments fits published verdicts; --hub would fetch questions to answer. Drop --hub")
            return
        if (self.questions is None) == (not self.hub):
            raise RunError(
                "give exactly one question source: --questions FILE (arena-hard JSONL) or --hub "
                f"({HUB_QUESTIONS}, needs network)"
            )
        if (self.judge_endpoint is None) == (self.judge_local is None):
            raise RunError("give exactly one judge: --judge-endpoint URL (+ --judge-model) or --judge-local SPEC")

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.judgments and not self.questions:
            return Path("runs") / "arena" / f"published-{Path(self.judgments[0]).stem}"
        return Path("runs") / "arena" / (Path(self.questions).stem if self.questions else HUB_QUESTIONS.split("/")[1])

    def contestant_base(self) -> str | None:
        """The model under test's name before its mode, when known without asking an endpoint."""
        return self.name or (Path(self.model).name if self.model else self.api_model)

    def judge_base(self) -> str | None:
        return self.judge_name or (Path(self.judge_local).name if self.judge_local else self.judge_model)


# ------------------------------------------------------------------------------------------------ questions


@dataclass(frozen=True)
class Question:
    id: str  # str(question_id | uid): ints and strings match alike
    raw_id: object  # as in the file, written back unchanged
    key: str  # "question_id" (v0.1) or "uid" (v2)
    category: str
    prompt: str


def parse_question(row: dict, where: str) -> Question:
    """One arena-hard question row (v0.1 or v2) -> a Question; only a v0.1 question's first turn is asked (the
    arena-hard sets have one)."""
    key = "uid" if "uid" in row else "question_id"
    if key not in row:
        raise RunError(f"{where}: no question_id (v0.1) or uid (v2). Fix: an arena-hard question row")
    prompt = row.get("prompt")
    if prompt is None and row.get("turns"):
        turn = row["turns"][0]
        prompt = turn.get("content") if isinstance(turn, dict) else turn
    if not isinstance(prompt, str) or not prompt.strip():
        raise RunError(f"{where}: no question text (v0.1: turns[0].content; v2: prompt)")
    return Question(str(row[key]), row[key], key, str(row.get("category") or ""), prompt)


def load_questions(cfg: ArenaConfig) -> list[Question]:
    if cfg.hub:
        rows, source = _hub_rows(HUB_QUESTIONS), HUB_QUESTIONS
    else:
        try:
            rows, source = read_jsonl(cfg.questions), cfg.questions
        except JSONLError as e:
            raise RunError(str(e)) from None
    questions = [parse_question(r, f"{source} row {i + 1}") for i, r in enumerate(rows)]
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise RunError(f"{source}: question id {q.raw_id!r} appears twice. Fix: give every question its own id")
        seen.add(q.id)
    return questions[: cfg.limit] if cfg.limit else questions


def _hub_rows(dataset: str) -> list[dict]:
    try:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(dataset, split="train")]
    except Exception as e:  # noqa: BLE001 - no `datasets`, no network, a renamed dataset: say which, and the way round
        raise RunError(
            f"could not load {dataset} from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}). Fix: on a "
            f"machine with network, save its rows as JSONL (datasets: load_dataset('{dataset}', split='train')"
            ".to_json('questions.jsonl', force_ascii=False)) and pass --questions questions.jsonl"
        ) from None


# ------------------------------------------------------------------------------------------------ answers


@dataclass(frozen=True)
class Answer:
    text: str  # what the judge sees: the answer without any reasoning trace
    tokens: int | None


def slug(name: str) -> str:
    """A contestant or judge name as a file name: ``"T-pro [direct]"`` -> ``"T-pro-direct"``."""
    return re.sub(r"[^\w.\-]+", "_", name.replace(" [", "-").replace("]", "")).strip("_") or "model"


def answer_of(row: dict) -> Answer | None:
    """The judged answer of a model_answer row: v0.1 ``choices[0].turns[0].content``, v2 the last assistant
    message's ``content`` (``{"answer": ...}`` or text); a ``<think>`` trace is cut off. None if there is none."""
    from tpro.models import split_reasoning

    text, tokens = None, None
    if row.get("choices"):
        turn = (row["choices"][0].get("turns") or [{}])[0]
        text, tokens = turn.get("content"), turn.get("token_len")
    elif row.get("messages"):
        content = next((m.get("content") for m in reversed(row["messages"]) if m.get("role") == "assistant"), None)
        text = content.get("answer") if isinstance(content, dict) else content
    if not isinstance(text, str):
        return None
    meta = row.get("conv_metadata") or row.get("metadata") or {}
    return Answer(split_reasoning(text)[1], tokens if tokens is not None else meta.get("token_len"))


def read_answer_file(path: Path) -> dict[str, dict[str, Answer]]:
    """{model: {question id: Answer}} of one model_answer JSONL; the model is the row's ``model``/``model_id``,
    else the file's stem. A torn last line (a killed run) is skipped."""
    out: dict[str, dict[str, Answer]] = {}
    try:
        rows = read_jsonl(path, on_error="truncated")
    except JSONLError as e:
        raise RunError(str(e)) from None
    for i, row in enumerate(rows):
        qid = row.get("question_id", row.get("uid"))
        answer = answer_of(row)
        if qid is None or answer is None:
            raise RunError(f"{path} row {i + 1}: not an arena-hard answer (question_id/uid and choices or messages)")
        out.setdefault(row.get("model") or row.get("model_id") or path.stem, {})[str(qid)] = answer
    return out


def load_answer_sets(paths: list[Path]) -> dict[str, dict[str, Answer]]:
    """Answer sets of files and directories (their ``*.jsonl``); a model found twice is an error."""
    files = [f for p in paths for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    sets: dict[str, dict[str, Answer]] = {}
    where: dict[str, Path] = {}
    for f in files:
        for model, answers in read_answer_file(f).items():
            if model in sets:
                raise RunError(f"answers of {model!r} are in both {where[model]} and {f}. Fix: pass one of them")
            sets[model], where[model] = answers, f
    return sets


# ------------------------------------------------------------------------------------------------ the judge prompt


@dataclass(frozen=True)
class JudgePrompt:
    system: str
    template: str
    retry: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(json.dumps([self.system, self.template, self.retry]).encode()).hexdigest()[:12]

    def messages(self, question: str, answer_a: str, answer_b: str) -> list[dict]:
        # plain replacement, not str.format: answers are full of braces (code, LaTeX)
        user = self.template.replace("{question}", question).replace("{answer_a}", answer_a)
        user = user.replace("{answer_b}", answer_b)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def load_judge_prompt(path: str | Path | None = None) -> JudgePrompt:
    import yaml

    path = Path(path or JUDGE_PROMPT)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    need = ("system", "template", "retry")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in need):
        raise RunError(f"{path}: a judge prompt is a YAML mapping with text keys {', '.join(need)}")
    missing = [p for p in ("{question}", "{answer_a}", "{answer_b}") if p not in data["template"]]
    if missing:
        raise RunError(f"{path}: the template lacks {', '.join(missing)}. Fix: put each placeholder in it once")
    return JudgePrompt(data["system"], data["template"], data["retry"])


# ------------------------------------------------------------------------------------------------ judging


def judge_game(judge: Generator, prompt: JudgePrompt, messages: list[dict], mode: str, params, retries: int):
    """One game: the judgment, then up to ``retries`` follow-ups while it holds no single verdict label -> the game's
    record (``score``: the label, None when unparseable). ``params(attempt)``: each attempt's sampling settings."""
    texts, tokens, latency, label = [], 0, 0.0, None
    for attempt in range(retries + 1):
        gen = judge.generate(messages, mode, params(attempt))
        texts.append(gen.text)
        tokens += gen.output_tokens or 0
        latency += gen.latency_s
        label = parse_verdict(gen.answer)
        if label is not None:
            break
        messages = [*messages, {"role": "assistant", "content": gen.answer}, {"role": "user", "content": prompt.retry}]
    # "judgment": the raw judge text of every attempt, joined as arena-hard does
    return {"score": label, "judgment": "\n".join(texts), "attempts": len(texts), "output_tokens": tokens,
            "latency_s": round(latency, 4)}  # fmt: skip


@dataclass
class JudgeJob:
    question: Question
    index: int  # the question's position: picks the seeds when sampling
    contestant: str
    baseline: str
    answer: Answer
    baseline_answer: Answer


def judge_pair(job: JudgeJob, judge: Generator, prompt: JudgePrompt, cfg: ArenaConfig) -> dict:
    """Both games of one question: game 1 shows the baseline's answer as A, game 2 as B -> the judgment record."""
    from tpro.engine import SamplingParams

    games = []
    for g, (a, b) in enumerate(((job.baseline_answer, job.answer), (job.answer, job.baseline_answer))):

        def params(attempt: int, g=g):
            seed = None if cfg.judge_temperature == 0 else sample_seed(cfg.seed or 0, job.index, 100 + 20 * g + attempt)
            return SamplingParams(max_new_tokens=cfg.judge_max_new_tokens, temperature=cfg.judge_temperature, seed=seed)

        messages = prompt.messages(job.question.prompt, a.text, b.text)
        games.append({"game": g + 1, **judge_game(judge, prompt, messages, cfg.judge_mode, params, cfg.judge_retries)})
    return {
        job.question.key: job.question.raw_id,
        "model": job.contestant,
        "baseline": job.baseline,
        "judge": judge.name,
        "games": games,
        "style": {"model": style_features(job.answer.text), "baseline": style_features(job.baseline_answer.text)},
        "settings": judge_settings(cfg, prompt),
        "tstamp": time.time(),
    }


def judge_settings(cfg: ArenaConfig, prompt: JudgePrompt) -> dict:
    return {"model": cfg.judge_local or cfg.judge_model, "mode": cfg.judge_mode, "prompt": prompt.sha,
            "max_new_tokens": cfg.judge_max_new_tokens, "temperature": cfg.judge_temperature,
            "seed": (cfg.seed or 0) if cfg.judge_temperature else None}  # fmt: skip


def answer_settings(cfg: ArenaConfig, mode: str) -> dict:
    return {"model": cfg.model or cfg.api_model, "mode": mode, "max_new_tokens": cfg.budget(mode),
            "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k, "stop": list(cfg.stop),
            "seed": (cfg.seed or 0) if cfg.temperature else None}  # fmt: skip


def answer_record(q: Question, contestant: str, mode: str, gen, generator: str, settings: dict) -> dict:
    return {
        q.key: q.raw_id,
        "model": contestant,
        "choices": [{"index": 0, "turns": [{"content": gen.answer, "token_len": gen.output_tokens}]}],
        "tstamp": time.time(),
        "mode": mode,
        "reasoning": gen.reasoning,
        "generator": generator,
        "prompt_tokens": gen.prompt_tokens,
        "output_tokens": gen.output_tokens,
        "latency_s": round(gen.latency_s, 4),
        "finish_reason": gen.finish_reason,
        "settings": settings,
    }


def _check_settings(path: Path, records: list[dict], now: dict, what: str) -> None:
    old = next((r.get("settings") for r in records if r.get("settings") is not None), None)
    if old is not None and old != now:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {now.get(k)!r}" for k in now if old.get(k) != now.get(k))
        raise RunError(f"{path} holds {what} made with other settings ({diff}). Fix: the same settings to resume, "
                       "or another --name / --judge-name / --out")  # fmt: skip


# ------------------------------------------------------------------------------------------------ the run


def run_arena(
    cfg: ArenaConfig,
    out: str | Path | None = None,
    *,
    generator: Generator | None = None,
    judge: Generator | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the arena of ``cfg`` into ``out`` -> the leaderboard summary (also written as
    leaderboard.json / .md / .png). ``generator`` / ``judge``: ones built already (tests, callers that hold an
    engine); otherwise from the config, and only when there is something left to generate or judge."""
    cfg.check_sources()
    out = Path(out) if out is not None else cfg.run_dir()
    if cfg.judgments:
        return published_leaderboard(cfg, out, log)
    progress = cfg.progress if progress is None else progress
    questions = load_questions(cfg)
    prompt = load_judge_prompt(cfg.judge_prompt)
    published = load_answer_sets([Path(p) for p in cfg.answers])
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_run_dir(out)
    own: list[Generator] = []
    try:
        generator = _answer(cfg, questions, published, out, generator, own, progress, log)
        if generator in own and cfg.judge_local != cfg.model:  # free the answerer before another model judges
            own.remove(generator)
            _close(generator)
        judge_name = _judge(cfg, questions, prompt, published, out, generator, judge, own, progress, log)
        summary = write_leaderboard(out, cfg, questions, judge_name)
    finally:
        for g in own:
            _close(g)
        lock.close()
    log(f"leaderboard: {out / 'leaderboard.md'}")
    return summary


def _answer(cfg, questions, published, out, generator, own, progress, log) -> Generator | None:
    """Stage 1: the model under test's answers, each mode a contestant -> the generator (when one was built)."""
    base = cfg.contestant_base()
    if base is None:  # an endpoint without --api-model or --name: its first model names the contestant
        generator = generator or _own(make_generator(cfg, log), own)
        base = generator.name
    stored = {slug(p.stem) for p in (out / "answers").glob("*.jsonl")}  # hours of answers need a baseline first
    known = {*published, *(f"{base} [{m}]" for m in cfg.modes)}
    if cfg.baseline is None or (cfg.baseline not in known and slug(cfg.baseline) not in stored):
        _no_baseline(cfg.baseline, sorted(known | stored))
    jobs = []
    for mode in cfg.modes:
        name, path = f"{base} [{mode}]", out / "answers" / f"{slug(f'{base} [{mode}]')}.jsonl"
        records = read_records(path)
        if any(r.get("model") not in (None, name) for r in records):
            raise RunError(f"{path} holds answers of another model than {name!r}. Fix: another --name or --out")
        _check_settings(path, records, answer_settings(cfg, mode), f"answers of {name}")
        done = {str(r.get("question_id", r.get("uid"))) for r in records}
        jobs += [(i, q, mode, name, path) for i, q in enumerate(questions) if q.id not in done]
    log(f"answers: {len(questions)} questions x {len(cfg.modes)} mode(s) of {base}; {len(jobs)} to generate")
    if not jobs:
        return generator
    generator = generator or _own(make_generator(cfg, log), own)

    def one(job):
        i, q, mode, _, _ = job
        seed = None if cfg.temperature == 0 else sample_seed(cfg.seed or 0, i, 0)
        params = cfg.sampling(max_new_tokens=cfg.budget(mode), seed=seed)
        return generator.generate([{"role": "user", "content": q.prompt}], mode, params)

    def write(job, gen) -> str:
        _, q, mode, name, path = job
        append_jsonl(path, [answer_record(q, name, mode, gen, generator.name, answer_settings(cfg, mode))])
        return f"{q.id} {mode}: {gen.output_tokens} tokens, {gen.latency_s:.1f} s, {gen.finish_reason}"

    _loop(one, write, jobs, generator_concurrency(generator, cfg), progress, f"answers of {base}", log)
    return generator


def _judge(cfg, questions, prompt, published, out, generator, judge, own, progress, log) -> str:
    """Stage 2: every contestant but the baseline against the baseline, both orders -> the judge's name."""
    generated = load_answer_sets([out / "answers"]) if (out / "answers").is_dir() else {}
    clash = sorted(set(generated) & set(published))
    if clash:
        raise RunError(f"--answers holds {', '.join(clash)}, which {out / 'answers'} has too. Fix: rename one")
    sets = generated | published
    if cfg.baseline not in sets:
        _no_baseline(cfg.baseline, sorted(sets))
    if cfg.judge_local and cfg.judge_local == cfg.model and generator is not None and judge is None:
        judge = generator  # the same local model answers and judges: load it once
    name = cfg.judge_base()
    if name is None:  # an endpoint judge without --judge-model: its first model names it
        judge = judge or _own(make_judge(cfg, log), own)
        name = judge.name
    base = sets[cfg.baseline]
    lacking = sum(q.id not in base for q in questions)
    if lacking:
        log(f"warning: {lacking} question(s) have no answer of the baseline {cfg.baseline}; they are not judged")
    jobs = []
    for contestant in sorted(set(sets) - {cfg.baseline}):
        missing = sum(q.id not in sets[contestant] for q in questions)
        if missing:  # counted, not hidden: the leaderboard's "judged questions" column shows it too
            log(f"warning: {contestant} has no answer to {missing} of {len(questions)} question(s); not judged there")
        path = out / "judgments" / slug(name) / f"{slug(contestant)}.jsonl"
        records = read_records(path)
        _check_settings(path, records, judge_settings(cfg, prompt), f"judgments by {name}")
        done = {(str(r.get("question_id", r.get("uid"))), r.get("baseline")) for r in records}
        jobs += [
            (JudgeJob(q, i, contestant, cfg.baseline, sets[contestant][q.id], base[q.id]), path)
            for i, q in enumerate(questions)
            if q.id in base and q.id in sets[contestant] and (q.id, cfg.baseline) not in done
        ]
    log(f"judgments by {name}: {len(sets) - 1} contestant(s) vs {cfg.baseline}; {len(jobs)} question(s) to judge")
    if not jobs:
        return name
    judge = judge or _own(make_judge(cfg, log), own)
    concurrency = cfg.judge_concurrency if isinstance(judge, EndpointGenerator) else getattr(judge, "concurrency", 1)

    def write(job, rec) -> str:
        append_jsonl(job[1], [rec])
        verdicts = ", ".join(f"game {g['game']} {g['score'] or 'unparseable'}" for g in rec["games"])
        return f"{job[0].question.id} {job[0].contestant} vs {job[0].baseline}: {verdicts}"

    def one(job):
        return judge_pair(job[0], judge, prompt, cfg)

    _loop(one, write, jobs, concurrency, progress, f"judging by {name}", log)
    return name


def _no_baseline(baseline: str | None, names: list[str]):
    what = "is required" if baseline is None else f"{baseline!r} has no answers"
    raise RunError(f"--baseline {what}. Fix: pass one of: {', '.join(names) or '(none yet)'}, or add the "
                   "baseline's answers with --answers")  # fmt: skip


def _close(g: Generator) -> None:
    if hasattr(g, "close"):  # the local engine's batch loop; an endpoint client needs nothing
        g.close()


def _own(g: Generator, own: list) -> Generator:
    own.append(g)
    return g


def make_judge(cfg: ArenaConfig, log) -> Generator:
    import os

    if cfg.judge_endpoint:
        key = os.environ.get("TPRO_JUDGE_API_KEY") or os.environ.get("TPRO_API_KEY")
        return EndpointGenerator(cfg.judge_endpoint, cfg.judge_model, api_key=key, timeout_s=cfg.timeout,
                                 retries=cfg.retries)  # fmt: skip
    local = GeneratorOptions(model=cfg.judge_local, dtype=cfg.dtype, weights=cfg.weights, threads=cfg.threads,
                             rope_scaling=cfg.rope_scaling, batch=cfg.batch)  # fmt: skip
    return make_generator(local, log)


def _loop(fn, write, jobs, concurrency, progress, what, log) -> None:
    """Run ``fn`` over ``jobs`` (``concurrency`` in flight), ``write`` each result as it finishes; a failed job is
    logged and left for the next run."""
    failures = 0
    bar = _bar(what, len(jobs)) if progress else None
    try:
        for n, (job, result) in enumerate(bounded(fn, jobs, concurrency), 1):
            try:
                line = write(job, result())
            except (EndpointError, ValueError) as e:  # an endpoint gave up, a prompt over the context
                failures += 1
                log(f"failed ({what}): {e}")
                continue
            if bar is not None:
                bar[0].update(bar[1], advance=1)
            else:
                log(f"[{n}/{len(jobs)}] {line}")
    finally:
        if bar is not None:
            bar[0].stop()
    if failures:
        log(f"{failures} of {len(jobs)} ({what}) failed and were not recorded; run again to retry them")


def _bar(what: str, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    p.start()
    return p, p.add_task(what, total=total)


# ------------------------------------------------------------------------------------------------ results


def judged_records(out: Path, judge: str, questions: list[Question], baseline: str) -> list[dict]:
    """The judge's records of these questions against this baseline (other questions or baselines stay on disk)."""
    ids = {q.id for q in questions}
    folder = out / "judgments" / slug(judge)
    return [
        r
        for f in sorted(folder.glob("*.jsonl"))
        for r in read_records(f)
        if str(r.get("question_id", r.get("uid"))) in ids and r.get("baseline") == baseline
    ]


def battles_of(records: list[dict]) -> list[dict]:
    """Judgment records -> battles (model_a = the baseline), with both answers' style features."""
    out = []
    for r in records:
        g1, g2 = (g.get("score") for g in r["games"])
        style = r.get("style") or {}
        qid = r.get("question_id", r.get("uid"))
        out += verdicts_to_battles(qid, r["model"], r["baseline"], g1, g2, style.get("model"), style.get("baseline"))
    return out


def unparseable(records: list[dict]) -> dict:
    games = [g for r in records for g in r["games"]]
    bad = sum(g.get("score") is None for g in games)
    return {"games": len(games), "unparseable": bad, "rate": bad / len(games) if games else None}


def write_leaderboard(out: Path, cfg: ArenaConfig, questions: list[Question], judge: str) -> dict:
    """leaderboard.json / .md / .png of the judge's verdicts on these questions -> the summary."""
    judges = sorted(p.name for p in (out / "judgments").glob("*") if p.is_dir()) if (out / "judgments").is_dir() else []
    rates = {j: unparseable(judged_records(out, j, questions, cfg.baseline)) for j in judges}
    records = judged_records(out, slug(judge), questions, cfg.baseline)
    return write_summary(out, cfg, summarize_records(records, cfg, judge, len(questions), rates))


def summarize_records(records: list[dict], cfg: ArenaConfig, judge: str, questions: int, rates: dict) -> dict:
    """Judgment records (both games each) -> the leaderboard summary: battles, per-contestant counts, plain and
    style-controlled Bradley-Terry rows with bootstrap intervals."""
    battles = battles_of(records)
    per_model: dict[str, dict] = {}
    for r in records:
        m = per_model.setdefault(r["model"], {"questions": 0, "games": 0, "unparseable": 0, "chars": 0})
        m["questions"] += 1
        m["games"] += len(r["games"])
        m["unparseable"] += sum(g.get("score") is None for g in r["games"])
        m["chars"] += (r.get("style") or {}).get("model", {}).get("len", 0)
    summary = {"judge": judge, "baseline": cfg.baseline, "questions": questions, "battles": len(battles),
               "unparseable": rates, "contestants": per_model, "rounds": cfg.rounds, "seed": cfg.seed or 0,
               "plain": [], "style_controlled": [], "style_coefficients": {}}  # fmt: skip
    models = {m for b in battles for m in (b["model_a"], b["model_b"])}
    has_style = bool(battles) and all("len_a" in b for b in battles)  # published judgments without answers: none
    if len(models) >= 2:
        seed = cfg.seed or 0
        summary["plain"] = leaderboard(battles, cfg.baseline, cfg.rounds, seed)
        if cfg.style_control and has_style:
            summary["style_controlled"] = leaderboard(battles, cfg.baseline, cfg.rounds, seed, style_control=True)
            summary["style_coefficients"] = style_controlled(battles, cfg.baseline)[1]
    return summary


def write_summary(out: Path, cfg: ArenaConfig, summary: dict) -> dict:
    """RUN/leaderboard.{json,md,png} of a summary -> the summary with its markdown."""
    out.mkdir(parents=True, exist_ok=True)
    md = leaderboard_markdown(summary)
    summary["markdown"] = md
    write_json(out / "leaderboard.json", {k: v for k, v in summary.items() if k != "markdown"})
    atomic_write(out / "leaderboard.md", md)
    rows = summary["style_controlled"] or summary["plain"]
    if rows:
        what = "style-controlled" if summary["style_controlled"] else "Bradley-Terry"
        title = f"Judge {summary['judge']}, baseline {cfg.baseline}: {what} scores, 95% CI"
        plot(rows, out / "leaderboard.png", title=title)
    return summary


def read_judgments(paths: list[Path], baseline: str, answers: dict[str, dict[str, Answer]]) -> list[dict]:
    """Published arena-hard judgment rows (``question_id``/``uid``, ``model``, ``judge``, ``games``: two games with a
    ``score`` label or null, game 1 with the baseline as A) -> judgment records against ``baseline``. Where
    ``answers`` hold both answers of a question, their style features come along (style control needs them)."""
    files = [f for p in paths for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    records, seen = [], set()
    for f in files:
        try:
            rows = read_jsonl(f, on_error="truncated")
        except JSONLError as e:
            raise RunError(str(e)) from None
        for i, row in enumerate(rows):
            qid, games = row.get("question_id", row.get("uid")), row.get("games")
            where = f"{f} row {i + 1}"
            if qid is None or not row.get("model") or not isinstance(games, list) or len(games) != 2:
                raise RunError(f"{where}: not an arena-hard judgment (question_id/uid, model, two games)")
            if any(not isinstance(g, dict) or "score" not in g for g in games):
                raise RunError(f"{where}: a game without a 'score' label (null when the judge gave none)")
            if row["model"] == baseline:  # the baseline judged against itself carries no information
                continue
            key = (row["model"], str(qid))
            if key in seen:
                raise RunError(f"{where}: {row['model']!r} is judged twice on question {qid!r}. Fix: pass one file")
            seen.add(key)
            rec = {"question_id": qid, "model": row["model"], "baseline": baseline, "judge": row.get("judge"),
                   "games": [{"score": g["score"]} for g in games]}  # fmt: skip
            mine, base = answers.get(row["model"], {}).get(str(qid)), answers.get(baseline, {}).get(str(qid))
            if mine is not None and base is not None:
                rec["style"] = {"model": style_features(mine.text), "baseline": style_features(base.text)}
            records.append(rec)
    if not records:
        raise RunError(f"no judgments against other models than {baseline!r} in {', '.join(map(str, files))}")
    return records


def published_leaderboard(cfg: ArenaConfig, out: Path, log: Callable[[str], None] = print) -> dict:
    """``--judgments``: the leaderboard of published verdicts (no answers generated, no judge called); with
    ``--answers`` holding the baseline's and the models' answers, style control too."""
    records = read_judgments([Path(p) for p in cfg.judgments], cfg.baseline, load_answer_sets(
        [Path(p) for p in cfg.answers]))  # fmt: skip
    if cfg.questions:
        ids = {q.id for q in load_questions(cfg)}
        records = [r for r in records if str(r["question_id"]) in ids]
    judges = sorted({str(r.get("judge") or "published") for r in records})
    judge = "+".join(judges)
    questions = len({str(r["question_id"]) for r in records})
    summary = summarize_records(records, cfg, judge, questions, {judge: unparseable(records)})
    write_summary(out, cfg, summary)
    log(f"leaderboard of {len(records)} published judgments: {out / 'leaderboard.md'}")
    return summary


def leaderboard_markdown(s: dict) -> str:
    lines = [f"# Arena: judge {s['judge']}, baseline {s['baseline']}", "",
             f"{s['questions']} questions, {s['battles']} battles; {s['rounds']} bootstrap rounds (seed {s['seed']}).",
             ""]  # fmt: skip
    for judge, u in s["unparseable"].items():
        rate = "–" if u["rate"] is None else f"{100 * u['rate']:.1f}%"
        lines.append(f"- judge {judge}: {u['unparseable']} of {u['games']} games unparseable ({rate})")
    lines += ["", "| contestant | judged questions | unparseable games | mean answer chars |", "|---|---|---|---|"]
    for m, c in sorted(s["contestants"].items()):
        mean = c["chars"] / c["questions"]
        lines.append(f"| {m} | {c['questions']} | {c['unparseable']} of {c['games']} | {mean:.0f} |")
    lines.append("")
    if not s["plain"]:
        lines.append("No leaderboard yet: no parseable verdict between two different contestants.")
        return "\n".join(lines) + "\n"
    lines += ["## Bradley-Terry scores", "", markdown_table(s["plain"], s["baseline"])]
    if s["style_controlled"]:
        lines += ["## Style-controlled (answer length and markdown held equal)", "",
                  markdown_table(s["style_controlled"], s["baseline"]),
                  "Style coefficients (log-odds per RMS unit; positive = the judge rewards it): "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in s["style_coefficients"].items()), ""]  # fmt: skip
    lines.append("![leaderboard](leaderboard.png)")
    return "\n".join(lines) + "\n"
