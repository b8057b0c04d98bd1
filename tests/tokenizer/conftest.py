"""Fixtures: a tiny tokenizer adapted once per session with a small swap and small corpora (seconds)."""

from __future__ import annotations

import pytest

SMALL_CORPUS = ["wordfreq:ru:4000", "wordfreq:uk:2000"]
SMALL_KEEP = ["wordfreq:en:4000@2", "math@0.5"]


@pytest.fixture(scope="session")
def adapted_tiny(tiny_qwen2_dir, tmp_path_factory):
    from tpro.tokenizer.adapt import AdaptConfig, adapt

    out = tmp_path_factory.mktemp("adapted") / "tok"
    report = adapt(
        AdaptConfig(
            base=str(tiny_qwen2_dir),
            out=str(out),
            swap=40,
            corpus=SMALL_CORPUS,
            keep_corpus=SMALL_KEEP,
            trainer_words=100_000,
        ),
        show_progress=False,
    )
    return out, report


@pytest.fixture(scope="session")
def adapted_tokenizer(adapted_tiny):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(adapted_tiny[0] / "tokenizer.json"))
