"""Midtraining (``tpro train midtrain``): continued training of a (remapped) model on instruction-formatted text.

After the tokenizer swap (``tpro tokenizer remap-model``) the new tokens' embeddings are only initialised; T-pro
then midtrains on 40B tokens of instruction data. This recipe is that step at any scale: chat rows rendered
through the model's template (loss on every token by default, as in continued pre-training, or on assistant
turns only) and plain text rows, packed into ``max_length`` blocks. ``--train_only embeddings`` updates only the
input embeddings and ``lm_head`` (the cheap first phase that re-aligns a remapped vocabulary with the frozen
body); ``--lora`` trains adapters (with ``--lora_modules_to_save embed_tokens,lm_head`` the embeddings too) on
machines where full training does not fit. The training loop is ``tpro.train.sft.fit``.

Run: ``tpro train midtrain --config configs/midtrain.yaml --data PATH``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from tpro.train.common import ConfigError, TrainConfig, parse_config, require, split_eval
from tpro.train.sft import fit


@dataclass
class MidtrainRecipe(TrainConfig):
    train_only: Literal["all", "embeddings"] = field(
        default="all",
        metadata={"help": "all = every weight (or LoRA with --lora); embeddings = only input embeddings and lm_head."},
    )
    loss_on: Literal["all", "assistant"] = field(
        default="all", metadata={"help": "Tokens in the loss: all (continued pre-training) or assistant turns only."}
    )
    packing: bool = field(default=True, metadata={"help": "Concatenate sequences and cut them into max_length blocks."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    lora_modules_to_save: str = field(
        default="",
        metadata={"help": "Comma-separated modules trained in full beside LoRA (e.g. embed_tokens,lm_head)."},
    )


def freeze_all_but_embeddings(model: Any) -> None:
    """requires_grad only on the input embeddings and the output head (one tensor when they are tied)."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)


def run(config: MidtrainRecipe) -> dict:
    from tpro.train.chat import encode_row, read_rows

    require(config, "data", "out")
    if config.train_only == "embeddings" and config.lora:
        raise ConfigError(
            "--train_only embeddings and --lora exclude each other. Fix: for LoRA plus embeddings use "
            "--lora --lora_modules_to_save embed_tokens,lm_head"
        )
    rows = read_rows(config.data, config.limit or None)
    train_rows, eval_rows = split_eval(rows, config)
    return fit(
        config,
        lambda tok, r: encode_row(tok, r, loss_on=config.loss_on),
        train_rows,
        eval_rows,
        packing=config.packing,
        packing_strategy="wrapped",
        freeze=freeze_all_but_embeddings if config.train_only == "embeddings" else None,
        modules_to_save=config.lora_modules_to_save,
    )


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(MidtrainRecipe, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
