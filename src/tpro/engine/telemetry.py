"""Per-request telemetry: the numbers the CLI prints, the server returns and the playground shows."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

_WORD = re.compile(r"\w+", re.UNICODE)


def count_words(text: str) -> int:
    """Words are maximal runs of Unicode letters/digits/underscore (``\\w+``); punctuation is not a word."""
    return len(_WORD.findall(text))


@dataclass
class Telemetry:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    ttft_s: float = 0.0  # request start -> first token decoded (prefill + first step)
    total_s: float = 0.0  # request start -> last token
    tokens_per_s: float = 0.0  # generated tokens / total_s
    decode_tokens_per_s: float = 0.0  # tokens after the first / time after the first (streaming speed)
    words_per_s: float = 0.0  # words of the decoded text / total_s: tokenizer gains show up here
    chars_per_s: float = 0.0
    steps: int = 0  # decoder steps (target forwards after prefill, for speculative decoders: verify steps)
    draft_proposed: int = 0
    draft_accepted: int = 0
    acceptance_length: float = 0.0  # accepted draft tokens per step + 1 (1.0 for the vanilla decoder)
    draft_s: float = 0.0
    verify_s: float = 0.0
    decoder: str = "vanilla"
    queue_s: float = 0.0  # waiting for a place in the batch before the clock above started (batched engine)
    batch_size: float = 1.0  # sequences sharing each forward, averaged over this request's steps
    # Seconds in the target forwards over the prompt (every prefill chunk) plus the first token's lm_head row and
    # sampling: the decoder's ``verify_s`` up to its first token. Part of ttft_s, which adds what runs between the
    # forwards (Python, the caller's work between steps); EAGLE's head reads the prompt in its first draft, after
    # (draft_s). In a batch: the forwards of the prompt's prefill group (other prompts' rows included), which each
    # member reports; a prompt not fully prefilled (cancelled) reports the chunks done.
    prefill_s: float = 0.0
    prefill_tokens_per_s: float = 0.0  # prompt_tokens / prefill_s
    kv_tokens: int = 0  # tokens in the sequence's KV cache at the end: prompt + generated - 1 (EOS counted)
    kv_mib: float = 0.0  # kv_tokens x the model's KV bytes per token, MiB (a batch row's padding not included)
    kv_mib_per_1k_tokens: float = 0.0  # the model's KV cache per 1000 tokens, MiB (layers x kv heads x head dim x 2)

    def finish(self, text: str, kv_per_token: int = 0) -> Telemetry:
        """Derive the rates from the counts and times; ``kv_per_token``: the model's KV bytes per token."""
        t = max(self.total_s, 1e-9)
        self.tokens_per_s = self.generated_tokens / t
        after = self.total_s - self.ttft_s
        self.decode_tokens_per_s = (
            (self.generated_tokens - 1) / after if after > 0 and self.generated_tokens > 1 else 0.0
        )
        self.words_per_s = count_words(text) / t
        self.chars_per_s = len(text) / t
        self.acceptance_length = (self.draft_accepted + self.steps) / self.steps if self.steps else 0.0
        self.prefill_tokens_per_s = self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0
        self.kv_mib = self.kv_tokens * kv_per_token / 2**20
        self.kv_mib_per_1k_tokens = 1000 * kv_per_token / 2**20
        return self

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
