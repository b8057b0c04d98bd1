"""Pure tensor functions for draft trees: EAGLE-2 expansion and reranking, tree masks and positions, greedy and
lossless sampling acceptance, KV-cache compaction.

A verification tree has N nodes in topological order (parents before children): node 0 is the root (the last
committed token, not yet in the target's cache), ``parents[i] < i`` for i > 0 (``parents[0] = -1``), ``depth[0] = 0``.
Nothing here knows about models beyond a ``DynamicCache``'s layers.
"""

from __future__ import annotations

import torch


def ancestors(parents: torch.Tensor) -> torch.Tensor:
    """parents [N] (topological, parents[0] = -1) -> anc [N, N] bool, anc[i, j] = j is i or an ancestor of i."""
    n = parents.shape[0]
    anc = torch.eye(n, dtype=torch.bool, device=parents.device)
    for i in range(1, n):  # N <= ~100 and each row is one OR: a Python loop is cheaper than repeated squaring
        anc[i] |= anc[parents[i]]
    return anc


def depths(parents: torch.Tensor) -> torch.Tensor:
    """parents [N] -> depth [N] (root 0)."""
    return ancestors(parents).sum(-1) - 1


def tree_attention_mask(anc: torch.Tensor, prefix_len: int, dtype: torch.dtype) -> torch.Tensor:
    """anc [N, N] -> additive mask [1, 1, N, prefix_len + N]: a node sees the whole prefix, its ancestors and itself."""
    n = anc.shape[0]
    allowed = torch.cat([torch.ones(n, prefix_len, dtype=torch.bool, device=anc.device), anc], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=anc.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def causal_mask(n: int, prefix_len: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """[1, 1, n, prefix_len + n] additive mask for a chain of n new tokens after a cached prefix."""
    anc = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    return tree_attention_mask(anc, prefix_len, dtype)


def expand_frontier(
    frontier_scores: torch.Tensor,  # [K] cumulative draft log-prob of the nodes just expanded
    child_logp: torch.Tensor,  # [K, V] draft log-probs of each node's next token
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EAGLE-2 expansion: each expanded node proposes its top_k children; a child's score is its path's
    cumulative log-prob (its parent's score + its own log-prob), the draft's estimate of the chance that the
    target accepts the whole path.

    -> scores [K, top_k], tokens [K, top_k] (indices into V), and next [top_k]: flat indices (into K*top_k) of
    the children with the highest scores, the next frontier to expand.
    """
    lp, tok = child_logp.topk(top_k, dim=-1)  # [K, top_k]
    scores = frontier_scores[:, None] + lp  # [K, top_k]
    nxt = scores.flatten().topk(min(top_k, scores.numel())).indices  # [top_k]
    return scores, tok, nxt


def rerank(scores: torch.Tensor, depth: torch.Tensor, total: int) -> torch.Tensor:
    """EAGLE-2 reranking: keep the ``total`` drafted nodes with the highest cumulative scores.

    scores, depth [M] over drafted nodes (recorded in topological order) -> kept [<= total] indices, ascending
    (so still topological). A child's score never exceeds its parent's (log-probs <= 0); ties go to the shallower
    node, so a kept node's parent is always kept and the result is a tree.
    """
    order = torch.sort(depth, stable=True).indices  # shallow first ...
    order = order[torch.sort(scores[order], descending=True, stable=True).indices]  # ... within equal scores
    return order[:total].sort().values


def greedy_accept(
    tokens: torch.Tensor,  # [N] token of each node (node 0 = root)
    parents: torch.Tensor,  # [N]
    anc: torch.Tensor,  # [N, N] from ancestors()
    target_next: torch.Tensor,  # [N] target argmax after each node
) -> list[int]:
    """Longest root-to-node path whose every token equals the target's argmax after its parent.

    -> path [node indices from the root], the bonus token is target_next[path[-1]]. Vectorised as in EAGLE:
    a node is good when no node on its path is wrong (a mat-vec over the ancestor matrix).
    """
    wrong = torch.zeros_like(tokens, dtype=torch.float32)  # [N]
    wrong[1:] = (tokens[1:] != target_next[parents[1:]]).float()
    good = (anc.float() @ wrong) == 0  # [N]
    depth = anc.sum(-1)  # [N] depth + 1
    best = int(torch.where(good, depth, torch.zeros_like(depth)).argmax())  # deepest good node (first on ties)
    return anc[best].nonzero().flatten().tolist()  # ancestors in index order = root-to-node order


def reject_candidates(
    p: torch.Tensor,  # [V] target distribution at the node (sums to 1)
    cands: torch.Tensor,  # [C] candidate tokens (the node's children), tried in order
    q: torch.Tensor,  # [C, V] draft distribution each candidate was proposed from
    generator: torch.Generator | None,
) -> tuple[int, torch.Tensor]:
    """Multi-draft recursive rejection sampling (SpecInfer; EAGLE's tree sampling).

    Try candidates in turn: accept c_i with probability min(1, p(c_i) / q_i(c_i)); on rejection the target
    distribution becomes the residual norm(max(p - q_i, 0)) and the next sibling is tried against it.
    -> (index of the accepted candidate, or -1; the distribution to sample the token from if none was accepted).

    Lossless when candidate i is distributed as q_i given the earlier ones. EAGLE-2 picks children
    deterministically (top-k), so the decoder passes q_i = one-hot(c_i): then the acceptance probability is p(c_i)
    and the residual is p with c_i removed, renormalised, i.e. exact sequential sampling from p. Passing the
    draft's soft distribution for deterministically chosen children would be biased (tests show both).
    """
    p = p.clone()
    for i in range(cands.shape[0]):
        c = int(cands[i])
        ratio = float(p[c]) / max(float(q[i, c]), 1e-30)
        u = float(torch.rand((), generator=generator, device=p.device))
        if u < min(1.0, ratio):
            return i, p
        residual = (p - q[i]).clamp_min(0)
        total = float(residual.sum())
        if total <= 0:  # p == q_i: rejection has probability 0 here; keep p (unreachable in exact arithmetic)
            continue
        p = residual / total
    return -1, p


def sample_accept(
    tokens: torch.Tensor,  # [N]
    parents: torch.Tensor,  # [N]
    probs: torch.Tensor,  # [N, V] target distribution after each node (logits_to_probs)
    generator: torch.Generator | None,
) -> tuple[list[int], int]:
    """Walk the tree from the root with ``reject_candidates`` (one-hot q: children are chosen deterministically).

    -> (path of accepted node indices from the root, bonus token sampled from the last node's residual).
    """
    children: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    for i in range(1, tokens.shape[0]):
        children[int(parents[i])].append(i)
    path, node = [0], 0
    while True:
        kids = children[node]
        p = probs[node]
        if kids:
            cand = tokens[kids]  # [C]
            q = torch.nn.functional.one_hot(cand, p.shape[-1]).to(p.dtype)  # [C, V]
            i, p = reject_candidates(p, cand, q, generator)
            if i >= 0:
                node = kids[i]
                path.append(node)
                continue
        bonus = int(torch.multinomial(p, 1, generator=generator))
        return path, bonus


def keep_cache_positions(cache, keep: torch.Tensor) -> None:
    """Keep only the sequence positions ``keep`` [L] (ascending) in every layer of a DynamicCache, in place.

    After verification the cache holds the prefix and every tree node; we keep the prefix and the accepted path.
    """
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(-2, keep)  # [B, H, S, D] -> [B, H, L, D]
        layer.values = layer.values.index_select(-2, keep)
