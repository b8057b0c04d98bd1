"""The ``tpro`` command: ``tpro <stage> <verb>``.

Stages are imported only when invoked (a group that resolves names lazily), so ``tpro --help`` does not pay
for torch or transformers. Each stage keeps its commands in its own ``cli.py`` as click commands generated from
the stage's config dataclass (``tpro.config.command``); a command imports its config class, and with it torch,
only when it runs or shows its own ``--help``.
"""

from __future__ import annotations

import importlib

import click

# name -> (module whose `app` is the click command or group, one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "model": ("tpro.models.cli", "Inspect the embedded default model; convert GGUF files."),
    "generate": ("tpro.engine.cli", "Generate an answer (direct or reasoning), streamed, with telemetry."),
    "tokenizer": ("tpro.tokenizer.cli", "Cyrillic-dense tokenizer: adapt, check, density, remap a model, recover it."),
    "eagle": ("tpro.eagle.cli", "EAGLE draft heads: build data, train, export for SGLang."),
    "bench": ("tpro.bench.cli", "Decode speed: EAGLE, suffix drafts, weight formats, model.generate, llama.cpp."),
    "eval": ("tpro.eval.cli", "Math, multiple-choice, judged-arena and long-context evals; one report across them."),
    "serve": ("tpro.serve.cli", "OpenAI-compatible server on the engine (EAGLE optional)."),
    "playground": ("tpro.playground.cli", "Side-by-side web playground; votes as a leaderboard and as DPO pairs."),
    "data": ("tpro.data.cli", "Data curation: dedup, decontamination, tags and balance, reward and difficulty."),
    "train": ("tpro.train.cli", "Training recipes over TRL: midtrain, SFT, reward model, DPO."),
}

HELP = """tpro: make and serve a fast Russian reasoning LLM (the T-pro 2.0 system as a toolkit).

Every command runs offline on the embedded default model (Qwen2.5-Coder-0.5B-Instruct) and takes
--model SPEC for a Hugging Face hub id, a local checkpoint or a GGUF file. `tpro STAGE --help` for more.
"""


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        cmd = importlib.import_module(COMMANDS[name][0]).app
        cmd.name = name
        return cmd

    def format_commands(self, ctx, formatter):
        # Help text from COMMANDS: reading it from the stages would import them all (torch included).
        with formatter.section("Commands"):
            formatter.write_dl([(name, helptext) for name, (_, helptext) in COMMANDS.items()])


def main():
    import sys

    if sys.argv[1:] == ["--version"]:
        from tpro import __version__

        print(f"tpro {__version__}")
        return
    group = LazyGroup(name="tpro", help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
    group.main(prog_name="tpro")


if __name__ == "__main__":
    main()
