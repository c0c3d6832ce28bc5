"""linear_cross_entropy against F.cross_entropy on the full logits: values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from core.training.losses import linear_cross_entropy


def _reference(hidden, weight, target, bias, excluded):
    logits = hidden @ weight.T + (0 if bias is None else bias)
    if excluded is not None:
        minus_inf = torch.full_like(logits[:, :1], -torch.inf)
        logits = torch.cat([logits[:, :excluded], minus_inf, logits[:, excluded + 1 :]], 1)
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("excluded", [None, 0, 3])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_matches_full_cross_entropy(with_bias, excluded, chunk_size):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    target = torch.randint(0, 11, (23,), generator=g)
    if excluded is not None:
        target[target == excluded] = (excluded + 1) % 11
    inputs = [hidden, weight] + ([bias] if with_bias else [])
    ours = linear_cross_entropy(hidden, weight, target, bias, excluded_class=excluded, chunk_size=chunk_size)
    ref = _reference(hidden, weight, target, bias, excluded)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)  # float32 softmax inside
    upstream = torch.tensor(2.5, dtype=torch.float64)
    for got, want in zip(
        torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream), strict=True
    ):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_grad_reaches_a_sliced_table_and_skips_the_excluded_row():
    table = torch.randn(12, 4, requires_grad=True)
    hidden = torch.randn(5, 4, requires_grad=True)
    target = torch.tensor([1, 2, 3, 4, 9])
    linear_cross_entropy(hidden, table[:10], target, excluded_class=0).backward()
    assert table.grad[10:].abs().sum() == 0 and table.grad[1:10].abs().sum() > 0
    assert table.grad[0].abs().sum() == 0  # the excluded class has probability 0: no gradient


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": torch.tensor([0, 1, 12])}, r"\[0, 12\)"),
        ({"target": torch.tensor([0, 1, 2])}, "excluded class 0"),
        ({"target": torch.tensor([1, 2])}, r"target of shape \(3,\)"),
        ({"weight": torch.randn(12, 5)}, "same D"),
        ({"bias": torch.randn(5)}, r"bias \(12,\)"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    args = {"hidden": torch.randn(3, 4), "weight": torch.randn(12, 4), "target": torch.tensor([1, 2, 3])}
    args |= kwargs
    with pytest.raises(ValueError, match=message):
        linear_cross_entropy(**args, excluded_class=0)
