"""Training data for a draft head: token ids, the target's features and a loss mask, cached as safetensors shards.

Two sources, both ending in the same shard format:
  (a) self-distillation: the target answers prompts (batched ``model.generate``; each prompt in the mode the
      recipe assigns, direct or reasoning) and we keep what *it* says, since the draft must predict the target,
      not a reference text;
  (b) teacher-forced text: an existing reference answer (ru-alpaca outputs, GSM8K solutions) as the assistant turn.
Then one teacher-forced target forward per sequence gives the features: the final hidden state after the model's
norm (what the ``lm_head`` reads; EAGLE-1/2 and SGLang's ``LlamaForCausalLMEagle`` regress exactly this).

A shard ``shard-XXXXX.safetensors`` holds ``input_ids`` [N, S] int32, ``hidden`` [N, S, H] bf16 and ``loss_mask``
[N, S] bool (1 on answer tokens), right-padded (``lengths`` [N]). Shards are written atomically and a restarted run
skips the ones that exist, so a killed job resumes where it stopped. This module knows nothing about the head.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tpro.config import like, opt
from tpro.eagle.options import target_model
from tpro.io import atomic_path, read_jsonl, write_json
from tpro.options import DTYPES, MODE_HELP, ModelOptions, SamplingOptions, expand_modes

PROMPTS_DIR = Path(__file__).parent / "prompts"
DataMode = Literal["direct", "reasoning", "alternate", "both"]


@dataclass(kw_only=True)
class DataConfig(ModelOptions):
    """``tpro eagle build-data``: which target answers which prompts, and how the shards are cut."""

    model: str = target_model("Target model whose answers and features are cached")
    out: str = opt(help="Shard directory (created; rerun to resume)", short="-o")
    prompts: str | None = opt(
        None, "Prompt JSONL: 'prompt' (and optional 'reference', 'domain') per row (default: the shipped train prompts)"
    )
    source: Literal["generate", "reference"] = opt(
        "generate", "generate: self-distillation (the target answers); reference: teacher-forced reference answers"
    )
    mode: DataMode = opt(
        "alternate",
        f"{MODE_HELP}; alternate: prompt i in reasoning mode when i is odd; both: every prompt in each mode",
        aliases=("--modes",),
    )
    batch_size: int = opt(
        16, "Sequences per shard, generated together (continuous batching: tpro.engine.BatchEngine)", min=1
    )
    # the recipe's budget (RECIPE.md of the shipped head): 256 new tokens, not the shared 512
    max_new_tokens: int = like(SamplingOptions, "max_new_tokens", 256)
    max_length: int = opt(768, "Prompt + answer tokens kept per sequence", min=8)
    temperature: float = like(SamplingOptions, "temperature")  # 0: the greedy answers T=0 decoding will meet
    # the recipe's dtype on every machine: features are stored in bf16 and the verifier runs in bf16
    dtype: str = like(ModelOptions, "dtype", "bfloat16", choices=DTYPES)
    limit: int = opt(0, "First N prompts only (0 = all)", min=0)
    seed: int = opt(0, "Seed of the prompt shuffle and of sampling")


def read_prompts(path: str | Path, limit: int = 0) -> list[dict]:
    """Prompt rows of a JSONL file (the first ``limit`` when > 0); each needs a non-empty 'prompt' string."""
    rows = read_jsonl(path, limit=limit or None)
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ValueError(f'{path}: row {n} has no \'prompt\' string; each line needs {{"prompt": "..."}}')
    return rows


def jobs(rows: list[dict], mode: str) -> list[tuple[dict, str]]:
    """(row, chat mode) pairs in prompt order for a ``DataConfig.mode``."""
    if mode == "alternate":
        return [(r, "reasoning" if i % 2 else "direct") for i, r in enumerate(rows)]
    return [(r, m) for r in rows for m in expand_modes(mode)]


def save_shard(path: Path, seqs: list[tuple[list[int], list[bool]]], hidden: list[torch.Tensor]) -> None:
    """seqs: (ids [S_i], mask [S_i]); hidden: [S_i, H] each -> one right-padded shard, written atomically."""
    from safetensors.torch import save_file

    S, H = max(len(ids) for ids, _ in seqs), hidden[0].shape[-1]
    ids_t = torch.zeros(len(seqs), S, dtype=torch.int32)
    mask_t = torch.zeros(len(seqs), S, dtype=torch.bool)
    hid_t = torch.zeros(len(seqs), S, H, dtype=torch.bfloat16)
    for i, ((ids, mask), h) in enumerate(zip(seqs, hidden)):
        ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
        mask_t[i, : len(ids)] = torch.tensor(mask)
        hid_t[i, : len(ids)] = h.to(torch.bfloat16)
    lengths = torch.tensor([len(ids) for ids, _ in seqs], dtype=torch.int32)
    with atomic_path(path) as tmp:
        save_file({"input_ids": ids_t, "loss_mask": mask_t, "hidden": hid_t, "lengths": lengths}, str(tmp))


def list_shards(data_dir: str | Path) -> list[Path]:
    return sorted(Path(data_dir).glob("shard-*.safetensors"))


def iter_sequences(data_dirs: list[str | Path]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (input_ids [S] long, hidden [S, H] bf16, loss_mask [S] bool) for every sequence of every shard."""
    from safetensors.torch import load_file

    for d in data_dirs:
        shards = list_shards(d)
        if not shards:
            raise FileNotFoundError(f"no shard-*.safetensors in {d}; make them with `tpro eagle build-data --out {d}`")
        for p in shards:
            try:
                t = load_file(str(p))
            except Exception as e:  # safetensors raises its own error types for truncated files
                raise ValueError(
                    f"{p} is not a readable safetensors shard ({e}); delete it and rerun build-data"
                ) from e
            for i, n in enumerate(t["lengths"].tolist()):
                yield t["input_ids"][i, :n].long(), t["hidden"][i, :n], t["loss_mask"][i, :n]


@torch.inference_mode()
def target_features(model, seqs: list[list[int]]) -> list[torch.Tensor]:
    """Teacher-forced final hidden states (after the model's norm): seqs of S_i ids -> [S_i, H] each."""
    S = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), S, dtype=torch.long)
    att = torch.zeros(len(seqs), S, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
    # get_decoder(): the base model without the lm_head; its last_hidden_state is post-norm
    out = model.get_decoder()(input_ids=ids.to(model.device), attention_mask=att.to(model.device))
    return [out.last_hidden_state[i, : len(s)].cpu() for i, s in enumerate(seqs)]


def generate_answers(batch, prompts: list, cfg: DataConfig, first: int = 0) -> list[list[int]]:
    """The target's answers through a ``tpro.engine.BatchEngine`` (continuous batching: a finished answer leaves
    the batch at once instead of padding until the longest is done): ``ChatPrompt``s -> answer ids, EOS included
    when the answer ended on it. Sampled answers (T > 0) are seeded per prompt (``sample_seed(seed, first + i, 0)``),
    so a resumed run draws the same shard again."""
    from tpro.engine import SamplingParams
    from tpro.engine.samples import sample_seed

    params = [
        SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=sample_seed(cfg.seed, first + i, 0) if cfg.temperature > 0 else None,
        )
        for i in range(len(prompts))
    ]
    dones = batch.complete_many(prompts, params)
    # the end-of-turn token the target emitted belongs to its answer (the draft learns to predict it too)
    return [d.token_ids + ([d.eos_token_id] if d.eos_token_id is not None else []) for d in dones]


def build_data(cfg: DataConfig, log=print) -> Path:
    """Write shards for ``cfg``; resumable (existing shards are skipped). Returns the shard directory."""

    torch.manual_seed(cfg.seed)
    rows = read_prompts(cfg.prompts or PROMPTS_DIR / "train.jsonl", cfg.limit)
    if cfg.source == "reference":
        rows = [r for r in rows if (r.get("reference") or "").strip()]
    todo = jobs(rows, cfg.mode)
    # shuffled (seeded, so a resumed run rebuilds the same batches): early shards then cover every domain
    random.Random(cfg.seed).shuffle(todo)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "data_config.json", cfg.to_dict())
    lm = cfg.load_model(progress=False)
    engine = None
    if cfg.source == "generate":
        from tpro.engine import BatchEngine, Engine

        engine = BatchEngine(Engine.from_loaded(lm), max_batch=cfg.batch_size)
    try:
        _write_shards(cfg, lm, todo, out, engine, log)
    finally:
        if engine is not None:
            engine.close()
    return out


def _write_shards(cfg: DataConfig, lm, todo: list, out: Path, engine, log) -> None:
    from tpro.models import build_prompt

    n_batches = (len(todo) + cfg.batch_size - 1) // cfg.batch_size
    t_start, n_tok = time.perf_counter(), 0
    for b in range(n_batches):
        path = out / f"shard-{b:05d}.safetensors"
        if path.exists():
            continue
        batch = todo[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        chats = [build_prompt(lm.tokenizer, r["prompt"], mode) for r, mode in batch]
        prompts = [c.input_ids for c in chats]
        if cfg.source == "generate":
            answers = generate_answers(engine, chats, cfg, first=b * cfg.batch_size)
        else:  # reference
            eos = lm.tokenizer.eos_token_id
            answers = [
                lm.tokenizer(r.get("reference") or "", add_special_tokens=False)["input_ids"] + [eos] for r, _ in batch
            ]
        seqs = []
        for p, a in zip(prompts, answers):
            ids = (p + a)[: cfg.max_length]
            seqs.append((ids, [False] * len(p) + [True] * (len(ids) - len(p))))
        hidden = target_features(lm.model, [s for s, _ in seqs])
        save_shard(path, seqs, hidden)
        n_tok += sum(sum(m) for _, m in seqs)
        el = time.perf_counter() - t_start
        log(
            f"shard {b + 1}/{n_batches}: {len(seqs)} seqs, answer tokens so far {n_tok}, {el:.0f}s, {n_tok / el:.1f} tok/s"
        )
