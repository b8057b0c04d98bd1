"""runs/pipeline.sh end to end on a tiny model on CPU: every stage's command runs on the previous stage's output.

Checks what each stage must have produced (a loadable final model, a training summary whose loss was logged,
on-policy pairs in the preference format, an EAGLE head, an eval summary in both modes), not quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_runs_end_to_end(tmp_path):
    work = tmp_path / "pipe"
    # The script calls `tpro`, `accelerate` and `python`: take them from this interpreter's environment.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "THREADS": "2", "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(
        ["bash", str(ROOT / "runs" / "pipeline.sh"), str(work)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    for stage, steps in [("midtrain-emb", 6), ("midtrain", 6), ("sft", 8), ("rm", 8), ("dpo", 6)]:
        s = json.loads((work / stage / "summary.json").read_text())
        assert s["global_step"] == steps and len(s["losses"]) == steps, stage
        assert (work / stage / "final" / "model.safetensors").is_file(), stage
    # The swapped tokenizer travelled through every stage (the remapped vocabulary, not the base one).
    swapped = json.loads((work / "tok" / "tokenizer.json").read_text())["model"]["vocab"]
    final = json.loads((work / "dpo" / "final" / "tokenizer.json").read_text())["model"]["vocab"]
    assert final == swapped
    assert json.loads((work / "rm" / "summary.json").read_text())["eval_pairs"] == 3
    samples = [json.loads(x) for x in (work / "pairs.jsonl.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(len(r["samples"]) == 4 for r in samples)
    scored = [json.loads(x) for x in (work / "pairs.jsonl.scored.jsonl").read_text().splitlines()]
    assert [len(r["scores"]) for r in scored] == [4] * 6
    for line in (work / "pairs.jsonl").read_text().splitlines():
        p = json.loads(line)
        assert p["meta"]["chosen_score"] > p["meta"]["rejected_score"]
    assert (work / "eagle" / "head.safetensors").is_file()
    ev = json.loads((work / "eval" / "summary.json").read_text())
    assert set(ev["modes"]) == {"direct", "reasoning"} and ev["modes"]["direct"]["items"] == 2
