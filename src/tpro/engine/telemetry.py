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

    def finish(self, text: str) -> Telemetry:
        t = max(self.total_s, 1e-9)
        self.tokens_per_s = self.generated_tokens / t
        after = self.total_s - self.ttft_s
        self.decode_tokens_per_s = (
            (self.generated_tokens - 1) / after if after > 0 and self.generated_tokens > 1 else 0.0
        )
        self.words_per_s = count_words(text) / t
        self.chars_per_s = len(text) / t
        self.acceptance_length = (self.draft_accepted + self.steps) / self.steps if self.steps else 0.0
        return self

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
