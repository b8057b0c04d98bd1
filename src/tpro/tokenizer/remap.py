"""Carry a model over to an adapted tokenizer: re-initialise the embedding rows of swapped ids.

Kept ids keep their rows bit for bit (same id, same bytes, same row). A swapped id's row gets a value built from
the base model's own rows for the new token's *old* tokenization (its "pieces"):

- ``mean``: input and output rows = mean of the pieces' rows (FVT, Gee et al. 2022).
- ``contextual``: output (``lm_head``) rows are fitted so the new token's logit reproduces the base model's
  chain-rule log-probability of its pieces in real contexts. On a Cyrillic text sample the base model gives, at
  each occurrence of the new token's span, the final hidden state ``h`` before the first piece and
  ``y = sum_j log p(piece_j | ...) + logsumexp(W h)``; we want ``w . h = y``. With few occurrences (n < d) this is
  under-determined, so take the minimum-change ridge solution from the mean init ``w0``:
  ``w = w0 + H^T (H H^T + lam I)^-1 (y - H w0)``  (H: [n, d], y: [n]).
  Untied input rows then use OMP (orthogonal matching pursuit, as in training-free tokenizer transplantation):
  express the fitted output row as a sparse combination of kept tokens' output rows and apply the same
  coefficients to those tokens' input rows. Tokens never seen in the sample keep the mean init. A tied model is
  untied first (``--untie``, the default): ``lm_head`` becomes its own copy, takes the fitted rows, and the input
  rows keep the mean init (a row fitted to logits is an output-space vector, not an input embedding; not measured
  on a tied model: the embedded model is untied, where the prob-target fit cost +0.078 bits/char over mean init,
  docs/benchmarks.md). ``--no-untie`` writes the fit into the shared matrix.

It knows nothing about how the tokenizer was adapted; the swapped ids are the ids whose token string changed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tpro.config import ConfigError, opt
from tpro.io import replace_dir
from tpro.options import DTYPES, ModelOptions
from tpro.tokenizer.bpe import TOKENIZER_FILES, load_base, resolve_tokenizer_file, token_text

Method = Literal["mean", "contextual"]


@dataclass(kw_only=True)
class RemapConfig(ModelOptions):
    """``tpro tokenizer remap-model``: the base model (``--model``), the adapted tokenizer, the init method."""

    tokenizer: str = opt(help="The adapted tokenizer directory (from `tpro tokenizer adapt`) or its tokenizer.json.")
    out: str = opt(help="Output checkpoint directory (safetensors + the adapted tokenizer).")
    method: Method = opt(
        "mean",
        "mean (mean of the old pieces' rows) or contextual (lm_head rows fitted to the base model's log-probs of "
        "the pieces on --text; natively untied input rows by OMP, see --untie).",
    )
    text: list[str] = opt([], "Cyrillic running text (one sentence per line) for --method contextual, repeatable.")
    ridge: float = opt(
        1.0, "Ridge lambda of the contextual fit (logit^2 units; larger stays closer to the mean init).", min=0.0
    )
    max_contexts: int = opt(64, "Occurrences used per token (contextual).", min=1)
    omp_atoms: int = opt(8, "Kept tokens per OMP combination (contextual, untied input rows).", min=1)
    target: Literal["odds", "prob"] = opt(
        "odds",
        "contextual: the logit each fitted row should give, over the base model's log-sum-exp. prob: log P(pieces); "
        "odds: log P(pieces) - log(1 - P(pieces)). The kept first piece keeps its base logit (and so the pieces' "
        "mass), so a new token fitted to prob gets only P/(1+P) once the softmax renormalises (0.9 -> 0.47, -0.93 "
        "bits); the odds target gives it P back (exact for one new token per context).",
    )
    input_init: Literal["omp", "mean"] = opt(
        "omp",
        "contextual, untied model: input rows by OMP over the fitted output row (omp) or the mean of the pieces (mean).",
    )
    untie: bool = opt(
        True,
        "contextual on a model with tied embeddings: give lm_head its own copy so the fitted output rows leave the "
        "input rows at the mean init (the saved model is untied). --no-untie writes the fit into the shared matrix.",
    )
    max_lines: int = opt(4000, "Lines of --text used (contextual).", min=1)
    batch_tokens: int = opt(2048, "Padded tokens per forward while collecting contexts (contextual).", min=1)
    # The rows are re-initialised and saved in fp32 unless asked otherwise: "auto" would pick bf16 on CPUs with
    # native bf16 and round the kept rows of an fp32 checkpoint, which must stay bit-identical.
    dtype: str = opt("float32", ModelOptions.__dataclass_fields__["dtype"].metadata["help"], choices=DTYPES)

    def __post_init__(self):
        super().__post_init__()
        if self.weights != "bf16":  # the rows are rewritten and the whole model saved: a quantized copy cannot be
            raise ConfigError(
                f"--weights {self.weights}: remap-model rewrites and saves the checkpoint's own weights; "
                "drop --weights (quantize the remapped model when you load it to decode)"
            )


def swapped_ids(base_vocab: dict[str, int], new_vocab: dict[str, int]) -> dict[int, str]:
    """id -> new token string, for every id whose token string changed."""
    id_base = {i: t for t, i in base_vocab.items()}
    return {i: t for t, i in new_vocab.items() if id_base.get(i) != t}


def untie(model) -> bool:
    """Give a model whose lm_head *is* its input embedding matrix its own copy (so the two can differ); True if it
    did. The config says ``tie_word_embeddings: false`` from then on, so the saved model loads untied."""
    import torch

    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head.weight is not emb.weight:
        return False
    w = emb.weight
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
    new.weight = torch.nn.Parameter(w.detach().clone())
    model.set_output_embeddings(new)
    model.config.tie_word_embeddings = False
    return True


def mean_rows(weight, pieces: dict[int, list[int]]):
    """[len(pieces), d]: mean of the pieces' rows, in ``pieces`` order."""
    import torch

    return torch.stack([weight[p].mean(0) for p in pieces.values()])


def ridge_update(w0, H, y, lam: float):
    """Minimum-change solution of H w = y from w0: w0 + H^T (H H^T + lam I)^-1 (y - H w0).

    w0: [d], H: [n, d], y: [n] -> [d]. Computed in float64 (H H^T is [n, n], n <= max_contexts)."""
    import torch

    H64, w64 = H.double(), w0.double()
    G = H64 @ H64.T + lam * torch.eye(H.shape[0], dtype=torch.float64)  # [n, n]
    alpha = torch.linalg.solve(G, y.double() - H64 @ w64)  # [n]
    return (w64 + H64.T @ alpha).to(w0.dtype)


def omp(target, atoms, k: int, norms=None):
    """Orthogonal matching pursuit: greedy support of k atoms, least-squares coefficients on it.

    target: [d], atoms: [m, d] -> (indices [k], coefficients [k]). The correlation step runs in the atoms' dtype
    (m is ~10^5 for a real vocabulary: converting it per call cost seconds); the k-column least squares in float64.
    ``norms`` ([m]) may be passed in when the same atoms serve many targets."""
    import torch

    if norms is None:
        norms = atoms.norm(dim=1).clamp_min(1e-8)
    residual = target.to(atoms.dtype)
    support: list[int] = []
    coef = torch.zeros(0, dtype=torch.float64)
    for _ in range(k):
        scores = (atoms @ residual).abs() / norms  # [m]
        if support:
            scores[support] = -1
        support.append(int(scores.argmax()))
        S = atoms[support].double()  # [s, d]
        coef = torch.linalg.lstsq(S.T, target.double().unsqueeze(1)).solution.squeeze(1)  # [s]
        residual = (target.double() - S.T @ coef).to(atoms.dtype)
    return torch.tensor(support), coef


def padded_batches(items: list, lengths: list[int], budget: int) -> list[list]:
    """``items`` cut into consecutive batches whose padded size (rows x longest) stays within ``budget`` tokens;
    a longer item goes alone."""
    batches: list[list] = []
    width = 0
    for item, n in zip(items, lengths):
        if batches and (len(batches[-1]) + 1) * max(width, n) <= budget:
            batches[-1].append(item)
            width = max(width, n)
        else:
            batches.append([item])
            width = n
    return batches


def collect_contexts(
    model, base_tok, new_tok, swapped: dict[int, str], lines: list[str], cfg: RemapConfig, ctx: int, progress=None
):
    """For each swapped id seen in ``lines``: hidden states H [n, d] before its span and targets y [n]."""
    import torch

    head = model.get_output_embeddings().weight  # [V, d]
    found: dict[int, list[tuple[int, int, int]]] = {}  # id -> (line, first base position, last base position)
    base_encs = base_tok.encode_batch(lines, add_special_tokens=False)
    new_encs = new_tok.encode_batch(lines, add_special_tokens=False)
    for li, (be, ne) in enumerate(zip(base_encs, new_encs)):
        starts = {s: j for j, (s, _) in enumerate(be.offsets)}
        ends = {e: j for j, (_, e) in enumerate(be.offsets)}
        for i, (s, e) in zip(ne.ids, ne.offsets):
            if i in swapped and s in starts and e in ends and len(found.get(i, ())) < cfg.max_contexts:
                found.setdefault(i, []).append((li, starts[s], ends[e]))
    need = sorted({li for occ in found.values() for li, _, _ in occ})
    hidden: dict[int, object] = {}
    logp_cache: dict[int, object] = {}
    batches = padded_batches(need, [len(base_encs[li].ids) + 1 for li in need], cfg.batch_tokens)
    task = progress.add_task("contexts: base model passes", total=len(batches)) if progress is not None else None
    for k, batch in enumerate(batches):
        if task is not None:
            progress.advance(task)
        seqs = [[ctx] + base_encs[li].ids for li in batch]
        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        h = out.hidden_states[-1]  # [B, T, d], the lm_head input (after the final norm)
        logits = out.logits.float()  # [B, T, V]
        if k == 0:  # the fit is only right if hidden_states[-1] is what lm_head sees
            ref = h[0, : len(seqs[0])] @ head.T
            if not torch.allclose(ref.float(), logits[0, : len(seqs[0])], atol=1e-3, rtol=1e-3):
                raise RuntimeError("hidden_states[-1] is not the lm_head input for this model; use --method mean")
        lse = torch.logsumexp(logits, -1)  # [B, T]
        logp = logits[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) - lse[:, :-1]  # [B, T-1]
        for r, li in enumerate(batch):
            n = len(seqs[r])
            hidden[li] = (h[r, :n].clone(), lse[r, :n].clone())
            logp_cache[li] = logp[r, : n - 1].clone()
    fits = {}
    for i, occ in found.items():
        H, y = [], []
        for li, a, b in occ:
            hs, lse = hidden[li]
            # Sequence position p holds base token p-1 (the context token is at 0); the state predicting base
            # token a sits at position a, and logp[p] scores position p+1's token, i.e. base token p.
            H.append(hs[a])
            logp = float(logp_cache[li][a : b + 1].sum())  # log P(pieces | context) under the base model
            if cfg.target == "odds":  # the kept first piece keeps its own mass: see RemapConfig.target
                logp -= math.log(-math.expm1(min(logp, -1e-4)))
            y.append(logp + float(lse[a]))
        fits[i] = (torch.stack(H), torch.tensor(y, dtype=torch.float64))
    return fits


def check_vocabularies(cfg, model_vocab: dict, new_b, swapped: dict, rows: int, swap_file: Path) -> None:
    """The adapted tokenizer must come from ``--model``'s own vocabulary: same size, ids within the embedding
    rows, and (where swap.json is there) exactly the ids it lists changed. Else nothing is written."""
    fix = "Fix: pass the model whose tokenizer `tpro tokenizer adapt --base` was given, or adapt that model's tokenizer"
    if new_b.vocab_size > rows:
        raise ConfigError(
            f"the tokenizer {cfg.tokenizer!r} has ids up to {new_b.vocab_size - 1} but the model {cfg.model!r} has "
            f"{rows} embedding rows: the tokenizer was not adapted from this model's vocabulary. {fix}"
        )
    if len(new_b.vocab) != len(model_vocab):
        raise ConfigError(
            f"the tokenizer {cfg.tokenizer!r} has {len(new_b.vocab)} tokens, the model {cfg.model!r}'s own tokenizer "
            f"{len(model_vocab)}; adapt keeps the size, so it was not adapted from this model's vocabulary. {fix}"
        )
    if swap_file.is_file():
        listed = {row["id"] for row in json.loads(swap_file.read_text(encoding="utf-8"))}
        if set(swapped) != listed:
            raise ConfigError(
                f"{len(swapped)} ids differ between the model {cfg.model!r}'s tokenizer and {cfg.tokenizer!r}, but "
                f"its swap.json lists {len(listed)} swapped: the tokenizer was adapted from another vocabulary. {fix}"
            )


def _progress(show: bool):
    """A rich progress display on stderr, or a context holding None."""
    from contextlib import nullcontext

    if not show:
        return nullcontext()
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    return Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=Console(stderr=True), transient=True)


def remap(cfg: RemapConfig, show_progress: bool = True) -> dict:
    """Load ``cfg.model``, re-initialise swapped rows, save model + adapted tokenizer to ``cfg.out``."""
    import torch
    from tokenizers import Tokenizer

    from tpro.models.bpc import context_token_id

    if cfg.method == "contextual" and not cfg.text:
        raise ConfigError("--method contextual needs --text FILE (Cyrillic running text) to fit on")
    for f in cfg.text:
        if not Path(f).is_file():
            raise ConfigError(f"--text {f!r} does not exist. Fix: pass a UTF-8 text file, one sentence per line")
    t0 = time.perf_counter()
    lm = cfg.load_model(progress=show_progress)
    model = lm.model
    tok_path, tok_dir = resolve_tokenizer_file(cfg.tokenizer)
    new_b = load_base(str(tok_path))
    base_json = json.loads(lm.tokenizer.backend_tokenizer.to_str())
    swapped = swapped_ids(base_json["model"]["vocab"], new_b.vocab)
    emb = model.get_input_embeddings().weight  # [V, d]
    head = model.get_output_embeddings().weight  # [V, d]
    tied = emb.data_ptr() == head.data_ptr()
    check_vocabularies(cfg, base_json["model"]["vocab"], new_b, swapped, emb.shape[0], tok_path.parent / "swap.json")
    untied = tied and cfg.method == "contextual" and cfg.untie and untie(model)
    if untied:
        tied, head = False, model.get_output_embeddings().weight
    base_tok = lm.tokenizer.backend_tokenizer
    pieces = {i: base_tok.encode(token_text(z), add_special_tokens=False).ids for i, z in swapped.items()}
    bad = [swapped[i] for i, p in pieces.items() if not p or any(j in swapped for j in p)]
    if bad:
        raise ConfigError(
            f"{len(bad)} new tokens encode (in the base) to swapped ids, e.g. {bad[0]!r}: "
            "is --model the model the tokenizer was adapted from?"
        )
    ids = torch.tensor(list(pieces))
    stats = {"swapped": len(swapped), "tied": tied or untied, "untied": untied, "method": cfg.method, "fitted": 0}
    with torch.no_grad():
        new_emb = mean_rows(emb, pieces)  # [S, d]
        new_head = None if tied else mean_rows(head, pieces)
        if cfg.method == "contextual":
            lines = []
            for f in cfg.text:
                lines += [ln.rstrip("\n") for ln in Path(f).open(encoding="utf-8") if ln.strip()]
            lines = lines[: cfg.max_lines]
            new_tok = Tokenizer.from_file(str(tok_path))
            with _progress(show_progress) as bar:
                fits = collect_contexts(
                    model, base_tok, new_tok, swapped, lines, cfg, context_token_id(lm.tokenizer), bar
                )
                task = bar.add_task("fit rows", total=len(fits)) if bar is not None else None
                row = {i: r for r, i in enumerate(pieces)}
                kept = torch.tensor(sorted(set(range(emb.shape[0])) - set(swapped)))
                omp_input = not tied and not untied and cfg.input_init == "omp"
                atoms = head[kept] if omp_input else None  # [K, d], gathered once for every OMP below
                norms = None if atoms is None else atoms.norm(dim=1).clamp_min(1e-8)
                for i, (H, y) in fits.items():
                    r = row[i]
                    w0 = (new_emb if tied else new_head)[r]
                    w = ridge_update(w0, H, y, cfg.ridge)
                    if tied:
                        new_emb[r] = w
                    else:
                        new_head[r] = w
                        if omp_input:  # (a model untied here keeps mean input rows: its two spaces are one)
                            sup, coef = omp(w, atoms, cfg.omp_atoms, norms)
                            new_emb[r] = (coef.unsqueeze(1) * emb[kept[sup]].double()).sum(0).to(emb.dtype)
                    if task is not None:
                        bar.advance(task)
            stats["fitted"] = len(fits)
            stats["text_lines"] = len(lines)
        emb[ids] = new_emb
        if not tied:
            head[ids] = new_head
    out = Path(cfg.out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy2(tok_path, tmp / "tokenizer.json")
        for name in (*TOKENIZER_FILES, "swap.json", "report.json"):
            src = Path(tok_dir or tok_path.parent) / name
            if src.is_file():
                shutil.copy2(src, tmp / (name if name != "report.json" else "tokenizer_report.json"))
        stats["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "tpro_remap.json").write_text(json.dumps({"config": cfg.to_dict(), **stats}, indent=1))
        replace_dir(tmp, out)
    except BaseException:  # a failed save leaves neither half a checkpoint nor a temp directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats
