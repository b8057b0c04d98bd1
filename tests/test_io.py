"""tpro.io: one JSONL reader with explicit bad-line policies; writes that a failure never leaves half-done."""

from __future__ import annotations

import json

import pytest

from tpro.io import JSONLError, append_jsonl, atomic_path, atomic_write, read_jsonl, replace_dir, write_jsonl


def test_read_jsonl_policies(tmp_path, capsys):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n\nnot json\n[1, 2]\n{"a": 2}\n')
    with pytest.raises(JSONLError, match=r"rows.jsonl:3: not valid JSON"):
        read_jsonl(p)
    skipped = []
    assert read_jsonl(p, on_error="skip", skipped=skipped) == [{"a": 1}, {"a": 2}]
    assert [n for n, _ in skipped] == [3, 4] and "JSON object" in skipped[1][1]
    assert read_jsonl(p, on_error="warn", limit=1) == [{"a": 1}]
    with pytest.raises(JSONLError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_truncated_policy_ignores_only_a_torn_last_line(tmp_path):
    p = tmp_path / "progress.jsonl"
    p.write_text('{"i": 0}\n{"i": 1')
    assert read_jsonl(p, on_error="truncated") == [{"i": 0}]
    p.write_text('{"i": 0\n{"i": 1}\n')
    with pytest.raises(JSONLError, match=":1:"):
        read_jsonl(p, on_error="truncated")


def test_append_after_a_torn_line_keeps_rows_apart(tmp_path):
    p = tmp_path / "progress.jsonl"
    p.write_text('{"i": 0}\n{"i": 1')
    append_jsonl(p, [{"i": 1}, {"i": 2}])
    assert [json.loads(x) for x in p.read_text().splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_atomic_writes_leave_the_old_file_on_failure(tmp_path):
    p = tmp_path / "out.json"
    atomic_write(p, "old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old" and list(tmp_path.iterdir()) == [p]
    assert write_jsonl(tmp_path / "d" / "rows.jsonl", [{"x": "ё"}]) == 1
    assert read_jsonl(tmp_path / "d" / "rows.jsonl") == [{"x": "ё"}]


def test_replace_dir(tmp_path):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    (out / "old").write_text("1")
    tmp.mkdir()
    (tmp / "new").write_text("2")
    replace_dir(tmp, out)
    assert [p.name for p in out.iterdir()] == ["new"] and not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
