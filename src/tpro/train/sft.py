"""Supervised fine-tuning (``tpro train sft``): TRL's SFTTrainer on conversations in both chat modes.

Rows are tokenized here (``tpro.train.chat``: the model's own template, ``build_prompt``'s inference format,
loss on assistant turns only) and handed to SFTTrainer as ``input_ids`` + ``assistant_masks``, from which TRL
builds the labels, truncates and batches. Rows with a reasoning trace train the reasoning mode, rows without one
the direct mode (or force one with ``--mode``), so one data set mixes T-pro's general and reasoning SFT sets.
``fit`` is the causal-LM training loop shared with midtraining.

Run: ``tpro train sft --config configs/train/sft.yaml --data SFT.jsonl`` (multi-GPU: ``accelerate launch
--config_file configs/accelerate/zero3.yaml -m tpro.train.sft --config configs/train/sft-qwen3-32b.yaml``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tpro.config import opt
from tpro.train import common


@dataclass(kw_only=True)
class SFTRecipe(common.TrainConfig, common.ChatMode):
    packing: bool = opt(False, "Pack sequences into max_length blocks (concatenated, then cut)")


def fit(
    config: common.TrainConfig, encode: Callable[[Any, dict], list], freeze: Callable[[Any], None] | None = None
) -> dict:
    """Train a causal LM on ``encode(tokenizer, row) -> [Encoded]`` sequences of ``config.data`` with
    SFTTrainer (``freeze(model)`` before training when given); save, summarise. ``config``: a recipe with
    ``packing`` (SFT, midtraining)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.time()
    rows, eval_rows = common.load_rows(config)
    path, tokenizer = common.base_model(config)

    def to_dataset(rs: list[dict]) -> Dataset:
        encs = [e for r in rs for e in encode(tokenizer, r)]
        if not encs:
            raise common.ConfigError(f"no trainable sequences in {config.data!r} (every row lacked an assistant turn)")
        return Dataset.from_dict(
            {"input_ids": [e.input_ids for e in encs], "assistant_masks": [e.assistant_masks for e in encs]}
        )

    train_ds = to_dataset(rows)
    model = common.load_pretrained(config, path)
    if freeze is not None:
        freeze(model)
    # bfd packing would switch to padding-free batches, which need FlashAttention; wrapped does not.
    args = SFTConfig(
        **common.trainer_kwargs(config), packing=config.packing, packing_strategy="wrapped", padding_free=False
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=to_dataset(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=common.peft_config(config),
    )
    return common.train_and_save(config, trainer, tokenizer, started, lambda _: {"train_sequences": len(train_ds)})


def run(config: SFTRecipe) -> dict:
    from tpro.train.chat import encode_row

    mode = config.chat_mode()
    return fit(config, lambda tok, r: encode_row(tok, r, mode=mode, loss_on="assistant"))


def main(argv: list[str] | None = None) -> dict:
    """``tpro train sft`` (``python -m tpro.train.sft``, ``accelerate launch -m tpro.train.sft``)."""
    return common.run_command("sft", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
