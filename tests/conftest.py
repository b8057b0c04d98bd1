"""Shared fixtures: tiny random-init Qwen2/Qwen3 checkpoints built in code, and the embedded default model.

Tests marked ``embedded`` load the real Qwen2.5-Coder-0.5B (converted once into the tpro cache, ~1 min the
first time). Set TPRO_SKIP_EMBEDDED=1 to skip them locally; CI runs them.
"""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TPRO_SKIP_EMBEDDED") == "1":
        skip = pytest.mark.skip(reason="TPRO_SKIP_EMBEDDED=1")
        for item in items:
            if "embedded" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    from tpro.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    from tpro.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), arch="qwen3", tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_qwen2_dir):
    from tpro.models import load_model

    return load_model(str(tiny_qwen2_dir), dtype="float32", progress=False)  # fp32 wherever "auto" would pick bf16


@pytest.fixture(scope="session")
def tiny_qwen3(tiny_qwen3_dir):
    from tpro.models import load_model

    return load_model(str(tiny_qwen3_dir), dtype="float32", progress=False)


@pytest.fixture(scope="session")
def embedded():
    from tpro.models import load_model

    return load_model("default", dtype="float32", progress=False)  # fp32: exact-equality tests need no bf16 rounding
