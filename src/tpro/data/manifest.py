"""Manifests (what made an output) and resumable per-row progress (for model-based steps).

Every output ``X`` gets ``X.manifest.json``: the step, its inputs with sha256 and row counts, the parameters,
counts in/out, the versions of the libraries that decided the result, the output's hash, and the history of
the input's own manifest (if it had one), so a chain of steps reads as one table of counts in/out per step.

Resume: a deterministic step whose output manifest already records the same inputs (by hash) and parameters is
skipped. A model-based step appends each finished row to ``X.progress.jsonl`` (flushed per row, keyed by a
hash of inputs + parameters) and, after a kill, redoes only the rows missing there. This module knows nothing
about what the steps compute.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tpro.data.io import fingerprint, write_json

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
            prior = manifest_path(src)
            if prior.is_file():
                earlier = json.loads(prior.read_text())
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


def is_done(output: str | Path, manifest: Manifest) -> bool:
    """True when ``output`` exists, is unchanged, and was made from the same inputs with the same parameters."""
    path = manifest_path(output)
    if not (Path(output).exists() and path.is_file()):
        return False
    old = json.loads(path.read_text())
    main = next((o for o in old.get("outputs", []) if o.get("role") == "main"), None)
    return old.get("key") == manifest.key and main is not None and main["sha256"] == fingerprint(output)


class RowProgress:
    """Append-only per-row results for a model-based step, resumable after a kill.

    Lines are ``{"key": ..., "i": row_index, "result": ...}``; lines from a run with another key (other
    inputs or parameters) are ignored, and a torn last line (killed mid-write) is dropped.
    """

    def __init__(self, output: str | Path, key: str):
        self.path = Path(output).with_name(Path(output).name + ".progress.jsonl")
        self.key = key
        self.done: dict[int, object] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("key") == key:
                    self.done[int(rec["i"])] = rec["result"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def add(self, i: int, result) -> None:
        self._f.write(json.dumps({"key": self.key, "i": i, "result": result}, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.done[i] = result

    def close(self, remove: bool = False) -> None:
        self._f.close()
        if remove:
            self.path.unlink(missing_ok=True)
