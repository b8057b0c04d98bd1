"""Bits per character: a language-model quality figure that does not depend on the tokenizer.

Perplexity per token rewards a tokenizer that cuts text into many easy pieces; bits per character does not: it
is the total negative log-likelihood (in bits) the model assigns to a text's tokens, divided by the text's
length in characters (Unicode code points). Two tokenizers of the same text give comparable figures, which is
what a vocabulary swap needs (the T-pro 2.0 tokenizer is judged this way before and after the swap).

Every token is scored, the first one included: each text is preceded by one context token (the tokenizer's BOS,
else ``<|endoftext|>``, else EOS) that is not itself scored. Texts longer than ``max_length`` tokens are scored
in consecutive windows; a window after the first starts from the previous window's last token, so each token
is still predicted exactly once (with a shorter context at the seam).

``tpro model bpc FILE`` scores a text file from the command line with the shared model flags, so a model can be
compared with and without ``--rope-scaling``.

This module knows nothing about how the model or tokenizer were made; it does no generation.
"""

from __future__ import annotations

import math


def context_token_id(tokenizer) -> int:
    """The token that starts every scored sequence: BOS, else ``<|endoftext|>``, else EOS."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if eot is not None and eot != tokenizer.unk_token_id:
        return eot
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise ValueError("tokenizer has no BOS, <|endoftext|> or EOS token to start a sequence with")


def _windows(ids: list[int], ctx: int, max_length: int) -> list[list[int]]:
    """Split ``[ctx] + ids`` into windows of at most ``max_length`` tokens that overlap by one token, so the
    targets (window[1:]) of all windows together are exactly ``ids``."""
    seq = [ctx] + ids
    step = max_length - 1
    return [seq[i : i + max_length] for i in range(0, len(seq) - 1, step)]


def sequence_nll_bits(model, windows: list[list[int]], batch_tokens: int = 4096) -> float:
    """Total next-token NLL in bits over the targets of ``windows`` (each window: context + targets)."""
    import torch

    device = next(model.parameters()).device
    total = 0.0
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # similar lengths -> little padding
    i = 0
    while i < len(order):
        width = len(windows[order[i]])
        batch = [order[i]]
        # Grow the batch while padded size stays under the token budget (logits are B*T*V floats).
        while i + len(batch) < len(order):
            nxt = len(windows[order[i + len(batch)]])
            if (len(batch) + 1) * max(width, nxt) > batch_tokens:
                break
            width = max(width, nxt)
            batch.append(order[i + len(batch)])
        i += len(batch)
        input_ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, w in enumerate(batch):
            input_ids[row, : len(windows[w])] = torch.tensor(windows[w])
            mask[row, : len(windows[w])] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits  # [B, T, V]
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
        target = input_ids[:, 1:]  # [B, T-1]
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [B, T-1] nats
        total += float((nll * mask[:, 1:]).sum()) / math.log(2)
    return total


def bits_per_char(model, tokenizer, texts: list[str], max_length: int = 1024, batch_tokens: int = 4096) -> float:
    """Total NLL in bits of ``texts`` (every token, the first included) / total characters.

    ``max_length``: longest window the model sees (tokens, context token included).
    ``batch_tokens``: padded tokens per forward; lower it to save memory (logits take batch_tokens x vocab floats).
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2 (one context token plus one scored token)")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("bits_per_char needs at least one non-empty text")
    ctx = context_token_id(tokenizer)
    windows: list[list[int]] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows.extend(_windows(ids, ctx, max_length))
    bits = sequence_nll_bits(model, windows, batch_tokens=max(batch_tokens, max_length))
    return bits / sum(len(t) for t in texts)
