"""Differential and Grouped Differential Attention against a literal float64 reference of the equations.

Tolerances as in test_attention.py (via reference_check): forward atol 1e-5 / rtol 1e-4, gradients
atol 1e-4 / rtol 1e-3.
"""

import math

import pytest
import torch

from core.attention.differential import DifferentialAttention, GroupedDifferentialAttention, lambda_init_fn
from tests.core.reference_check import assert_matches_reference


def literal_diff(module, x, mask=None, causal=False):
    """Head by head: (softmax(Q1K1ᵀ/√d) − λ softmax(Q2_g K2_gᵀ/√d)) V_i, norm, (1 − λ_init), W_O."""
    b, n, _ = x.shape
    h, r, d = module.num_heads, module.noise_ratio, module.head_dim
    q, k, v = module.q(x), module.k(x), module.v(x)
    allowed = torch.ones(b, h, n, n, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & (mask[:, None, None, :] if mask.ndim == 2 else mask)
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()
    lam = (
        torch.exp(module.lambda_q1 @ module.lambda_k1)
        - torch.exp(module.lambda_q2 @ module.lambda_k2)
        + module.lambda_init
    )

    def softmax_map(qh, kh, allow):
        scores = qh @ kh.transpose(-2, -1) / math.sqrt(d)
        return torch.softmax(scores.masked_fill(~allow, float("-inf")), dim=-1).nan_to_num(0.0)

    heads = []
    for i in range(h):
        grp = i // r
        sig = slice(i * d, (i + 1) * d)
        noi = slice((h + grp) * d, (h + grp + 1) * d)
        a1 = softmax_map(q[..., sig], k[..., sig], allowed[:, i])
        a2 = softmax_map(q[..., noi], k[..., noi], allowed[:, i])
        head = (a1 - lam * a2) @ v[..., i * 2 * d : (i + 1) * 2 * d]
        if module.head_norm == "rms":
            head = (
                head / torch.sqrt(head.pow(2).mean(-1, keepdim=True) + module.norm.eps) * module.norm.weight
            )
        heads.append(head * (1 - module.lambda_init))
    return module.proj(torch.cat(heads, dim=-1))


CASES = [
    (DifferentialAttention, {"num_heads": 2}),
    (GroupedDifferentialAttention, {"num_heads": 4, "noise_ratio": 2}),
    (GroupedDifferentialAttention, {"num_heads": 3, "noise_ratio": 3, "head_norm": "none"}),
]


@pytest.mark.parametrize(("cls", "kwargs"), CASES)
@pytest.mark.parametrize("mask_kind", [None, "pad", "per_head"])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_literal(cls, kwargs, mask_kind, causal) -> None:
    torch.manual_seed(0)
    dim, n = 24, 7
    attn = cls(dim, layer_idx=2, num_layers=4, **kwargs)
    x = torch.randn(2, n, dim, requires_grad=True)
    mask = None
    if mask_kind == "pad":
        mask = torch.rand(2, n) > 0.3
        mask[:, 0] = True
    elif mask_kind == "per_head":
        mask = torch.rand(2, attn.num_heads, n, n) > 0.4
        mask[0, 0, 1] = False  # a query with no key: zero head output
    _check(attn, x, mask, causal)


def _check(attn, x, mask, causal) -> None:
    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            return self.inner(t, mask=mask, is_causal=causal)

    assert_matches_reference(Wrapped(attn), lambda ref, t: literal_diff(ref.inner, t, mask, causal), x)


def test_lambda_init_is_depth_dependent_zero_based() -> None:
    assert lambda_init_fn(0) == pytest.approx(0.2)
    assert lambda_init_fn(3) == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    assert DifferentialAttention(8, num_heads=1, layer_idx=3, num_layers=4).lambda_init == lambda_init_fn(3)
    assert DifferentialAttention(8, num_heads=1, lambda_init=0.5).lambda_init == 0.5


def test_grouped_with_ratio_one_is_differential() -> None:
    torch.manual_seed(1)
    diff = DifferentialAttention(16, num_heads=2).double()
    gda = GroupedDifferentialAttention(16, num_heads=2, noise_ratio=1).double()
    gda.load_state_dict(diff.state_dict())
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    torch.testing.assert_close(gda(x, is_causal=True), diff(x, is_causal=True))
    assert gda.q.out_features == 2 * 2 * 4
    fewer = GroupedDifferentialAttention(16, num_heads=2, noise_ratio=2)
    assert fewer.q.out_features == (2 + 1) * 4  # one shared noise head


def test_gradcheck_and_causality() -> None:
    attn = GroupedDifferentialAttention(8, num_heads=2, noise_ratio=2).double()
    x = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, is_causal=True), (x,), fast_mode=True)
    y = x.detach().clone()
    y[:, 3] += 1.0
    torch.testing.assert_close(attn(x, is_causal=True)[:, :3], attn(y, is_causal=True)[:, :3], atol=0, rtol=0)


def test_default_noise_ratio() -> None:
    assert GroupedDifferentialAttention(24).noise_ratio == 3  # 6 heads: 6 signal, 2 noise
    assert GroupedDifferentialAttention(16, num_heads=4).noise_ratio == 4
    assert GroupedDifferentialAttention(8, num_heads=2).noise_ratio == 2
    assert GroupedDifferentialAttention(10, num_heads=5).noise_ratio == 1


def test_errors() -> None:
    with pytest.raises(ValueError, match="divisible by 2 \\* num_heads"):
        DifferentialAttention(10, num_heads=2)
    with pytest.raises(ValueError, match="noise_ratio"):
        GroupedDifferentialAttention(16, num_heads=2, noise_ratio=3)
    with pytest.raises(ValueError, match="head_norm"):
        DifferentialAttention(8, num_heads=1, head_norm="batch")
    with pytest.raises(ValueError, match="per-head mask must have 2 heads"):
        DifferentialAttention(8, num_heads=2)(
            torch.randn(1, 3, 8), mask=torch.ones(1, 3, 3, 3, dtype=torch.bool)
        )
