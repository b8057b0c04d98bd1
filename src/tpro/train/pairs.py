"""On-policy preference pairs (``tpro train build-pairs``): sample K answers per prompt with the current policy,
score them, keep best vs worst as a DPO pair (T-pro: 16 samples per prompt, a Bradley-Terry reward model).

Sampling is ``tpro.engine.samples.sample_answers`` (T > 0; sample ``j`` of prompt ``i`` is seeded with
``seed + 1000 * i + j``, so a rerun draws the same samples); it appends each prompt's samples to
``<out>.samples.jsonl`` as it finishes, so a killed run resumes where it stopped. Scoring is a reward model
(``tpro.data.reward.RewardScorer``, e.g. what ``tpro train rm`` wrote) or, for math with a gold answer, the
verifier ``tpro.eval.check.is_correct`` (1 correct, 0 wrong); selection is ``tpro.data.reward.best_worst_pairs``
(prompts whose samples all tie are dropped: they teach nothing). The pairs file and ``<out>.scored.jsonl`` (every
prompt's completions and scores, ``tpro data``'s grouped format) are written atomically at the end.
Reasoning-mode samples keep their ``<think>`` trace in the completion and ``meta.mode`` says which mode they came
from, which ``tpro train dpo`` reads.

Prompts file rows: ``{"prompt": str | messages, "answer"?: gold}`` or benchmark items ``{"question", "answer"}``.

Run: ``tpro train build-pairs --config configs/train/pairs.yaml --prompts PROMPTS.jsonl``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tpro.config import like, opt
from tpro.options import MODE_HELP, BatchOptions, Mode, ModelOptions, SamplingOptions
from tpro.train import common


@dataclass(kw_only=True)
class PairsConfig(ModelOptions, SamplingOptions, BatchOptions):
    # The policy that samples; --policy is this command's earlier spelling.
    model: str = like(ModelOptions, "model", aliases=("--policy",))
    prompts: str = opt(help="JSONL of prompts: {'prompt': str|messages, 'answer'?} or {'question', 'answer'}")
    out: str = opt(help="Output JSONL of DPO pairs (TRL conversational preference format + meta)")
    k: int = opt(4, "Samples per prompt (T-pro: 16)", min=2)
    mode: Mode = opt("direct", MODE_HELP)
    # The recipe's sampling: T > 0 so the K samples differ; short answers keep K samples per prompt affordable.
    temperature: float = like(SamplingOptions, "temperature", 0.8)
    top_p: float = like(SamplingOptions, "top_p", 0.95)
    max_new_tokens: int = like(SamplingOptions, "max_new_tokens", 256)
    scorer: Literal["reward", "verifier"] = opt(
        "reward", "reward = a reward model; verifier = math answer check against 'answer'"
    )
    reward_model: str = opt("", "Reward model directory or hub id (scorer=reward)")
    min_margin: float = opt(0.0, "Keep a pair only when best - worst score > this", min=0)
    limit: int = opt(0, "Use only the first N prompts (0 = all)", min=0)


def _prompt_and_gold(row: dict, n: int) -> tuple[str | list[dict], str | None]:
    from tpro.train.chat import DataError

    if "prompt" in row:
        return row["prompt"], row.get("answer")
    if "question" in row:
        return row["question"], row.get("answer")
    raise DataError(f"prompt row {n} has neither 'prompt' nor 'question' (keys: {sorted(row)})")


def run(config: PairsConfig) -> dict:
    from tpro.data.reward import best_worst_pairs
    from tpro.engine import Engine
    from tpro.engine.samples import completion_text, sample_answers
    from tpro.io import write_jsonl
    from tpro.train.chat import read_rows

    if config.temperature <= 0:
        raise common.ConfigError("on-policy pairs need --temperature > 0 (identical samples teach nothing)")
    if config.scorer == "reward" and not config.reward_model:
        raise common.ConfigError("--scorer reward needs --reward-model DIR (e.g. the final/ of `tpro train rm`)")
    rows = read_rows(config.prompts, config.limit or None)
    items = [_prompt_and_gold(r, i + 1) for i, r in enumerate(rows)]
    if config.scorer == "verifier" and any(g is None for _, g in items):
        raise common.ConfigError("--scorer verifier needs an 'answer' on every prompt row")
    out = Path(config.out)
    samples_path = out.with_name(out.name + ".samples.jsonl")
    samples = sample_answers(
        Engine.from_loaded(config.load_model(progress=False)),  # the policy is freed before the scorer loads
        [p for p, _ in items],
        config.k,
        config.sampling(),
        config.mode,
        progress_path=samples_path,
        desc="build-pairs",
        batch=config.batch,
    )
    if config.scorer == "reward":
        from tpro.data.reward import RewardScorer

        scorer = RewardScorer(config.reward_model)
    else:
        from tpro.eval.check import is_correct
    grouped = []
    for (prompt, gold), group in zip(items, samples):
        comps = [completion_text(s, config.mode) for s in group]
        if config.scorer == "reward":
            scores = scorer.score([prompt] * len(comps), comps)
        else:
            scores = [float(is_correct(s["answer"], gold)) for s in group]
        meta = {"mode": config.mode, "scorer": config.scorer, "policy": config.model}
        if gold is not None:
            meta["answer"] = gold
        grouped.append({"prompt": prompt, "completions": comps, "scores": scores, "meta": meta})
    scored_path = out.with_name(out.name + ".scored.jsonl")
    write_jsonl(scored_path, grouped)
    pairs = best_worst_pairs(grouped, min_margin=config.min_margin)
    write_jsonl(out, pairs)
    return {
        "prompts": len(items),
        "samples": len(items) * config.k,
        "pairs": len(pairs),
        "dropped_ties": len(items) - len(pairs),
        "out": str(out),
        "samples_file": str(samples_path),
        "scored_file": str(scored_path),
    }


def main(argv: list[str] | None = None) -> dict:
    """``tpro train build-pairs`` (``python -m tpro.train.pairs``)."""
    return common.run_command("build-pairs", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
