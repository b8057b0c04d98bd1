"""Midtraining (``tpro train midtrain``): continued training of a (remapped) model on instruction-formatted text.

After the tokenizer swap (``tpro tokenizer remap-model``) the new tokens' embeddings are only initialised; T-pro
then midtrains on 40B tokens of instruction data. This recipe is that step at any scale: chat rows rendered
through the model's template (loss on every token by default, as in continued pre-training, or on assistant
turns only) and plain text rows, packed into ``max_length`` blocks. ``--train-only embeddings`` updates only the
input embeddings and ``lm_head`` (the cheap first phase that re-aligns a remapped vocabulary with the frozen
body); ``--lora`` trains adapters (with ``--lora-modules-to-save embed_tokens,lm_head`` the embeddings too) on
machines where full training does not fit. The training loop is ``tpro.train.sft.fit``.

Run: ``tpro train midtrain --config configs/train/midtrain.yaml --model REMAPPED_DIR --data PATH``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

from tpro.config import like, opt
from tpro.train import common
from tpro.train.sft import SFTRecipe, fit


@dataclass(kw_only=True)
class MidtrainRecipe(common.TrainConfig):
    train_only: Literal["all", "embeddings"] = opt(
        "all", "all = every weight (or LoRA with --lora); embeddings = only input embeddings and lm_head"
    )
    loss_on: Literal["all", "assistant"] = opt(
        "all", "Tokens in the loss: all (continued pre-training) or assistant turns only"
    )
    # Continued pre-training packs by default (SFT does not); a higher rate than SFT's for the re-aligning phase.
    packing: bool = like(SFTRecipe, "packing", True)
    learning_rate: float = like(common.TrainConfig, "learning_rate", 1e-4)


def freeze_all_but_embeddings(model: Any) -> None:
    """requires_grad only on the input embeddings and the output head (one tensor when they are tied)."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)


def run(config: MidtrainRecipe) -> dict:
    from tpro.train.chat import encode_row

    if config.train_only == "embeddings" and config.lora:
        raise common.ConfigError(
            "--train-only embeddings and --lora exclude each other. Fix: for LoRA plus embeddings use "
            "--lora --lora-modules-to-save embed_tokens,lm_head"
        )
    return fit(
        config,
        lambda tok, r: encode_row(tok, r, loss_on=config.loss_on),
        freeze=freeze_all_but_embeddings if config.train_only == "embeddings" else None,
    )


def main(argv: list[str] | None = None) -> dict:
    """``tpro train midtrain`` (``python -m tpro.train.midtrain``, ``accelerate launch -m tpro.train.midtrain``)."""
    return common.run_command("midtrain", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
