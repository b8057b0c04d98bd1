"""Resume after a kill: a real ``tpro train sft`` subprocess is SIGKILLed after it wrote a checkpoint; the same
command then continues from that checkpoint's step (it does not start over) and finishes the run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tpro.train.common import TrainConfig, resume_checkpoint


def _cmd(model, data, out, max_steps):
    return [
        sys.executable,
        "-m",
        "tpro.cli",
        "train",
        "sft",
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--max_steps",
        str(max_steps),
        "--save_steps",
        "3",
        "--save_total_limit",
        "3",
        "--learning_rate",
        "1e-3",
        "--per_device_train_batch_size",
        "2",
        "--threads",
        "1",
        "--logging_steps",
        "1",
        "--lr_scheduler_type",
        "constant",
    ]


@pytest.mark.slow
def test_kill_then_resume(tiny_qwen2_dir, train_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # max_steps is far beyond what runs before the kill, so the process is surely mid-training when killed.
    proc = subprocess.Popen(
        _cmd(tiny_qwen2_dir, train_data["sft"], out, 100_000),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )

    def complete_checkpoint_at_6_or_later():
        # any step >= 6: on an idle machine checkpoint-6 itself may already be rotated away (save_total_limit)
        # between two polls
        return any(int(p.parent.name.rsplit("-", 1)[1]) >= 6 for p in out.glob("checkpoint-*/trainer_state.json"))

    try:
        deadline = time.time() + 240
        while not complete_checkpoint_at_6_or_later():
            assert proc.poll() is None, "training exited before writing a checkpoint"
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "final").exists()
    ckpt = resume_checkpoint(TrainConfig(data=str(train_data["sft"]), out=str(out)))
    step = int(ckpt.rsplit("-", 1)[1])
    assert step >= 6
    # The same command again (with a reachable max_steps): it must pick the checkpoint up and run only the rest.
    target = step + 4
    res = subprocess.run(
        _cmd(tiny_qwen2_dir, train_data["sft"], out, target), capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == ckpt and summary["global_step"] == target
    # Trainer prints one dict with 'loss' per optimizer step it actually ran: exactly target - step of them.
    assert len(re.findall(r"\{'loss':", res.stdout)) == target - step, res.stdout[-2000:]
    steps_logged = [s for s, _ in summary["losses"]]
    assert steps_logged == list(range(1, target + 1))  # history restored from the checkpoint, then continued


def test_incomplete_checkpoint_is_skipped(tmp_path, capsys):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-9").mkdir()  # killed mid-save: no trainer_state.json
    assert resume_checkpoint(TrainConfig(data="d", out=str(tmp_path))) == str(tmp_path / "checkpoint-3")
    assert "checkpoint-9 is incomplete" in capsys.readouterr().err
    assert resume_checkpoint(TrainConfig(data="d", out=str(tmp_path), resume=False)) is None
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{trunc")
    with pytest.raises(ValueError, match="corrupt trainer_state.json"):
        resume_checkpoint(TrainConfig(data="d", out=str(tmp_path)))
