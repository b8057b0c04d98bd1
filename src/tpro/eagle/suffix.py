"""Model-free drafting by suffix matching: propose what followed the longest earlier occurrence of the text's last
tokens, in the prompt, the answer so far, or one of this decoder's earlier answers (SuffixDecoding, Oliaro et al.
2024; prompt lookup decoding is its special case of one sequence and one occurrence).

``SuffixCache`` holds the live sequence (prompt + answer so far) and a bounded FIFO of earlier answers, with an
index from every 1-, 2- and 3-gram to where it ends. ``draft`` takes the occurrences of the longest indexed n-gram
ending the text, extends each match backwards (up to ``max_match`` tokens), keeps those with the longest match (as
SuffixDecoding keeps the deepest suffix-tree node), and merges their continuations into a small trie whose node
counts say how many occurrences agree. An occurrence inside the live sequence whose continuation runs into the end
of the text continues periodically (the text repeats with period = its distance to the end): the repetition loops
of a small model's greedy answers are drafted in full.

Why not arctic-inference's suffix cache (PyPI ``arctic-inference`` 0.3.0, an sdist, evaluated 2026-12-03): its
C++ suffix tree builds and runs CPU-only (~1.5 min of compiling here, ~6 us a speculation), but only with
``pip install --no-build-isolation`` (an isolated build pulls ``torch>=2.10`` from PyPI, a CUDA build of several
GB), with cmake, ninja, a C++20 compiler, ``nanobind==2.9.2``, ``protobuf``, ``grpcio-tools`` preinstalled and
``CMAKE_ARGS=-DPython_EXECUTABLE=...`` (its CMakeLists finds the system Python, not the venv's), and it installs
the whole vLLM plugin package for ~1,000 lines of C++. A draft here costs ~0.1 ms in Python against a 30-85 ms
target forward, so the native speed buys nothing measurable; this file is the same algorithm (longest suffix match,
occurrence counts as confidence, a bounded cache of earlier responses) in ~150 lines with no build step.

Knows nothing about models, tensors or the EAGLE tree: token ids in, a draft trie out.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

KEYS = (3, 2, 1)  # indexed n-gram lengths, longest first: a 3-gram hit skips the scan over common single tokens


@dataclass
class SuffixDraft:
    """A draft trie below the root (the last token of the text), nodes in topological order."""

    tokens: list[int] = field(default_factory=list)  # [M]
    parents: list[int] = field(default_factory=list)  # [M] index of the parent node, -1 = the root
    support: list[float] = field(default_factory=list)  # [M] share of the matched occurrences through the node
    match_len: int = 0  # tokens of the text matched (0: no draft)


class SuffixCache:
    """The live sequence and up to ``max_answers`` earlier answers, indexed for suffix matching.

    ``begin(prompt)`` starts a request, ``extend(tokens)`` appends committed tokens, ``draft(n)`` proposes up to
    ``n`` tokens, ``end()`` moves the answer (what was appended after the prompt) into the answer cache, evicting
    the oldest beyond ``max_answers``. One request at a time (the engine decodes at batch 1).
    """

    def __init__(self, max_answers: int = 32, max_match: int = 32, max_occurrences: int = 64):
        self.max_answers, self.max_match, self.max_occurrences = max_answers, max_match, max_occurrences
        self.seqs: dict[int, list[int]] = {}  # sequence id -> tokens (the live one and the cached answers)
        # n-gram -> (sequence id, index of its last token), oldest first; entries of evicted sequences are skipped
        # and dropped lazily; each list keeps its newest max_occurrences entries (recent text predicts best)
        self.index: dict[tuple[int, ...], deque[tuple[int, int]]] = defaultdict(
            lambda: deque(maxlen=self.max_occurrences)
        )
        self.answers: deque[int] = deque()  # cached answer ids, oldest first
        self.live: int | None = None
        self.prompt_len = 0
        self._next_id = 0

    # -- the sequences ----------------------------------------------------------------------------------------

    def _add(self, tokens: list[int]) -> int:
        sid, self._next_id = self._next_id, self._next_id + 1
        self.seqs[sid] = []
        self._append(sid, tokens)
        return sid

    def _append(self, sid: int, tokens: list[int]) -> None:
        seq = self.seqs[sid]
        for t in tokens:
            seq.append(int(t))
            end = len(seq) - 1
            for n in KEYS:
                if end + 1 >= n:
                    self.index[tuple(seq[end + 1 - n :])].append((sid, end))

    def begin(self, prompt: list[int]) -> int:
        """Start a request whose text so far is ``prompt`` -> its id, for ``end``. An unfinished request is ended."""
        if self.live is not None:
            self.end(self.live)
        self.live, self.prompt_len = self._add(list(prompt)), len(prompt)
        return self.live

    def extend(self, tokens: list[int]) -> None:
        self._append(self.live, tokens)

    def end(self, live: int) -> None:
        """Cache request ``live``'s answer for later requests and drop its prompt (no-op if it was ended)."""
        if self.live != live:
            return
        answer = self.seqs.pop(self.live)[self.prompt_len :]
        self.live = None
        if self.max_answers > 0 and len(answer) > 1:
            self.answers.append(self._add(answer))
            while len(self.answers) > self.max_answers:
                del self.seqs[self.answers.popleft()]

    # -- drafting ---------------------------------------------------------------------------------------------

    def _matches(self, ctx: list[int]) -> tuple[list[tuple[int, int]], int]:
        """-> (occurrences (sequence id, end index) of the longest match of ctx's suffix, its length)."""
        last = len(ctx) - 1
        for n in KEYS:
            if len(ctx) < n or (key := tuple(ctx[-n:])) not in self.index:
                continue
            occ = self.index[key]
            for stale in [o for o in occ if o[0] not in self.seqs]:
                occ.remove(stale)
            best, found = 0, []
            for sid, end in occ:
                if sid == self.live and end == last:  # the text itself
                    continue
                seq, m = self.seqs[sid], n
                while m < self.max_match and end - m >= 0 and seq[end - m] == ctx[last - m]:
                    m += 1
                if m > best:
                    best, found = m, [(sid, end)]
                elif m == best:
                    found.append((sid, end))
            if found:
                return found, best
        return [], 0

    def _continuation(self, sid: int, end: int, n: int) -> list[int]:
        seq = self.seqs[sid]
        cont = seq[end + 1 : end + 1 + n]
        if sid == self.live:  # the match ran into the end of the text: continue the period len - 1 - end
            period = len(seq) - 1 - end
            while len(cont) < n:
                cont.append(cont[len(cont) - period])
        return cont

    def draft(self, max_tokens: int, min_support: float = 0.2) -> SuffixDraft:
        """Up to ``max_tokens`` nodes continuing the live text: the continuations of every longest-match
        occurrence merged into a trie; a node is kept if at least ``min_support`` of the occurrences pass
        through it, best-supported first (a path when the occurrences agree, a tree where they part)."""
        if self.live is None or max_tokens < 1:
            return SuffixDraft()
        occ, m = self._matches(self.seqs[self.live])
        if not occ:
            return SuffixDraft()
        children: list[dict[int, int]] = [{}]  # trie over continuations; node 0 = the root
        counts, toks, pars, depth = [len(occ)], [-1], [-1], [0]
        for sid, end in reversed(occ):  # newest first: on equal support and depth the recent continuation wins
            node = 0
            for t in self._continuation(sid, end, max_tokens):
                if t not in children[node]:
                    children[node][t] = len(toks)
                    children.append({}), counts.append(0), toks.append(t), pars.append(node)
                    depth.append(depth[node] + 1)
                node = children[node][t]
                counts[node] += 1
        # keep the max_tokens best-supported nodes, the shallower first on ties (each further token is less likely
        # to be accepted); a child never has more support than its parent, so the kept set is a tree
        order = sorted(range(1, len(toks)), key=lambda i: (-counts[i], depth[i]))
        keep = sorted(i for i in order[:max_tokens] if counts[i] >= min_support * len(occ))
        new = {0: -1} | {old: j for j, old in enumerate(keep)}
        return SuffixDraft(
            tokens=[toks[i] for i in keep],
            parents=[new[pars[i]] for i in keep],
            support=[counts[i] / len(occ) for i in keep],
            match_len=m,
        )
