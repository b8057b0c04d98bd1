"""Files every stage reads and writes: JSONL rows, atomic writes, directory swaps, the cache directory.

One reader (``read_jsonl``) with an explicit policy for bad lines, and one way to write a file so that a kill
never leaves it half-written: write a temporary file beside it, flush, then ``os.replace`` (atomic on POSIX).
Directories are swapped the same way (``replace_dir``). Nothing here knows about models or tensors; weights
are written by their stages with safetensors, through ``atomic_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal


class JSONLError(ValueError):
    """A JSONL file is missing or has a bad line; the message names the file, the line and the fix."""


OnError = Literal["raise", "skip", "warn", "truncated"]


def iter_jsonl(path: str | Path, on_error: OnError = "raise", skipped: list | None = None) -> Iterator[dict]:
    """JSON objects, one per non-empty line of ``path``.

    ``on_error``: ``raise`` (a ``JSONLError`` naming file and line), ``skip`` (record ``(line, reason)`` in
    ``skipped``), ``warn`` (skip and print a warning), ``truncated`` (only a last line without its newline may be
    bad: a write cut by a kill; it is ignored, any other bad line raises).
    """
    path = Path(path)
    if not path.is_file():
        raise JSONLError(f"{str(path)!r} does not exist (or is not a file). Fix: pass an existing .jsonl file")
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            reason = None if isinstance(row, dict) else f"a row must be a JSON object, got {type(row).__name__}"
        except json.JSONDecodeError as e:
            row, reason = None, f"not valid JSON ({e.msg})"
        if reason is None:
            yield row
            continue
        if on_error == "truncated" and n == len(lines) and not line.endswith("\n"):
            return
        if on_error in ("raise", "truncated"):
            raise JSONLError(f"{path}:{n}: {reason}. Fix: one JSON object per line")
        if skipped is not None:
            skipped.append((n, reason))
        if on_error == "warn":
            print(f"warning: {path}:{n}: {reason}; line skipped", file=sys.stderr)


def read_jsonl(
    path: str | Path, on_error: OnError = "raise", limit: int | None = None, skipped: list | None = None
) -> list[dict]:
    """``iter_jsonl`` as a list (the first ``limit`` rows when given)."""
    rows = []
    for row in iter_jsonl(path, on_error, skipped):
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    return rows


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved over ``path`` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (fsync'd before the rename)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSONL atomically; returns the row count."""
    rows = list(rows)
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows and flush them to disk: the progress file of a resumable job. A kill may cut only the last line
    (``iter_jsonl(on_error="truncated")`` ignores it); appending first drops such a torn tail, so new rows never
    join it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = path.read_bytes()
                f.truncate(data.rfind(b"\n") + 1)
    with path.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished ``tmp`` directory to ``out``, replacing any old ``out`` without a moment where neither exists
    in a half-written state: the old one is renamed aside first and removed only after the swap."""
    import shutil

    tmp, out = Path(tmp), Path(out)
    if out.exists():
        old = out.with_name(out.name + f".old{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)


def cache_dir() -> Path:
    """``$TPRO_CACHE``, else ``$XDG_CACHE_HOME/tpro``, else ``~/.cache/tpro``; created on first use. Only converted
    models and joined files live here; nothing is downloaded by this module."""
    env = os.environ.get("TPRO_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tpro"
    root.mkdir(parents=True, exist_ok=True)
    return root
