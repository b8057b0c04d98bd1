"""Pure tree functions: masks, reranking, greedy acceptance, and the lossless sampling verifier (statistically)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpro.eagle import tree

# A tree:      0
#            /   \
#           1     2
#          / \     \
#         3   4     5
#                    \
#                     6
PARENTS = torch.tensor([-1, 0, 0, 1, 1, 2, 5])


def test_ancestors_and_depths():
    anc = tree.ancestors(PARENTS)
    assert anc[6].nonzero().flatten().tolist() == [0, 2, 5, 6]
    assert anc[4].nonzero().flatten().tolist() == [0, 1, 4]
    assert tree.depths(PARENTS).tolist() == [0, 1, 1, 2, 2, 2, 3]


def test_tree_mask_sees_prefix_ancestors_and_self_only():
    m = tree.tree_attention_mask(tree.ancestors(PARENTS), prefix_len=3, dtype=torch.float32)
    assert m.shape == (1, 1, 7, 10)
    allowed = m[0, 0] == 0
    assert allowed[:, :3].all()  # the whole prefix
    assert allowed[6, 3:].nonzero().flatten().tolist() == [0, 2, 5, 6]
    assert not allowed[3, 3 + 2]  # node 3 does not see its uncle
    assert (m[0, 0][~allowed] == torch.finfo(torch.float32).min).all()


def test_causal_mask_is_lower_triangular_after_prefix():
    m = tree.causal_mask(3, 2, torch.float32)[0, 0] == 0
    assert m.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=40), st.integers(1, 40), st.integers(0, 3))
def test_rerank_keeps_a_tree(seeds, total, ties):
    # random drafted trees in topological order with non-increasing path scores (log-probs <= 0), with ties
    n = len(seeds)
    parents, scores, depth = [-1], [0.0], [1]
    for i in range(1, n):
        p = seeds[i] % i
        step = 0.0 if seeds[i] % 4 < ties else -((seeds[i] % 97) / 10)
        parents.append(p)
        scores.append(scores[p] + step)
        depth.append(depth[p] + 1)
    keep = tree.rerank(torch.tensor(scores), torch.tensor(depth), total)
    kept = set(keep.tolist())
    assert len(kept) == min(total, n)
    assert keep.tolist() == sorted(kept)
    for k in kept:
        assert parents[k] == -1 or parents[k] in kept, "a kept node's parent was dropped"
    # and they are the best-scoring ones
    dropped = [s for i, s in enumerate(scores) if i not in kept]
    if dropped:
        assert min(scores[i] for i in kept) >= max(dropped)


def test_expand_frontier_scores_are_cumulative():
    f = torch.tensor([-0.1, -2.0])
    logp = torch.log_softmax(torch.tensor([[3.0, 1.0, 0.0, -1.0], [5.0, 0.0, 0.0, 0.0]]), -1)
    s, tok, nxt = tree.expand_frontier(f, logp, top_k=2)
    assert tok.tolist() == [[0, 1], [0, 1]] or tok[0].tolist() == [0, 1]
    assert torch.allclose(s, f[:, None] + logp.gather(1, tok))
    assert torch.equal(s.flatten()[nxt], s.flatten().topk(2).values)


def test_greedy_accept_longest_matching_path():
    tokens = torch.tensor([9, 10, 11, 12, 13, 14, 15])
    anc = tree.ancestors(PARENTS)
    # target argmax after each node: after root -> 11 (node 2), after 2 -> 14 (node 5), after 5 -> 99 (not 15)
    target_next = torch.tensor([11, 13, 14, 0, 0, 99, 0])
    assert tree.greedy_accept(tokens, PARENTS, anc, target_next) == [0, 2, 5]
    target_next = torch.tensor([10, 13, 14, 0, 0, 99, 0])  # node 1 then node 4
    assert tree.greedy_accept(tokens, PARENTS, anc, target_next) == [0, 1, 4]
    target_next = torch.tensor([7, 13, 14, 0, 0, 15, 0])  # nothing matches at depth 1
    assert tree.greedy_accept(tokens, PARENTS, anc, target_next) == [0]


def test_keep_cache_positions_gathers_the_sequence_axis():
    from transformers import DynamicCache

    cache = DynamicCache()
    k = torch.arange(2 * 1 * 6 * 1, dtype=torch.float32).view(1, 2, 6, 1)
    cache.update(k, k + 100, 0)
    tree.keep_cache_positions(cache, torch.tensor([0, 1, 3, 5]))
    assert cache.layers[0].keys[0, 0, :, 0].tolist() == [0, 1, 3, 5]
    assert cache.layers[0].values[0, 1, :, 0].tolist() == [106, 107, 109, 111]
    assert cache.get_seq_length() == 4


# ---- the sampling verifier: its output distribution must be the target's --------------------------------------

V = 6
P = torch.tensor([0.30, 0.25, 0.20, 0.15, 0.07, 0.03])  # target distribution at the node
Q = torch.tensor([0.05, 0.10, 0.40, 0.05, 0.30, 0.10])  # a draft distribution that disagrees with it
N_SAMPLES = 8000


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square goodness of fit -> p-value (scipy-free: regularised upper incomplete gamma)."""
    n = counts.sum()
    keep = probs > 0
    assert counts[~keep].sum() == 0, f"sampled a token of probability 0: {counts}"
    exp = probs[keep] * n
    stat = float(((counts[keep] - exp) ** 2 / exp).sum())
    dof = int(keep.sum()) - 1
    return float(
        torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64))
    )


def _run(verifier, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V)
    for _ in range(N_SAMPLES):
        counts[verifier(g)] += 1
    return counts


def _deterministic_cands(g, q_rows):
    """EAGLE-2's situation: the children are fixed (top-k of the draft), whatever the randomness."""
    cands = torch.tensor([2, 4, 1])
    i, resid = tree.reject_candidates(P, cands, q_rows(cands), g)
    return int(cands[i]) if i >= 0 else int(torch.multinomial(resid, 1, generator=g))


def test_rejection_with_one_hot_q_on_deterministic_children_is_exact():
    counts = _run(lambda g: _deterministic_cands(g, lambda c: torch.nn.functional.one_hot(c, V).float()))
    assert chi_square_p(counts, P) > 1e-3


def test_rejection_with_iid_children_from_q_is_exact():
    # SpecInfer's setting: k children drawn i.i.d. from q, each tried against the running residual
    def verifier(g):
        cands = torch.multinomial(Q, 3, replacement=True, generator=g)
        i, resid = tree.reject_candidates(P, cands, Q.expand(3, V), g)
        return int(cands[i]) if i >= 0 else int(torch.multinomial(resid, 1, generator=g))

    assert chi_square_p(_run(verifier), P) > 1e-3


def test_chi_square_catches_a_sampler_that_accepts_drafts_with_probability_one():
    def biased(g):
        return 2  # "the draft token is always accepted"

    def biased_mix(g):  # subtler: accept the first draft token whenever p > 0, else fall back to exact sampling
        return 2 if float(torch.rand((), generator=g)) < 0.5 else int(torch.multinomial(P, 1, generator=g))

    assert chi_square_p(_run(biased), P) < 1e-6
    assert chi_square_p(_run(biased_mix), P) < 1e-6


def test_chi_square_catches_soft_q_on_deterministic_children():
    # the classic EAGLE-at-T>0 bug: children picked by top-k but verified as if sampled from the soft draft q
    counts = _run(lambda g: _deterministic_cands(g, lambda c: Q.expand(c.shape[0], V)))
    assert chi_square_p(counts, P) < 1e-6


def test_sample_accept_first_token_and_second_token_follow_the_target():
    # tree: root -> {1: tok 0, 2: tok 2}, node 2 -> {3: tok 1}; target distributions per node
    tokens = torch.tensor([5, 0, 2, 1])
    parents = torch.tensor([-1, 0, 0, 2])
    probs = torch.stack([P, P.flip(0), torch.tensor([0.1, 0.5, 0.1, 0.1, 0.1, 0.1]), P])
    g = torch.Generator().manual_seed(1)
    first, second_after_2 = torch.zeros(V), torch.zeros(V)
    for _ in range(N_SAMPLES):
        path, bonus = tree.sample_accept(tokens, parents, probs, g)
        seq = [int(tokens[i]) for i in path[1:]] + [bonus]
        first[seq[0]] += 1
        if seq[0] == 2:
            second_after_2[seq[1]] += 1
    assert chi_square_p(first, P) > 1e-3
    assert chi_square_p(second_after_2, probs[2]) > 1e-3


@pytest.mark.parametrize("p_c", [1.0, 0.0])
def test_reject_candidates_edge_probabilities(p_c):
    p = torch.zeros(V)
    p[3] = p_c
    p[0] = 1 - p_c
    i, resid = tree.reject_candidates(
        p, torch.tensor([3]), torch.nn.functional.one_hot(torch.tensor([3]), V).float(), None
    )
    if p_c == 1.0:
        assert i == 0
    else:
        assert i == -1 and resid[3] == 0 and resid[0] == 1


# ---- merging a second drafter's trie, sizing the tree -----------------------------------------------------------


def test_merge_branches_shares_prefixes_and_stays_a_tree():
    # the EAGLE tree of PARENTS with tokens 9 (root), 10..15; the suffix trie: chain 11 -> 14 -> 30 (shares nodes
    # 2 and 5) and a sibling branch 11 -> 31, plus a new depth-1 token 32
    tokens = torch.tensor([9, 10, 11, 12, 13, 14, 15])
    values = torch.tensor([1.0, 0.5, 0.4, 0.3, 0.2, 0.3, 0.1])
    t, p, v, added = tree.merge_branches(
        tokens, PARENTS, values, [11, 14, 30, 31, 32], [-1, 0, 1, 0, -1], [0.8, 0.7, 0.6, 0.05, 0.1]
    )
    assert t.tolist() == [9, 10, 11, 12, 13, 14, 15, 30, 31, 32]
    assert p.tolist() == [-1, 0, 0, 1, 1, 2, 5, 5, 2, 0]
    assert added.tolist() == [False] * 7 + [True] * 3
    assert torch.allclose(v, torch.tensor([1.0, 0.5, 0.8, 0.3, 0.2, 0.7, 0.1, 0.6, 0.05, 0.1]))
    assert (p[1:] < torch.arange(1, 10)).all()  # topological
    for node in range(1, 10):  # siblings distinct, values never rise along a path
        sib = [i for i in range(1, 10) if p[i] == p[node] and i != node]
        assert all(t[i] != t[node] for i in sib)
        assert v[node] <= v[p[node]]


def test_merge_into_a_bare_root_and_subtree_renumbering():
    t, p, v, added = tree.merge_branches(
        torch.tensor([5]), torch.tensor([-1]), torch.ones(1), [1, 2, 3], [-1, 0, 1], [0.9, 0.8, 0.7]
    )
    assert t.tolist() == [5, 1, 2, 3] and p.tolist() == [-1, 0, 1, 2] and added.tolist() == [False, True, True, True]
    keep = torch.tensor([0, 2, 5, 6])  # root, node 2, node 5 (child of 2), node 6 (child of 5)
    assert tree.subtree(PARENTS, keep).tolist() == [-1, 0, 1, 2]
    assert tree.subtree(PARENTS, torch.tensor([0, 1, 4])).tolist() == [-1, 0, 1]


def test_best_size_follows_the_cost_curve():
    values = torch.tensor([0.9, 0.8, 0.5, 0.1, 0.05])
    flat = torch.tensor([50.0, 50.5, 51.0, 51.5, 52.0, 52.5])  # bf16-like: extra rows nearly free
    steep = torch.tensor([30.0, 40.0, 50.0, 60.0, 70.0, 80.0])  # int4-like: every row costs
    assert tree.best_size(values, flat) == 5
    assert tree.best_size(values, steep) == 2  # (1 + 1.7) / 50 beats 1/30, 1.9/40 and 3.2/60
    assert tree.best_size(torch.zeros(5), flat) == 0
    assert tree.best_size(values[:0], flat[:1]) == 0
    # a big fixed draft cost makes extra nodes relatively cheaper
    assert tree.best_size(values, steep, fixed_ms=1000.0) == 5


def test_sample_accept_on_a_merged_tree_is_exact():
    """EAGLE children {0, 2} (node 2 with child 1) merged with a suffix chain 2 -> 3 -> 4 and a suffix-only depth-1
    token 5: every child is a deterministic proposal (q one-hot), so the first token must follow p(root) and the
    second, given the first was 2, p(node 2), whether 2 came from EAGLE, the chain or both."""
    tokens, parents, _, added = tree.merge_branches(
        torch.tensor([9, 0, 2, 1]),
        torch.tensor([-1, 0, 0, 2]),
        torch.ones(4),
        [2, 3, 4, 5],
        [-1, 0, 1, -1],
        [0.5, 0.4, 0.3, 0.2],
    )
    assert tokens.tolist() == [9, 0, 2, 1, 3, 4, 5] and parents.tolist() == [-1, 0, 0, 2, 2, 4, 0]
    p_node2 = torch.tensor([0.1, 0.3, 0.05, 0.4, 0.1, 0.05])
    probs = torch.stack([P, P.flip(0), p_node2, P, P.flip(0), P, P])
    g = torch.Generator().manual_seed(3)
    first, second_after_2, deep = torch.zeros(V), torch.zeros(V), 0
    for _ in range(N_SAMPLES):
        path, bonus = tree.sample_accept(tokens, parents, probs, g)
        seq = [int(tokens[i]) for i in path[1:]] + [bonus]
        first[seq[0]] += 1
        if seq[0] == 2:
            second_after_2[seq[1]] += 1
        deep += len(path) > 2
    assert deep > 100, "the test must see paths through the merged chain"
    assert chi_square_p(first, P) > 1e-3
    assert chi_square_p(second_after_2, p_node2) > 1e-3
