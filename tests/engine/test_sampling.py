import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from tpro.engine.sampling import SamplingParams, logits_to_probs, next_token


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.9), (0.8, 20, 0.5), (1.0, 1, 1.0)]
)
def test_probs_match_transformers_warpers(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    ref = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        ref = TopKLogitsWarper(top_k)(None, ref)
    if top_p < 1.0:
        ref = TopPLogitsWarper(top_p)(None, ref)
    torch.testing.assert_close(logits_to_probs(logits, temperature, top_k, top_p), ref.softmax(-1))


def test_temperature_zero_is_one_hot_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0]])
    assert logits_to_probs(logits, 0.0).tolist() == [[0.0, 1.0, 0.0]]
    assert int(next_token(logits[0], SamplingParams(), None)) == 1


def test_seeded_sampling_is_reproducible_and_follows_probs():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    p = SamplingParams(temperature=1.0, seed=7)
    a = [int(next_token(logits, p, g)) for g in [p.generator()] for _ in range(2000)]
    b = [int(next_token(logits, p, g)) for g in [p.generator()] for _ in range(2000)]
    assert a == b
    freq = torch.bincount(torch.tensor(a), minlength=3).float() / len(a)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.04)


@pytest.mark.parametrize(
    "kw", [{"max_new_tokens": 0}, {"temperature": -1}, {"temperature": 100}, {"top_p": 0}, {"top_k": -2}]
)
def test_bad_params_raise(kw):
    with pytest.raises(ValueError):
        SamplingParams(**kw)


def test_sample_from_probs_follows_each_rows_law_and_never_draws_a_zero():
    from tests.eagle.test_tree import chi_square_p
    from tpro.engine.sampling import sample_from_probs

    g = torch.Generator().manual_seed(3)
    P = torch.tensor([[0.5, 0.0, 0.2, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])  # zeros inside and at the ends
    draws = sample_from_probs(P.repeat(20000, 1), g).reshape(20000, 2)  # [N, 2]
    assert draws.shape == (20000, 2) and draws.dtype == torch.long
    counts = torch.bincount(draws[:, 0], minlength=5).float()
    assert counts[1] == counts[4] == 0 and chi_square_p(counts[[0, 2, 3]], P[0, [0, 2, 3]]) > 1e-3
    assert (draws[:, 1] == 4).all()
    one = sample_from_probs(torch.tensor([0.25, 0.25, 0.5]), torch.Generator().manual_seed(0))
    assert one.shape == () and 0 <= int(one) < 3
