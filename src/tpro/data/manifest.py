"""Manifests: what made an output, and whether it is still up to date.

Every output ``X`` gets ``X.manifest.json``: the step, its inputs with sha256 and row counts, the parameters,
counts in/out, the versions of the libraries that decided the result, the output's hash, and the history of
the input's own manifest (if it had one), so a chain of steps reads as one table of counts in/out per step.

A step whose output manifest already records the same inputs (by hash) and parameters is skipped (``is_done``);
``Manifest.key`` (a hash of inputs + parameters) also names a step's progress file, so a resumed run never
reuses rows computed with other settings (``tpro.data.steps``). This module knows nothing about what the steps
compute.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tpro.data.io import fingerprint
from tpro.io import write_json

VERSIONED = ("tpro", "datasketch", "datatrove", "transformers", "torch", "sentence-transformers", "datasets")


def manifest_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".manifest.json")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def params_key(inputs: list[dict], params: dict) -> str:
    raw = json.dumps({"inputs": [i["sha256"] for i in inputs], "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class Manifest:
    step: str
    params: dict
    inputs: list[dict] = field(default_factory=list)  # {path, sha256, rows}
    counts: dict = field(default_factory=dict)  # rows_in, rows_out, and step-specific counts
    outputs: list[dict] = field(default_factory=list)  # {path, sha256, rows, role}
    history: list[dict] = field(default_factory=list)  # earlier steps' {step, params, counts, inputs}
    versions: dict = field(default_factory=versions)
    seconds: float = 0.0
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @classmethod
    def start(cls, step: str, params: dict, inputs: list[str | Path], rows: list[int] | None = None) -> Manifest:
        m = cls(step=step, params=params)
        for i, src in enumerate(inputs):
            m.inputs.append({"path": str(src), "sha256": fingerprint(src), "rows": None if rows is None else rows[i]})
            earlier = read_manifest(src)
            if earlier:
                m.history += earlier.get("history", []) + [
                    {k: earlier.get(k) for k in ("step", "params", "counts", "inputs")}
                ]
        m._t0 = time.perf_counter()
        return m

    @property
    def key(self) -> str:
        return params_key(self.inputs, self.params)

    def add_output(self, path: str | Path, rows: int | None = None, role: str = "main") -> None:
        self.outputs.append({"path": str(path), "role": role, "rows": rows, "sha256": fingerprint(path)})

    def write(self, output: str | Path) -> Path:
        self.seconds = round(time.perf_counter() - getattr(self, "_t0", time.perf_counter()), 3)
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["key"] = self.key
        path = manifest_path(output)
        write_json(path, data)
        return path


def read_manifest(output: str | Path) -> dict | None:
    """The manifest written beside ``output``, or None."""
    path = manifest_path(output)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def is_done(output: str | Path, manifest: Manifest) -> bool:
    """True when ``output`` exists, is unchanged, and was made from the same inputs with the same parameters."""
    old = read_manifest(output)
    if old is None or not Path(output).exists():
        return False
    main = next((o for o in old.get("outputs", []) if o.get("role") == "main"), None)
    return old.get("key") == manifest.key and main is not None and main["sha256"] == fingerprint(output)
