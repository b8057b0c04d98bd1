"""The EAGLE decoder: draft an EAGLE-2 dynamic tree with the head and model-free chains from the text, verify
the merged tree in one target forward, accept a path.

One step, with n committed tokens of which the target's cache holds the first n - 1 (the last, the "root", was
sampled but not yet fed):
  0. suffix draft (``EagleConfig.suffix``, the default): chains continuing the longest earlier occurrence of the
     text's end in the prompt, the answer so far or this decoder's earlier answers (``tpro.eagle.suffix``), and
     ``policy.run_eagle``: whether the head's tree is worth its draft time next to them (a long, confident chain
     is verified alone; no chain: the head runs if its expected gain pays for it);
  1. catch-up: the head reads the pairs (x_{t+1}, f_t) it has not seen (target features of the tokens accepted
     since it last ran) into its own one-layer cache and predicts the root's feature and next-token log-probs;
  2. draft: expand the top_k best nodes per depth (``tree.expand_frontier``) for ``depth`` levels, each level one
     head forward over top_k nodes under a tree mask; rerank all drafted nodes to ``total_tokens`` (``tree.rerank``);
  2b. merge the suffix chains into the tree (``tree.merge_branches``, shared prefixes once) and cut the union, best
     estimated nodes first, to the size that maximises expected tokens per ms under the measured verify-cost
     curve of the target's weight format (``tree.best_size``, ``EagleConfig.verify_ms``);
  3. verify: one target forward over [root, nodes] with a 4-D tree mask and positions n - 1 + depth (transformers'
     public inputs: ``attention_mask``, ``position_ids``, ``cache``);
  4. accept: greedy, the longest path matching the target's argmax; sampling, recursive rejection sampling
     against ``tpro.engine.sampling.logits_to_probs`` (lossless); the bonus token comes from the target;
  5. compact both caches to the committed tokens (the head's to before the tree; the target's to the prefix and
     the accepted path).
The engine does detokenising, EOS, stop strings, the budget and telemetry; this module only yields ``Step``s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from tpro.eagle import policy, tree
from tpro.eagle.suffix import SuffixCache
from tpro.eagle.target import EagerTarget
from tpro.engine.decoder import PREFILL_CHUNK, Step
from tpro.engine.sampling import logits_to_probs, next_token


@dataclass
class EagleConfig:
    depth: int = 4  # tree depth (draft head forwards per step, the catch-up included)
    top_k: int = 6  # children per expanded node and nodes expanded per depth
    total_tokens: int = 16  # draft nodes verified per step (the root comes on top)
    # the model-free suffix drafter (``tpro.eagle.suffix``) merged into the tree, with the per-step choice of running
    # the head and of the tree's size (``tpro.eagle.policy``); False = the EAGLE-2 tree alone, as before issue 17
    suffix: bool = True
    suffix_tokens: int = 16  # suffix-draft nodes per step, at most
    suffix_answers: int = 32  # earlier answers this decoder keeps for matching (0 = the current request only)
    # target forward cost by tree tokens, (N, ms), and one head level in ms: the policy's cost model
    verify_ms: tuple[tuple[int, float], ...] = policy.VERIFY_MS["bf16"]
    level_ms: float = policy.LEVEL_MS["bf16"]
    prefill_chunk: int = PREFILL_CHUNK  # prompt tokens per prefill forward (``tpro.engine.decoder.prefill``)

    @classmethod
    def for_model(cls, model, weights: str | None = None, compiled: bool = False, **overrides) -> EagleConfig:
        """CPU defaults by the target's dtype, chosen by measurement (``bench/eagle_tune.py``, docs/benchmarks.md,
        EAGLE section): with the shipped head and a bf16 target, depth 4 / top-k 6 / 16 nodes was the fastest of
        seven trees from 3x4x8 to 7x10x48 (a bf16 forward over 16 new tokens costs ~1.5x one token, 32 tokens ~1.8x,
        and deeper trees buy little acceptance at this head's depth-2+ accuracy); in fp32, 8 tokens already
        cost ~1.7x one token, so the tree stays at 8 nodes (not tuned: fp32 decoding is slower here anyway).
        ``weights``: the target's weight format ("bf16", "int4", ...; default: from its dtype), which picks the
        verify-cost curve the policy sizes trees with. ``compiled`` (the verify through ``torch.compile``,
        ``tpro.eagle.target.CompiledTarget``) with 4- or 8-bit weights: the head drafts one token (depth 1, top-k 1)
        beside the suffix drafter's chains. Measured on train-split prompts (``bench/eagle_tune.py --compile``,
        int4, 2 threads, AVX-512 EPYC, 2026-12-04): tokens/s at T=0 / T=0.8 for 1x1x1 50.3 / 40.6, 2x1x2 48.5 /
        40.3, 3x1x3 48.1 / 41.1, 4x6x16 45.2 / 39.1 (compiled plain decoding 38.7 / 35.2): an int4 forward over
        N rows costs 1 / 1.2 / 1.5 / 2.7x one row's for N = 1 / 2 / 4 / 8, so wide trees never pay. With w4a8
        (``tpro.models.w4a8``: 1 / 1.15 / 1.3 / 1.6x) a small tree pays: depth 2, top-k 2, 4 nodes (same prompts and
        machine, 2026-12-04, ``--weights w4a8``; T=0 / T=0.8 tokens/s: 2x2x4 69.3 / 54.9, 1x1x1 70.5 / 51.9, 2x1x2
        71.1 / -, 4x4x8 69.2 / 49.2, 4x6x16 67.7 / 48.3; compiled plain 54.7 / 45.2)."""
        half = model.dtype in (torch.bfloat16, torch.float16)
        base = cls() if half else cls(depth=4, top_k=4, total_tokens=8)
        if compiled and weights in ("int4", "int8"):
            base.depth = base.top_k = base.total_tokens = 1
        elif compiled and weights == "w4a8":
            base.depth, base.top_k, base.total_tokens = 2, 2, 4
        if weights in (None, "bf16"):  # the checkpoint's weights, in the model's dtype
            weights = "bf16" if half else "fp32"
        base.verify_ms = policy.verify_curve(weights)
        base.level_ms = policy.LEVEL_MS["bf16" if half else "fp32"]
        for k, v in overrides.items():
            if v is not None:
                setattr(base, k, v)
        if min(base.depth, base.top_k, base.total_tokens, base.prefill_chunk) < 1:
            raise ValueError(f"depth, top_k, total_tokens and prefill_chunk must be >= 1, got {base}")
        if base.suffix_tokens < 0 or base.suffix_answers < 0:
            raise ValueError(f"suffix_tokens and suffix_answers must be >= 0, got {base}")
        return base


@torch.inference_mode()
def measure_verify_ms(model, sizes=(1, 4, 8, 16, 32), prefix: int = 64, repeats: int = 3):
    """The target's forward cost on this machine, now: ((N, ms), ...) for N new tokens after a ``prefix``-token
    cache, the median of ``repeats``. The shipped tables (``policy.VERIFY_MS``) were measured on one CPU kind; an
    AVX2 CPU without bf16 units, or another thread count, bends the curve differently (fp32 doubles by 8 rows
    there, w8a8 grows slowly), and the tree the policy picks follows the curve. ~1-3 s for the embedded model on
    2 cores; a few ms for a tiny test model."""
    import statistics

    from transformers import DynamicCache

    dev = model.device
    g = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=torch.randint(vocab, (1, prefix), generator=g).to(dev), cache=cache, use_cache=True, logits_to_keep=1
    )
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    curve = []
    for n in sizes:
        ids = torch.randint(vocab, (1, n), generator=g).to(dev)
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(input_ids=ids, cache=cache, use_cache=True)
            sync()
            times.append(1000 * (time.perf_counter() - t0))
            cache.crop(-n)  # drop the N new entries (a positive crop length is refused by transformers 5)
        curve.append((n, round(statistics.median(times), 2)))
    return tuple(curve)


@dataclass
class Draft:
    tokens: torch.Tensor  # [N] node tokens (node 0 = root)
    parents: torch.Tensor  # [N]
    depth: torch.Tensor  # [N]
    value: torch.Tensor | None = None  # [N] estimated chance each node is accepted (root 1); None: all 1


class EagleDecoder:
    name = "eagle"

    def __init__(self, head, config: EagleConfig | None = None, target=None):
        self.head = head
        self.cfg = config or EagleConfig()
        # the target's cache and verify forward: eager over a DynamicCache, or compiled over a StaticCache
        # (``tpro.eagle.target``; its buckets make the planner's verify cost a step function of the tree size)
        self.target = target or EagerTarget()
        if self.target.name == "compiled":
            self.name = "eagle-compiled"
        # owned by the decoder, so a server's earlier answers (one engine, one decoder) help later requests
        self.suffix = SuffixCache(max_answers=self.cfg.suffix_answers)

    def forget(self) -> None:
        """Drop the earlier answers (a benchmark that repeats a prompt wants each run drafted afresh)."""
        self.suffix = SuffixCache(max_answers=self.cfg.suffix_answers)

    @torch.inference_mode()
    def measure_level_ms(self, model, repeats: int = 3) -> float:
        """One draft level on this machine, now (ms): the head over ``top_k`` nodes and its hot-vocabulary
        log-probs, the median of ``repeats`` (the policy weighs it against the verify curve)."""
        import statistics

        dev, k = model.device, self.cfg.top_k
        ids = self.head.hot_ids[:k].to(dev)
        feats = torch.zeros(k, self.head.cfg.hidden_size, device=dev)
        pos, mask = torch.arange(k, device=dev), tree.causal_mask(k, 0, torch.float32, dev)
        times = []
        for _ in range(repeats + 1):  # the first call pays one-off allocations
            t0 = time.perf_counter()
            self._head_forward(model, ids, feats, pos, mask, None)
            times.append(1000 * (time.perf_counter() - t0))
        return round(statistics.median(times[1:]), 2)

    # -- the head ---------------------------------------------------------------------------------------------

    def _head_forward(self, model, ids, feats, pos, mask, cache, last_only=False):
        """ids [T], feats [T, H], pos [T], mask [1, 1, T, P+T] -> (hidden [T, H], log-probs over the hot vocab
        [T, N], or [1, N] for the last row with ``last_only``: a catch-up over many pending tokens needs one)."""
        w = self.head.fc.weight
        emb = model.get_input_embeddings()(ids).to(w.dtype)  # the target's embedding, shared
        h = self.head(emb[None], feats.to(w.dtype)[None], pos[None], mask.to(w.dtype), cache)[0]
        return h, torch.log_softmax(self.head.logits(h[-1:] if last_only else h).float(), dim=-1)

    def draft(self, model, hcache, pend_ids, pend_feats, n_head: int, root: int) -> Draft:
        """Catch the head up on pending pairs, then grow and rerank the EAGLE-2 tree.

        pend_ids [T] (x_{t+1}), pend_feats [T, H] (f_t) for positions n_head .. n_head+T-1; ``root`` is the last
        committed token (= pend_ids[-1]). The head cache is left holding the committed pairs only.
        """
        cfg, dev = self.cfg, pend_ids.device
        T = pend_ids.shape[0]
        # in chunks as the target's prefill: after a long prompt T is the prompt's length, and one forward would
        # build a [T, n_head + T] mask and as many attention scores (a GiB at 16k tokens)
        for a in range(0, T, cfg.prefill_chunk):
            b = min(T, a + cfg.prefill_chunk)
            pos = torch.arange(n_head + a, n_head + b, device=dev)
            mask = tree.causal_mask(b - a, n_head + a, torch.float32, dev)  # [1, 1, C, n_head + b]
            h, logp = self._head_forward(model, pend_ids[a:b], pend_feats[a:b], pos, mask, hcache, last_only=True)
        committed = n_head + T  # head cache length after the catch-up
        hot = self.head.hot_ids
        # drafted nodes, recorded in creation order (topological); parent -1 means the root
        toks, pars, deps, scores = [], [], [], []
        lp, tk = logp[-1].topk(cfg.top_k)  # depth 1: children of the root
        first = list(range(len(toks), len(toks) + tk.numel()))
        toks.append(hot[tk])
        pars.append(torch.full_like(tk, -1))
        deps.append(torch.ones_like(tk))
        scores.append(lp)
        frontier = torch.tensor(first, device=dev)  # recorded indices of the nodes to expand next
        f_scores, f_feats = lp, h[-1:].expand(tk.numel(), -1)  # each frontier node's score and parent feature
        slot_anc = torch.zeros(0, 0, dtype=torch.bool, device=dev)  # tree slots in the head cache: ancestor matrix
        slot_of: dict[int, int] = {}  # recorded node -> head cache slot (expanded nodes only)
        all_toks = torch.cat(toks)
        for d in range(1, cfg.depth):
            K = frontier.numel()
            # mask: committed prefix + ancestors' slots + self
            rows = torch.zeros(K, slot_anc.shape[0] + K, dtype=torch.bool, device=dev)
            for j, node in enumerate(frontier.tolist()):
                par = int(torch.cat(pars)[node])
                if par >= 0:
                    rows[j, : slot_anc.shape[0]] = slot_anc[slot_of[par]]
                rows[j, slot_anc.shape[0] + j] = True
            new_anc = torch.zeros(slot_anc.shape[0] + K, slot_anc.shape[0] + K, dtype=torch.bool, device=dev)
            new_anc[: slot_anc.shape[0], : slot_anc.shape[0]] = slot_anc
            new_anc[slot_anc.shape[0] :] = rows
            for j, node in enumerate(frontier.tolist()):
                slot_of[node] = slot_anc.shape[0] + j
            slot_anc = new_anc
            mask = tree.tree_attention_mask(rows, committed, torch.float32)
            pos = torch.full((K,), committed - 1 + d, device=dev)  # pair (x_{t+1}, f_t) sits at t
            h, logp = self._head_forward(model, all_toks[frontier], f_feats, pos, mask, hcache)
            s, tk, nxt = tree.expand_frontier(f_scores, logp, cfg.top_k)  # [K, k], [K, k], [k]
            base = all_toks.numel()
            toks.append(hot[tk.flatten()])
            scores.append(s.flatten())
            pars.append(frontier[:, None].expand(-1, cfg.top_k).flatten())
            deps.append(torch.full((s.numel(),), d + 1, device=dev))
            all_toks = torch.cat(toks)
            frontier = base + nxt
            f_scores, f_feats = s.flatten()[nxt], h[nxt // cfg.top_k]
        tree.keep_cache_positions(hcache, torch.arange(committed, device=dev))
        # rerank to total_tokens nodes and renumber: verification node 0 is the root, drafted node i -> 1 + rank
        keep = tree.rerank(torch.cat(scores), torch.cat(deps), cfg.total_tokens)  # [M'] recorded indices
        new_index = torch.full((all_toks.numel() + 1,), 0, dtype=torch.long, device=dev)  # index -1 (root) -> 0
        new_index[keep] = torch.arange(1, keep.numel() + 1, device=dev)
        parents = torch.cat([torch.tensor([-1], device=dev), new_index[torch.cat(pars)[keep]]])
        tokens = torch.cat([torch.tensor([root], device=dev), all_toks[keep]])
        depth = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cat(deps)[keep]])
        value = torch.cat([torch.ones(1, device=dev), policy.EAGLE_SCALE * torch.cat(scores)[keep].float().exp()])
        return Draft(tokens, parents, depth, value)

    # -- the loop ---------------------------------------------------------------------------------------------

    def plan(
        self, root: int, dr_eagle: Draft | None, sd, vals: list[float], room: int = 1 << 30
    ) -> tuple[Draft, torch.Tensor]:
        """Merge the head's tree (None: the head did not run) with the suffix draft ``sd`` (node values ``vals``)
        and cut the union to the size ``tree.best_size`` picks from the nodes' values and the verify-cost curve,
        at most ``room`` nodes with the root (a static cache's free slots, its largest bucket).
        -> (the tree to verify, added [N] bool: nodes only the suffix drafter proposed)."""
        cfg, dev = self.cfg, self.head.fc.weight.device
        if dr_eagle is None:
            dr_eagle = Draft(
                torch.tensor([root], device=dev),
                torch.tensor([-1], device=dev),
                torch.zeros(1, dtype=torch.long, device=dev),
            )
        value = dr_eagle.value if dr_eagle.value is not None else torch.ones(dr_eagle.tokens.shape[0], device=dev)
        tokens, parents, value, added = tree.merge_branches(
            dr_eagle.tokens, dr_eagle.parents, value, sd.tokens, sd.parents, vals
        )
        depth = tree.depths(parents)
        order = tree.rank(value[1:], depth[1:]).cpu()  # [M] best first, every prefix a tree
        levels = cfg.depth if dr_eagle.tokens.numel() > 1 else 0
        room = min(order.numel(), room - 1)
        cost = policy.cost_ms(cfg.verify_ms, 1 + torch.arange(room + 1), self.target.buckets)
        n = tree.best_size(value[1:].cpu()[order[:room]], cost, levels * cfg.level_ms)
        keep = torch.cat([torch.zeros(1, dtype=torch.long), 1 + order[:n].sort().values]).to(dev)
        return Draft(tokens[keep], tree.subtree(parents, keep), depth[keep], value[keep]), added[keep]

    @torch.inference_mode()
    def decode(self, model, input_ids, params, generator):
        lm_head = model.get_output_embeddings()
        cfg, dev = self.cfg, input_ids.device
        hcache = DynamicCache()
        # every prompt position's hidden state: the head's features f_t (its catch-up at the first draft reads them)
        # [S, H], and this request's target session (its cache, verify forward and compaction)
        hid, target = yield from self.target.begin(model, input_ids, params.max_new_tokens, cfg.prefill_chunk)
        t0 = time.perf_counter()
        tok = int(next_token(lm_head(hid[-1:])[0], params, generator))
        yield Step([tok], verify_s=target.last_s + time.perf_counter() - t0)
        # the head's pending pairs (x_{t+1}, f_t) from position n_head on: caught up whenever the head next runs
        pend_ids = torch.cat([input_ids[0, 1:], torch.tensor([tok], device=dev)])
        pend_feats, n_head = hid, 0
        live = None
        if cfg.suffix:
            live = self.suffix.begin(input_ids[0].tolist())
            self.suffix.extend([tok])
        gain = policy.EAGLE_GAIN  # tokens the head adds per step, re-estimated over this request
        # the suffix table's calibration on this request: (predicted, right) over tested draft nodes, a prior of 2
        pred, real = 2.0, 2.0
        try:
            while True:
                t0 = time.perf_counter()
                if cfg.suffix:
                    sd = self.suffix.draft(cfg.suffix_tokens)
                    raw = policy.suffix_values(sd.support, sd.parents, sd.match_len)
                    vals = [min(1.0, v * real / pred) for v in raw]
                    use_head = policy.run_eagle(
                        vals, gain, cfg.total_tokens, cfg.depth * cfg.level_ms, cfg.verify_ms, self.target.buckets
                    )
                else:
                    use_head = True
                dr = None
                if use_head:
                    dr = self.draft(model, hcache, pend_ids, pend_feats, n_head, tok)
                    n_head += pend_ids.shape[0]
                    pend_ids, pend_feats = pend_ids[:0], pend_feats[:0]
                added = None
                if cfg.suffix:
                    dr, added = self.plan(tok, dr, sd, vals, target.room())
                elif dr.tokens.numel() > target.room():  # nodes are topological: a prefix is a tree
                    r = target.room()
                    dr = Draft(dr.tokens[:r], dr.parents[:r], dr.depth[:r], dr.value[:r])
                t1 = time.perf_counter()
                anc = tree.ancestors(dr.parents)
                out, logits = target.verify(dr.tokens, dr.depth, anc)  # [N, H], [N, V]
                if params.greedy:
                    path = tree.greedy_accept(dr.tokens, dr.parents, anc, logits.argmax(-1))
                    bonus = int(logits[path[-1]].argmax())
                else:
                    # every child was chosen deterministically from the committed text, by the head's top-k or by
                    # suffix matching alike (the draft's q is a point mass on it), so tree.sample_accept's one-hot
                    # rejection sampling is exact for the merged tree: it samples each next token from p
                    probs = logits_to_probs(logits, params.temperature, params.top_k, params.top_p)
                    path, bonus = tree.sample_accept(dr.tokens, dr.parents, probs, generator)
                path_t = torch.tensor(path, device=dev)
                target.commit(path_t)
                new = dr.tokens[path_t[1:]].tolist() + [bonus]
                pend_ids = torch.cat([pend_ids, torch.tensor(new, device=dev)])
                pend_feats, tok = torch.cat([pend_feats, out[path_t]]), bonus
                if cfg.suffix:
                    self.suffix.extend(new)
                    p_step, r_step = policy.realized(sd.tokens, sd.parents, raw, new)
                    pred, real = pred + p_step, real + r_step
                    if use_head:  # the head's share of the accepted path: an exponential average over steps
                        gain += 0.2 * (int((~added[path_t[1:]]).sum()) - gain)
                yield Step(
                    new,
                    proposed=dr.tokens.numel() - 1,
                    accepted=len(path) - 1,
                    draft_s=t1 - t0,
                    verify_s=time.perf_counter() - t1,
                )
        finally:
            if live is not None:
                self.suffix.end(live)
