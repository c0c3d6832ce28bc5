"""DaViT window and channel-group attention against literal float64 references of the paper's equations.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention import ChannelGroupAttention, WindowAttention
from core.attention.davit import window_partition, window_reverse

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def literal_window_attention(x, module: WindowAttention, grid, valid=None):
    """Token by token: each query attends the real tokens of its own w×w window (padding never attends)."""
    b, n, c = x.shape
    _, width = grid
    heads, w = module.num_heads, module.window_size
    d = c // heads
    q, k, v = module.qkv(x).split(c, dim=-1)
    valid = torch.ones(b, n, dtype=torch.bool) if valid is None else valid
    rows = []
    for bi in range(b):
        outs = []
        for t in range(n):
            i, j = divmod(t, width)
            same = [
                s
                for s in range(n)
                if (s // width) // w == i // w and (s % width) // w == j // w and bool(valid[bi, s])
            ]
            head_outs = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                if not same:
                    head_outs.append(torch.zeros(d, dtype=x.dtype))
                    continue
                scores = torch.stack([q[bi, t, sl] @ k[bi, s, sl] for s in same]) / math.sqrt(d)
                weights = torch.softmax(scores, dim=0)
                head_outs.append(sum(wt * v[bi, s, sl] for wt, s in zip(weights, same, strict=True)))
            outs.append(torch.cat(head_outs))
        rows.append(torch.stack(outs))
    return module.proj(torch.stack(rows))


def literal_channel_attention(x, module: ChannelGroupAttention):
    """DaViT Eq. 3 per group: A = softmax(d^-1/2 Kᵀ V) over the last axis, out = Q Aᵀ."""
    c = x.shape[-1]
    g = module.num_groups
    d = c // g
    q, k, v = module.qkv(x).split(c, dim=-1)
    groups = []
    for gi in range(g):
        sl = slice(gi * d, (gi + 1) * d)
        a = torch.softmax(k[..., sl].transpose(1, 2) @ v[..., sl] / math.sqrt(d), dim=-1)
        groups.append(q[..., sl] @ a.transpose(1, 2))
    return module.proj(torch.cat(groups, dim=-1))


@pytest.mark.parametrize("grid", [(4, 4), (5, 7), (3, 2)])
@pytest.mark.parametrize("use_mask", [False, True])
def test_window_attention_matches_literal(grid, use_mask: bool) -> None:
    n = grid[0] * grid[1]
    attn = WindowAttention(12, num_heads=3, window_size=3)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, n, 12, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    valid = torch.rand(2, n) > 0.3 if use_mask else None
    out = attn(x, grid=grid, mask=valid)
    expected = literal_window_attention(x64, ref, grid, valid)
    torch.testing.assert_close(out.double(), expected, **FWD)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for p, p64 in zip(attn.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD)


def test_window_padding_does_not_leak_into_real_tokens() -> None:
    """Masked padding: a 5×5 grid with 3×3 windows equals attention over the real tokens alone."""
    attn = WindowAttention(8, num_heads=2, window_size=3).double()
    x = torch.randn(1, 25, 8, dtype=torch.float64)
    out = attn(x, grid=(5, 5))
    # the bottom-right window holds tokens (3,3),(3,4),(4,3),(4,4) only
    idx = [18, 19, 23, 24]
    alone = WindowAttention(8, num_heads=2, window_size=2).double()
    alone.load_state_dict(attn.state_dict())
    torch.testing.assert_close(out[:, idx], alone(x[:, idx], grid=(2, 2)))


def test_window_partition_roundtrip() -> None:
    x = torch.randn(2, 6, 9, 4)
    torch.testing.assert_close(window_reverse(window_partition(x, 3), 3, 6, 9), x)


def test_window_attention_contract_errors() -> None:
    attn = WindowAttention(8, num_heads=2, window_size=2)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\)"):
        attn(x, grid=(6,))
    with pytest.raises(ValueError, match="key-padding mask of shape"):
        attn(x, grid=(2, 3), mask=torch.ones(2, 6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="window_size"):
        WindowAttention(8, window_size=0)


def test_channel_group_attention_matches_literal() -> None:
    attn = ChannelGroupAttention(12, num_groups=3)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, 10, 12, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = attn(x)
    expected = literal_channel_attention(x64, ref)
    torch.testing.assert_close(out.double(), expected, **FWD)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    assert torch.autograd.gradcheck(
        lambda t: ref(t), (torch.randn(1, 4, 12, dtype=torch.float64, requires_grad=True),)
    )


def test_channel_group_attention_rejects_mask_and_bad_groups() -> None:
    attn = ChannelGroupAttention(8, num_groups=2)
    with pytest.raises(ValueError, match="does not support `mask`"):
        attn(torch.randn(1, 3, 8), mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_groups"):
        ChannelGroupAttention(10, num_groups=3)


def test_channel_attention_swaps_into_tlob() -> None:
    """Swapping TLOB's attention for another registered mechanism needs no code change."""
    from functools import partial

    from domains.finance.models import TLOB

    model = TLOB(
        num_features=8,
        seq_len=8,
        hidden_dim=8,
        num_layers=1,
        attention=partial(ChannelGroupAttention, num_groups=2),
    )
    assert model(torch.randn(2, 8, 8)).shape == (2, 1, 3)
