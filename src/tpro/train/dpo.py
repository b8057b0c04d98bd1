"""Direct preference optimisation (``tpro train dpo``) with TRL's DPOTrainer.

Pairs are the project's preference rows (``build-pairs`` on-policy samples scored by a reward model or a math
verifier, playground votes, ``tpro data`` output). Each is rendered here in its chat mode (``meta.mode`` or
inferred from a ``<think>`` trace; ``--mode`` forces one) through ``build_prompt``, so DPO optimises the exact
strings the engine will produce; TRL receives plain prompt/chosen/rejected text. The reference model is a frozen
copy of the starting policy (with ``--lora`` the same weights with the adapters switched off, so no second copy is
held). T-pro's settings: beta 0.5, learning rate 1e-7, 16 samples per prompt
(``configs/train/dpo-qwen3-32b.yaml``).

Run: ``tpro train dpo --config configs/train/dpo.yaml --data PAIRS.jsonl``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from tpro.config import like, opt
from tpro.train import common


@dataclass(kw_only=True)
class DPORecipe(common.TrainConfig, common.ChatMode):
    beta: float = opt(0.5, "KL strength: how far the policy may move from the reference (T-pro: 0.5)", min=0)
    # T-pro's rate at 32B full fine-tuning (tiny models need ~1e-3).
    learning_rate: float = like(common.TrainConfig, "learning_rate", 1e-7)
    loss_type: str = opt("sigmoid", "TRL DPO loss: sigmoid (the DPO paper), ipo, hinge, ...")


def run(config: DPORecipe) -> dict:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tpro.train.chat import preference_as_text

    started = time.time()
    train_rows, eval_rows = common.load_rows(config)
    path, tokenizer = common.base_model(config)

    def dataset(rows: list[dict]) -> Dataset:
        return Dataset.from_list([preference_as_text(tokenizer, r, config.chat_mode()) for r in rows])

    model = common.load_pretrained(config, path)
    # Full fine-tuning needs a frozen reference; with LoRA TRL uses the base weights with adapters disabled.
    ref = None if config.lora else common.load_pretrained(config, path)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref,
        args=DPOConfig(**common.trainer_kwargs(config), beta=config.beta, loss_type=[config.loss_type]),
        train_dataset=dataset(train_rows),
        eval_dataset=dataset(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=common.peft_config(config),
    )

    def details(metrics: dict) -> dict:
        margins = [v for _, v in common.logged(trainer, "rewards/margins")]
        accs = [v for _, v in common.logged(trainer, "rewards/accuracies")]
        return {
            "train_pairs": len(train_rows),
            "first_reward_margin": margins[0] if margins else None,
            "last_reward_margin": margins[-1] if margins else None,
            "last_reward_accuracy": accs[-1] if accs else None,
        }

    return common.train_and_save(config, trainer, tokenizer, started, details)


def main(argv: list[str] | None = None) -> dict:
    """``tpro train dpo`` (``python -m tpro.train.dpo``, ``accelerate launch -m tpro.train.dpo``)."""
    return common.run_command("dpo", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
