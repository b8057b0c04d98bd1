"""Reward model (``tpro train rm``): a Bradley-Terry scorer over chosen/rejected pairs with TRL's RewardTrainer.

The model is ``AutoModelForSequenceClassification`` with one label on top of the policy's body; the loss is
``-log sigmoid(r(chosen) - r(rejected))`` (Bradley-Terry), as in T-pro's Qwen3-32B reward model. Pairs are TRL's
conversational preference rows (the project's format: playground votes, ``tpro data``'s pairs, this package's
``build-pairs``), rendered by the tokenizer's chat template exactly as ``tpro.data.reward.RewardScorer`` renders
them when it scores, so the trained model can be handed straight to the scorer. The held-out accuracy
(fraction of pairs where ``r(chosen) > r(rejected)``) goes into ``summary.json``.

Run: ``tpro train rm --config configs/rm.yaml``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from tpro.train.common import (
    TrainConfig,
    load_tokenizer,
    model_path,
    parse_config,
    peft_config,
    require,
    resume_checkpoint,
    save_final,
    set_threads,
    split_eval,
    trainer_kwargs,
    write_summary,
)


@dataclass
class RMRecipe(TrainConfig):
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Fraction of pairs held out for accuracy when eval_data is empty."}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    center_rewards_coefficient: float = field(
        default=0.0,
        metadata={"help": "Weight of the (r_chosen + r_rejected)^2 penalty that keeps rewards centred on 0 (0 = off)."},
    )


def _pairs(rows: list[dict]) -> list[dict]:
    from tpro.train.chat import DataError

    out = []
    for i, r in enumerate(rows):
        if not all(k in r for k in ("prompt", "chosen", "rejected")):
            raise DataError(
                f"pair {i + 1} lacks prompt/chosen/rejected (keys: {sorted(r)}). Fix: use TRL's "
                "preference format (see README, 'Training recipes')"
            )
        prompt = r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]
        # Only the conversation goes to TRL; "meta" would be an unknown column with mixed types.
        out.append({"prompt": prompt, "chosen": r["chosen"], "rejected": r["rejected"]})
    return out


def run(config: RMRecipe) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from tpro.train.chat import read_rows

    require(config, "data", "out")
    started = time.time()
    set_threads(config)
    rows = read_rows(config.data, config.limit or None)
    train_rows, eval_rows = split_eval(rows, config)
    path = model_path(config.model)
    tokenizer = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.bfloat16 if config.bf16 else torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    train_ds = Dataset.from_list(_pairs(train_rows))
    eval_ds = Dataset.from_list(_pairs(eval_rows)) if eval_rows else None
    args = RewardConfig(**trainer_kwargs(config), center_rewards_coefficient=config.center_rewards_coefficient or None)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config(config, task_type="SEQ_CLS"),
    )
    resumed = resume_checkpoint(config)
    trainer.train(resume_from_checkpoint=resumed)
    metrics = trainer.evaluate() if eval_ds is not None else {}
    final = save_final(trainer, tokenizer, config)
    return write_summary(
        config,
        trainer,
        started,
        {
            "resumed_from": resumed,
            "train_pairs": len(train_ds),
            "eval_pairs": len(eval_ds) if eval_ds else 0,
            "eval_accuracy": metrics.get("eval_accuracy"),
            "eval": metrics,
            "final_dir": str(final),
        },
    )


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(RMRecipe, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
