"""DualToken-ViT's dual-token attention against a literal float64 reference of the reconstructed equations."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from core.attention.dualtoken import DualTokenAttention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def mlp(x, m):
    return F.gelu(x @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias


def heads_attention(q, k, v, heads):
    """softmax(q kᵀ / √d) v per head with an explicit head loop; q (B, N, C), k/v (B, M, C)."""
    d = q.shape[-1] // heads
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
        outs.append(weights @ v[..., sl])
    return torch.cat(outs, -1)


def literal_dualtoken(m, x, grid, g=None):
    b, _, c = x.shape
    h, w = grid
    heads, p = m.aggregate.num_heads, m.num_global
    x_map = x.transpose(1, 2).reshape(b, c, h, w)
    # Conv encoder (ConvNeXt block)
    dw = F.conv2d(x_map, m.local_dw.weight, m.local_dw.bias, padding=m.local_dw.padding, groups=c)
    local = x + mlp(layer_norm(dw.flatten(2).transpose(1, 2), m.local_norm), m.local_mlp)
    # step-wise downsampling until both sides <= P
    ds = local.transpose(1, 2).reshape(b, c, h, w)
    while max(ds.shape[-2:]) > p:
        ds = F.max_pool2d(
            F.conv2d(ds, m.down_dw.weight, m.down_dw.bias, padding=1, groups=c), 2, ceil_mode=True
        )
    hd, wd = ds.shape[-2:]
    # global aggregation: MHSA
    tok = ds.flatten(2).transpose(1, 2)
    qkv = tok @ m.aggregate.qkv.weight.T + m.aggregate.qkv.bias
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    x_ga = heads_attention(q, k, v, heads) @ m.aggregate.proj.weight.T + m.aggregate.proj.bias
    # enrich with the position-aware global tokens
    g_map = m.global_init.expand(b, -1, -1, -1) if g is None else g.transpose(1, 2).reshape(b, c, p, p)
    if (hd, wd) != (p, p):
        g_map = F.interpolate(g_map, size=(hd, wd), mode="bilinear", align_corners=False)
    s = m.mix_weights[0] * x_ga + m.mix_weights[1] * g_map.flatten(2).transpose(1, 2)
    g_new = s + mlp(layer_norm(s, m.enrich_norm), m.enrich_mlp)
    # global broadcast: image tokens query G_new
    br = m.broadcast
    q = local @ br.q.weight.T + br.q.bias
    kv = g_new @ br.kv.weight.T + br.kv.bias
    x_glob = heads_attention(q, kv[..., :c], kv[..., c:], heads) @ br.proj.weight.T + br.proj.bias
    return local + x_glob, g_new


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize(("grid", "num_global"), [((5, 6), 2), ((2, 3), 3), ((4, 4), 4)])
def test_dualtoken_matches_literal_reference(grid: tuple[int, int], num_global: int) -> None:
    """(5, 6) → 3×3 → 2×2 (two downsampling steps); (2, 3) < P resizes G; (4, 4) = P needs neither."""
    torch.manual_seed(0)
    m = _randomize(DualTokenAttention(8, num_heads=2, num_global=num_global, local_kernel=3))
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, grid[0] * grid[1], 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = m(x, grid=grid)
    expected, g_new = literal_dualtoken(ref, x64, grid)
    torch.testing.assert_close(out.double(), expected, **FWD)
    if grid == (4, 4):
        torch.testing.assert_close(m.global_tokens.double(), g_new, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        if p.grad is None:  # the downsampling conv is unused when the grid is already <= P
            assert p64.grad is None and name.startswith("down_dw") and max(grid) <= num_global
            continue
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda s, name=name: f"{name}: {s}")


def test_dualtoken_carries_global_tokens_through_context() -> None:
    """Layer 2 given layer 1's tokens uses them instead of its own initial tokens."""
    torch.manual_seed(0)
    l1, l2 = (
        _randomize(DualTokenAttention(8, num_heads=2, num_global=3, local_kernel=3)).double() for _ in "ab"
    )
    x = torch.randn(2, 36, 8, dtype=torch.float64)
    y1 = l1(x, grid=(6, 6))
    carried = l1.global_tokens
    assert carried.shape == (2, 9, 8)
    y2 = l2(y1, grid=(6, 6), context=carried)
    expected, _ = literal_dualtoken(l2, y1, (6, 6), g=carried)
    torch.testing.assert_close(y2, expected)
    assert not torch.allclose(y2, l2(y1, grid=(6, 6)))


def test_dualtoken_gradcheck() -> None:
    torch.manual_seed(0)
    m = _randomize(DualTokenAttention(4, num_heads=2, num_global=2, local_kernel=3, mlp_ratio=1.0)).double()
    x = torch.randn(1, 12, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: m(a, grid=(3, 4), context=b), (x, g), fast_mode=True)


def test_dualtoken_errors_name_the_argument() -> None:
    m = DualTokenAttention(8, num_heads=2, num_global=2)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="needs `grid`"):
        m(x)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\)"):
        m(x, grid=(1, 2, 3))
    with pytest.raises(ValueError, match=r"expected context \(global tokens\) of shape \(2, 4, 8\)"):
        m(x, grid=(2, 3), context=torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="mask"):
        m(x, grid=(2, 3), mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        m(x, grid=(2, 3), is_causal=True)
    with pytest.raises(ValueError, match="local_kernel"):
        DualTokenAttention(8, local_kernel=4)
    with pytest.raises(ValueError, match="num_global"):
        DualTokenAttention(8, num_global=0)
