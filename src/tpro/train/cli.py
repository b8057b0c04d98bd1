"""``tpro train midtrain|sft|rm|dpo|build-pairs``: one command per recipe, generated from its config dataclass.

A verb's flags, ``--config FILE.yaml`` (flags win) and ``--print-config`` come from the stage's recipe
(``tpro.train.sft.SFTRecipe`` ...); ``python -m tpro.train.sft`` and ``accelerate launch -m tpro.train.sft`` run the
same command through the module's ``main``. Torch, transformers and TRL load only when a verb runs. Bad settings
or data exit 2 with the reason on stderr; ``--json`` prints the run summary as one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys

import click

from tpro.config import ConfigError, command, group, json_flag

app = group("Training recipes over TRL: midtrain, SFT, reward model, DPO, on-policy pair building.")

# verb -> (module:recipe, help)
STAGES = {
    "midtrain": (
        "midtrain:MidtrainRecipe",
        "Continued training of a (remapped) model on instruction text; LoRA or embeddings-only.",
    ),
    "sft": ("sft:SFTRecipe", "Supervised fine-tuning on conversations in both chat modes, loss on assistant turns."),
    "rm": ("rm:RMRecipe", "Bradley-Terry reward model on chosen/rejected pairs; held-out pair accuracy."),
    "dpo": ("dpo:DPORecipe", "DPO on preference pairs (on-policy, playground votes, data filters)."),
    "build-pairs": (
        "pairs:PairsConfig",
        "Sample K answers per prompt with the policy, score them, write best vs worst as DPO pairs.",
    ),
}
TRAINED = " Writes OUT/checkpoint-N, OUT/final/ and OUT/summary.json; a rerun resumes from the newest checkpoint."


def _run(module: str, cfg, as_json: bool) -> dict:
    from tpro.models.loading import ModelLoadError

    try:
        # With --json, stdout carries the one JSON object only: the trainer's per-step log dicts go to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = importlib.import_module(f"tpro.train.{module}").run(cfg)
    except ModelLoadError as e:
        raise ConfigError(str(e)) from e
    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "losses"}, ensure_ascii=False, default=str))
    elif summary.get("last_loss") is not None:
        click.echo(
            f"done: {summary['global_step']} steps, loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
            f"model in {summary['final_dir']}",
            err=True,
        )
    elif "pairs" in summary:
        click.echo(f"done: {summary['pairs']} pairs from {summary['prompts']} prompts in {summary['out']}", err=True)
    return summary


def _verb(verb: str, ref: str, helptext: str) -> None:
    module = ref.split(":")[0]

    def run(cfg, as_json: bool = False) -> dict:
        return _run(module, cfg, as_json)

    run.__doc__ = helptext + ("" if module == "pairs" else TRAINED)
    extra = [json_flag("Print the summary as one JSON object on stdout (logs go to stderr).")]
    command(f"tpro.train.{ref}", name=verb, extra=extra, group=app)(run)


for _verb_name, (_ref, _help) in STAGES.items():
    _verb(_verb_name, _ref, _help)
