"""``tpro data``: the curation steps from the command line (dedup, decontaminate, tag, balance, reward-filter,
difficulty, sample). Each command is its step's config (``tpro.data.<step>``) run by ``tpro.data.steps.run_step``, which
a Python caller uses the same way; this module only prints the counts.
"""

from __future__ import annotations

import json
import sys

import click

from tpro.config import ConfigError, command, fail, group, json_flag, validate

JSON = json_flag("Print the counts as JSON on stdout (progress and tables go to stderr).")


def _sections(ctx: click.Context, _param, path: str | None) -> None:
    """The old spelling ``tpro data --config steps.yaml CMD``: a YAML with one section of settings per command,
    handed to the command as its own ``--config`` (flags on the command line still win)."""
    if path is None:
        return
    import shutil
    import tempfile
    from pathlib import Path

    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        fail(f"cannot read --config {path}: {e}")
    unknown = sorted(map(str, set(data) - set(app.commands))) if isinstance(data, dict) else ["(not a mapping)"]
    if unknown:
        fail(f"--config {path} must map command names ({', '.join(app.commands)}) to settings; unknown: {unknown}")
    tmp = Path(tempfile.mkdtemp(prefix="tpro-data-config-"))
    ctx.call_on_close(lambda: shutil.rmtree(tmp, ignore_errors=True))
    ctx.default_map = {}
    for name, section in data.items():
        cls = app.commands[name].config_cls
        try:
            values = validate(cls, {_key(cls, k): v for k, v in (section or {}).items()}, f"{path}: {name}")
        except ConfigError as e:
            fail(str(e))
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
        ctx.default_map[name] = {"config": str(tmp / f"{name}.yaml")}


def _key(cls, key: str) -> str:
    """A section key as the field it names: ``num-perm`` -> ``num_perm``, an old flag (``bench``) -> its field."""
    import dataclasses

    for f in dataclasses.fields(cls):
        if key.replace("-", "_") == f.name or "--" + key.replace("_", "-") in f.metadata.get("aliases", ()):
            return f.name
    return key


app = group(
    "Data curation: dedup, decontaminate, tag, balance, reward-filter, difficulty; sample answers to train on. Each step writes OUT plus "
    "OUT.manifest.json, skips itself when OUT is up to date (--force reruns) and resumes model-based work after a "
    "kill; `tpro data STEP --config FILE.yaml` reads its settings (examples in configs/data/).",
    params=[click.Option(["--config"], hidden=True, expose_value=False, callback=_sections, is_eager=True)],
)


def _run(cfg, as_json: bool) -> None:
    """Run the step; print its counts (a table on stderr, or JSON on stdout)."""
    from tpro.data.steps import run_step
    from tpro.models.loading import ModelLoadError

    try:
        res = run_step(cfg)
    except ConfigError:
        raise
    except (ValueError, OSError, KeyError, ModelLoadError) as e:  # bad rows, files or models: the message says why
        raise ConfigError(str(e)) from e
    note = "up to date (same inputs and parameters); --force reruns" if res.skipped else ""
    if as_json:
        print(json.dumps({"output": str(res.out), **res.counts}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{res.out}{'  (' + note + ')' if note else ''}", show_header=False)
    for k, v in res.counts.items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v))
    Console(stderr=True).print(table)


@command("tpro.data.dedup:DedupConfig", group=app, extra=[JSON])
def dedup(cfg, as_json: bool = False):
    """Remove exact (normalised hash) and near (MinHash + LSH) duplicates; write OUT.clusters.jsonl."""
    _run(cfg, as_json)


@command("tpro.data.decontam:DecontamConfig", name="decontaminate", group=app, extra=[JSON])
def decontaminate(cfg, as_json: bool = False):
    """Drop rows that contain a benchmark question (n-gram overlap or MinHash containment); say why in
    OUT.removed.jsonl."""
    _run(cfg, as_json)


@command("tpro.data.tagging:TagConfig", group=app, extra=[JSON])
def tag(cfg, as_json: bool = False):
    """Tag rows with domain labels (embedding or zero-shot tagger) and a language; resumable."""
    _run(cfg, as_json)


@command("tpro.data.tagging:BalanceConfig", group=app, extra=[JSON])
def balance(cfg, as_json: bool = False):
    """Semantic near-duplicates by tag + embedding similarity, then caps per tag and per language share."""
    _run(cfg, as_json)


@command("tpro.data.reward:RewardFilterConfig", name="reward-filter", group=app, extra=[JSON])
def reward_filter(cfg, as_json: bool = False):
    """Score K completions per prompt with a reward model and keep best/worst pairs, the best, or a threshold.

    Input rows: {"prompt", "completions": [...]} (or flat {"prompt", "completion"}), with "scores" if no --model.
    """
    _run(cfg, as_json)


@command("tpro.data.sample:SampleConfig", group=app, extra=[JSON])
def sample(cfg, as_json: bool = False):
    """Answer every prompt K times with a model (batched, seeded, resumable): rows with `messages` to train on,
    e.g. the base model's answers for a swapped model to learn (`tpro tokenizer recover --train OUT:messages`)."""
    _run(cfg, as_json)


@command("tpro.data.difficulty:DifficultyConfig", group=app, extra=[JSON])
def difficulty(cfg, as_json: bool = False):
    """Sample N answers per problem (seeded, resumable), verify them, keep problems whose pass rate lies in the
    band; writes OUT.histogram.json and .png."""
    _run(cfg, as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app(prog_name="tpro data"))
