"""EAGLE test helpers: random heads for the tiny models and an "oracle" draft that proposes the target's own
top tokens (high acceptance, so long accepted paths, sibling order and cache compaction get exercised)."""

from __future__ import annotations

import pytest
import torch

from tpro.eagle.decoder import Draft, EagleConfig, EagleDecoder
from tpro.eagle.head import init_head


class OracleDecoder(EagleDecoder):
    """Drafts from the target itself: at each level the target's top-``width`` tokens (argmax tried last, so
    acceptance has to walk past rejected siblings), expanding only the argmax child, ``depth`` levels deep."""

    name = "eagle-oracle"

    def __init__(self, head, depth=4, width=3, suffix=False):
        super().__init__(head, EagleConfig(depth=depth, top_k=width, total_tokens=depth * width, suffix=suffix))
        self.depth, self.width = depth, width

    def decode(self, model, input_ids, params, generator):
        self.seq = input_ids[0].tolist()
        for step in super().decode(model, input_ids, params, generator):
            self.seq += step.tokens
            yield step

    def draft(self, model, hcache, pend_ids, pend_feats, n_head, root):
        super().draft(model, hcache, pend_ids, pend_feats, n_head, root)  # keep the head's cache in step
        toks, parents, depth = [root], [-1], [0]
        seq, parent = list(self.seq), 0
        for d in range(1, self.depth + 1):
            logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
            top = logits.topk(self.width).indices.tolist()[::-1]  # argmax last
            for t in top:
                toks.append(t), parents.append(parent), depth.append(d)
            parent, seq = len(toks) - 1, seq + [top[-1]]
        return Draft(torch.tensor(toks), torch.tensor(parents), torch.tensor(depth))


@pytest.fixture(scope="session")
def qwen2_head(tiny_qwen2):
    return init_head(tiny_qwen2.model, seed=1)


@pytest.fixture(scope="session")
def qwen3_head(tiny_qwen3):
    return init_head(tiny_qwen3.model, hot_ids=torch.arange(0, tiny_qwen3.model.config.vocab_size, 2), seed=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny-model work is thousands of small ops: on a loaded 2-core machine a second OpenMP thread only adds
    barrier waits (measured: a 40-token EAGLE greedy run took 130 s with 2 threads under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
