"""tpro.config: a dataclass becomes a command line, a YAML reader and a validator, all from one declaration."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from tpro.cli import COMMANDS
from tpro.config import Config, ConfigCommand, ConfigError, command, json_flag, opt, read_yaml, validate


@dataclass(kw_only=True)
class Demo(Config):
    path: str = opt(help="input", positional=True)
    out: str = opt(help="output dir", short="-o")
    steps: int = opt(10, "steps", min=1, max=100, aliases=("--n-steps",))
    lr: float = opt(1e-3, "learning rate", min=0.0)
    mode: str = opt("direct", "mode", choices=("direct", "reasoning"), flags={"--reasoning": "reasoning"})
    data: list[str] = opt([], "repeatable")
    lora: bool = opt(False, "use lora")
    seed: int | None = opt(None, "seed")
    hidden: str = opt("x", "yaml only", cli=False)


seen = {}


@command(Demo, extra=[json_flag()])
def demo(cfg: Demo, as_json: bool = False):
    """A demo command."""
    seen["cfg"], seen["json"] = cfg, as_json


def invoke(*args):
    seen.clear()
    return CliRunner().invoke(demo, list(args), catch_exceptions=False)


def test_flags_defaults_and_aliases():
    r = invoke("in.txt", "-o", "d", "--n-steps", "5", "--reasoning", "--data", "a", "--data", "b", "--lora", "--json")
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.path, cfg.out, cfg.steps, cfg.mode, cfg.data, cfg.lora, cfg.lr, cfg.seed) == (
        "in.txt",
        "d",
        5,
        "reasoning",
        ["a", "b"],
        True,
        1e-3,
        None,
    )
    assert seen["json"] is True
    # the HfArgumentParser spellings of earlier train commands
    r = invoke("in.txt", "--out", "d", "--lora", "false", "--seed", "3")
    assert r.exit_code == 0 and seen["cfg"].lora is False and seen["cfg"].seed == 3


def test_yaml_then_flags_win(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("out: from-file\nsteps: 7\nlr: 1\ndata: one\nhidden: y\n")
    r = invoke("in.txt", "--config", str(f), "--steps", "9")
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.out, cfg.steps, cfg.lr, cfg.data, cfg.hidden) == ("from-file", 9, 1.0, ["one"], "y")
    assert isinstance(cfg.lr, float)
    # --print-config writes YAML that reads back to the same config
    r = invoke("in.txt", "--config", str(f), "--steps", "9", "--print-config")
    (tmp_path / "back.yaml").write_text(r.output)
    assert Demo.from_yaml(tmp_path / "back.yaml") == cfg


@dataclass(kw_only=True)
class WithKey(Config):
    api_key: str | None = opt(None, "key", envvar="DEMO_KEY", secret=True)
    paths: list[str] = opt([], "paths")


def test_secrets_are_never_printed_and_python_values_are_coerced():
    assert "api_key" not in WithKey(api_key="s3cret").to_yaml()
    cfg = WithKey(paths="one")  # a lone string where a list is declared
    assert cfg.paths == ["one"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("stpes: 3\n", "unknown key 'stpes' (did you mean 'steps'?)"),
        ("steps: 0\n", "key 'steps': 0 is out of range [1, 100]"),
        ("steps: many\n", "key 'steps': expected int, got str"),
        ("lr: -1\n", "key 'lr': -1.0 is out of range [0.0, inf]"),
        ("mode: fast\n", "key 'mode': 'fast' is not one of direct, reasoning"),
        ("lora: 3\n", "key 'lora': expected bool"),
        ("- a\n- b\n", "must be a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_file_names_file_key_and_range(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    r = invoke("in.txt", "-o", "d", "--config", str(f))
    assert r.exit_code == 2
    assert str(f) in r.output and message in r.output


def test_missing_and_bad_flags():
    r = invoke("in.txt")
    assert r.exit_code == 2 and "--out" in r.output
    r = invoke("in.txt", "-o", "d", "--steps", "500")
    assert r.exit_code == 2 and "500 is not in the range 1<=x<=100" in r.output
    r = invoke("in.txt", "-o", "d", "--config", "/nope.yaml")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_python_api_validates_too():
    with pytest.raises(ConfigError, match="key 'steps': 0 is out of range"):
        Demo(path="p", out="o", steps=0)
    assert validate(Demo, {"lr": 2}, "x")["lr"] == 2.0


def test_help_lists_main_spelling_only():
    r = CliRunner().invoke(demo, ["--help"])
    assert "--steps" in r.output and "--n-steps" not in r.output and "--reasoning" not in r.output
    assert "[default: 10; 1<=x<=100]" in r.output


def all_commands():
    for stage, (module, _) in COMMANDS.items():
        obj = importlib.import_module(module).app
        if isinstance(obj, ConfigCommand) or not isinstance(obj, click.Group):
            yield stage, obj  # a command (also one that has verbs, like `tpro playground`)
        if isinstance(obj, click.Group):
            for verb, cmd in obj.commands.items():
                yield f"{stage} {verb}", cmd


def test_every_command_is_generated_from_a_config():
    names = [name for name, cmd in all_commands() if not isinstance(cmd, ConfigCommand)]
    assert names == [], f"commands with hand-written options: {names}"


def test_cli_defaults_equal_config_defaults():
    """The drift test: every flag's default is its dataclass field's default (as `hot_vocab` once was not)."""
    for name, cmd in all_commands():
        if not isinstance(cmd, ConfigCommand):
            continue
        fields = {f.name: f for f in dataclasses.fields(cmd.config_cls)}
        for p in cmd.get_params(click.Context(cmd)):
            if p.name not in fields:
                continue
            f = fields[p.name]
            want = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            got = list(p.default) if isinstance(p.default, tuple) else p.default
            assert got == want, f"tpro {name} --{p.name}: CLI default {got!r} != config default {want!r}"


def test_every_command_reads_a_config_file(tmp_path):
    """`tpro <stage> [verb] --config x.yaml --print-config` works for every command (and shows the file's value)."""
    for name, cmd in all_commands():
        cls = cmd.config_cls
        f = dataclasses.fields(cls)[0]
        value = read_yaml(cls, _write(tmp_path, {}))  # an empty file is allowed
        assert value == {}
        required = {
            x.name: "x"
            for x in dataclasses.fields(cls)
            if x.default is dataclasses.MISSING and x.default_factory is dataclasses.MISSING
        }
        r = CliRunner().invoke(cmd, ["--config", _write(tmp_path, required), "--print-config"])
        assert r.exit_code == 0, f"tpro {name}: {r.output}"
        assert f"{f.name}:" in r.output


def _write(tmp_path, values: dict) -> str:
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(values))
    return str(p)
