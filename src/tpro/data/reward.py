"""Reward-model scoring and selection over K completions per prompt.

``RewardScorer`` wraps any ``AutoModelForSequenceClassification`` with one output label (what TRL's
``RewardTrainer`` saves: a Bradley-Terry scorer whose logit is the reward). The conversation prompt +
completion goes through the scorer tokenizer's chat template when it has one (as TRL does when it trains on
conversational data), else prompt and completion are joined by a newline.

Selection (pure functions over grouped rows ``{"prompt", "completions": [...], "scores": [...]}``):
``best_worst_pairs`` -> DPO pairs in TRL's conversational preference format, ``keep_best`` and
``keep_above`` -> SFT rows ``{"messages": [...]}``; ``RewardFilterConfig`` is the ``tpro data reward-filter``
step over them. This module does not sample completions (the engine does) and does not train reward models
(``tpro.train`` does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from tpro.config import opt
from tpro.data.io import DataError
from tpro.data.steps import StepConfig, StepRun
from tpro.options import ModelOptions

Prompt = str | list[dict]


def as_messages(prompt: Prompt) -> list[dict]:
    """A prompt as chat messages: a string becomes one user turn; a message list is copied."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return [dict(m) for m in prompt]
    raise ValueError(f"a prompt must be a string or a list of {{'role', 'content'}} messages, got {prompt!r:.80}")


def completion_text(completion: str | list[dict] | dict) -> str:
    """A completion as text: a string, one assistant message, or a one-message list (TRL's format)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion["content"])
    if isinstance(completion, list) and len(completion) == 1 and isinstance(completion[0], dict):
        return str(completion[0]["content"])
    raise ValueError(f"a completion must be a string or one assistant message, got {completion!r:.80}")


class RewardScorer:
    """Score (prompt, completion) pairs with a one-label sequence-classification model.

    ``spec_or_dir``: a local checkpoint directory or a hub id (the path users take), or an already loaded
    ``(model, tokenizer)`` pair for callers that hold one.
    """

    def __init__(
        self,
        spec_or_dir: Any,
        *,
        dtype: str = "auto",
        device: str = "cpu",
        batch_size: int = 8,
        max_length: int = 2048,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tpro.models.loading import resolve_dtype

        if isinstance(spec_or_dir, tuple):
            self.model, self.tokenizer = spec_or_dir
            self.name = type(self.model).__name__
        else:
            spec = str(spec_or_dir)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
                self.model = AutoModelForSequenceClassification.from_pretrained(
                    spec, dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code
                ).to(device)
            except OSError as e:
                raise ValueError(
                    f"could not load a reward model from {spec!r}: {e}. Fix: pass the directory written by "
                    "`tpro train rm` (or TRL's RewardTrainer), or a hub id of a sequence-classification model"
                ) from e
            self.name = spec
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"reward model {self.name!r} has {self.model.config.num_labels} labels; a reward model has one "
                "(a scalar score). Fix: use a checkpoint trained with a Bradley-Terry (reward) head"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Sequence-classification heads read the last non-pad token; the model must know which id is padding.
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self._torch = torch

    def format(self, prompt: Prompt, completion: str | list[dict] | dict) -> str:
        """The text the reward model reads for one pair."""
        answer = completion_text(completion)
        if self.tokenizer.chat_template:
            messages = as_messages(prompt) + [{"role": "assistant", "content": answer}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in as_messages(prompt))
        return f"{prompt_text}\n{answer}"

    def score(self, prompts: Sequence[Prompt], completions: Sequence[str | list[dict] | dict]) -> list[float]:
        """One float per pair (higher is better), in input order."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions; they must pair up")
        texts = [self.format(p, c) for p, c in zip(prompts, completions)]
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            # The chat template already holds the special tokens; adding BOS/EOS again would shift the read-out.
            enc = self.tokenizer(
                texts[i : i + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
            )
            with self._torch.inference_mode():
                logits = self.model(**enc.to(self.model.device)).logits  # [B, 1]
            out.extend(logits[:, 0].float().tolist())
        return out


# --- the reward-filter step -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RewardFilterConfig(StepConfig, ModelOptions):
    """``tpro data reward-filter``: the reward model and what to keep of each prompt's K completions."""

    step: ClassVar[str] = "reward-filter"

    # No default model: rows may carry their own scores, and the shared default (a chat model) scores nothing.
    model: str | None = opt(
        None,
        "Reward model: a one-label sequence classifier (`tpro train rm` output, hub id); omit if rows carry scores",
        short="-m",
    )
    select: Literal["pairs", "best", "threshold"] = opt(
        "pairs", "pairs (best vs worst, DPO) | best (SFT) | threshold (SFT)"
    )
    threshold: float | None = opt(
        None, "select=threshold: keep completions scoring >= this; select=best: drop prompts whose best is below it"
    )
    min_margin: float = opt(0.0, "select=pairs: drop pairs whose score gap is <= this")
    batch_size: int = opt(8, "Reward model batch size", min=1)

    def __post_init__(self):
        super().__post_init__()
        if self.select == "threshold" and self.threshold is None:
            raise DataError("--select threshold needs --threshold")

    def execute(self, run: StepRun) -> list[dict]:
        rows = group_completions(run.rows())
        if self.model:
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            scorer = RewardScorer(self.model, dtype=self.dtype, batch_size=self.batch_size)

            def score(idx: list[int]) -> list[list[float]]:
                return [
                    scorer.score([rows[i]["prompt"]] * len(rows[i]["completions"]), rows[i]["completions"]) for i in idx
                ]

            scores = run.per_row(len(rows), score, "reward")
            rows = [{**r, "scores": s} for r, s in zip(rows, scores)]
        if self.select == "pairs":
            kept = best_worst_pairs(rows, self.min_margin)
        elif self.select == "best":
            kept = keep_best(rows, self.threshold)
        else:
            kept = keep_above(rows, self.threshold)
        run.counts.update(
            prompts_in=len(rows), completions_in=sum(len(r["completions"]) for r in rows), rows_out=len(kept)
        )
        return kept


# --- grouping and selection -------------------------------------------------------------------------------


def _key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def group_completions(rows: Iterable[dict]) -> list[dict]:
    """Flat rows ``{"prompt", "completion", "score"?}`` -> grouped rows ``{"prompt", "completions", "scores"}``,
    in first-seen prompt order. Rows already grouped (with ``completions``) pass through unchanged."""
    out: list[dict] = []
    flat: dict[str, dict] = {}
    for row in rows:
        if "completions" in row:
            out.append(row)
            continue
        if "prompt" not in row or "completion" not in row:
            raise ValueError(f"a row needs 'prompt' and 'completions' (or 'completion'); got keys {sorted(row)}")
        g = flat.get(_key(row["prompt"]))
        if g is None:
            g = flat[_key(row["prompt"])] = {"prompt": row["prompt"], "completions": [], "scores": []}
            out.append(g)
        g["completions"].append(row["completion"])
        if "score" in row:
            g["scores"].append(float(row["score"]))
    return out


def score_rows(scorer: RewardScorer, rows: Iterable[dict]) -> list[dict]:
    """Add ``scores`` to grouped rows (one call per row's K completions)."""
    out = []
    for row in group_completions(rows):
        k = len(row["completions"])
        out.append({**row, "scores": scorer.score([row["prompt"]] * k, row["completions"])})
    return out


def _checked(row: dict) -> tuple[list, list[float]]:
    comps, scores = row.get("completions") or [], row.get("scores") or []
    if len(comps) != len(scores):
        raise ValueError(
            f"row has {len(comps)} completions but {len(scores)} scores: score it first "
            "(RewardScorer / `tpro data reward-filter --model`)"
        )
    return comps, [float(s) for s in scores]


def best_worst_pairs(rows: Iterable[dict], min_margin: float = 0.0) -> list[dict]:
    """Best vs worst completion of each prompt as a DPO pair (T-pro's on-policy DPO recipe).

    Prompts with fewer than two completions, or whose best-worst score gap is <= ``min_margin`` (ties
    teach nothing), are dropped. Ties for best/worst go to the earliest completion.
    """
    pairs = []
    for row in group_completions(rows):
        comps, scores = _checked(row)
        if len(comps) < 2:
            continue
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        worst = min(range(len(scores)), key=lambda i: (scores[i], i))
        margin = scores[best] - scores[worst]
        if margin <= min_margin:
            continue
        meta = {
            **row.get("meta", {}),
            "chosen_score": scores[best],
            "rejected_score": scores[worst],
            "margin": margin,
            "k": len(comps),
        }
        pairs.append(
            {
                "prompt": as_messages(row["prompt"]),
                "chosen": [{"role": "assistant", "content": completion_text(comps[best])}],
                "rejected": [{"role": "assistant", "content": completion_text(comps[worst])}],
                "meta": meta,
            }
        )
    return pairs


def _sft_row(row: dict, comp: Any, score: float, rank: int) -> dict:
    return {
        "messages": as_messages(row["prompt"]) + [{"role": "assistant", "content": completion_text(comp)}],
        "meta": {**row.get("meta", {}), "score": score, "rank": rank, "k": len(row["completions"])},
    }


def keep_best(rows: Iterable[dict], min_score: float | None = None) -> list[dict]:
    """The best-scored completion of each prompt as an SFT row (T-pro's 8-completions-per-instruction filter);
    prompts whose best is below ``min_score`` are dropped."""
    out = []
    for row in group_completions(rows):
        comps, scores = _checked(row)
        if not comps:
            continue
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        if min_score is None or scores[best] >= min_score:
            out.append(_sft_row(row, comps[best], scores[best], 0))
    return out


def keep_above(rows: Iterable[dict], threshold: float) -> list[dict]:
    """Every completion scoring >= ``threshold`` as an SFT row (rejection sampling by reward)."""
    out = []
    for row in group_completions(rows):
        comps, scores = _checked(row)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        out.extend(_sft_row(row, comps[i], scores[i], r) for r, i in enumerate(order) if scores[i] >= threshold)
    return out
