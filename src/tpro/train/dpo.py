"""Direct preference optimisation (``tpro train dpo``) with TRL's DPOTrainer.

Pairs are the project's preference rows (``build-pairs`` on-policy samples scored by a reward model or a math
verifier, playground votes, ``tpro data`` output). Each is rendered here in its chat mode (``meta.mode`` or
inferred from a ``<think>`` trace) through ``build_prompt``, so DPO optimises the exact strings the engine will
produce; TRL receives plain prompt/chosen/rejected text. The reference model is a frozen copy of the starting
policy (with ``--lora`` the same weights with the adapters switched off, so no second copy is held).
T-pro's settings: beta 0.5, learning rate 1e-7, 16 samples per prompt (``configs/dpo.yaml`` documents them).

Run: ``tpro train dpo --config configs/dpo.yaml``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Literal

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
class DPORecipe(TrainConfig):
    beta: float = field(
        default=0.5, metadata={"help": "KL strength: how far the policy may move from the reference (T-pro: 0.5)."}
    )
    learning_rate: float = field(
        default=1e-7, metadata={"help": "Peak learning rate (T-pro: 1e-7 at 32B; tiny models need ~1e-3)."}
    )
    loss_type: str = field(
        default="sigmoid", metadata={"help": "TRL DPO loss: sigmoid (the DPO paper), ipo, hinge, ..."}
    )
    mode: Literal["auto", "direct", "reasoning"] = field(
        default="auto",
        metadata={"help": "Chat mode of the pairs: auto = meta.mode of each row, else inferred from a <think> trace."},
    )


def run(config: DPORecipe) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from tpro.train.chat import preference_as_text, read_rows

    require(config, "data", "out")
    started = time.time()
    set_threads(config)
    rows = read_rows(config.data, config.limit or None)
    train_rows, eval_rows = split_eval(rows, config)
    path = model_path(config.model)
    tokenizer = load_tokenizer(path)
    mode = None if config.mode == "auto" else config.mode
    train_ds = Dataset.from_list([preference_as_text(tokenizer, r, mode) for r in train_rows])
    eval_ds = Dataset.from_list([preference_as_text(tokenizer, r, mode) for r in eval_rows]) if eval_rows else None
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # Full fine-tuning needs a frozen reference; with LoRA TRL uses the base weights with adapters disabled.
    ref = None if config.lora else AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    args = DPOConfig(**trainer_kwargs(config), beta=config.beta, loss_type=[config.loss_type])
    trainer = DPOTrainer(
        model=model,
        ref_model=ref,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config(config),
    )
    resumed = resume_checkpoint(config)
    trainer.train(resume_from_checkpoint=resumed)
    metrics = trainer.evaluate() if eval_ds is not None else {}
    final = save_final(trainer, tokenizer, config)
    accs = [h["rewards/accuracies"] for h in trainer.state.log_history if "rewards/accuracies" in h]
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    return write_summary(
        config,
        trainer,
        started,
        {
            "resumed_from": resumed,
            "train_pairs": len(train_ds),
            "eval": metrics,
            "final_dir": str(final),
            "first_reward_margin": margins[0] if margins else None,
            "last_reward_margin": margins[-1] if margins else None,
            "last_reward_accuracy": accs[-1] if accs else None,
        },
    )


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(DPORecipe, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
