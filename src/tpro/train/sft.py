"""Supervised fine-tuning (``tpro train sft``): TRL's SFTTrainer on conversations in both chat modes.

Rows are tokenized here (``tpro.train.chat``: the model's own template, ``build_prompt``'s inference format,
loss on assistant turns only) and handed to SFTTrainer as ``input_ids`` + ``assistant_masks``, from which TRL
builds the labels, truncates and batches. Rows with a reasoning trace train the reasoning mode, rows without one
the direct mode (or force one with ``--mode``), so one data set mixes T-pro's general and reasoning SFT sets.
``fit`` is the causal-LM training loop shared with midtraining.

Run: ``tpro train sft --config configs/sft.yaml`` (multi-GPU: ``accelerate launch --config_file
configs/accelerate/zero3.yaml -m tpro.train.sft --config configs/sft.yaml``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tpro.train.common import (
    ConfigError,
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
class SFTRecipe(TrainConfig):
    mode: Literal["auto", "direct", "reasoning"] = field(
        default="auto",
        metadata={
            "help": "Chat mode: auto = per row (reasoning when the assistant turn has a <think> trace or reasoning_content)."
        },
    )
    packing: bool = field(default=False, metadata={"help": "Pack several conversations into one max_length sequence."})
    lora_modules_to_save: str = field(
        default="",
        metadata={"help": "Comma-separated modules trained in full beside LoRA (e.g. embed_tokens,lm_head)."},
    )


def fit(
    config: TrainConfig,
    encode: Callable[[Any, dict], list],
    rows: list[dict],
    eval_rows: list[dict],
    *,
    packing: bool = False,
    packing_strategy: str = "bfd",
    freeze: Callable[[Any], None] | None = None,
    modules_to_save: str = "",
) -> dict:
    """Train a causal LM on ``encode(tokenizer, row) -> [Encoded]`` sequences with SFTTrainer; save, summarise."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    started = time.time()
    set_threads(config)
    path = model_path(config.model)
    tokenizer = load_tokenizer(path)

    def to_dataset(rs: list[dict]) -> Dataset:
        encs = [e for r in rs for e in encode(tokenizer, r)]
        if not encs:
            raise ConfigError(f"no trainable sequences in {config.data!r} (every row lacked an assistant turn)")
        return Dataset.from_dict(
            {"input_ids": [e.input_ids for e in encs], "assistant_masks": [e.assistant_masks for e in encs]}
        )

    train_ds = to_dataset(rows)
    eval_ds = to_dataset(eval_rows) if eval_rows else None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if config.bf16 else torch.float32)
    if freeze is not None:
        freeze(model)
    args = SFTConfig(
        **trainer_kwargs(config),
        packing=packing,
        packing_strategy=packing_strategy,
        # bfd packing would switch to padding-free batches, which need FlashAttention; wrapped does not.
        padding_free=False,
    )
    mts = [m.strip() for m in modules_to_save.split(",") if m.strip()] or None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config(config, modules_to_save=mts),
    )
    resumed = resume_checkpoint(config)
    trainer.train(resume_from_checkpoint=resumed)
    metrics = trainer.evaluate() if eval_ds is not None else {}
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    final = save_final(trainer, tokenizer, config)
    return write_summary(
        config,
        trainer,
        started,
        {
            "resumed_from": resumed,
            "train_sequences": len(train_ds),
            "trainable_params": trainable,
            "eval": metrics,
            "final_dir": str(final),
        },
    )


def run(config: SFTRecipe) -> dict:
    from tpro.train.chat import encode_row, read_rows

    require(config, "data", "out")
    rows = read_rows(config.data, config.limit or None)
    train_rows, eval_rows = split_eval(rows, config)
    mode = None if config.mode == "auto" else config.mode
    return fit(
        config,
        lambda tok, r: encode_row(tok, r, mode=mode, loss_on="assistant"),
        train_rows,
        eval_rows,
        packing=config.packing,
        packing_strategy="wrapped",
        modules_to_save=config.lora_modules_to_save,
    )


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(SFTRecipe, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
