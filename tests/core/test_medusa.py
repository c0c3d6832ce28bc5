"""MedusaAttention against a literal float64 reference of its equations (see core/attention/medusa.py).

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention.medusa import MedusaAttention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def gelu(t):
    return 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))


def literal_conv(x, conv):
    """'Same' convolution as a sum over kernel offsets of channel matrix products (zero padding)."""
    b, _, height, width = x.shape
    kh, kw = conv.weight.shape[-2:]
    ph, pw = kh // 2, kw // 2
    padded = torch.zeros(b, x.shape[1], height + 2 * ph, width + 2 * pw, dtype=x.dtype)
    padded[:, :, ph : ph + height, pw : pw + width] = x
    out = conv.bias.view(1, -1, 1, 1).expand(b, -1, height, width).clone()
    for di in range(kh):
        for dj in range(kw):
            window = padded[:, :, di : di + height, dj : dj + width]
            out = out + torch.einsum("oc,bchw->bohw", conv.weight[:, :, di, dj], window)
    return out


def literal_pool(x, s):
    """Mean over each s×s block, block by block (edge blocks hold fewer tokens)."""
    b, c, height, width = x.shape
    rows, cols = -(-height // s), -(-width // s)
    out = torch.zeros(b, c, rows, cols, dtype=x.dtype)
    for i in range(rows):
        for j in range(cols):
            out[:, :, i, j] = x[:, :, i * s : (i + 1) * s, j * s : (j + 1) * s].mean(dim=(2, 3))
    return out


def literal_up(x, s, height, width):
    """Token (i, j) takes the value of block (i // s, j // s)."""
    out = torch.zeros(x.shape[0], x.shape[1], height, width, dtype=x.dtype)
    for i in range(height):
        for j in range(width):
            out[:, :, i, j] = x[:, :, i // s, j // s]
    return out


def literal_medusa(x, module: MedusaAttention, height, width):
    b, n, c = x.shape
    fmap = x.transpose(1, 2).reshape(b, c, height, width)
    enc = [gelu(literal_conv(fmap, module.stem))]
    for conv in module.encoder:
        enc.append(gelu(literal_conv(literal_pool(enc[-1], 2), conv)))
    dec = enc[-1]
    for level in range(module.depth - 1, -1, -1):
        skip = enc[level]
        up = literal_up(dec, 2, skip.shape[2], skip.shape[3])
        dec = gelu(literal_conv(up + skip, module.decoder[level]))
    v = x @ module.v.weight.T + module.v.bias
    groups = []
    d = module.head_dim
    for h, s in enumerate(module.scales):
        logits = literal_conv(literal_pool(dec, s), module.heads[h])
        gate = literal_up(torch.sigmoid(logits), s, height, width).reshape(b, d, n).transpose(1, 2)
        groups.append(v[..., h * d : (h + 1) * d] * gate)
    return module.proj(torch.cat(groups, dim=-1))


@pytest.mark.parametrize(
    ("grid", "scales", "depth"), [((5, 7), (1, 2, 4, 3), 2), ((4, 4), (1, 8), 3), (None, (1, 2), 1)]
)
def test_medusa_matches_literal(grid, scales, depth: int) -> None:
    dim = 8
    n = grid[0] * grid[1] if grid else 9
    attn = MedusaAttention(dim, scales=scales, depth=depth, body_dim=6)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, n, dim, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = attn(x, grid=grid)
    height, width = grid if grid else (1, n)
    expected = literal_medusa(x64, ref, height, width)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_medusa_gradcheck() -> None:
    attn = MedusaAttention(4, scales=(1, 2), depth=1, body_dim=2).double()
    x = torch.randn(1, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, grid=(2, 3)), (x,), fast_mode=True)


def test_medusa_head_scale_sets_attention_resolution() -> None:
    """Head s forms its map on s×s blocks, so its gates are constant over each block and differ across."""
    attn = MedusaAttention(4, scales=(2, 4), depth=1).double()
    with torch.no_grad():  # identity value and output projections: out = x * gates
        for lin in (attn.v, attn.proj):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
    x = torch.rand(1, 64, 4, dtype=torch.float64) + 0.5
    gates = (attn(x, grid=(8, 8)) / x).view(8, 8, 4).detach()
    for ch, s in ((0, 2), (1, 2), (2, 4), (3, 4)):
        blocks = gates[..., ch].reshape(8 // s, s, 8 // s, s)
        torch.testing.assert_close(blocks, blocks[:, :1, :, :1].expand_as(blocks))
    assert not torch.allclose(gates[0, 0, 2], gates[4, 4, 2])  # different 4×4 blocks differ


def test_medusa_sequence_is_a_one_row_image() -> None:
    attn = MedusaAttention(8).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    torch.testing.assert_close(attn(x), attn(x, grid=(1, 10)))
    torch.testing.assert_close(attn(x), attn(x, grid=(10,)))


def test_medusa_contract_errors() -> None:
    attn = MedusaAttention(8)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\), \(N,\) or None"):
        attn(x, grid=(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        attn(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="does not support `mask`"):
        attn(x, mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, is_causal=True)
    with pytest.raises(ValueError, match="divisible by len"):
        MedusaAttention(8, scales=(1, 2, 4))
    with pytest.raises(ValueError, match="scales"):
        MedusaAttention(8, scales=(0, 2))
    with pytest.raises(ValueError, match="depth"):
        MedusaAttention(8, depth=-1)
