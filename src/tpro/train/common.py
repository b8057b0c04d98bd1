"""What every training stage shares: the common config fields, reading a config (YAML + CLI flags), loading the
model to train, LoRA, finding a checkpoint to resume from, and the run summary.

Config reading is TRL's ``TrlParser`` (``--config file.yaml``; flags override the file), so a stage's dataclass
is the single definition of its settings, its ``--help`` and its YAML. Nothing here trains: each stage builds
its TRL trainer from these pieces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting or an input is wrong; the message says which and how to fix it (the CLI exits 2)."""


@dataclass
class TrainConfig:
    """Fields every stage has. Stages subclass this and add their own."""

    model: str = field(
        default="default", metadata={"help": "Model to train: 'default' (embedded), a local checkpoint or a hub id."}
    )
    data: str = field(
        default="", metadata={"help": "Training data: .jsonl / .json / .txt (see tpro.train.chat for row formats)."}
    )
    eval_data: str = field(
        default="", metadata={"help": "Held-out data in the same format; empty = split eval_fraction off data."}
    )
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Fraction of data held out for evaluation when eval_data is empty."}
    )
    out: str = field(
        default="",
        metadata={"help": "Output directory: checkpoints (checkpoint-N), the final model (final/), summary.json."},
    )
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 = run num_train_epochs."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the data when max_steps is -1."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "transformers scheduler name: cosine, linear, constant, ..."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Sequences per device per micro-step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-steps per optimizer step."})
    max_length: int = field(default=1024, metadata={"help": "Tokens per sequence (longer ones are truncated)."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward (less memory, ~30% slower)."}
    )
    bf16: bool = field(
        default=False, metadata={"help": "bf16 mixed precision (on for GPUs; fp32 is faster on this CPU)."}
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "Modules that get adapters: 'all-linear' or comma-separated names."}
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "Merge LoRA into the weights for final/ (so the next stage loads a plain model); the adapter is also kept in final/adapter."
        },
    )
    logging_steps: int = field(default=1, metadata={"help": "Log the loss every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most N checkpoints."})
    resume: bool = field(
        default=True, metadata={"help": "Resume from the newest complete checkpoint in out/ when there is one."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for data order and init."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads; 0 = leave torch's default."})
    limit: int = field(default=0, metadata={"help": "Use only the first N rows of data (0 = all); for smoke runs."})
    report_to: str = field(
        default="none", metadata={"help": "Trackers for transformers (none, tensorboard, wandb, ...)."}
    )


def parse_config(cls: type[T], argv: list[str] | None) -> T:
    """``--config file.yaml`` then flags -> ``cls``. Bad flags exit 2 through argparse with its message."""
    from trl import TrlParser

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args) or not Path(args[i + 1]).is_file():
            raise ConfigError(
                f"--config needs an existing YAML file; got {args[i + 1] if i + 1 < len(args) else 'nothing'!r}"
            )
    doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0]
    parser = TrlParser(
        dataclass_types=[cls],
        prog=f"tpro train {cls.__module__.rsplit('.', 1)[-1]}",
        description=doc + "\n\nSettings come from --config FILE.yaml (the same field names) and these "
        "flags, which override the file.",
    )
    try:
        (config,) = parser.parse_args_and_config(args)
    except ValueError as e:  # unknown keys in the YAML file
        raise ConfigError(f"{e}. Fix: remove them or check their spelling against --help") from e
    return config


def to_yaml(config: Any) -> str:
    """The config as YAML that ``--config`` reads back to an equal config."""
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)


def require(config: TrainConfig, *names: str) -> None:
    missing = [n for n in names if not getattr(config, n)]
    if missing:
        raise ConfigError(
            "missing setting(s): " + ", ".join(f"--{n}" for n in missing) + ". Fix: pass them as flags or in --config"
        )


# --- model, tokenizer, LoRA ---------------------------------------------------------------------------------


def model_path(spec: str) -> str:
    """A spec to something ``from_pretrained`` takes: ``default`` -> the embedded model's converted checkpoint."""
    if spec in ("", "default"):
        from tpro.models import load_model

        # load_model converts the embedded GGUF once and caches a safetensors checkpoint; training reloads that
        # directory through transformers (with the head class the stage needs).
        return load_model("default", progress=False).source
    return spec


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def peft_config(config: TrainConfig, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    if not config.lora:
        return None
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        task_type=task_type,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()],
        modules_to_save=modules_to_save,
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


def set_threads(config: TrainConfig) -> None:
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)


# --- checkpoints --------------------------------------------------------------------------------------------

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
    """Write the trained model to ``out/final`` atomically (tmp dir + rename): the next stage loads it as a plain
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
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    acc.wait_for_everyone()
    return final


def loss_history(trainer: Any, key: str = "loss") -> list[tuple[int, float]]:
    return [(h["step"], h[key]) for h in trainer.state.log_history if key in h]


def write_summary(config: Any, trainer: Any, started: float, extra: dict | None = None) -> dict:
    """``out/summary.json``: settings, losses, steps, tokens, wall time (atomic write)."""
    losses = loss_history(trainer)
    summary = {
        "stage": type(config).__name__,
        "config": dataclasses.asdict(config),
        "global_step": trainer.state.global_step,
        "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "wall_s": round(time.time() - started, 2),
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "losses": losses,
        "final_dir": str(Path(config.out) / "final"),
        **(extra or {}),
    }
    path = Path(config.out) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1))
    os.replace(tmp, path)
    return summary


def split_eval(rows: list, config: TrainConfig) -> tuple[list, list]:
    """(train, eval): eval_data when given, else a seeded eval_fraction of rows, else no eval."""
    from tpro.train.chat import read_rows

    if config.eval_data:
        return rows, read_rows(config.eval_data)
    if config.eval_fraction <= 0:
        return rows, []
    import random

    idx = list(range(len(rows)))
    random.Random(config.seed).shuffle(idx)
    n_eval = max(1, int(len(rows) * config.eval_fraction))
    held = set(idx[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]
