"""What is data-specific about reading and writing rows: Parquet, ``datasets`` directories, hub sources, the
text of a row and a source's fingerprint. JSONL and atomic writes are ``tpro.io``'s.

A *source* is a ``.jsonl``/``.json`` file (one object per line), a ``.parquet`` file, a directory written
by ``datasets.Dataset.save_to_disk``, or ``hf:<name>[:split]`` for a hub dataset (the users' path; it needs a
network). Rows are plain dicts in memory: the steps here are laptop-scale; corpora beyond one machine go
through the datatrove pipeline in ``tpro.data.dedup_datatrove``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tpro.config import ConfigError
from tpro.io import JSONLError, atomic_path, read_jsonl, write_jsonl


class DataError(ConfigError):
    """Bad input data or settings; the message names the problem and the fix (the CLI exits 2)."""


def read_rows(source: str | Path, limit: int | None = None) -> list[dict]:
    src = str(source)
    if src.startswith("hf:"):
        import datasets

        name, _, split = src[3:].partition(":")
        return [dict(r) for r in datasets.load_dataset(name, split=split or "train")][:limit]
    path = Path(src)
    if not path.exists():
        raise DataError(
            f"input {src!r} does not exist. Fix: give a .jsonl/.parquet file, a datasets directory, "
            "or hf:<name>[:split]"
        )
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as e:
            raise DataError(f"directory {src!r} is not a saved `datasets` dataset ({e})") from e
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return [dict(r) for r in (ds.select(range(min(limit, len(ds)))) if limit else ds)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return rows[:limit] if limit else rows
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        try:
            return read_jsonl(path, limit=limit)
        except JSONLError as e:
            raise DataError(str(e)) from e
    raise DataError(f"don't know how to read {src!r}. Fix: use .jsonl, .parquet, a datasets directory or hf:<name>")


def write_rows(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows to ``.jsonl`` or ``.parquet`` (by suffix) atomically; returns the row count."""
    rows = list(rows)
    if Path(path).suffix != ".parquet":
        return write_jsonl(path, rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Parquet is columnar: every row gets every column (missing -> null); from_pylist alone would take the
    # columns of the first row only and drop the rest silently.
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), tmp)
    return len(rows)


def text_of(row: dict, field: str) -> str:
    """The text of ``row[field]``: a string as is; chat messages joined by newlines (their contents)."""
    if field not in row:
        raise DataError(f"row has no field {field!r} (fields: {', '.join(sorted(row))}). Fix: pass --field")
    value = row[field]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n".join(str(m["content"]) for m in value)
    return "" if value is None else str(value)


def fingerprint(source: str | Path) -> str:
    """sha256 of a file, of a datasets directory's files (sorted by name), or of the hub spec string."""
    src = str(source)
    h = hashlib.sha256()
    path = Path(src)
    if src.startswith("hf:") or not path.exists():
        h.update(src.encode())
        return h.hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
