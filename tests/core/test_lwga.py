"""LWGANet's LWGA module against a literal float64 reference (blur, diagonal strips, unpool as loops)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from core.attention.lwga import LWGA, blur_pool, shear, unshear

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def bn(x, m):
    """BatchNorm written out (batch statistics in training mode, running statistics in eval mode)."""
    if m.training:
        mean = x.mean((0, 2, 3), keepdim=True)
        var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    else:
        mean, var = m.running_mean.view(1, -1, 1, 1), m.running_var.view(1, -1, 1, 1)
    return (x - mean) / torch.sqrt(var + m.eps) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)


def blur_loop(x, stride=3):
    """antialiased-cnns BlurPool (filt 4, reflect pad left/top 1, right/bottom 2) with explicit taps."""
    taps = [1.0, 3.0, 3.0, 1.0]
    h, w = x.shape[-2:]

    def reflect(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    rows = range(0, h + 3 - 4 + 1, stride)
    cols = range(0, w + 3 - 4 + 1, stride)
    out = torch.zeros(*x.shape[:2], len(rows), len(cols), dtype=x.dtype)
    for oi, r in enumerate(rows):
        for oj, c in enumerate(cols):
            for a in range(4):
                for b in range(4):
                    src = x[:, :, reflect(r + a - 1, h), reflect(c + b - 1, w)]
                    out[:, :, oi, oj] = out[:, :, oi, oj] + taps[a] * taps[b] / 64.0 * src
    return out


def diagonal_strip_loop(t, weight, kernel, vertical):
    """The sheared strip conv in closed form: Σ w[a,b] t[i+a, j+b-a] (h) or Σ w[a,b] t[i+a-b, j+b] (v)."""
    h, w = t.shape[-2:]
    p = kernel // 2
    c = t.shape[1]
    out = torch.zeros_like(t)
    rows, cols = (3, kernel) if vertical else (kernel, 3)
    wt = weight.reshape(c, rows, cols)
    for ai in range(rows):
        for bi in range(cols):
            a, b = ai - rows // 2, bi - cols // 2
            di, dj = (a - b, b) if vertical else (a, b - a)
            for i in range(h):
                for j in range(w):
                    si, sj = i + di, j + dj
                    if 0 <= si < h and 0 <= sj < w:
                        out[:, :, i, j] = out[:, :, i, j] + wt[:, ai, bi] * t[:, :, si, sj]
    assert p == kernel // 2
    return out


def unpool_loop(values, idx, size):
    """Scatter pooled values back to the flat positions the max-pool picked; zeros elsewhere."""
    b, c = values.shape[:2]
    out = torch.zeros(b, c, size[0] * size[1], dtype=values.dtype)
    out = out.scatter(2, idx.flatten(2), values.flatten(2))
    return out.view(b, c, *size)


def mhsa_literal(x, att):
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    qkv = tokens @ att.qkv.weight.T
    inner = att.num_heads * att.head_dim
    outs = []
    for head in range(att.num_heads):
        sl = slice(head * att.head_dim, (head + 1) * att.head_dim)
        q, k, v = (
            qkv[..., :inner][..., sl],
            qkv[..., inner : 2 * inner][..., sl],
            qkv[..., 2 * inner :][..., sl],
        )
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(att.head_dim), dim=-1)
        outs.append(weights @ v)
    return (torch.cat(outs, -1) @ att.proj.weight.T).transpose(1, 2).reshape(b, c, h, w)


def literal_lwga(m, x, act):
    d = m.split
    x1, x2, x3, x4 = (x[:, i * d : (i + 1) * d] for i in range(4))
    # PA
    p0, p1, _, p3 = m.pa.p_conv
    y1 = x1 + x1 * torch.sigmoid(F.conv2d(act(bn(F.conv2d(x1, p0.weight), p1)), p3.weight))
    # LA
    y2 = act(bn(F.conv2d(x2, m.la[0].weight, padding=1), m.la[1]))
    # MRA
    t = blur_loop(F.max_pool2d(x3, 3, stride=1, padding=1))
    k = m.att_kernel
    a = F.conv2d(t, m.mra.h1.weight, padding=(k // 2, 1), groups=d)
    a = a + F.conv2d(t, m.mra.v1.weight, padding=(1, k // 2), groups=d)
    a = a + diagonal_strip_loop(t, m.mra.h2.weight, k, vertical=False)
    a = a + diagonal_strip_loop(t, m.mra.v2.weight, k, vertical=True)
    gate = torch.sigmoid(bn(a, m.mra.norm))
    h, w = x3.shape[-2:]
    ri = [math.floor(i * gate.shape[-2] / h) for i in range(h)]
    ci = [math.floor(j * gate.shape[-1] / w) for j in range(w)]
    y3 = x3 * gate[:, :, ri][:, :, :, ci]
    # GA
    if m.global_attention == "ga12":
        ga = m.ga
        pooled, idx = F.max_pool2d(x4, 2, stride=2, return_indices=True)
        v = act(F.conv2d(pooled, ga.proj_1.weight, ga.proj_1.bias))
        a1 = F.conv2d(v, ga.conv0.weight, ga.conv0.bias, padding=2, groups=d)
        a2 = F.conv2d(a1, ga.conv_spatial.weight, ga.conv_spatial.bias, padding=9, dilation=3, groups=d)
        a1 = F.conv2d(a1, ga.conv1.weight, ga.conv1.bias)
        a2 = F.conv2d(a2, ga.conv2.weight, ga.conv2.bias)
        both = torch.cat([a1, a2], 1)
        agg = torch.cat([both.mean(1, keepdim=True), both.max(1, keepdim=True).values], 1)
        sig = torch.sigmoid(F.conv2d(agg, ga.conv_squeeze.weight, ga.conv_squeeze.bias, padding=3))
        attn = F.conv2d(a1 * sig[:, 0:1] + a2 * sig[:, 1:2], ga.conv.weight, ga.conv.bias)
        out = F.conv2d(v * attn, ga.proj_2.weight, ga.proj_2.bias)
        y4 = bn(x4 + unpool_loop(out, idx, x4.shape[-2:]), m.ga_norm)
    elif m.global_attention == "ga":
        y4 = bn(x4 + mhsa_literal(x4, m.ga), m.ga_norm)
    else:
        pooled, idx = F.max_pool2d(x4, 2, stride=2, return_indices=True)
        y4 = x4 + unpool_loop(bn(mhsa_literal(pooled, m.ga), m.ga_norm), idx, x4.shape[-2:])
    return torch.cat([y1, y2, y3, y4], 1)


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return module


@pytest.mark.parametrize(
    ("kind", "act", "size"), [("ga12", "gelu", (7, 10)), ("dga", "relu", (9, 7)), ("ga", "gelu", (6, 6))]
)
def test_lwga_matches_literal_reference(kind: str, act: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    m = _randomize(LWGA(16, att_kernel=5, global_attention=kind, act=act))
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, 16, *size, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = m(x)
    expected = literal_lwga(ref, x64, F.gelu if act == "gelu" else torch.relu)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda s, name=name: f"{name}: {s}")


def test_shear_matches_official_square_transform_and_inverts() -> None:
    """On square maps our shear equals the official pad-by-width reshape; it also inverts on rectangles."""
    x = torch.randn(2, 3, 5, 5)
    n = x.shape[-1]
    official = F.pad(x, (0, n)).reshape(2, 3, -1)[..., :-n].reshape(2, 3, n, 2 * n - 1)
    torch.testing.assert_close(shear(x), official)
    rect = torch.randn(2, 3, 4, 7)
    sheared = shear(rect)
    assert sheared.shape == (2, 3, 4, 10)
    for i in range(4):
        torch.testing.assert_close(sheared[:, :, i, i : i + 7], rect[:, :, i])
        assert (sheared[:, :, i, :i] == 0).all() and (sheared[:, :, i, i + 7 :] == 0).all()
    torch.testing.assert_close(unshear(sheared, 7), rect)


def test_blur_pool_matches_loop_and_output_size() -> None:
    x = torch.randn(1, 2, 8, 5, dtype=torch.float64)
    out = blur_pool(x)
    assert out.shape[-2:] == (3, 2)  # ceil(H / 3), ceil(W / 3)
    torch.testing.assert_close(out, blur_loop(x))


@pytest.mark.parametrize("kind", ["ga12", "dga"])
def test_lwga_gradcheck(kind: str) -> None:
    torch.manual_seed(0)
    m = _randomize(LWGA(8, att_kernel=3, global_attention=kind)).double().eval()
    x = torch.randn(1, 8, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), fast_mode=True)


def test_lwga_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        LWGA(10)
    with pytest.raises(ValueError, match="att_kernel"):
        LWGA(8, att_kernel=4)
    with pytest.raises(ValueError, match="global_attention"):
        LWGA(8, global_attention="swin")
    with pytest.raises(ValueError, match="act"):
        LWGA(8, act="tanh")
    with pytest.raises(ValueError, match="spatial_dims"):
        LWGA(8, spatial_dims=3)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, H, W\)"):
        LWGA(8)(torch.randn(2, 12, 6, 6))
    with pytest.raises(ValueError, match="H, W >= 3"):
        LWGA(8)(torch.randn(2, 8, 2, 6))
