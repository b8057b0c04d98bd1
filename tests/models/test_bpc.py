import math

import pytest
import torch

from tpro.models.bpc import _windows, bits_per_char, context_token_id

TRAIN = "Мама мыла раму. Папа читает газету."
OTHER = "The quick brown fox jumps over the lazy dog."


def _manual_bits(model, tok, text: str) -> float:
    """Hand-computed: one forward per prefix, -log2 p(token | ctx + earlier tokens), summed."""
    ctx = context_token_id(tok)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bits = 0.0
    for t, target in enumerate(ids):
        prefix = torch.tensor([[ctx] + ids[:t]])
        with torch.no_grad():
            logits = model(input_ids=prefix).logits[0, -1].double()
        bits -= float(torch.log_softmax(logits, -1)[target]) / math.log(2)
    return bits


def test_one_text_equals_hand_computed(tiny_qwen2):
    model, tok = tiny_qwen2.model, tiny_qwen2.tokenizer
    got = bits_per_char(model, tok, [TRAIN])
    assert got == pytest.approx(_manual_bits(model, tok, TRAIN) / len(TRAIN), rel=1e-4)


def test_batched_equals_per_text_and_windows_cover_every_token(tiny_qwen2):
    model, tok = tiny_qwen2.model, tiny_qwen2.tokenizer
    texts = [TRAIN, OTHER, "да"]
    batched = bits_per_char(model, tok, texts)
    per_text = sum(bits_per_char(model, tok, [t]) * len(t) for t in texts) / sum(map(len, texts))
    assert batched == pytest.approx(per_text, rel=1e-4)
    # Windows overlap by one token so that every token is a target exactly once.
    ids = list(range(100, 117))
    for L in (2, 3, 5, 18, 40):
        ws = _windows(ids, 7, L)
        assert all(len(w) <= L for w in ws)
        assert [t for w in ws for t in w[1:]] == ids
    # Short windows still score everything: finite and not far from the full-context figure.
    short = bits_per_char(model, tok, [TRAIN], max_length=4)
    assert math.isfinite(short) and short > 0


def test_lower_on_text_the_model_was_overfit_to(tiny_qwen2_dir):
    from tpro.models import load_model

    lm = load_model(str(tiny_qwen2_dir), progress=False)
    model, tok = lm.model, lm.tokenizer
    before_train = bits_per_char(model, tok, [TRAIN])
    ids = torch.tensor([[context_token_id(tok)] + tok(TRAIN, add_special_tokens=False)["input_ids"]])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after_train, after_other = bits_per_char(model, tok, [TRAIN]), bits_per_char(model, tok, [OTHER])
    assert after_train < 0.5 * before_train
    assert after_train < after_other


def test_rejects_empty_input(tiny_qwen2):
    with pytest.raises(ValueError, match="non-empty"):
        bits_per_char(tiny_qwen2.model, tiny_qwen2.tokenizer, ["", ""])
