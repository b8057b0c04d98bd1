"""The model-free suffix drafter: exact drafts on hand-made token sequences, the bounded answer cache, and the
policy's cost model."""

import torch

from tpro.eagle import policy
from tpro.eagle.suffix import SuffixCache


def chains(d):
    """A draft trie -> its root-to-leaf token chains."""
    kids = {i for i in d.parents if i >= 0}
    out = []
    for leaf in (i for i in range(len(d.tokens)) if i not in kids):
        chain, i = [], leaf
        while i >= 0:
            chain.append(d.tokens[i])
            i = d.parents[i]
        out.append(chain[::-1])
    return sorted(out)


def test_longest_match_wins_and_is_continued():
    c = SuffixCache()
    # "7 1 2" matches at the end only through the second occurrence of "1 2" (after 7): continuation 8 9
    c.begin([1, 2, 3, 4, 7, 1, 2, 8, 9, 5, 7])
    c.extend([1, 2])
    d = c.draft(4)
    assert d.match_len == 3
    assert chains(d) == [[8, 9, 5, 7]]
    assert d.support == [1.0] * 4


def test_disagreeing_occurrences_make_a_tree_with_support():
    c = SuffixCache()
    c.begin([5, 6, 1, 5, 6, 2, 5, 6, 1, 0, 5])
    c.extend([6])  # "5 6" occurred 3 times: followed by 1, 2, 1 (matches are all of length 2)
    d = c.draft(3, min_support=0.0)
    assert d.match_len == 2
    # best support first (1: 2 of 3), then the shallower of the equally supported, then the newest occurrence's
    assert chains(d) == [[1, 0], [2]]
    by_tok = {t: s for t, s, p in zip(d.tokens, d.support, d.parents) if p < 0}
    assert by_tok == {1: 2 / 3, 2: 1 / 3}
    assert c.draft(3, min_support=0.5).tokens[0] == 1 and 2 not in c.draft(3, min_support=0.5).tokens


def test_a_repetition_loop_is_drafted_past_the_end_of_the_text():
    c = SuffixCache()
    c.begin([40, 41])
    c.extend([10, 11, 12, 10, 11])  # the answer loops with period 3
    d = c.draft(7)
    assert chains(d) == [[12, 10, 11, 12, 10, 11, 12]]


def test_no_match_no_draft_and_the_text_itself_is_not_a_match():
    c = SuffixCache()
    c.begin([1, 2, 3])
    assert c.draft(5).tokens == [] and c.draft(5).match_len == 0
    c.extend([4])
    assert c.draft(5).tokens == []
    assert SuffixCache().draft(5).tokens == []  # no request


def test_earlier_answers_are_used_and_the_cache_is_bounded():
    c = SuffixCache(max_answers=2)
    for answer in ([100, 101, 102, 103], [200, 201, 202, 203], [300, 301, 302, 303]):
        live = c.begin([1, 2])
        c.extend(answer)
        c.end(live)
    assert len(c.answers) == 2 and len(c.seqs) == 2  # the first answer was evicted
    live = c.begin([9, 9, 201])  # a new prompt ending in a token of an earlier answer
    assert chains(c.draft(2)) == [[202, 203]]
    c.extend([7, 101])  # the evicted answer is not matched (and its index entries go)
    assert c.draft(2).tokens == []
    assert all(sid in c.seqs for occ in c.index.values() for sid, _ in occ if occ is c.index[(101,)])
    c.end(live)
    # prompts are not cached, only answers (what came after the prompt)
    assert all(100 not in s and 1 not in s for s in c.seqs.values())


def test_end_is_idempotent_and_begin_ends_an_unfinished_request():
    c = SuffixCache(max_answers=4)
    a = c.begin([1])
    c.extend([5, 6])
    b = c.begin([2])  # a was not ended: its answer is cached now
    c.end(a)  # a stale id: no effect on b
    assert c.live == b
    c.extend([5])
    assert c.draft(1).tokens == [6]
    c.extend([8])
    c.end(b)
    c.end(b)
    assert c.live is None and len(c.answers) == 2


def test_no_answer_cache():
    c = SuffixCache(max_answers=0)
    live = c.begin([1])
    c.extend([5, 6, 7])
    c.end(live)
    assert not c.seqs and not c.answers


def test_cost_curve_interpolates_and_extrapolates():
    curve = ((1, 10.0), (8, 24.0), (16, 40.0))
    got = policy.cost_ms(curve, torch.tensor([1, 4, 8, 12, 16, 24]))
    assert torch.allclose(got, torch.tensor([10.0, 16.0, 24.0, 32.0, 40.0, 56.0]))
    assert policy.verify_curve("no-such-format") == policy.VERIFY_MS["bf16"]


def test_suffix_values_fall_with_depth_and_rise_with_match_length():
    v = policy.suffix_values([1.0, 1.0, 0.5], [-1, 0, 1], match_len=3)
    assert v[0] > v[1] > v[2]
    assert policy.suffix_values([1.0], [-1], 8)[0] > policy.suffix_values([1.0], [-1], 1)[0]
    assert policy.suffix_values([1.0], [-1], 0) == [0.0]


def test_run_eagle_skips_the_head_for_a_confident_chain_only():
    flat = policy.VERIFY_MS["bf16"]
    sure = [0.9 * 0.9**i for i in range(10)]
    assert not policy.run_eagle(sure, 0.9, 16, 16.0, flat)  # a long confident chain: verify it alone
    assert policy.run_eagle([], 0.9, 16, 16.0, flat)  # no chain: the shipped head's gain pays for its cost
    assert not policy.run_eagle([], 0.1, 16, 16.0, flat)  # a head that gains nothing does not run


def test_realized_scores_only_the_tested_nodes():
    # trie: 5 -> 6 -> 7 and 5 -> 8; sibling 9 at depth 1
    tokens, parents, values = [5, 6, 7, 8, 9], [-1, 0, 1, 0, -1], [0.5, 0.4, 0.3, 0.2, 0.1]
    # committed 5, 6, 1: nodes 5 and 9 tested at depth 1 (5 right), 6 and 8 below a right node (6 right), 7 right
    # path but wrong token
    assert policy.realized(tokens, parents, values, [5, 6, 1]) == (1.5, 2)
    # committed 4: both depth-1 nodes tested and wrong; nothing deeper tested
    assert policy.realized(tokens, parents, values, [4]) == (0.6, 0)
    # committed 5 only (the bonus was 5 and the step ended): depth 2 untested
    assert policy.realized(tokens, parents, values, [5]) == (0.6, 1)
