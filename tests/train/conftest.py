"""Fixtures for the training tests: tiny data files (both chat modes, pairs, plain text) in a temp dir."""

from __future__ import annotations

import pytest

from tests.train.data import pair_rows, sft_rows, text_lines, write_jsonl


@pytest.fixture(scope="session")
def train_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-data")
    (d / "text.txt").write_text(text_lines(), encoding="utf-8")
    return {
        "sft": write_jsonl(d / "sft.jsonl", sft_rows()),
        "pairs": write_jsonl(d / "pairs.jsonl", pair_rows()),
        "text": d / "text.txt",
    }


def tensors(model_dir):
    """All weights of a saved checkpoint (safetensors), by name."""
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))
