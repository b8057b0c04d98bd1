"""What every training stage shares: the common recipe fields (``TrainConfig``), the model to train (checkpoint,
tokenizer, LoRA), the data split, TRL's shared arguments, and ``train_and_save`` (resume from the newest complete
checkpoint, train, evaluate, write ``final/`` and ``summary.json``), plus ``run_command``: each stage module's
``main(argv)``, which runs the stage's ``tpro train`` command.

Settings are ``tpro.config`` dataclasses: one declaration gives the flags, ``--config FILE.yaml`` and the Python API
(``sft.run(SFTRecipe(data=..., out=...))``). Nothing here trains: each stage builds its TRL trainer from these
pieces.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tpro.config import Config, ConfigError, opt  # ConfigError: the one error class (stages use common.ConfigError)
from tpro.io import replace_dir, write_json
from tpro.options import MODE_HELP, Mode


@dataclass(kw_only=True)
class TrainConfig(Config):
    """Fields every stage has. Stages subclass this and add their own."""

    model: str = opt(
        "default", "Model to train: default (the embedded model) | checkpoint dir | hub id | .gguf file", short="-m"
    )
    data: str = opt(help="Training data: .jsonl / .json / .txt (see tpro.train.chat for row formats)")
    eval_data: str = opt("", "Held-out data in the same format; empty = split eval_fraction off data")
    eval_fraction: float = opt(0.0, "Fraction of data held out for evaluation when eval_data is empty", min=0, max=1)
    out: str = opt(help="Output directory: checkpoints (checkpoint-N), the final model (final/), summary.json")
    max_steps: int = opt(-1, "Optimizer steps; -1 = run num_train_epochs", min=-1)
    num_train_epochs: float = opt(1.0, "Epochs over the data when max_steps is -1", min=0)
    learning_rate: float = opt(2e-5, "Peak learning rate (AdamW)", min=0)
    lr_scheduler_type: str = opt("cosine", "transformers scheduler name: cosine, linear, constant, ...")
    warmup_steps: int = opt(0, "Linear warm-up steps", min=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0)
    per_device_train_batch_size: int = opt(1, "Sequences per device per micro-step", min=1)
    gradient_accumulation_steps: int = opt(1, "Micro-steps per optimizer step", min=1)
    max_length: int = opt(1024, "Tokens per sequence (longer ones are truncated)", min=1)
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward (less memory, ~30% slower)")
    bf16: bool = opt(False, "bf16 weights and mixed precision (on for GPUs; fp32 is faster on this CPU)")
    lora: bool = opt(False, "Train LoRA adapters (peft) instead of all weights")
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: int = opt(32, "LoRA alpha (scale = alpha / r)", min=1)
    lora_dropout: float = opt(0.0, "LoRA dropout", min=0, max=1)
    lora_target_modules: str = opt("all-linear", "Modules that get adapters: all-linear or comma-separated names")
    lora_modules_to_save: str = opt(
        "", "Comma-separated modules trained in full beside LoRA (e.g. embed_tokens,lm_head)"
    )
    merge_lora: bool = opt(
        True,
        "Merge LoRA into the weights for final/ (so the next stage loads a plain model); the adapter is also kept "
        "in final/adapter",
    )
    logging_steps: int = opt(1, "Log the loss every N steps", min=1)
    save_steps: int = opt(500, "Write a resumable checkpoint every N steps", min=1)
    save_total_limit: int = opt(2, "Keep at most N checkpoints", min=1)
    resume: bool = opt(True, "Resume from the newest complete checkpoint in out/ when there is one")
    seed: int = opt(0, "Seed for data order and init")
    threads: int = opt(0, "torch CPU threads (0 = torch's default)", min=0)
    rope_scaling: str | None = opt(
        None,
        "RoPE scaling to train with, for sequences past the pretraining context (--max-length above it): none | "
        "yarn:FACTOR[:ORIGINAL] | linear:FACTOR | dynamic:FACTOR[:ORIGINAL]; written into final/config.json, so "
        "the trained model serves with it. yarn:4:32768 is Qwen3's documented 131k setting",
    )
    limit: int = opt(0, "Use only the first N rows of data (0 = all); for smoke runs", min=0)
    report_to: str = opt("none", "Trackers for transformers (none, tensorboard, wandb, ...)")

    def __post_init__(self):
        super().__post_init__()
        from tpro.models.rope import parse_rope_scaling  # no torch: a bad spec fails before any model loads

        parse_rope_scaling(self.rope_scaling)

    def weights_dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32


@dataclass(kw_only=True)
class ChatMode(Config):
    """The chat mode a stage trains in (SFT, DPO): T-pro's two modes, or each row's own."""

    # Training data mixes both modes, so "auto" (per row) is this stage's default on top of the shared Mode.
    mode: Literal["auto", Mode] = opt(
        "auto",
        "auto = each row's own (its mode / meta.mode, else reasoning when an assistant turn has a <think> trace or "
        "reasoning_content); " + MODE_HELP,
    )

    def chat_mode(self) -> str | None:
        return None if self.mode == "auto" else self.mode


# --- the command line ---------------------------------------------------------------------------------------


def run_command(verb: str, argv: list[str] | None = None) -> Any:
    """``tpro train VERB`` with ``argv`` (``sys.argv[1:]`` when None): a stage module's ``main``, so that
    ``python -m tpro.train.sft`` and ``accelerate launch -m tpro.train.sft`` parse exactly as the CLI does.
    Returns the run's summary; bad input prints the reason and exits 2 (``SystemExit``)."""
    import click

    from tpro.train.cli import app

    try:
        result = app.commands[verb].main(args=argv, prog_name=f"tpro train {verb}", standalone_mode=False)
    except click.ClickException as e:  # a bad flag: click's usage message
        e.show()
        raise SystemExit(e.exit_code) from e
    if isinstance(result, int):  # --help, or an error already printed
        raise SystemExit(result)
    return result


# --- model, tokenizer, data, LoRA ---------------------------------------------------------------------------


def model_path(spec: str) -> str:
    """A model spec -> what ``from_pretrained`` takes; ``default`` and GGUF files -> their converted checkpoint
    (converted once and cached; no weights are loaded here)."""
    from tpro.models.loading import checkpoint_source

    return checkpoint_source(spec, progress=False)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_pretrained(config: TrainConfig, path: str, auto_class: Any = None, **config_overrides) -> Any:
    """``auto_class.from_pretrained(path)`` (``AutoModelForCausalLM`` by default) in the recipe's dtype, with
    ``config_overrides`` (e.g. ``num_labels=1``) and the recipe's ``rope_scaling`` written into the model config
    before the model is built (the rotary embedding reads it once, at construction; ``tpro.models.rope``), so
    training, ``final/config.json`` and serving all see the same positions."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tpro.models.rope import apply_rope_scaling, parse_rope_scaling

    model_config = AutoConfig.from_pretrained(path, **config_overrides)
    apply_rope_scaling(model_config, parse_rope_scaling(config.rope_scaling))
    # use_kernels=False: transformers 5 swaps layers for Hub kernels (code downloaded from kernels-community) by
    # default when the `kernels` package is installed, and on a GPU that failed the first training step ("could not
    # verify publisher trust status"; bench/gpu_check.py on an H200). Code from the hub runs only when a user asks.
    return (auto_class or AutoModelForCausalLM).from_pretrained(
        path, config=model_config, dtype=config.weights_dtype(), use_kernels=False
    )


def base_model(config: TrainConfig) -> tuple[str, Any]:
    """(checkpoint path, tokenizer) of the model to train; sets torch's CPU threads first (0 = its default)."""
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    path = model_path(config.model)
    return path, load_tokenizer(path)


def load_rows(config: TrainConfig) -> tuple[list, list]:
    """(train, eval) rows: the first ``limit`` rows of ``data``; eval is ``eval_data`` when given, else a seeded
    ``eval_fraction`` of the rows, else empty."""
    import random

    from tpro.train.chat import read_rows

    rows = read_rows(config.data, config.limit or None)
    if config.eval_data:
        return rows, read_rows(config.eval_data)
    if config.eval_fraction <= 0:
        return rows, []
    idx = list(range(len(rows)))
    random.Random(config.seed).shuffle(idx)
    held = set(idx[: max(1, int(len(rows) * config.eval_fraction))])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def peft_config(config: TrainConfig, task_type: str = "CAUSAL_LM"):
    if not config.lora:
        return None
    from peft import LoraConfig

    def names(s: str) -> list[str]:
        return [t.strip() for t in s.split(",") if t.strip()]

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        task_type=task_type,
        target_modules=targets if targets == "all-linear" else names(targets),
        modules_to_save=names(config.lora_modules_to_save) or None,
    )


def trainer_kwargs(config: TrainConfig) -> dict:
    """TrainingArguments fields shared by TRL's SFT/Reward/DPO configs."""
    import torch

    return dict(
        # bf16 on a CPU is autocast (AMX matmuls); transformers only allows it with use_cpu set.
        use_cpu=config.bf16 and not torch.cuda.is_available(),
        output_dir=config.out,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing,
        bf16=config.bf16,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="no",
        seed=config.seed,
        report_to=config.report_to,
        max_length=config.max_length,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )


# --- checkpoints, the final model, the summary --------------------------------------------------------------

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def resume_checkpoint(config: TrainConfig) -> str | None:
    """The newest *complete* checkpoint in ``out`` (or None). transformers writes a checkpoint's files one by one
    and ``trainer_state.json`` last, so a directory without it was cut by a kill mid-save: skip it (and say so)
    rather than crash on it or delete it."""
    out = Path(config.out)
    if not config.resume or not out.is_dir():
        return None
    ckpts = sorted((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CKPT.match(p.name)))
    for _, path in reversed(ckpts):
        state = path / "trainer_state.json"
        if not state.is_file():
            print(
                f"warning: {path} is incomplete (no trainer_state.json; killed while saving?); skipping it",
                file=sys.stderr,
            )
            continue
        try:
            json.loads(state.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"checkpoint {path} has a corrupt trainer_state.json ({e.msg}). "
                f"Fix: delete {path} to resume from the one before, or pass --resume false"
            ) from e
        return str(path)
    return None


def save_final(trainer: Any, tokenizer: Any, config: TrainConfig) -> Path:
    """Write the trained model to ``out/final`` atomically (tmp dir + swap): the next stage loads it as a plain
    checkpoint. ``trainer.save_model`` gathers ZeRO-3 / FSDP shards (every process must call it). LoRA: the
    adapter goes to ``final/adapter`` and, with ``merge_lora`` on an unsharded run, merged weights to ``final``;
    on a sharded run ``final`` holds the adapter (merge it after training, on one device)."""
    import shutil

    from peft import PeftModel

    out = Path(config.out)
    tmp, final = out / "final.tmp", out / "final"
    acc = trainer.accelerator
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    model = acc.unwrap_model(trainer.model)
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if isinstance(model, PeftModel) and config.merge_lora and not sharded:
        trainer.save_model(str(tmp / "adapter"))
        if acc.is_main_process:
            model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
    else:
        trainer.save_model(str(tmp))
    if acc.is_main_process:
        tokenizer.save_pretrained(tmp)
        replace_dir(tmp, final)
    acc.wait_for_everyone()
    return final


def logged(trainer: Any, key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) of every logged ``key`` (the loss, DPO's reward margins ...)."""
    return [(h["step"], h[key]) for h in trainer.state.log_history if key in h]


def train_and_save(
    config: TrainConfig,
    trainer: Any,
    tokenizer: Any,
    started: float,
    details: Callable[[dict], dict] | None = None,
) -> dict:
    """Train (resuming from the newest complete checkpoint in ``out``), evaluate when there is eval data, save
    ``final/`` and write ``summary.json``. ``details(eval_metrics)`` adds the stage's own figures to the summary
    (called before the final save, which merges LoRA)."""
    resumed = resume_checkpoint(config)
    trainer.train(resume_from_checkpoint=resumed)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    extra = {
        "resumed_from": resumed,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        **(details(metrics) if details else {}),
        "eval": metrics,
    }
    final = save_final(trainer, tokenizer, config)
    return write_summary(config, trainer, started, {**extra, "final_dir": str(final)})


def write_summary(config: TrainConfig, trainer: Any, started: float, extra: dict | None = None) -> dict:
    """``out/summary.json``: settings, losses, steps, tokens, wall time (atomic write)."""
    losses = logged(trainer)
    summary = {
        "stage": type(config).__name__,
        "config": config.to_dict(),
        "global_step": trainer.state.global_step,
        "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "wall_s": round(time.time() - started, 2),
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "losses": losses,
        "final_dir": str(Path(config.out) / "final"),
        **(extra or {}),
    }
    write_json(Path(config.out) / "summary.json", summary, indent=1)
    return summary
