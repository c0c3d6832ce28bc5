"""Local Linear Attention: blockwise == dense == literal per-query weighted least squares (float64).

Tolerances as in test_attention.py: fp32 vs fp64 forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 /
rtol 1e-3; float64 algorithm-vs-algorithm comparisons use atol 1e-10.
"""

import copy
import math

import pytest
import torch

from core.attention.lla import (
    LocalLinearAttention,
    local_linear_attention_blockwise,
    local_linear_attention_dense,
)

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
EXACT = {"atol": 1e-10, "rtol": 1e-9}


def literal_lla(q, k, v, mask=None, causal=False, ridge=0.1):
    """Per query: min_{a,B} Σ_j p_j ‖v_j − a − B(k_j − q)‖² + λ‖B‖² by its (d+1)-dim normal equations."""
    b, h, n, d = q.shape
    m = k.shape[2]
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                keys = [
                    j
                    for j in range(m)
                    if (mask is None or bool(mask[bi if mask.shape[0] > 1 else 0, 0, i, j]))
                    and (not causal or j <= i)
                ]
                if not keys:
                    continue
                qi = q[bi, hi, i]
                logits = torch.stack([qi @ k[bi, hi, j] / math.sqrt(d) for j in keys])
                p = torch.softmax(logits, 0)
                x = torch.stack([torch.cat([torch.ones(1, dtype=q.dtype), k[bi, hi, j] - qi]) for j in keys])
                y = torch.stack([v[bi, hi, j] for j in keys])
                lhs = x.T @ (p[:, None] * x)
                reg = torch.eye(d + 1, dtype=q.dtype) * ridge
                reg[0, 0] = 0.0  # the intercept is not penalised
                theta = torch.linalg.solve(lhs + reg, x.T @ (p[:, None] * y))
                out[bi, hi, i] = theta[0]
    return out


def _qkv(n=7, d=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 2, n, d, generator=g, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_dense_and_blockwise_match_literal(causal: bool, use_mask: bool) -> None:
    q, k, v = _qkv()
    mask = torch.rand(2, 1, 7, 7, generator=torch.Generator().manual_seed(1)) > 0.3 if use_mask else None
    if mask is not None:
        mask[1, 0, 2] = False  # a query with no key -> zeros
    expected = literal_lla(q, k, v, mask, causal)
    dense = local_linear_attention_dense(q, k, v, mask=mask, is_causal=causal)
    torch.testing.assert_close(dense, expected, **EXACT)
    for block in (1, 2, 3, 7, 16):  # 2 and 3 do not divide N = 7
        out = local_linear_attention_blockwise(q, k, v, mask=mask, is_causal=causal, block_size=block)
        torch.testing.assert_close(out, expected, **EXACT, msg=lambda s, block=block: f"block {block}: {s}")


def test_large_ridge_is_softmax_attention_and_correction_is_active() -> None:
    q, k, v = _qkv()
    soft = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(3), -1) @ v
    torch.testing.assert_close(local_linear_attention_dense(q, k, v, ridge=1e9), soft, atol=1e-7, rtol=0)
    assert not torch.allclose(local_linear_attention_dense(q, k, v, ridge=0.1), soft, atol=1e-3)


def test_local_linear_reproduces_an_affine_map_exactly() -> None:
    """Values that are an affine function of the keys are fitted exactly: o_i = A q_i + c (no ridge bias)."""
    q, k, _ = _qkv(n=12, d=2)
    a, c = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    v = k @ a.T + c
    out = local_linear_attention_blockwise(q, k, v, ridge=1e-9, block_size=5)
    torch.testing.assert_close(out, q @ a.T + c, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_blockwise_vs_dense_and_gradcheck(causal: bool) -> None:
    q, k, v = (t.requires_grad_(True) for t in _qkv(n=5, d=2))
    mask = torch.tensor([True, True, False, True, True])[None, None, None].expand(2, 1, 5, 5)
    small = [t.detach()[:1, :1].requires_grad_(True) for t in (q, k, v)]
    assert torch.autograd.gradcheck(
        lambda a, b_, c: local_linear_attention_blockwise(
            a, b_, c, mask=mask[:1], is_causal=causal, block_size=2
        ),
        small,
        fast_mode=True,
    )
    out = local_linear_attention_blockwise(q, k, v, is_causal=causal, block_size=3)
    g1 = torch.autograd.grad(out.sum(), (q, k, v))
    g2 = torch.autograd.grad(local_linear_attention_dense(q, k, v, is_causal=causal).sum(), (q, k, v))
    for a, b_ in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b_, **EXACT)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("algorithm", ["blockwise", "dense"])
def test_module_matches_literal(causal: bool, algorithm: str) -> None:
    dim, heads, n = 8, 2, 6
    attn = LocalLinearAttention(dim, num_heads=heads, algorithm=algorithm, block_size=4)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, n, dim, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    pad = torch.ones(2, n, dtype=torch.bool)
    pad[0, -1] = False
    out = attn(x, mask=pad, is_causal=causal)
    q, k, v = (t.view(2, n, heads, dim // heads).transpose(1, 2) for t in ref.qkv(x64).chunk(3, -1))
    lla = literal_lla(q, k, v, pad[:, None, None, :].expand(2, 1, n, n), causal, ref.ridge)
    expected = ref.proj(lla.transpose(1, 2).reshape(2, n, dim))
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)


def test_causality_and_errors() -> None:
    attn = LocalLinearAttention(8, num_heads=2, block_size=3).double()
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 5:] += 1.0
    torch.testing.assert_close(attn(x, is_causal=True)[:, :5], attn(y, is_causal=True)[:, :5], atol=0, rtol=0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        LocalLinearAttention(9, num_heads=2)
    with pytest.raises(ValueError, match="ridge"):
        LocalLinearAttention(8, ridge=0.0)
    with pytest.raises(ValueError, match="algorithm"):
        LocalLinearAttention(8, algorithm="flash")
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="is_causal needs"):
        local_linear_attention_dense(q, q[:, :, :3], q[:, :, :3], is_causal=True)
