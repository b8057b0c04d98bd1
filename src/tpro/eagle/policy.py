"""How much to draft per step: the measured cost of verifying N tree tokens by weight format, the suffix drafter's
calibrated confidence, and the one decision the EAGLE decoder takes before drafting (run the head or not).

The objective is tokens per millisecond of a step: a step commits 1 + (accepted draft tokens) tokens, and a draft
node is accepted with (an estimate of) its path probability, so a step's expected yield is 1 + the sum of its
nodes' values; it costs the draft time plus the target forward over the tree (``tree.best_size``). Constants here
come from measurement on the 2-core CPU of docs/benchmarks.md (EAGLE and issue-17 sections) and
``bench/draft_tune.py``; they steer speed only: what is verified is lossless whatever they say.

Knows nothing about models or caches.
"""

from __future__ import annotations

import torch

# Target forward over N new tokens (the tree) after a ~300-token prefix, 2 threads, Qwen2.5-Coder-0.5B, lm_head
# included: (N, ms). bf16 and fp32 from ``bench/eagle_tree_cost.py`` (2026-11-26, quiet machine); bf16 stays
# nearly flat to 32 tokens (AMX matmuls are compute-light at these sizes), fp32 doubles by 8.
# int4 / int8: estimates, not yet measured whole-model: the bf16 curve plus k x the measured difference of the
# weight-only kernels over the 72 MLP matrices (issue 17's table, ms for 1/4/8/16/32/64 rows: int4 11/19/37/69/133/
# 256, int8 28/39/72/109/174/316, bf16 43/45/48/50/50/70), k = 0.74 so that a 1-row int4 step costs 0.485 of bf16's,
# the whole-model ratio measured (41.6 vs 85.7 ms a token, every linear swapped): 1-row steps ~2x cheaper, 16+
# rows dearer than bf16. These tables are the fallback: ``tpro.eagle.load_decoder`` measures the loaded target's
# curve on the machine at hand (``decoder.measure_verify_ms``) unless ``calibrate=False``, since CPUs of one kind
# differ (an AVX2 CPU without bf16 units has none of the AMX flatness above).
VERIFY_MS: dict[str, tuple[tuple[int, float], ...]] = {
    "bf16": ((1, 46.1), (8, 54.0), (16, 68.4), (32, 85.0), (64, 131.5)),
    "fp32": ((1, 120.1), (8, 208.4), (16, 246.6), (32, 343.0), (64, 498.8)),
    "int4": ((1, 22.4), (4, 30.3), (8, 45.9), (16, 82.5), (32, 146.4), (64, 269.1)),
    "int8": ((1, 35.0), (4, 45.1), (8, 71.8), (16, 112.1), (32, 176.8), (64, 313.5)),
    # w4a8 (tpro.models.w4a8): a compiled verify, measured at startup of `tpro bench decode --weights w4a8` on an
    # AVX-512 EPYC (Zen 5), 2 threads, 2026-12-04 23:51 UTC, the kernel's super-tile layout (int4's in the same run:
    # 14.6 / 15.4 / 19.2 / 30.8 ms; bench/results/decode_w4a8_final)
    "w4a8": ((1, 11.6), (2, 11.8), (4, 14.0), (8, 18.6)),
}
LEVEL_MS = {"bf16": 4.0, "fp32": 8.0}  # one draft-head forward (a tree level), the head in the target's dtype

# The suffix drafter's node value = support x FIRST[m] x NEXT[m]^(depth - 1), m = the match length (8 = 8 or more):
# the chance that the target's next token is the first drafted one given how long the text's suffix matched, then
# the chance of each further token given the previous was right; support (the share of matched occurrences that
# agree) scales it where occurrences disagree. Measured by replaying the embedded model's bf16 greedy answers to
# train-split prompts (``python bench/draft_tune.py simulate``, 2026-12-03, 3 answers, 448 tokens; few long
# matches, so the m >= 3 entries are interpolated towards the m = 8 ones): m = 1: first 0.43 (83 drafts), next
# 0.78 (132); m = 2: 0.38 (8), 0.88 (17); m >= 8 (in repetition loops): 1.00 (8), 0.95 (86).
FIRST = (0.0, 0.43, 0.40, 0.45, 0.50, 0.55, 0.65, 0.75, 0.95)
NEXT = (0.0, 0.78, 0.85, 0.85, 0.85, 0.85, 0.88, 0.9, 0.95)
# EAGLE's node value = EAGLE_SCALE x exp(cumulative draft log-prob) (EAGLE-2's score, taken as calibrated: not
# measured separately); EAGLE_GAIN is the prior for the tokens the head adds per step when it runs (the shipped
# head: acceptance length 1.90 at depth 4 / 16 nodes over the recorded held-out run), re-estimated per request
EAGLE_SCALE = 1.0
EAGLE_GAIN = 0.9


def verify_curve(weights: str) -> tuple[tuple[int, float], ...]:
    """The (tree tokens, ms) table for a weight format ("bf16", "fp32", "int4", "int8", "w4a8"); bf16's for
    others."""
    return VERIFY_MS.get(weights, VERIFY_MS["bf16"])


def cost_ms(curve: tuple[tuple[int, float], ...], n: torch.Tensor, buckets: tuple[int, ...] | None = None):
    """n [K] tree sizes -> [K] ms: piecewise linear through the table, its last slope beyond its ends. ``buckets``
    (a compiled verify's static sizes, ``tpro.eagle.target``): a tree costs what its bucket does (the smallest
    bucket >= n; beyond the largest, n itself), so the cost is a step function and the best size fills a bucket."""
    xs = torch.tensor([float(x) for x, _ in curve])
    ys = torch.tensor([float(y) for _, y in curve])
    n = n.float()
    if buckets:
        b = torch.tensor([float(x) for x in buckets])
        i = torch.searchsorted(b, n).clamp_max(len(b) - 1)  # the first bucket >= n
        n = torch.where(n <= b[-1], b[i], n)
    i = (torch.searchsorted(xs, n, right=True) - 1).clamp(0, len(xs) - 2)
    return ys[i] + (n - xs[i]) * (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])


def suffix_values(support: list[float], parents: list[int], match_len: int) -> list[float]:
    """Estimated acceptance probability of each suffix-draft node (see FIRST, NEXT)."""
    m = min(match_len, len(FIRST) - 1)
    depth: list[int] = []
    for p in parents:
        depth.append(1 if p < 0 else depth[p] + 1)
    return [s * FIRST[m] * NEXT[m] ** (d - 1) for s, d in zip(support, depth)]


def run_eagle(
    suffix_vals: list[float], eagle_gain: float, eagle_nodes: int, eagle_ms: float, curve, buckets=None
) -> bool:
    """Draft with the head this step? Compare the best rate of verifying the suffix chain alone with the rate
    expected when the head's ``eagle_nodes`` nodes (which cost ``eagle_ms`` to draft) join it; the head adds
    ``eagle_gain`` tokens where the chain's first token is wrong (its nodes and the chain's are mostly disjoint
    alternatives at depth 1). No chain: the head runs iff its expected rate beats plain one-token steps."""
    v = torch.tensor(sorted(suffix_vals, reverse=True), dtype=torch.float32)
    m = v.numel()
    alone = (1 + torch.cat([v.new_zeros(1), v.cumsum(0)])) / cost_ms(curve, 1 + torch.arange(m + 1), buckets)
    first = float(v[0]) if m else 0.0
    with_head = (1 + eagle_gain * (1 - first) + torch.cat([v.new_zeros(1), v.cumsum(0)])) / (
        eagle_ms + cost_ms(curve, 1 + eagle_nodes + torch.arange(m + 1), buckets)
    )
    return bool(with_head.max() > alone.max())


def realized(tokens: list[int], parents: list[int], values: list[float], committed: list[int]) -> tuple[float, int]:
    """Score a suffix draft against the tokens the step committed (accepted path + bonus: what the target chose
    after the root, one by one): -> (the values it predicted, the nodes it got right), over its nodes no deeper
    than ``committed`` (deeper ones were never put to the test). The decoder keeps a running ratio of the two per
    request and scales the table's values by it, so a text where copying pays (or does not) is drafted for it."""
    depth: list[int] = []
    right: list[bool] = []
    pred, real = 0.0, 0
    for t, p, v in zip(tokens, parents, values):
        d = 1 if p < 0 else depth[p] + 1
        depth.append(d)
        right.append(d <= len(committed) and (p < 0 or right[p]) and committed[d - 1] == t)
        if d <= len(committed) and (p < 0 or right[p]):  # a node is tested once the path above it was right
            pred, real = pred + v, real + right[-1]
    return pred, real
