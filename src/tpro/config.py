"""One config dataclass per stage: the only declaration of its settings, for the command line, YAML and Python.

A stage's settings are a dataclass deriving from ``Config`` whose fields are built with ``opt()``: default, help,
bounds, choices, the flag's short name and old spellings. From it come

- the command line: ``command(ConfigClass)`` turns a function ``fn(cfg, **extras)`` into a click command with one
  option per field, ``--config FILE.yaml`` (flags given on the command line win over the file) and
  ``--print-config`` (the resolved settings as YAML, to start a config file from);
- YAML: ``ConfigClass.from_yaml(path, **overrides)`` and ``cfg.to_yaml()`` for Python callers;
- validation: types, bounds, choices and unknown keys are checked in one place (``validate``), so a wrong value
  in a file names the file, the key and what is allowed, and a Python caller gets the same check in
  ``__post_init__``.

Why not a library: typer builds options from function signatures, not from dataclasses, so every field was copied
by hand (which is how ``hot_vocab`` drifted to two defaults); transformers' ``HfArgumentParser`` (what TRL uses)
imports transformers, which makes every ``--help`` slow, and knows no bounds; jsonargparse and simple-parsing
bring their own parsers and would replace the lazy click group the ``tpro`` command is built on. So this is
click (which typer is built on) plus the mapping below. Commands load their config class lazily (``"module:Class"``)
so a stage's ``--help`` does not import torch.

What this module does not know: any stage's settings, models, files other than the YAML it reads.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
from click.core import ParameterSource


class ConfigError(ValueError):
    """A setting is wrong; the message names where it came from, the key and what is allowed (CLIs exit 2)."""


def opt(
    default: Any = MISSING,
    help: str = "",
    *,
    short: str | None = None,
    min: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    aliases: tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
    positional: bool = False,
    envvar: str | None = None,
    cli: bool = True,
    secret: bool = False,
) -> Any:
    """A config field. ``aliases``: old flag spellings (hidden); ``flags``: hidden flags that set a value
    (``{"--reasoning": "reasoning"}``); ``positional``: a command-line argument instead of an option;
    ``cli=False``: settable from YAML and Python only; ``secret``: never written out by ``to_yaml`` /
    ``--print-config`` (an API key belongs in the environment). A list default is copied per instance."""
    meta = dict(locals(), aliases=tuple(aliases), flags=dict(flags or {}))  # every argument but the default
    del meta["default"]
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def like(cls: type, name: str, default: Any = MISSING, **changes) -> Any:
    """The field ``name`` of ``cls`` as declared there (help, short name, bounds, old spellings), with ``changes``
    and a new ``default`` when given: a stage overrides a shared field's default without copying its declaration
    (``max_new_tokens: int = like(SamplingOptions, "max_new_tokens", 256)``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if default is MISSING:
        default = f.default if f.default_factory is MISSING else f.default_factory()
    return opt(default, **{**f.metadata, **changes})


@dataclass(kw_only=True)
class Config:
    """Base of every stage config: validation on construction, YAML in and out."""

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in validate(type(self), values, type(self).__name__).items():
            object.__setattr__(self, key, value)  # coerced: a Path becomes str, a lone string a one-item list

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides):
        return cls(**{**read_yaml(cls, path), **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The settings as YAML that ``from_yaml`` reads back; secret fields are left out."""
        import yaml

        secret = {f.name for f in dataclasses.fields(self) if f.metadata.get("secret")}
        values = {k: v for k, v in self.to_dict().items() if k not in secret}
        return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


# --- types and validation ------------------------------------------------------------------------------------


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _unwrap(tp) -> tuple[Any, bool, bool]:
    """-> (base type, optional, is_list). ``int | None`` -> (int, True, False); ``list[str]`` -> (str, False, True)."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = len(args) < len(typing.get_args(tp)), args[0]
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def _choices(f: dataclasses.Field, base) -> tuple | None:
    if f.metadata.get("choices"):
        return tuple(f.metadata["choices"])
    return typing.get_args(base) if typing.get_origin(base) is Literal else None


def _coerce_one(value, base, where: str):
    scalar = str if typing.get_origin(base) is Literal else base
    if scalar is bool:
        if isinstance(value, bool):
            return value
    elif scalar is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif scalar is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif scalar is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # a YAML `seed_file: 123` or a numeric model id
    else:
        return value
    raise ConfigError(f"{where}: expected {scalar.__name__}, got {type(value).__name__} {value!r}")


def validate(cls, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check and coerce ``values`` against ``cls``'s fields: unknown keys, types, bounds, choices.
    Returns the coerced values; raises ``ConfigError`` naming ``source``, the key and what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}. Allowed keys: {', '.join(fields)}")
        f, where = fields[key], f"{source}: key {key!r}"
        base, optional, is_list = _unwrap(hints[key])
        if value is None:
            if not optional and f.default is not None:
                raise ConfigError(f"{where}: may not be empty (null)")
            out[key] = None
            continue
        if is_list:
            items = value if isinstance(value, (list, tuple)) else [value]
            value = [_coerce_one(v, base, where) for v in items]
        else:
            value = _coerce_one(value, base, where)
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), _choices(f, base)
        for v in value if is_list else [value]:
            if choices and v not in choices:
                raise ConfigError(f"{where}: {v!r} is not one of {', '.join(map(str, choices))}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
                raise ConfigError(f"{where}: {v!r} is out of range {rng}")
        out[key] = value
    return out


def read_yaml(cls, path: str | Path) -> dict[str, Any]:
    """A YAML mapping of ``cls``'s fields, validated (the error names the file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist. Fix: pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must be a mapping of settings (key: value), got {type(data).__name__}"
        )
    return validate(cls, data, str(path))


def resolve(ref: str | type) -> type:
    """``"package.module:Class"`` -> the class (imported now), or the class itself."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


# --- the command line ------------------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Option(click.Option):
    """An option whose help line shows only its main spelling (old spellings stay accepted, unlisted)."""

    def __init__(self, *args, visible: int = 1, **kw):
        super().__init__(*args, **kw)
        self._visible = visible

    def get_help_record(self, ctx):
        opts, secondary = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = opts[: self._visible], secondary[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def _click_type(base, f: dataclasses.Field):
    choices = _choices(f, base)
    if choices:
        return click.Choice([str(c) for c in choices])
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if base is int:
        return click.IntRange(lo, hi) if lo is not None or hi is not None else click.INT
    if base is float:
        return click.FloatRange(lo, hi) if lo is not None or hi is not None else click.FLOAT
    return click.STRING


def params_for(cls) -> tuple[list[click.Parameter], dict[str, str]]:
    """Click parameters for every CLI field of ``cls`` (defaults are the dataclass's; whether a flag was given is
    read from click's parameter source), plus the hidden value-flags as {param name: field name}."""
    params: list[click.Parameter] = []
    flag_params: dict[str, str] = {}
    hints = _hints(cls)
    own = cls.__dict__.get("__annotations__", {})
    # the stage's own settings first, then the shared ones it inherits (model, sampling)
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        m = f.metadata
        if not m.get("cli", True):
            continue
        base, _, is_list = _unwrap(hints[f.name])
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else None)
        )
        if m.get("positional"):
            params.append(
                click.Argument(
                    [f.name],
                    required=False,
                    type=_click_type(base, f),
                    nargs=-1 if is_list else 1,
                    default=tuple(default) if is_list and default is not None else default,
                )
            )
            continue
        names = [_flag(f.name)] + ([m["short"]] if m.get("short") else [])
        old = list(m.get("aliases", ()))
        if "_" in f.name:
            old.append("--" + f.name)  # the underscore spelling (HfArgumentParser's, used by earlier train configs)
        required = f.default is MISSING and f.default_factory is MISSING
        common = dict(
            help=m.get("help", "") + (" [required]" if required else ""),
            envvar=m.get("envvar"),
            show_default=default is not None and default != [],
            show_envvar=bool(m.get("envvar")),
        )
        if base is bool:
            decls = [f"{n}/--no-{n[2:]}" for n in names[:1] + old] + names[1:]
            params.append(_Option([f.name, *decls], is_flag=True, default=default, **common))
        else:
            params.append(
                _Option(
                    [f.name, *names, *old],
                    type=_click_type(base, f),
                    multiple=is_list,
                    default=tuple(default) if is_list and default is not None else default,
                    visible=len(names),
                    **common,
                )
            )
        for i, (flag, value) in enumerate(m.get("flags", {}).items()):
            pname = f"_{f.name}_flag{i}"
            params.append(click.Option([pname, flag], is_flag=True, flag_value=value, default=None, hidden=True))
            flag_params[pname] = f.name
    return params, flag_params


def _bool_values(args: list[str], bool_flags: set[str]) -> list[str]:
    """``--lora false`` -> ``--no-lora`` (the HfArgumentParser spelling earlier configs and scripts used)."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in bool_flags and i + 1 < len(args) and args[i + 1].lower() in ("true", "false", "yes", "no", "1", "0"):
            on = args[i + 1].lower() in ("true", "yes", "1")
            out.append(a if on else "--no-" + a[2:])
            i += 2
            continue
        out.append(a)
        i += 1
    return out


class ConfigCommand(click.Command):
    """A click command generated from a config dataclass (given as a class or a lazy ``"module:Class"``)."""

    def __init__(self, name, config, run, extra_params=(), **kw):
        kw.setdefault("context_settings", {"help_option_names": ["-h", "--help"], "max_content_width": 120})
        super().__init__(name, callback=self._invoke, **kw)
        self.config_ref, self.run, self.extra_params = config, run, list(extra_params)
        self._built = False
        self.flag_params: dict[str, str] = {}

    @property
    def config_cls(self) -> type:
        return resolve(self.config_ref)

    def _build(self):
        if not self._built:
            params, self.flag_params = params_for(self.config_cls)
            self.params = (
                params
                + self.extra_params
                + [
                    click.Option(
                        ["--config"],
                        type=click.Path(dir_okay=False),
                        default=None,
                        help="YAML file of these settings (keys = option names with _); flags given here win.",
                    ),
                    click.Option(
                        ["--print-config"],
                        is_flag=True,
                        default=False,
                        help="Print the resolved settings as YAML and exit (a start for a --config file).",
                    ),
                ]
            )
            self._built = True

    def get_params(self, ctx):
        self._build()
        return super().get_params(ctx)

    def parse_args(self, ctx, args):
        self._build()
        bools = {
            o for p in self.params if isinstance(p, click.Option) and p.is_flag and p.secondary_opts for o in p.opts
        }
        return super().parse_args(ctx, _bool_values(list(args), bools))

    def _invoke(self, **kw):
        ctx = click.get_current_context()
        try:
            cfg = self.make_config(ctx, kw)
        except ConfigError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        if kw.pop("print_config"):
            click.echo(cfg.to_yaml(), nl=False)
            return None
        extras = {p.name: kw[p.name] for p in self.extra_params}
        try:
            return self.run(cfg, **extras)
        except ConfigError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)

    def make_config(self, ctx, kw: dict) -> Config:
        """defaults < --config file < flags given on the command line (or their environment variables)."""
        cls = self.config_cls
        values = read_yaml(cls, kw["config"]) if kw.get("config") else {}
        given = {}
        for name, value in kw.items():
            if name in self.flag_params:
                if value is not None:
                    given.setdefault(self.flag_params[name], value)
            elif name in {f.name for f in dataclasses.fields(cls)}:
                src = ctx.get_parameter_source(name)
                if src not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
                    continue
                given[name] = list(value) if isinstance(value, tuple) else value
        values.update(validate(cls, given, "command line"))
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is MISSING and f.default_factory is MISSING and f.name not in values
        ]
        if missing:
            raise ConfigError(
                "missing setting(s): "
                + ", ".join(n.upper() if _field(cls, n).metadata.get("positional") else _flag(n) for n in missing)
                + ". Fix: pass them on the command line or as keys in --config FILE.yaml"
            )
        return cls(**values)


def _field(cls, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def command(
    config: str | type,
    name: str | None = None,
    extra: list[click.Parameter] | None = None,
    group: click.Group | None = None,
    **kw,
):
    """Decorator: ``fn(cfg, **extras)`` -> a ``ConfigCommand`` (added to ``group`` when given). The first paragraph
    of ``fn``'s docstring is the command's help."""

    def wrap(fn):
        doc = (fn.__doc__ or "").strip()
        cmd = ConfigCommand(name or fn.__name__.replace("_", "-"), config, fn, extra or [], help=doc, **kw)
        if group is not None:
            group.add_command(cmd)
        return cmd

    return wrap


def json_flag(help: str = "Print one JSON object on stdout (logs go to stderr).") -> click.Option:
    """The ``--json`` switch of commands whose output other tools read."""
    return click.Option(["--json", "as_json"], is_flag=True, default=False, help=help)


def group(help: str, **kw) -> click.Group:
    """A stage's group of verbs (``tpro eagle train``)."""
    return click.Group(
        help=help,
        no_args_is_help=True,
        **kw,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    )


def fail(message: str, code: int = 2):
    """Print ``error: message`` on stderr and exit (2: bad input, the message says the fix)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
