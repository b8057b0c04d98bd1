"""``tpro playground`` and its verbs from one declaration each: the YAML files under configs/playground, the old
flag spellings as hidden aliases, the bare stage name as a command of its own, export through ``--config``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from tests.playground.test_export import fill
from tpro.config import ConfigCommand
from tpro.playground.cli import app
from tpro.playground.export import ExportConfig, export_votes
from tpro.playground.launch import PlaygroundConfig
from tpro.playground.store import VoteStore

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "playground"


def resolved(*args: str, env: dict | None = None) -> dict:
    r = CliRunner().invoke(app, [*args, "--print-config"], env=env)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.output)


def test_default_yaml_is_the_commands_defaults():
    assert PlaygroundConfig.from_yaml(CONFIGS / "default.yaml") == PlaygroundConfig()
    assert resolved("--config", str(CONFIGS / "default.yaml")) == resolved() == _public(PlaygroundConfig())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_playground_config_reads_and_names_its_command(path):
    assert path.read_text().startswith(f"# tpro playground --config configs/playground/{path.name}\n")
    assert resolved("--config", str(path)) == _public(PlaygroundConfig.from_yaml(path))


def test_the_stage_and_its_verbs_are_generated_and_defaults_agree():
    """What tests/test_config.py checks for every verb, here for the bare ``tpro playground`` too."""
    for cmd in (app, *app.commands.values()):
        assert isinstance(cmd, ConfigCommand)
        fields = {f.name: f for f in dataclasses.fields(cmd.config_cls)}
        for p in cmd.get_params(click.Context(cmd)):
            f = fields.get(p.name)
            if f is not None and f.default is not dataclasses.MISSING:
                got = list(p.default) if isinstance(p.default, tuple) else p.default
                assert got == f.default, p.name


@pytest.mark.parametrize(
    "old, new",
    [
        (["--max-tokens", "96"], ["-n", "96"]),
        (["--server-timeout", "5"], ["--server-timeout-s", "5"]),
        (["--no-browser", "--threads", "1"], ["--browser", "false", "--threads", "1"]),
    ],
)
def test_old_spellings_still_work(old, new):
    assert resolved(*old) == resolved(*new) != resolved()


def _public(cfg) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k != "api_key"}  # a secret is never printed


def test_help_and_env():
    r = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert "--max-new-tokens" in r.output and "export-prefs" in r.output and "--max-tokens " not in r.output
    assert resolved()["browser"] is None and resolved()["draft"] == "auto"
    assert "api_key" not in resolved(env={"TPRO_API_KEY": "k"})  # secret: read from the env, never printed


def test_export_through_a_config_file(tmp_path):
    db = tmp_path / "v.sqlite"
    fill(VoteStore(db))
    f = tmp_path / "export.yaml"
    f.write_text(f"out: {tmp_path / 'pairs.jsonl'}\ndb: {db}\nwith_reasoning: true\n")
    r = CliRunner().invoke(app, ["export-prefs", "--config", str(f), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["pairs"] == 2
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert first["chosen"][0]["content"].startswith("<think>")
    # the same settings from Python
    again = export_votes(ExportConfig(out=str(tmp_path / "again.jsonl"), db=str(db), with_reasoning=True))
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "pairs.jsonl").read_text()
    assert again["votes"] == 4


def test_the_local_server_gets_the_model_flags(monkeypatch, tmp_path):
    """--rope-scaling (like --weights) reaches the `tpro serve` the playground starts."""
    import subprocess

    from tpro.playground import launch

    seen = []

    def fake_popen(cmd, **kw):
        seen.append(cmd)
        raise OSError("not started in this test")

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    cfg = PlaygroundConfig(rope_scaling="yarn:2", weights="int4")
    with pytest.raises(OSError):
        launch.start_local_server(cfg, tmp_path / "log.txt", "key")
    cmd = seen[0]
    assert cmd[cmd.index("--rope-scaling") + 1] == "yarn:2" and cmd[cmd.index("--weights") + 1] == "int4"
    seen.clear()
    with pytest.raises(OSError):
        launch.start_local_server(PlaygroundConfig(), tmp_path / "log.txt", "key")
    assert "--rope-scaling" not in seen[0]
    assert "--compile" in seen[0] and seen[0][seen[0].index("--max-batch") + 1] == "1"  # the fastest lossless default
    seen.clear()
    with pytest.raises(OSError):
        launch.start_local_server(PlaygroundConfig(compile=False), tmp_path / "log.txt", "key")
    assert "--compile" not in seen[0] and "--max-batch" not in seen[0]
