"""Fixtures for the data-curation tests: a tiny random-init one-label reward model built in code."""

from __future__ import annotations

import pytest


def make_tiny_reward_model(out_dir, num_labels: int = 1, seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from tpro.models.tiny import train_tiny_tokenizer

    tok = train_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_labels=num_labels,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForSequenceClassification(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory):
    return make_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"))


WORDS = (
    "дом лес река город поле море небо солнце ветер дождь снег гора озеро улица школа книга стол окно "
    "дверь кошка собака птица рыба дерево цветок трава камень огонь вода земля время год день ночь утро "
    "вечер зима весна лето осень друг брат сестра мать отец сын дочь работа жизнь слово мысль дело"
).split()


def random_docs(n: int, words: int = 20, seed: int = 0) -> list[str]:
    """Distinct random-word documents (no near-duplicates among them by construction at this vocabulary)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f" номер {i}." for i in range(n)]
