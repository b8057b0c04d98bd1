"""tpro.models.dense: fp32 linears through oneDNN give F.linear's results, keep their parameters, and train."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tpro.models.dense import OneDNNLinear, onednn_available, use_onednn

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def test_swap_keeps_parameters_and_results(tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    swapped = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    n = use_onednn(swapped, force=True)
    assert n == sum(type(m) is OneDNNLinear for m in swapped.modules()) > 0
    assert all(type(m) is not nn.Linear for m in swapped.modules())
    # same parameter objects: tying and state dicts are untouched
    assert swapped.state_dict().keys() == plain.state_dict().keys()
    ids = torch.tensor([[1, 5, 9, 200, 7, 3]])
    with torch.inference_mode():
        torch.testing.assert_close(swapped(ids).logits, plain(ids).logits, atol=1e-4, rtol=1e-4)
    assert use_onednn(swapped, force=False) == 0  # nothing plain left, nothing forced


def test_forward_matches_f_linear_and_backward_still_works():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    lin.__class__ = OneDNNLinear
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    # training: the oneDNN op has no autograd kernel, so grad-requiring calls take F.linear
    x.requires_grad_(True)
    lin(x).sum().backward()
    assert lin.weight.grad is not None and x.grad is not None
    with torch.inference_mode():  # bf16 inputs fall back too
        assert lin.to(torch.bfloat16)(x.detach().bfloat16()).dtype == torch.bfloat16


def test_load_model_records_the_choice(tiny_qwen2):
    assert isinstance(tiny_qwen2.info["onednn_linears"], int)
    swapped = tiny_qwen2.info["onednn_linears"] > 0
    assert any(type(m) is OneDNNLinear for m in tiny_qwen2.model.modules()) == swapped
