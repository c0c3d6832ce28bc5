"""OverLoCK's ContMix gate against a literal float64 reference, with a per-pixel loop for dynamic kernels."""

import copy

import pytest
import torch
import torch.nn.functional as F

from core.attention.overlock import ContMix, neighborhood_starts

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def bn(x, m):
    """BatchNorm in training mode, written out (batch statistics over B, H, W)."""
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + m.eps) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)


def dynamic_conv_loop(m, x, g, v):
    """Eq. of ContMix per batch, group and pixel: affinity → taps → +rpb → softmax → clamped window sum."""
    c = x.shape[1]
    groups, p = m.groups, m.pool_size
    q = bn(F.conv2d(x, m.weight_query[0].weight), m.weight_query[1]) * (c // groups) ** -0.5
    key = bn(F.conv2d(F.adaptive_avg_pool2d(g, p), m.weight_key[0].weight), m.weight_key[1])
    h, w = x.shape[-2:]
    cq = q.shape[1] // groups
    cv = (c // 2) // groups
    out = torch.zeros(x.shape[0], c, h, w, dtype=x.dtype)
    kernels = ((m.smk_size, m.rpb_small, 0), (m.kernel_size, m.rpb_large, c // 2))
    for b in range(x.shape[0]):
        for grp in range(groups):
            keys = key[b, grp * cq : (grp + 1) * cq].reshape(cq, p * p)
            for i in range(h):
                for j in range(w):
                    affinity = q[b, grp * cq : (grp + 1) * cq, i, j] @ keys
                    logits = m.weight_proj.weight @ affinity + m.weight_proj.bias
                    offset = 0
                    for k, rpb, half in kernels:
                        taps = logits[offset : offset + k * k].reshape(k, k)
                        offset += k * k
                        si = min(max(i - k // 2, 0), h - k)
                        sj = min(max(j - k // 2, 0), w - k)
                        bias = torch.stack(
                            [
                                torch.stack(
                                    [rpb[grp, si + a - i + k - 1, sj + bb - j + k - 1] for bb in range(k)]
                                )
                                for a in range(k)
                            ]
                        )
                        weights = torch.softmax((taps + bias).flatten(), 0).reshape(k, k)
                        chans = slice(half + grp * cv, half + (grp + 1) * cv)
                        window = v[b, chans, si : si + k, sj : sj + k]
                        out[b, chans, i, j] = (weights * window).sum((-2, -1))
    return out


def literal_contmix(m, x, g):
    c, size = x.shape[1], x.shape[-2:]
    g = F.interpolate(g, size=size, mode="bilinear", align_corners=False)
    cat = torch.cat([x, g], 1)
    f0, f1, _, f3, f4 = m.fusion
    v = F.gelu(bn(F.conv2d(cat, f0.weight, f0.bias, padding=1, groups=cat.shape[1]), f1))
    v = F.conv2d(v, f3.weight, f3.bias)
    gx = v.pow(2).sum((2, 3), keepdim=True).sqrt()
    v = (f4.gamma * gx / (gx.mean(1, keepdim=True) + 1e-6) + 1) * v + f4.beta
    gate = F.silu(bn(F.conv2d(v, m.gate_proj[0].weight), m.gate_proj[1]))
    k = m.kernel_size
    lepe = bn(F.conv2d(v, m.lepe[0].weight, m.lepe[0].bias, padding=k // 2, groups=c), m.lepe[1])
    h, w = size
    if min(h, w) < k:
        new = (k, k * w // h) if h < w else (k * h // w, k)
        xs, gs, vs = (F.interpolate(t, size=new, mode="bilinear", align_corners=False) for t in (x, g, v))
        y = F.adaptive_avg_pool2d(dynamic_conv_loop(m, xs, gs, vs), size)
    else:
        y = dynamic_conv_loop(m, x, g, v)
    y = bn(F.conv2d(y, m.dyconv_proj[0].weight), m.dyconv_proj[1]) + lepe
    s1, s3 = m.se[1], m.se[3]
    y = y * torch.sigmoid(
        F.conv2d(F.gelu(F.conv2d(y.mean((2, 3), keepdim=True), s1.weight, s1.bias)), s3.weight, s3.bias)
    )
    return F.conv2d(bn(gate * y, m.proj[0]), m.proj[1].weight, m.proj[1].bias)


def _randomize(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if "fusion" in name else 0.5))
    return module


@pytest.mark.parametrize(("x_size", "g_size"), [((6, 7), (3, 3)), ((4, 6), (2, 3))])
def test_contmix_matches_literal_reference(x_size: tuple[int, int], g_size: tuple[int, int]) -> None:
    """(6, 7) runs at full size with clamped border windows; (4, 6) < K takes the enlarge-and-pool path."""
    torch.manual_seed(0)
    m = _randomize(ContMix(8, 6, kernel_size=5, smk_size=3, num_heads=1, pool_size=3))
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, 8, *x_size, requires_grad=True)
    g = torch.randn(2, 6, *g_size, requires_grad=True)
    x64, g64 = (t.detach().double().requires_grad_(True) for t in (x, g))
    out = m(x, g)
    expected = literal_contmix(ref, x64, g64)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    torch.testing.assert_close(g.grad.double(), g64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda s, name=name: f"{name}: {s}")


def test_neighborhood_starts_clamp_inside_the_map() -> None:
    assert neighborhood_starts(7, 5).tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert neighborhood_starts(5, 5).tolist() == [0] * 5


def test_contmix_context_changes_output_only_through_the_context() -> None:
    """The context map steers the kernels: changing g changes the output; same g, same output."""
    torch.manual_seed(0)
    m = ContMix(8, 4, kernel_size=3, smk_size=3, num_heads=1, pool_size=2).double().eval()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    g = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(m(x, g), m(x, g.clone()))
    assert not torch.allclose(m(x, g), m(x, g + torch.randn_like(g)))


def test_contmix_gradcheck() -> None:
    torch.manual_seed(0)
    m = _randomize(ContMix(4, 2, kernel_size=3, smk_size=1, num_heads=1, pool_size=2)).double()
    x = torch.randn(2, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, g), fast_mode=True)


def test_contmix_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="divisible by 4 \\* num_heads"):
        ContMix(8, 4, num_heads=4)
    with pytest.raises(ValueError, match="kernel_size"):
        ContMix(16, 4, kernel_size=6)
    with pytest.raises(ValueError, match="smk_size"):
        ContMix(16, 4, kernel_size=3, smk_size=5)
    with pytest.raises(ValueError, match="spatial_dims"):
        ContMix(16, 4, spatial_dims=3)
    m = ContMix(16, 4, kernel_size=3, smk_size=3, num_heads=1, pool_size=2)
    with pytest.raises(ValueError, match=r"expected g of shape \(B, 4, H, W\)"):
        m(torch.randn(2, 16, 5, 5), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 16, H, W\)"):
        m(torch.randn(2, 8, 5, 5), torch.randn(2, 4, 3, 3))
