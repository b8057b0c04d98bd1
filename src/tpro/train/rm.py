"""Reward model (``tpro train rm``): a Bradley-Terry scorer over chosen/rejected pairs with TRL's RewardTrainer.

The model is ``AutoModelForSequenceClassification`` with one label on top of the policy's body; the loss is
``-log sigmoid(r(chosen) - r(rejected))`` (Bradley-Terry), as in T-pro's Qwen3-32B reward model. Pairs are TRL's
conversational preference rows (the project's format: playground votes, ``tpro data``'s pairs, this package's
``build-pairs``), rendered by the tokenizer's chat template exactly as ``tpro.data.reward.RewardScorer`` renders
them when it scores, so the trained model can be handed straight to the scorer. The held-out accuracy
(fraction of pairs where ``r(chosen) > r(rejected)``) goes into ``summary.json``.

Run: ``tpro train rm --config configs/train/rm.yaml --data PAIRS.jsonl``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from tpro.config import like, opt
from tpro.train import common


@dataclass(kw_only=True)
class RMRecipe(common.TrainConfig):
    # The held-out accuracy is this stage's result, so some pairs are held out by default; a lower rate than SFT's.
    eval_fraction: float = like(common.TrainConfig, "eval_fraction", 0.1)
    learning_rate: float = like(common.TrainConfig, "learning_rate", 1e-5)
    center_rewards_coefficient: float = opt(
        0.0, "Weight of the (r_chosen + r_rejected)^2 penalty that keeps rewards centred on 0 (0 = off)", min=0
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
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    started = time.time()
    train_rows, eval_rows = common.load_rows(config)
    path, tokenizer = common.base_model(config)
    model = common.load_pretrained(config, path, AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    args = RewardConfig(
        **common.trainer_kwargs(config), center_rewards_coefficient=config.center_rewards_coefficient or None
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(_pairs(train_rows)),
        eval_dataset=Dataset.from_list(_pairs(eval_rows)) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=common.peft_config(config, task_type="SEQ_CLS"),
    )
    return common.train_and_save(
        config,
        trainer,
        tokenizer,
        started,
        lambda metrics: {
            "train_pairs": len(train_rows),
            "eval_pairs": len(eval_rows),
            "eval_accuracy": metrics.get("eval_accuracy"),
        },
    )


def main(argv: list[str] | None = None) -> dict:
    """``tpro train rm`` (``python -m tpro.train.rm``, ``accelerate launch -m tpro.train.rm``)."""
    return common.run_command("rm", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
