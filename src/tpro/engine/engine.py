"""The streaming generation engine: prompt in, text deltas out, telemetry at the end.

``Engine.generate`` is a generator; the CLI, the server, the evaluator and the benchmarks all consume it.
It owns the request-level logic (detokenising, stop strings, token budget, EOS, reasoning split,
telemetry) and delegates the token loop to a ``Decoder`` (vanilla here, EAGLE in ``tpro.eagle``), so a new
decoding strategy needs no change in any caller. Batch size is 1 by design: the target here is a CPU and
the latency of one user; the server queues requests in front of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tpro.engine.decoder import Decoder, VanillaDecoder
from tpro.engine.detok import IncrementalDetokenizer, StopMatcher
from tpro.engine.sampling import SamplingParams
from tpro.engine.telemetry import Telemetry
from tpro.models.chat import ChatPrompt, build_prompt
from tpro.models.reasoning import split_reasoning


@dataclass
class Delta:
    text: str  # newly decoded text (may be empty when only ids arrived)
    token_ids: list[int]


@dataclass
class Done:
    text: str  # the full generated text (stop string excluded)
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or stop string) | "length" | "cancelled"
    reasoning: str
    answer: str
    telemetry: Telemetry
    prompt: ChatPrompt | None = None
    extra: dict = field(default_factory=dict)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids from the generation config (may be a list) and the tokenizer."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for src in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(int(i) for i in src)
    return ids


class Engine:
    def __init__(self, model: Any, tokenizer: Any, decoder: Decoder | None = None, name: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.decoder = decoder or VanillaDecoder()
        self.name = name
        self.eos = eos_ids(model, tokenizer)
        # One request at a time touches the model (batch 1); callers on several threads queue here.
        self.lock = threading.Lock()

    @classmethod
    def from_loaded(cls, lm, decoder: Decoder | None = None) -> Engine:
        return cls(lm.model, lm.tokenizer, decoder=decoder, name=lm.name)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 32768))

    def prompt(self, messages: str | list[dict], mode: str = "direct") -> ChatPrompt:
        return build_prompt(self.tokenizer, messages, mode)

    def generate(
        self,
        prompt: ChatPrompt | str | list[dict],
        params: SamplingParams | None = None,
        *,
        mode: str = "direct",
        decoder: Decoder | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta | Done]:
        """Stream ``Delta``s, then one ``Done``. ``prompt``: a built ``ChatPrompt`` or chat messages.

        ``cancel``: set it from another thread to stop between steps (a disconnected client, a timeout).
        """
        params = params or SamplingParams()
        if not isinstance(prompt, ChatPrompt):
            prompt = self.prompt(prompt, mode)
        n_prompt = len(prompt.input_ids)
        if n_prompt + 1 > self.context_length:
            raise ValueError(
                f"the prompt has {n_prompt} tokens, over the model's context of {self.context_length}; shorten it"
            )
        budget = min(params.max_new_tokens, self.context_length - n_prompt)
        decoder = decoder or self.decoder
        device = self.model.device
        input_ids = torch.tensor([prompt.input_ids], device=device)
        tel = Telemetry(prompt_tokens=n_prompt, decoder=decoder.name)
        detok, stops = IncrementalDetokenizer(self.tokenizer), StopMatcher(params.stop)
        out_ids: list[int] = []
        finish, stopped = "length", False
        with self.lock:
            t0 = time.perf_counter()
            steps = decoder.decode(self.model, input_ids, params, params.generator(device))
            try:
                for step in steps:
                    tel.steps += 1
                    tel.draft_proposed += step.proposed
                    tel.draft_accepted += step.accepted
                    tel.draft_s += step.draft_s
                    tel.verify_s += step.verify_s
                    new = step.tokens[: budget - len(out_ids)]
                    hit_eos = next((i for i, t in enumerate(new) if t in self.eos), None)
                    if hit_eos is not None:
                        new, finish = new[:hit_eos], "stop"
                    if not tel.ttft_s:
                        tel.ttft_s = time.perf_counter() - t0
                    out_ids.extend(new)
                    text, stopped = stops.push(detok.push(new))
                    if stopped:
                        finish = "stop"
                    if text or new:
                        yield Delta(text, new)
                    if stopped or hit_eos is not None or len(out_ids) >= budget:
                        break
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
            finally:
                steps.close()
            tel.total_s = time.perf_counter() - t0
        if not stopped:  # release held-back bytes and any text held for a stop string that never came
            tail, stopped = stops.push(detok.flush())
            tail += "" if stopped else stops.flush()
            if tail:
                yield Delta(tail, [])
        text = stops.text
        tel.generated_tokens = len(out_ids)
        tel.finish(text)
        reasoning, answer = split_reasoning(text, prompt.started_in_think)
        yield Done(text, out_ids, finish, reasoning, answer, tel, prompt)

    def complete(self, prompt, params: SamplingParams | None = None, **kw) -> Done:
        """Non-streaming helper: run ``generate`` to the end and return its ``Done``."""
        done = None
        for ev in self.generate(prompt, params, **kw):
            if isinstance(ev, Done):
                done = ev
        assert done is not None
        return done
