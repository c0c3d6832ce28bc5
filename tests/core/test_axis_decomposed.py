"""AxisDecomposedAttention (RGA-Net ADA) against a literal float64 reference: loops over columns, rows, heads.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention.axis_decomposed import AxisDecomposedAttention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def literal_projection(fmap, seq):
    """Pointwise then depthwise 3×3 convolution written as sums over channels and kernel offsets."""
    point, depth = seq[0], seq[1]
    y = torch.einsum("oc,bchw->bohw", point.weight[:, :, 0, 0], fmap) + point.bias.view(1, -1, 1, 1)
    b, c, height, width = y.shape
    padded = torch.zeros(b, c, height + 2, width + 2, dtype=y.dtype)
    padded[:, :, 1:-1, 1:-1] = y
    out = depth.bias.view(1, -1, 1, 1).expand(b, c, height, width).clone()
    for di in range(3):
        for dj in range(3):
            out = (
                out
                + depth.weight[:, 0, di, dj].view(1, c, 1, 1)
                * padded[:, :, di : di + height, dj : dj + width]
            )
    return out


def literal_head_attention(q, k, v):
    """softmax(q kᵀ/√d) v for one head and one axis sequence, query by query."""
    d = q.shape[-1]
    rows = []
    for i in range(q.shape[0]):
        w = torch.softmax(torch.stack([q[i] @ k[j] for j in range(k.shape[0])]) / math.sqrt(d), dim=0)
        rows.append(sum(w[j] * v[j] for j in range(k.shape[0])))
    return torch.stack(rows)


def literal_ada(x, module: AxisDecomposedAttention, height, width):
    b, n, c = x.shape
    heads = module.num_heads
    d = c // heads
    fmap = x.transpose(1, 2).reshape(b, c, height, width)
    qkv = literal_projection(fmap, module.qkv_height)
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    y = torch.zeros(b, c, height, width, dtype=x.dtype)
    for bi in range(b):
        for j in range(width):  # every column attends within itself
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                col = [t[bi, sl, :, j].T for t in (q, k, v)]  # (H, d)
                y[bi, sl, :, j] = literal_head_attention(*col).T
    qkv = literal_projection(y, module.qkv_width)
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    z = torch.zeros(b, c, height, width, dtype=x.dtype)
    for bi in range(b):
        for i in range(height):  # every row attends within itself
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                row = [t[bi, sl, i, :].T for t in (q, k, v)]  # (W, d)
                z[bi, sl, i, :] = literal_head_attention(*row).T
    return module.proj(z.reshape(b, c, n).transpose(1, 2))


@pytest.mark.parametrize("grid", [(3, 4), (5, 2), (1, 6)])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_ada_matches_literal(grid, backend: str) -> None:
    dim, heads = 8, 2
    n = grid[0] * grid[1]
    attn = AxisDecomposedAttention(dim, num_heads=heads, backend=backend)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, n, dim, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = attn(x, grid=grid)
    expected = literal_ada(x64, ref, *grid)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_ada_gradcheck() -> None:
    attn = AxisDecomposedAttention(4, num_heads=2).double()
    x = torch.randn(1, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, grid=(2, 3)), (x,), fast_mode=True)


def test_ada_reaches_the_whole_grid_but_projections_are_local() -> None:
    """Two axis stages connect every pair of tokens; without attention only the 3×3 projections would."""
    attn = AxisDecomposedAttention(4, num_heads=1).double()
    x = torch.randn(1, 36, 4, dtype=torch.float64, requires_grad=True)
    attn(x, grid=(6, 6))[0, 35].sum().backward()  # token (5, 5)
    assert (x.grad[0].abs().sum(-1) > 0).all()  # depends on (0, 0) too, four rows and columns away


def test_ada_contract_errors() -> None:
    attn = AxisDecomposedAttention(8, num_heads=2)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="needs `grid`"):
        attn(x)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\)"):
        attn(x, grid=(6,))
    with pytest.raises(ValueError, match=r"grid \(2, 2\) holds 4 tokens"):
        attn(x, grid=(2, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        attn(torch.randn(2, 6, 4), grid=(2, 3))
    with pytest.raises(ValueError, match="does not support `mask`"):
        attn(x, grid=(2, 3), mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, grid=(2, 3), is_causal=True)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AxisDecomposedAttention(10, num_heads=4)
