"""Fixtures: a tiny tokenizer adapted once per session with a small swap and small corpora (seconds), and a small
byte-level BPE base whose vocabulary carries Kazakh, Ukrainian and Bashkir letters."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_CORPUS = ["wordfreq:ru:4000", "wordfreq:uk:2000"]
SMALL_KEEP = ["wordfreq:en:4000@2", "math@0.5"]

# Russian with Kazakh, Ukrainian and Bashkir sentences: the base below learns tokens such as 'ә', ' қазақ', 'і'.
OTHER_CYRILLIC_SAMPLE = """Мама мыла раму. Папа читает газету. Дети играют во дворе после школы.
Сегодня в городе прошла большая конференция, посвящённая развитию науки и образования.
Қазақстан Республикасы. Әке мен бала қалаға барды. Өзен жағасында үй тұр. Біз қазақ тілінде сөйлейміз.
Україна і Білорусь. Їжак їсть яблуко. Європа має багато країн. Ґанок біля хати.
Башҡортостан Республикаһы. Беҙҙең ауылда йәй матур. Һыу эсәм.
"""


def make_bpe_base(directory: Path, sample: str = OTHER_CYRILLIC_SAMPLE, vocab_size: int = 400) -> Path:
    """A byte-level BPE tokenizer.json (GPT-2 style pipeline) trained on ``sample``; returns the directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample.splitlines() * 4, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(scope="session")
def other_cyrillic_base(tmp_path_factory) -> Path:
    return make_bpe_base(tmp_path_factory.mktemp("kk-base"))


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
