"""The streaming generation engine: prompt in, text deltas out, telemetry at the end.

``Engine.generate`` is a generator; the CLI, the server, the evaluator and the benchmarks all consume it.
The request-level logic (detokenising, stop strings, token budget, EOS, reasoning split, telemetry) lives in one
object, ``Request``, fed one decoder ``Step`` at a time; the token loop is a ``Decoder``'s (vanilla here, EAGLE in
``tpro.eagle``), so a new decoding strategy needs no change in any caller. ``generate`` runs one sequence at a
time (the latency of one user on a CPU); ``tpro.engine.batch.BatchEngine`` feeds the same ``Request`` objects
from batched forwards, for many users at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tpro.engine.decoder import Decoder, Step, VanillaDecoder, kv_bytes_per_token
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
    eos_token_id: int | None = None  # the end-of-sequence token that ended it (not in ``token_ids``), if one did


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


class Request:
    """One request from its first step to its ``Done``: budget, EOS, stop strings, detokenising, telemetry.

    Whoever runs the decoding (``Engine.generate`` for one sequence, ``BatchEngine`` for many) calls ``start()``,
    then ``push(step)`` per decoder step while ``not ended``, checking ``cancelled()`` between steps, and finally
    ``close()`` for the tail text and the ``Done``. It knows nothing of models or caches but the KV bytes one token
    takes (``kv_per_token``, for telemetry).
    """

    def __init__(
        self,
        prompt: ChatPrompt,
        params: SamplingParams,
        tokenizer: Any,
        eos: set[int],
        budget: int,
        decoder: str,
        cancel: threading.Event | None = None,
        kv_per_token: int = 0,
    ):
        self.prompt, self.params, self.eos, self.budget = prompt, params, eos, budget
        self.kv_per_token = kv_per_token
        self.cancel = cancel if cancel is not None else threading.Event()
        self.tel = Telemetry(prompt_tokens=len(prompt.input_ids), decoder=decoder)
        self.detok, self.stops = IncrementalDetokenizer(tokenizer), StopMatcher(params.stop)
        self.out_ids: list[int] = []
        self.finish, self.stopped, self.ended = "length", False, False
        self.eos_hit: int | None = None
        self.t0: float | None = None
        self.batch_sum = 0  # sequences in each of this request's forwards, summed (telemetry's mean batch)
        self.prefilled = 0  # prompt tokens in the cache (progress steps; the whole prompt once a token came)
        self.produced = 0  # tokens the decoder produced, EOS and any past the budget included

    def start(self) -> None:
        """The clock starts (telemetry's ttft and total are measured from here)."""
        self.t0 = time.perf_counter()

    def push(self, step: Step, batch: int = 1) -> Delta | None:
        """Take one decoder step; -> the text it released (None when nothing did). ``batch``: sequences that
        shared the forward (telemetry). Sets ``ended`` on EOS, a stop string or the budget. A token-less step is
        prefill progress: it records ``prefilled`` and its forward time, and counts as no step."""
        tel = self.tel
        tel.verify_s += step.verify_s
        if not step.tokens:
            self.prefilled = max(self.prefilled, step.prefilled)
            tel.prefill_s += step.verify_s
            return None
        if not tel.steps:  # the first token: its step's forward finished the prompt
            self.prefilled = len(self.prompt.input_ids)
            tel.prefill_s += step.verify_s
            tel.ttft_s = time.perf_counter() - self.t0
        tel.steps += 1
        tel.draft_proposed += step.proposed
        tel.draft_accepted += step.accepted
        tel.draft_s += step.draft_s
        self.batch_sum += batch
        self.produced += len(step.tokens)
        new = step.tokens[: self.budget - len(self.out_ids)]
        hit_eos = next((i for i, t in enumerate(new) if t in self.eos), None)
        if hit_eos is not None:
            self.eos_hit = new[hit_eos]
            new, self.finish = new[:hit_eos], "stop"
        self.out_ids.extend(new)
        text, self.stopped = self.stops.push(self.detok.push(new))
        if self.stopped:
            self.finish = "stop"
        self.ended = self.stopped or hit_eos is not None or len(self.out_ids) >= self.budget
        return Delta(text, new) if text or new else None

    def cancelled(self) -> bool:
        """True (and the request ends as "cancelled") once ``cancel`` is set and the request has not ended."""
        if not self.ended and self.cancel.is_set():
            self.finish, self.ended = "cancelled", True
        return self.finish == "cancelled"

    def close(self) -> Iterator[Delta | Done]:
        """The held-back tail (if any) as a ``Delta``, then the ``Done``."""
        self.ended = True
        if self.t0 is not None:
            self.tel.total_s = time.perf_counter() - self.t0
        if not self.stopped:  # release held-back bytes and any text held for a stop string that never came
            tail, stopped = self.stops.push(self.detok.flush())
            tail += "" if stopped else self.stops.flush()
            if tail:
                yield Delta(tail, [])
        text, tel = self.stops.text, self.tel
        tel.generated_tokens = len(self.out_ids)
        tel.batch_size = self.batch_sum / tel.steps if tel.steps else 0.0
        # the cache holds the prompt and every produced token but the last (sampled, never fed)
        tel.kv_tokens = self.prefilled + max(0, self.produced - 1)
        tel.finish(text, self.kv_per_token)
        reasoning, answer = split_reasoning(text, self.prompt.started_in_think)
        yield Done(text, self.out_ids, self.finish, reasoning, answer, tel, self.prompt, eos_token_id=self.eos_hit)


class Engine:
    def __init__(self, model: Any, tokenizer: Any, decoder: Decoder | None = None, name: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.decoder = decoder or VanillaDecoder()
        self.name = name
        self.eos = eos_ids(model, tokenizer)
        self.kv_per_token = kv_bytes_per_token(model)
        # One forward at a time touches the model: ``generate`` holds it for a whole request, a ``BatchEngine``
        # for each of its steps; callers on several threads queue here.
        self.lock = threading.Lock()

    @classmethod
    def from_loaded(cls, lm, decoder: Decoder | None = None) -> Engine:
        return cls(lm.model, lm.tokenizer, decoder=decoder, name=lm.name)

    @property
    def context_length(self) -> int:
        """Tokens the model accepts (prompt + answer), RoPE scaling included (``tpro.models.rope``)."""
        from tpro.models.rope import context_length

        return context_length(self.model.config)

    def prompt(self, messages: str | list[dict], mode: str = "direct") -> ChatPrompt:
        return build_prompt(self.tokenizer, messages, mode)

    def request(
        self,
        prompt: ChatPrompt | str | list[dict],
        params: SamplingParams | None = None,
        *,
        mode: str = "direct",
        decoder: str = "vanilla",
        cancel: threading.Event | None = None,
    ) -> Request:
        """A ``Request`` for ``prompt`` (a built ``ChatPrompt`` or chat messages), its budget capped by the context.
        Raises ``ValueError`` for a prompt that leaves no room in the context."""
        params = params or SamplingParams()
        if not isinstance(prompt, ChatPrompt):
            prompt = self.prompt(prompt, mode)
        n_prompt = len(prompt.input_ids)
        if n_prompt + 1 > self.context_length:
            raise ValueError(
                f"the prompt has {n_prompt} tokens, over the model's context of {self.context_length}; shorten it"
            )
        budget = min(params.max_new_tokens, self.context_length - n_prompt)
        return Request(prompt, params, self.tokenizer, self.eos, budget, decoder, cancel, self.kv_per_token)

    def generate(
        self,
        prompt: ChatPrompt | str | list[dict],
        params: SamplingParams | None = None,
        *,
        mode: str = "direct",
        decoder: Decoder | None = None,
        cancel: threading.Event | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> Iterator[Delta | Done]:
        """Stream ``Delta``s, then one ``Done``. ``prompt``: a built ``ChatPrompt`` or chat messages.

        ``cancel``: set it from another thread to stop between steps (a disconnected client, a timeout); a long
        prompt is prefilled in chunks, and a cancel stops between them too. ``on_prefill(done, total)``: called
        with the prompt tokens prefilled so far after each chunk, increasing, the last call (done == total) just
        before the first token's ``Delta``.
        """
        decoder = decoder or self.decoder
        req = self.request(prompt, params, mode=mode, decoder=decoder.name, cancel=cancel)
        device = self.model.device
        input_ids = torch.tensor([req.prompt.input_ids], device=device)
        with self.lock:
            req.start()
            steps = decoder.decode(self.model, input_ids, req.params, req.params.generator(device))
            try:
                for step in steps:
                    seen = req.prefilled
                    delta = req.push(step)
                    if on_prefill is not None and req.prefilled > seen:
                        on_prefill(req.prefilled, len(req.prompt.input_ids))
                    if delta is not None:
                        yield delta
                    if req.ended or req.cancelled():
                        break
            finally:
                steps.close()
        yield from req.close()

    def complete(self, prompt, params: SamplingParams | None = None, **kw) -> Done:
        """Non-streaming helper: run ``generate`` to the end and return its ``Done``."""
        done = None
        for ev in self.generate(prompt, params, **kw):
            if isinstance(ev, Done):
                done = ev
        assert done is not None
        return done
