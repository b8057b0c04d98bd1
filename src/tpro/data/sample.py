"""Answer every prompt K times with a model: conversations to train on (self-distillation, SFT data).

Each input row gives a user message, from one field (``--prompt-field``) or a template over several
(``--template "{instruction}\\n\\n{input}"``: a field missing or empty in a row drops its line). The model answers
through ``tpro.engine.samples.sample_answers`` (batched, sample ``j`` of row ``i`` seeded ``seed + 1000 * i + j``,
resumable after a kill), and each answer becomes an output row: the input row plus ``messages`` (system if given,
user, assistant), ``sample``, ``tokens`` and ``finish_reason``. Answers cut by the token budget are dropped unless
``--keep-truncated``: a conversation that ends mid-sentence would teach the model to stop mid-sentence.

The use it was built for: after a vocabulary swap, the base model answers Russian prompts in its own tokenizer and
the swapped model learns to write those answers in its new tokens (``tpro tokenizer recover --train
OUT.jsonl:messages`` renders the conversations with the model's chat template).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import ClassVar

from tpro.config import like, opt
from tpro.data.io import DataError
from tpro.data.steps import StepConfig, StepRun
from tpro.options import MODE_HELP, BatchOptions, Mode, ModelOptions, SamplingOptions


@dataclass(kw_only=True)
class SampleConfig(StepConfig, ModelOptions, SamplingOptions, BatchOptions):
    """``tpro data sample``: where the prompt is, how many answers, how to sample, what to keep."""

    step: ClassVar[str] = "sample"

    prompt_field: str = opt("prompt", "Field holding the user message (ignored with --template)")
    template: str = opt(
        "", 'User message built from fields, e.g. "{instruction}\\n\\n{input}"; a line whose field is empty is dropped'
    )
    system: str = opt("", "System message put before every prompt (empty = none)")
    samples: int = opt(1, "Answers per prompt", min=1)
    mode: Mode = opt("direct", MODE_HELP, flags={"--reasoning": "reasoning"})
    keep_truncated: bool = opt(False, "Keep answers cut by --max-new-tokens (dropped by default)")
    limit: int | None = opt(None, "First N prompts only", min=1)
    # Distillation wants the teacher's distribution, not its single most likely answer: sampled, seeded (a resumed
    # run draws the same text).
    temperature: float = like(SamplingOptions, "temperature", 0.7)
    top_p: float = like(SamplingOptions, "top_p", 0.95)
    seed: int | None = like(SamplingOptions, "seed", 0)

    def __post_init__(self):
        super().__post_init__()
        # a shell passes "\n" as backslash + n: read it as the newline the user meant
        self.template = self.template.replace("\\n", "\n")
        if self.template:
            self.template_fields()  # a malformed template fails before the model loads

    def template_fields(self) -> list[str]:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        except ValueError as e:
            raise DataError(
                f"--template {self.template!r}: {e}. Fix: write fields as {{name}}, braces as {{{{ }}}}"
            ) from None
        if not fields or any(not re.fullmatch(r"\w+", f) for f in fields):
            raise DataError(f"--template {self.template!r} needs plain {{field}} names, e.g. {{instruction}}")
        return fields

    def user_message(self, row: dict, i: int) -> str:
        if not self.template:
            text = row.get(self.prompt_field)
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"row {i} has no text in {self.prompt_field!r} (fields: {sorted(row)}); pass --prompt-field "
                    "or --template"
                )
            return text
        for f in self.template_fields():
            if f not in row:
                raise DataError(f"row {i} has no field {f!r} for --template (fields: {sorted(row)})")
        lines = []
        for line in self.template.split("\n"):
            names = [f for _, f, _, _ in string.Formatter().parse(line) if f]
            if names and not any(str(row[f] or "").strip() for f in names):
                continue  # e.g. an Alpaca row without "input"
            lines.append(line.format(**{f: str(row[f] or "") for f in names}))
        return "\n".join(lines).strip()

    def execute(self, run: StepRun) -> list[dict]:
        from tpro.engine import Engine
        from tpro.engine.samples import completion_text, sample_answers

        rows = run.rows(self.limit)
        users = [self.user_message(r, i) for i, r in enumerate(rows)]
        head = [{"role": "system", "content": self.system}] if self.system else []
        prompts = [head + [{"role": "user", "content": u}] for u in users]
        engine = Engine.from_loaded(self.load_model(progress=run.show_progress))
        run.counts["resumed_rows"] = len(run.done_rows("samples"))
        with run.bar("sampling", len(rows), run.counts["resumed_rows"]) as tick:
            samples = sample_answers(
                engine,
                prompts,
                self.samples,
                self.sampling(),
                self.mode,
                progress_path=run.progress_path,
                on_prompt=lambda i, s: tick(),
                show_progress=False,
                batch=self.batch,
            )
        out, truncated = [], 0
        for row, prompt, answers in zip(rows, prompts, samples):
            for j, a in enumerate(answers):
                if a["finish_reason"] == "length" and not self.keep_truncated:
                    truncated += 1
                    continue
                messages = prompt + [{"role": "assistant", "content": completion_text(a, self.mode)}]
                out.append({**row, "messages": messages, "sample": j, "tokens": a["tokens"],
                            "finish_reason": a["finish_reason"]})  # fmt: skip
        run.counts.update(
            rows_in=len(rows),
            answers=len(rows) * self.samples,
            dropped_truncated=truncated,
            rows_out=len(out),
            answer_tokens=sum(r["tokens"] for r in out),
        )
        return out
