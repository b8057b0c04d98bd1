"""``tpro train midtrain|sft|rm|dpo|build-pairs``: each verb hands its arguments to the stage's ``main``.

The flags are the stage's config dataclass fields (``--learning_rate 1e-4``), read by TRL's parser together with
``--config file.yaml`` (flags win), so ``tpro train sft --help`` lists exactly the recipe's settings. Torch,
transformers and TRL are imported only when a verb runs. Bad settings or data exit 2 with the reason on stderr;
``--json`` prints the run summary as one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys

import typer

app = typer.Typer(
    help="Training recipes over TRL: midtrain, SFT, reward model, DPO, on-policy pair building.", no_args_is_help=True
)

# verb -> (module, one-line help)
STAGES = {
    "midtrain": (
        "tpro.train.midtrain",
        "Continued training of a (remapped) model on instruction text; embeddings-only or LoRA.",
    ),
    "sft": (
        "tpro.train.sft",
        "Supervised fine-tuning on conversations, direct and reasoning modes, loss on assistant turns.",
    ),
    "rm": ("tpro.train.rm", "Bradley-Terry reward model on chosen/rejected pairs; held-out pair accuracy."),
    "dpo": ("tpro.train.dpo", "DPO on preference pairs (on-policy, playground votes, data filters)."),
    "build-pairs": (
        "tpro.train.pairs",
        "Sample K answers per prompt with the policy, score (reward model or verifier), best vs worst.",
    ),
}
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _run(module: str, args: list[str]) -> None:
    from tpro.train.chat import DataError
    from tpro.train.common import ConfigError

    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    try:
        # With --json, stdout carries the one JSON object only: the trainer's per-step log dicts go to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = importlib.import_module(module).main(args)
    except (ConfigError, DataError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "losses"}, ensure_ascii=False, default=str))
    elif summary.get("last_loss") is not None:
        typer.echo(
            f"done: {summary['global_step']} steps, loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
            f"model in {summary['final_dir']}",
            err=True,
        )


def _make(verb: str, module: str, helptext: str):
    def command(ctx: typer.Context):
        _run(module, list(ctx.args))

    command.__doc__ = helptext + " Flags: --config FILE.yaml and the recipe's fields (see --help)."
    app.command(verb, context_settings=PASS_THROUGH, add_help_option=False, help=command.__doc__)(command)


for _verb, (_module, _help) in STAGES.items():
    _make(_verb, _module, _help)


if __name__ == "__main__":
    app(sys.argv[1:])
