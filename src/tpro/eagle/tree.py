"""Pure tensor functions for draft trees: EAGLE-2 expansion and reranking, tree masks and positions, greedy and
lossless sampling acceptance, KV-cache compaction.

A verification tree has N nodes in topological order (parents before children): node 0 is the root (the last
committed token, not yet in the target's cache), ``parents[i] < i`` for i > 0 (``parents[0] = -1``), ``depth[0] = 0``.
Nothing here knows about models beyond a ``DynamicCache``'s layers.
"""

from __future__ import annotations

import torch

from tpro.engine.sampling import sample_from_probs


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
    return rank(scores, depth)[:total].sort().values


def rank(scores: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """scores, depth [M] -> order [M]: best score first, shallower first among equal scores (``rerank``'s order;
    every prefix of it is a tree when scores never increase from parent to child)."""
    order = torch.sort(depth, stable=True).indices  # shallow first ...
    return order[torch.sort(scores[order], descending=True, stable=True).indices]  # ... within equal scores


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

    The rule holds for any tree whose nodes are functions of the committed text alone, whoever proposed them: the
    head's top-k children and a model-free drafter's chains (suffix matching) merged into one tree
    (``merge_branches``, distinct sibling tokens). Such a proposal has q = one-hot(c): the child c is accepted
    with probability min(1, p(c) / 1) = p(c); on rejection the residual norm(max(p - one-hot(c), 0)) is p with c
    removed, renormalised; so trying distinct children c_1, c_2, ... in any order and sampling the residual when
    all fail draws the next token from p exactly (sampling without replacement, stopped at the first hit), and
    the walk continues below the accepted child with that child's p. Hence the output law equals the target's,
    token by token, for the merged tree as for either drafter's tree alone (tests: chi-square over merged trees).
    """
    children: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    for i in range(1, tokens.shape[0]):
        children[int(parents[i])].append(i)
    path, node = [0], 0
    while True:
        kids = children[node]
        p = probs[node]
        if kids:
            # reject_candidates with q_i = one-hot(c_i), without building q ([C, V]) or renormalising the [V]
            # residual after each rejection: c_i is accepted with probability p(c_i) / (mass left), a rejected c_i
            # leaves the residual with p(c_i) = 0; the same random draws, so the same tokens for a seed
            p, mass, accepted = p.clone(), float(p.sum()), -1
            for k in kids:
                c = int(tokens[k])
                pc = float(p[c])
                if float(torch.rand((), generator=generator, device=p.device)) < pc / mass:
                    accepted = k
                    break
                p[c] = 0.0
                mass -= pc
            if accepted >= 0:
                node = accepted
                path.append(node)
                continue
        bonus = int(sample_from_probs(p, generator))  # the residual, unnormalised: the sampler scales by its sum
        return path, bonus


def keep_cache_positions(cache, keep: torch.Tensor) -> None:
    """Keep only the sequence positions ``keep`` [L] (ascending) in every layer of a DynamicCache, in place.

    After verification the cache holds the prefix and every tree node; we keep the prefix and the accepted path.
    """
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(-2, keep)  # [B, H, S, D] -> [B, H, L, D]
        layer.values = layer.values.index_select(-2, keep)


# ---- merging drafters and sizing the tree ----------------------------------------------------------------------


def merge_branches(
    tokens: torch.Tensor,  # [N] verification tree (node 0 = root)
    parents: torch.Tensor,  # [N]
    values: torch.Tensor,  # [N] estimated probability that each node is accepted (root 1)
    add_tokens: list[int],  # [M] another drafter's trie below the root, topological
    add_parents: list[int],  # [M] parent within the trie, -1 = the root
    add_values: list[float],  # [M]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Graft a second draft (e.g. the suffix drafter's chains) onto a tree, sharing common prefixes.

    A grafted node whose parent already has a child with its token becomes that child (value: the larger of the
    two estimates), otherwise it is appended as a new node, so the result is still topological and siblings
    still carry distinct tokens (which greedy acceptance assumes for a single good path and sampling for not
    trying a token twice). -> (tokens [N'], parents [N'], values [N'], added [N'] bool: nodes only the second
    draft proposed). Values stay non-increasing along every path if both inputs' are.
    """
    toks, pars, vals = tokens.tolist(), parents.tolist(), values.tolist()
    added = [False] * len(toks)
    child = {(p, t): i for i, (p, t) in enumerate(zip(pars, toks)) if i > 0}  # (parent, token) -> node
    where = []  # trie node -> tree node
    for t, p, v in zip(add_tokens, add_parents, add_values):
        par = 0 if p < 0 else where[p]
        node = child.get((par, t))
        if node is None:
            node = len(toks)
            toks.append(t), pars.append(par), vals.append(v), added.append(True)
            child[(par, t)] = node
        else:
            vals[node] = max(vals[node], v)
        where.append(node)
    dev = tokens.device
    return (
        torch.tensor(toks, device=dev),
        torch.tensor(pars, device=dev),
        torch.tensor(vals, dtype=torch.float32, device=dev),
        torch.tensor(added, device=dev),
    )


def subtree(parents: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Renumber a kept subset: keep [K] ascending node indices including the root 0 and every kept node's parent
    -> parents [K] of the kept tree (indices into keep)."""
    new = torch.full((parents.shape[0],), -1, dtype=torch.long, device=parents.device)
    new[keep] = torch.arange(keep.numel(), device=parents.device)
    out = new[parents[keep].clamp_min(0)]
    out[0] = -1
    return out


def best_size(values: torch.Tensor, cost_ms: torch.Tensor, fixed_ms: float = 0.0) -> int:
    """How many draft nodes to verify: values [M] the estimated acceptance probabilities of the candidates, best
    first; cost_ms [M + 1] the target forward's cost over 1 + n tree tokens (n = 0..M).

    The expected number of tokens a step commits is 1 + the sum of its nodes' acceptance probabilities (a node
    is on the accepted path with exactly that probability, and the path plus the bonus token is what commits), so
    -> the n that maximises (1 + sum(values[:n])) / (fixed_ms + cost_ms[n]): tokens per millisecond of the step.
    """
    gain = 1 + torch.cat([values.new_zeros(1), values.cumsum(0)])  # [M + 1]
    return int((gain / (fixed_ms + cost_ms)).argmax())
