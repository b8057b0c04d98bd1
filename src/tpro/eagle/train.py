"""``tpro eagle train``: fit a draft head to a frozen target from cached feature shards.

Loss (EAGLE-1/2): at position t the head reads (embed(x_{t+1}), f_t) and predicts f_{t+1};
  L = SmoothL1(h_t, f_{t+1}) + w_cls * CE(softmax(lm_head(f_{t+1})), lm_head(h_t))
with the target's ``lm_head`` restricted to the FR-Spec hot vocabulary (the head only ever drafts from it), over
answer positions. Inputs get uniform noise (EAGLE's augmentation: at draft time the head reads its own, imperfect
features). AdamW, linear warm-up then cosine decay, gradient clipping. Runs through ``accelerate`` (CPU here,
a GPU where there is one: the same code). Checkpoints (head weights as safetensors, optimizer/scheduler state,
step) are written atomically every ``save_every`` steps; a rerun with the same ``--out`` resumes from the last one.
What this module does not know: trees and decoding.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from tpro.config import like, opt
from tpro.eagle.data import iter_sequences, list_shards
from tpro.eagle.head import DraftHead, HeadConfig, init_head, read_head_config, save_head
from tpro.eagle.options import target_model
from tpro.io import append_jsonl, atomic_path
from tpro.options import DTYPES, ModelOptions


@dataclass(kw_only=True)
class TrainConfig(ModelOptions):
    """``tpro eagle train``: the data, the head's vocabulary and the optimisation (the shipped head's recipe is
    configs/eagle/train-default-head.yaml)."""

    model: str = target_model("Target model (the one the data came from)")
    # fp32: the frozen embeddings and lm_head rows the head trains against (autocast runs the head in bf16)
    dtype: str = like(ModelOptions, "dtype", "float32", choices=DTYPES)
    data: list[str] = opt([], "Shard directory from `tpro eagle build-data` (repeatable; at least one)", short="-d")
    out: str = opt(help="Head directory (checkpoints inside; rerun to resume from the last one)", short="-o")
    hot_vocab: int = opt(16384, "FR-Spec draft vocabulary size (0 = the full vocabulary)", min=0)
    epochs: float = opt(2.0, "Passes over the data (fractional allowed); --steps overrides when > 0", min=0.0)
    steps: int = opt(0, "Total optimizer steps (0 = from --epochs)", min=0)
    batch_size: int = opt(2, "Sequences per step", min=1)
    max_length: int = opt(768, "Tokens kept per sequence", min=8)
    window: int = opt(
        384, "Random window of tokens per sequence per step, covering answer tokens (0 = whole sequence)", min=0
    )
    lr: float = opt(5e-4, "AdamW learning rate (linear warm-up, then cosine decay)", min=0.0)
    warmup: int = opt(30, "Warm-up steps", min=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0.0)
    w_cls: float = opt(0.1, "Weight of the distribution (CE to the target) term (EAGLE uses 0.1)", min=0.0)
    cls_fraction: float = opt(0.25, "Share of answer positions the CE term is computed on", min=0.0, max=1.0)
    unroll: int = opt(
        1, "Train draft depths 1..N on the head's own features (training-time test; cost ~N x)", min=1, max=8
    )
    noise: float = opt(0.1, "Uniform noise on input features, U(-noise, noise) x feature std", min=0.0)
    grad_clip: float = opt(0.5, "Gradient norm clip", min=0.0)
    mixed_precision: Literal["bf16", "fp16", "no"] = opt("bf16", "accelerate mixed precision (no = fp32)")
    save_every: int = opt(100, "Checkpoint every N steps", min=1)
    seed: int = opt(0, "Seed of the init, batch order, windows and noise")


def hot_vocabulary(seqs: list[torch.Tensor], vocab_size: int, n: int) -> torch.Tensor:
    """FR-Spec: the n most frequent token ids of the training data, topped up with the lowest ids unseen.

    Why the lowest ids: byte-level BPE ids follow merge order, which follows corpus frequency, so they are the
    best frequency guess for tokens our data did not show. -> [n] ids sorted ascending.
    """
    if n <= 0 or n >= vocab_size:
        return torch.arange(vocab_size)
    counts = Counter()
    for s in seqs:
        counts.update(s.tolist())
    ids = [t for t, _ in counts.most_common(n)]
    seen = set(ids)
    ids += [t for t in range(vocab_size) if t not in seen][: n - len(ids)]
    return torch.tensor(sorted(ids))


def unrolled_mask(L: int, j: int, device=None) -> torch.Tensor:
    """Attention of unroll step j (>= 2) over the head's keys of steps 1..j -> bool [R_j, R_1 + ... + R_j], True = see.

    Step 1 has R_1 = L rows (pairs at positions 0..L-1, real features); step j has R_j = L - j + 1 rows, row i at position
    i + j - 1 holding the head's own step-(j-1) output as its feature. At draft depth j a node sees the committed
    pairs (step-1 keys 0..i) and its own chain of drafted ancestors (the step-2..j keys of the same row i), which is
    exactly what this mask allows (EAGLE-3's "training-time test"; HASS calls it harmonized context alignment).
    """
    sizes = [L - k + 1 for k in range(1, j + 1)]  # rows per step 1..j
    rows = sizes[-1]
    i = torch.arange(rows, device=device)
    blocks = [torch.arange(L, device=device)[None] <= i[:, None]]  # step-1 keys 0..i
    for k in range(2, j + 1):
        blocks.append(torch.arange(sizes[k - 1], device=device)[None] == i[:, None])  # step-k key of the same row
    return torch.cat(blocks, dim=1)  # [rows, sum(sizes)]


def eagle_loss(
    head: DraftHead,
    emb: torch.Tensor,  # [B, S, H] embeddings of x
    feats: torch.Tensor,  # [B, S, H] target features f
    mask: torch.Tensor,  # [B, S] bool: positions whose *next* token is an answer token
    w_cls: float,
    noise: float = 0.0,
    cls_fraction: float = 1.0,
    unroll: int = 1,
) -> tuple[torch.Tensor, dict]:
    """Teacher-forced EAGLE loss over one batch -> (loss, {"reg", "cls", "acc", "acc2", ...}).

    ``unroll`` > 1 also trains the head on its own features, as it meets them at draft depth 2.. (step j reads the
    step-(j-1) predictions, detached, with the real next token), through one shared KV cache and ``unrolled_mask``.
    The loss is the mean over steps; ``acc{j}`` is top-1 agreement with the target at depth j.
    """
    f_in = feats[:, :-1]  # f_t, t = 0..S-2
    if noise:
        f_in = f_in + (torch.rand_like(f_in) * 2 - 1) * noise * f_in.std()
    total, stats = 0.0, {}
    for j, h in enumerate(unrolled_forward(head, emb, f_in, unroll), start=1):
        reg, cls, acc = _step_loss(head, h, feats[:, j:], mask[:, j:].float(), cls_fraction)  # h_i predicts f_{i+j}
        total = total + reg + w_cls * cls
        sfx = "" if j == 1 else str(j)
        stats.update({f"reg{sfx}": reg.item(), f"cls{sfx}": cls.item(), f"acc{sfx}": acc.item()})
    return total / unroll, stats


def unrolled_forward(head: DraftHead, emb: torch.Tensor, f_in: torch.Tensor, unroll: int) -> list[torch.Tensor]:
    """emb [B, S, H] (embeddings of x), f_in [B, S-1, H] (features f_0..f_{S-2}) -> [h_1 [B, L, H], h_2 [B, L-1, H], ...].

    Step 1 is teacher-forced: row i reads (x_{i+1}, f_i) at position i. Step j reads (x_{i+j}, h_{j-1}[i]) at
    position i + j - 1, the pair a depth-j draft node holds when the drafts before it were right, attending as
    ``unrolled_mask`` says; all steps share one KV cache, so a step costs about what step 1 does.
    """
    from transformers import DynamicCache

    B, L = f_in.shape[0], f_in.shape[1]
    cache = DynamicCache() if unroll > 1 else None
    pos = torch.arange(L, device=f_in.device)[None].expand(B, -1)
    outs = [head(emb[:, 1:], f_in, pos, None, cache)]  # causal; right padding is masked out by the loss
    for j in range(2, unroll + 1):
        rows = L - j + 1
        if rows < 1:
            break
        pos = torch.arange(j - 1, j - 1 + rows, device=f_in.device)[None].expand(B, -1)
        att = unrolled_mask(L, j, f_in.device)[None, None]  # bool: sdpa takes it in any compute dtype
        # the previous step's predictions are inputs here, not trained through (as EAGLE's noise augmentation)
        outs.append(head(emb[:, j:], outs[-1][:, :rows].detach(), pos, att, cache))
    return outs


def _step_loss(head, h, f_out, m, cls_fraction):
    """h, f_out [B, T, H], m [B, T] float -> (smooth-L1 to f_out, CE to the target's hot distribution, top-1 agreement)."""
    H = h.shape[-1]
    denom = m.sum().clamp_min(1)
    reg = (F.smooth_l1_loss(h.float(), f_out.float(), reduction="none").mean(-1) * m).sum() / denom
    # The distribution term costs 3 products with the [N, H] lm_head per position (target, draft, draft backward),
    # about 2/3 of a step; it is computed on a random `cls_fraction` of the answer positions.
    sel = m.flatten().nonzero().flatten()  # [M] answer positions
    if cls_fraction < 1.0 and sel.numel() > 8:
        sel = sel[torch.randperm(sel.numel(), device=sel.device)[: max(8, int(cls_fraction * sel.numel()))]]
    h_sel, f_sel = h.reshape(-1, H)[sel], f_out.reshape(-1, H)[sel]  # [M', H]
    with torch.no_grad():
        p_target = head.logits(f_sel.to(head.lm_head_hot.dtype)).float().softmax(-1)  # [M', N]
    logp = torch.log_softmax(head.logits(h_sel).float(), -1)  # [M', N]
    cls = -(p_target * logp).sum(-1).mean() if sel.numel() else h.sum() * 0
    acc = (logp.argmax(-1) == p_target.argmax(-1)).float().mean() if sel.numel() else torch.zeros(())
    return reg, cls, acc


def _batches(n_seq: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = list(range(n_seq))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_seq, batch_size)]


def _window(item, window: int, rng: random.Random):
    """Crop (ids, feats, mask) to ``window`` tokens starting no earlier than a quarter window before the answer.

    Why: a training step's cost is linear in tokens and the loss only counts answer tokens, so long prompts are
    cut; the head then sees less context than at decode time, which costs little for a one-layer draft.
    """
    ids, feats, mask = item
    if not window or ids.shape[0] <= window:
        return item
    ans = int(mask.nonzero()[0]) if mask.any() else 0
    lo = max(0, ans - window // 4)
    hi = max(lo, ids.shape[0] - window)
    s = rng.randint(lo, hi)
    return ids[s : s + window], feats[s : s + window], mask[s : s + window]


def _pad(items, dim_h):
    S = max(x[0].shape[0] for x in items)
    ids = torch.zeros(len(items), S, dtype=torch.long)
    feats = torch.zeros(len(items), S, dim_h, dtype=torch.bfloat16)
    mask = torch.zeros(len(items), S, dtype=torch.bool)
    for i, (a, f, m) in enumerate(items):
        ids[i, : a.shape[0]], feats[i, : a.shape[0]], mask[i, : a.shape[0]] = a, f, m
    return ids, feats, mask


def train(cfg: TrainConfig, lm=None, progress: bool = True, log=print) -> Path:
    """Train (or resume) a head; returns the head directory. ``lm``: an already loaded target (tests)."""
    from accelerate import Accelerator
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from safetensors.torch import load_file

    if not cfg.data:
        raise ValueError("no --data directories given; make shards with `tpro eagle build-data --out DIR` first")
    for d in cfg.data:
        if not list_shards(d):
            raise FileNotFoundError(f"no shard-*.safetensors in {d}; make them with `tpro eagle build-data --out {d}`")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = lm or cfg.load_model(progress=False)
    target = lm.model
    for p in target.parameters():
        p.requires_grad_(False)
    seqs = [(a[: cfg.max_length], f[: cfg.max_length], m[: cfg.max_length]) for a, f, m in iter_sequences(cfg.data)]
    if not seqs:
        raise ValueError(f"the shards in {cfg.data} hold no sequences")
    if seqs[0][1].shape[-1] != target.config.hidden_size:
        raise ValueError(
            f"features have width {seqs[0][1].shape[-1]} but the target's hidden size is "
            f"{target.config.hidden_size}: the data was built for another target"
        )
    ckpt = out / "checkpoint"
    if (ckpt / "head.safetensors").is_file():
        meta = read_head_config(ckpt)
        head = DraftHead(HeadConfig(**meta["head"]))
        head.load_state_dict(load_file(str(ckpt / "head.safetensors")))
        head.attach(target)
        step0 = int(meta["step"])
        log(f"resuming from {ckpt} at step {step0}")
    else:
        hot = hot_vocabulary([a for a, _, _ in seqs], target.config.vocab_size, cfg.hot_vocab)
        head, step0 = init_head(target, hot, name=lm.name, seed=cfg.seed), 0
    head.train()
    per_epoch = math.ceil(len(seqs) / cfg.batch_size)
    total = cfg.steps or max(1, int(cfg.epochs * per_epoch))
    optim = torch.optim.AdamW([p for n, p in head.named_parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    if step0:
        state = torch.load(ckpt / "optimizer.pt", weights_only=True)
        optim.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
    # the head sits on its target's device (--device), whatever else the machine has
    acc_ = Accelerator(mixed_precision=cfg.mixed_precision, cpu=target.device.type == "cpu")
    head, optim = acc_.prepare(head, optim)
    embed = target.get_input_embeddings()
    history = []
    cols = [
        TextColumn("[bold]eagle train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    t0 = time.perf_counter()
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("train", total=total, completed=step0, loss=0.0, acc=0.0)
        for step in range(step0, total):
            epoch, i = divmod(step, per_epoch)
            batch = _batches(len(seqs), cfg.batch_size, cfg.seed, epoch)[i]
            rng = random.Random(cfg.seed * 1_000_003 + step)
            ids, feats, mask = _pad([_window(seqs[j], cfg.window, rng) for j in batch], target.config.hidden_size)
            with torch.no_grad():
                emb = embed(ids.to(target.device)).float()
            with acc_.autocast():
                loss, stats = eagle_loss(
                    acc_.unwrap_model(head),
                    emb,
                    feats.to(target.device).float(),
                    mask.to(target.device),
                    cfg.w_cls,
                    cfg.noise,
                    cfg.cls_fraction,
                    cfg.unroll,
                )
            acc_.backward(loss)
            acc_.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            optim.step()
            sched.step()
            optim.zero_grad()
            history.append({"step": step + 1, "loss": loss.item(), **stats, "lr": sched.get_last_lr()[0]})
            bar.update(task, advance=1, loss=loss.item(), acc=stats["acc"])
            if not progress and (step + 1) % 10 == 0:
                deeper = " ".join(f"{k} {v:.3f}" for k, v in stats.items() if k.startswith("acc") and k != "acc")
                log(
                    f"step {step + 1}/{total} loss {loss.item():.4f} reg {stats['reg']:.4f} cls {stats['cls']:.3f} "
                    f"acc {stats['acc']:.3f} {deeper} {time.perf_counter() - t0:.0f}s"
                )
            if (step + 1) % cfg.save_every == 0 or step + 1 == total:
                _checkpoint(acc_.unwrap_model(head), optim, sched, step + 1, ckpt, cfg)
                append_jsonl(out / "train_log.jsonl", history)
                history = []
    final = acc_.unwrap_model(head)
    # the final head in bf16 (half the size; a draft loses nothing measurable), checkpoints stay fp32 for resuming
    save_head(final, out, extra={"train": cfg.to_dict(), "step": total}, dtype=torch.bfloat16)
    return out


def _checkpoint(head, optim, sched, step, ckpt: Path, cfg: TrainConfig) -> None:
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save({"opt": optim.state_dict(), "sched": sched.state_dict()}, tmp)
    save_head(head, ckpt, extra={"train": cfg.to_dict(), "step": step})
    # the step is recorded in head_config.json, written last by save_head: a kill between the two files resumes
    # from the older step with the newer optimizer state, which only costs a few steps of momentum
