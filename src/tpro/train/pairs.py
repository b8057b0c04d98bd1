"""On-policy preference pairs (``tpro train build-pairs``): sample K answers per prompt with the current policy,
score them, keep best vs worst as a DPO pair (T-pro: 16 samples per prompt, a Bradley-Terry reward model).

Sampling goes through ``tpro.engine.Engine`` (T > 0, one seed per sample, so a rerun gives the same samples);
scoring is a reward model (``tpro.data.reward.RewardScorer``, e.g. what ``tpro train rm`` wrote) or, for math
with a gold answer, the verifier ``tpro.eval.check.is_correct`` (1 correct, 0 wrong); selection is
``tpro.data.reward.best_worst_pairs`` (prompts whose samples all tie are dropped: they teach nothing). Samples are
appended to ``<out>.samples.jsonl`` one prompt at a time, so a killed run resumes where it stopped; the pairs
file is written atomically at the end. Reasoning-mode samples keep their ``<think>`` trace in the completion and
``meta.mode`` says which mode they came from, which ``tpro train dpo`` reads.

Prompts file rows: ``{"prompt": str | messages, "answer"?: gold}`` or benchmark items ``{"question", "answer"}``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tpro.train.common import ConfigError, parse_config


@dataclass
class PairsConfig:
    policy: str = field(
        default="default",
        metadata={"help": "The policy that samples (model spec: default, a checkpoint dir, a hub id)."},
    )
    prompts: str = field(
        default="",
        metadata={"help": "JSONL of prompts: {'prompt': str|messages, 'answer'?} or {'question', 'answer'}."},
    )
    out: str = field(
        default="", metadata={"help": "Output JSONL of DPO pairs (TRL conversational preference format + meta)."}
    )
    k: int = field(default=4, metadata={"help": "Samples per prompt (T-pro: 16)."})
    mode: Literal["direct", "reasoning"] = field(default="direct", metadata={"help": "Chat mode to sample in."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (> 0: the K samples must differ)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling."})
    max_new_tokens: int = field(default=256, metadata={"help": "Token budget per sample."})
    seed: int = field(default=0, metadata={"help": "Base seed; sample j of prompt i uses seed + i*k + j."})
    scorer: Literal["reward", "verifier"] = field(
        default="reward", metadata={"help": "reward = a reward model; verifier = math answer check against 'answer'."}
    )
    reward_model: str = field(default="", metadata={"help": "Reward model directory or hub id (scorer=reward)."})
    min_margin: float = field(default=0.0, metadata={"help": "Keep a pair only when best - worst score > this."})
    limit: int = field(default=0, metadata={"help": "Use only the first N prompts (0 = all)."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads; 0 = torch's default."})


def _prompt_and_gold(row: dict, n: int) -> tuple[str | list[dict], str | None]:
    if "prompt" in row:
        return row["prompt"], row.get("answer")
    if "question" in row:
        return row["question"], row.get("answer")
    raise ConfigError(f"prompt row {n} has neither 'prompt' nor 'question' (keys: {sorted(row)})")


def completion_for(done, mode: str) -> str:
    """The sample as an assistant message's content: reasoning mode keeps its trace in ``<think>`` tags."""
    if mode == "reasoning":
        return f"<think>\n{done.reasoning}\n</think>\n\n{done.answer}"
    return done.answer or done.text


def _read_done(path: Path) -> dict[int, dict]:
    """Samples already written by an earlier (killed) run, by prompt index; a torn last line is dropped."""
    done: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["index"]] = row
    return done


def run(config: PairsConfig) -> dict:
    import torch
    from rich.progress import Progress

    from tpro.data.reward import best_worst_pairs
    from tpro.engine import Engine, SamplingParams
    from tpro.models import load_model
    from tpro.train.chat import read_rows

    if not config.prompts or not config.out:
        raise ConfigError("build-pairs needs --prompts FILE and --out FILE")
    if config.temperature <= 0 or config.k < 2:
        raise ConfigError("on-policy pairs need --temperature > 0 and --k >= 2 (identical samples teach nothing)")
    if config.scorer == "reward" and not config.reward_model:
        raise ConfigError("--scorer reward needs --reward_model DIR (e.g. the final/ of `tpro train rm`)")
    if config.threads:
        torch.set_num_threads(config.threads)
    rows = read_rows(config.prompts, config.limit or None)
    items = [_prompt_and_gold(r, i + 1) for i, r in enumerate(rows)]
    if config.scorer == "verifier" and any(g is None for _, g in items):
        raise ConfigError("--scorer verifier needs an 'answer' on every prompt row")
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples_path = out.with_name(out.name + ".samples.jsonl")
    done = _read_done(samples_path)
    engine = Engine.from_loaded(load_model(config.policy, progress=False))
    scorer = None
    if config.scorer == "reward":
        from tpro.data.reward import RewardScorer

        scorer = RewardScorer(config.reward_model)
    else:
        from tpro.eval.check import is_correct
    with samples_path.open("a", encoding="utf-8") as f, Progress() as bar:
        task = bar.add_task("sampling", total=len(items), completed=len(done))
        for i, (prompt, gold) in enumerate(items):
            if i in done:
                continue
            comps = []
            for j in range(config.k):
                params = SamplingParams(
                    max_new_tokens=config.max_new_tokens,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    seed=config.seed + i * config.k + j,
                )
                res = engine.complete(prompt, params, mode=config.mode)
                comps.append((completion_for(res, config.mode), res.answer))
            if scorer is not None:
                scores = scorer.score([prompt] * len(comps), [c for c, _ in comps])
            else:
                scores = [float(is_correct(ans, gold)) for _, ans in comps]
            row = {
                "index": i,
                "prompt": prompt,
                "completions": [c for c, _ in comps],
                "scores": scores,
                "meta": {
                    "mode": config.mode,
                    "scorer": config.scorer,
                    "policy": config.policy,
                    **({"answer": gold} if gold is not None else {}),
                },
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            done[i] = row
            bar.advance(task)
    grouped = [{k: v for k, v in done[i].items() if k != "index"} for i in sorted(done) if i < len(items)]
    pairs = best_worst_pairs(grouped, min_margin=config.min_margin)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    os.replace(tmp, out)
    summary = {
        "prompts": len(items),
        "samples": len(items) * config.k,
        "pairs": len(pairs),
        "dropped_ties": len(items) - len(pairs),
        "out": str(out),
        "samples_file": str(samples_path),
    }
    print(json.dumps(summary), file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(PairsConfig, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
