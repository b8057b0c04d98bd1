"""The step runner from Python (tpro.data.steps): manifest, skip-if-done, resume from the progress file, errors."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from tpro.config import ConfigError, opt
from tpro.data.dedup import DedupConfig
from tpro.data.io import read_rows, write_rows
from tpro.data.manifest import manifest_path
from tpro.data.steps import StepConfig, StepRun, run_step, start_manifest
from tpro.io import append_jsonl

from .conftest import random_docs


@dataclass(kw_only=True)
class LengthConfig(StepConfig):
    """A toy per-row step (think: a model scoring each row) that counts the rows it really computed."""

    step: ClassVar[str] = "length"
    field: str = opt("text", "field measured")
    computed: ClassVar[list[int]] = []

    def execute(self, run: StepRun) -> list[dict]:
        rows = run.rows()

        def work(idx):
            LengthConfig.computed.extend(idx)
            return [len(rows[i][self.field]) for i in idx]

        lengths = run.per_row(len(rows), work, "length", batch=2)
        run.counts.update(rows_in=len(rows), rows_out=len(rows))
        return [{**r, "length": n} for r, n in zip(rows, lengths)]


def test_a_library_step_writes_a_manifest_skips_when_done_and_reruns_when_forced(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    write_rows(src, [{"text": t} for t in random_docs(20)] + [{"text": random_docs(1)[0]}])  # one exact copy
    res = DedupConfig(source=str(src), out=str(out)).run(show_progress=False)
    assert not res.skipped and res.counts["removed"] == 1 and len(read_rows(out)) == 20
    man = json.loads(manifest_path(out).read_text())
    assert man["step"] == "dedup" and man["inputs"][0]["rows"] == 21 and man["params"]["threshold"] == 0.7
    assert [o["role"] for o in man["outputs"]] == ["main", "clusters"]
    mtime = out.stat().st_mtime_ns
    again = run_step(DedupConfig(source=str(src), out=str(out)), show_progress=False)
    assert again.skipped and again.counts == res.counts and out.stat().st_mtime_ns == mtime
    other = run_step(DedupConfig(source=str(src), out=str(out), threshold=0.9), show_progress=False)
    assert not other.skipped  # other parameters: not up to date
    forced = run_step(DedupConfig(source=str(src), out=str(out), threshold=0.9, force=True), show_progress=False)
    assert not forced.skipped


def test_a_killed_per_row_step_resumes_from_its_progress_file(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(src, [{"text": "a" * i} for i in range(5)])
    cfg = LengthConfig(source=str(src), out=str(out))
    key = start_manifest(cfg).key
    progress = tmp_path / f"out.jsonl.{key}.progress.jsonl"
    # what a killed run left: rows 0 and 3 done (row 3 with a planted value), then a line cut by the kill
    append_jsonl(progress, [{"index": 0, "result": 0}, {"index": 3, "result": 99}])
    with progress.open("a") as f:
        f.write('{"index": 1, "res')
    # progress of a run with other parameters is never reused
    append_jsonl(tmp_path / "out.jsonl.0000.progress.jsonl", [{"index": 1, "result": -1}])
    LengthConfig.computed.clear()
    res = cfg.run(show_progress=False)
    assert LengthConfig.computed == [1, 2, 4] and res.counts["resumed_rows"] == 2
    assert [r["length"] for r in read_rows(out)] == [0, 1, 2, 99, 4]
    assert not list(tmp_path.glob("*.progress.jsonl"))  # OUT is complete: progress files are gone
    LengthConfig.computed.clear()
    assert cfg.run(show_progress=False).skipped and LengthConfig.computed == []


def test_step_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--out"):
        run_step(DedupConfig(source=str(tmp_path / "in.jsonl")))
    with pytest.raises(ConfigError, match="does not exist"):
        run_step(DedupConfig(source=str(tmp_path / "in.jsonl"), out=str(tmp_path / "o.jsonl")))
    with pytest.raises(ConfigError, match="out of range"):
        DedupConfig(threshold=1.5)


def test_tag_then_balance_from_python(tmp_path):
    """The bodies of `tag` and `balance` as library calls: tag rows in memory, then the balance step with its
    semantic near-duplicates (embedding loop) and caps."""
    from tpro.data.tagging import BalanceConfig, TagConfig, tag_rows

    texts = ["Write a Python function that reverses a list", "Write a Python function that reverses a list!"]
    tagged = tag_rows([{"text": t} for t in texts + ["Привет, как дела?"]], TagConfig(threads=1))
    assert [r["tags"][0] for r in tagged[:2]] == ["code", "code"] and tagged[2]["lang"] == "ru"
    src, out = tmp_path / "tagged.jsonl", tmp_path / "bal.jsonl"
    write_rows(src, tagged)
    res = BalanceConfig(source=str(src), out=str(out), semantic_threshold=0.95).run(show_progress=False)
    assert res.counts["semantic_removed"] == 1 and res.counts["rows_out"] == 2
    clusters = read_rows(tmp_path / "bal.jsonl.semantic.jsonl")
    assert clusters[0]["kept"] == 0 and [m["index"] for m in clusters[0]["members"]] == [0, 1]
