"""BEVANet's SDLSKA against a literal float64 reference of its equations (strip convs as explicit loops)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from core.attention.large_kernel import SDLSKA, SDLSKA_KERNELS

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def bn_train(x, bn):
    """BatchNorm written out: batch statistics in training mode, running statistics in eval mode."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if bn.training:
        axes = [0, *range(2, x.ndim)]
        mean = x.mean(axes, keepdim=True)
        var = x.var(axes, unbiased=False, keepdim=True)
    else:
        mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def strip_loop(a, weight, bias, length, dilation, axis):
    """Depthwise dilated strip conv along ``axis`` (2 = H, 3 = W), zero padding, as an explicit tap loop."""
    out = torch.zeros_like(a) + bias.view(1, -1, 1, 1)
    half = (length - 1) // 2
    size = a.shape[axis]
    w = weight.reshape(a.shape[1], length)
    for t in range(length):
        shift = dilation * (t - half)
        for pos in range(size):
            src = pos + shift
            if 0 <= src < size:
                if axis == 2:
                    out[:, :, pos] = out[:, :, pos] + w[:, t, None] * a[:, :, src]
                else:
                    out[:, :, :, pos] = out[:, :, :, pos] + w[:, t, None] * a[:, :, :, src]
    return out


def literal_sdlska(m, x, kernel_size, gate_relu=True, shortcut=True):
    """BEVANet's SDLSKA + CKS + VAN projections, step by step (2-D)."""
    small_k, strip, dil = SDLSKA_KERNELS[kernel_size]
    c = x.shape[1]
    u = F.gelu(F.conv2d(x, m.proj_1.weight, m.proj_1.bias))
    a_s = F.conv2d(u, m.dw_small.weight, m.dw_small.bias, padding=small_k // 2, groups=c)
    a_h = strip_loop(a_s, m.dw_strips[0].weight, m.dw_strips[0].bias, strip, dil, axis=2)
    a_v = strip_loop(a_s, m.dw_strips[1].weight, m.dw_strips[1].bias, strip, dil, axis=3)
    total = a_s + a_h + a_v
    pooled = total.mean((2, 3), keepdim=True)
    r1, r2, r3 = m.reduce[0], m.reduce[1], m.reduce[2]
    z = F.conv2d(pooled, r1.weight, r1.bias)
    z = z * r2.weight.view(1, -1, 1, 1) + r2.bias.view(1, -1, 1, 1)  # depthwise 1×1
    z = torch.relu(bn_train(z, r3))
    spatial_in = torch.cat([total.mean(1, keepdim=True), total.max(1, keepdim=True).values], dim=1)
    spatial = torch.sigmoid(F.conv2d(spatial_in, m.squeeze.weight, m.squeeze.bias, padding=3))
    attn = torch.zeros_like(total)
    for i, branch in enumerate((a_s, a_h, a_v)):
        e1, e2, e3 = m.expand[i]
        logit = F.conv2d(z, e1.weight, e1.bias)
        logit = bn_train(logit * e2.weight.view(1, -1, 1, 1) + e2.bias.view(1, -1, 1, 1), e3)
        channel = torch.sigmoid(torch.relu(logit) if gate_relu else logit)
        attn = attn + branch * channel * spatial[:, i : i + 1]
    out = F.conv2d(u * F.conv2d(attn, m.pw.weight, m.pw.bias), m.proj_2.weight, m.proj_2.bias)
    return out + x if shortcut else out


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.3)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return module


@pytest.mark.parametrize(("kernel_size", "gate_relu", "shortcut"), [(7, True, True), (23, False, False)])
def test_sdlska_matches_literal_reference(kernel_size: int, gate_relu: bool, shortcut: bool) -> None:
    """Compared in eval mode (running statistics).

    CKS's BatchNorms over B pooled vectors are ill-conditioned in training
    mode at small B (two samples normalise to ±1); the training-mode forward is checked separately.
    """
    torch.manual_seed(0)
    m = _randomize(
        SDLSKA(8, kernel_size=kernel_size, hidden_channels=4, channel_gate_relu=gate_relu, shortcut=shortcut)
    ).eval()
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, 8, 9, 11, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = m(x)
    expected = literal_sdlska(ref, x64, kernel_size, gate_relu, shortcut)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda s, name=name: f"{name}: {s}")


def test_sdlska_train_mode_forward_matches_reference() -> None:
    torch.manual_seed(1)
    m = _randomize(SDLSKA(8, kernel_size=11, hidden_channels=4))
    ref = copy.deepcopy(m).double()
    x = torch.randn(4, 8, 7, 6)
    torch.testing.assert_close(m(x).double(), literal_sdlska(ref, x.double(), 11), **FWD)


def test_sdlska_receptive_field_is_the_large_kernel() -> None:
    """An impulse reaches exactly the ±(K−1)/2 cross of the strips (plus the small square), no further."""
    torch.manual_seed(0)
    m = SDLSKA(4, kernel_size=23, hidden_channels=2).double().eval()
    with torch.no_grad():
        for bias in (m.dw_small.bias, m.dw_strips[0].bias, m.dw_strips[1].bias):
            bias.zero_()
    u = torch.zeros(1, 4, 41, 41, dtype=torch.float64)
    u[..., 20, 20] = 1.0
    small = m.dw_small(u)
    reach = (m.dw_strips[0](small).abs().sum(1)[0] > 0).nonzero()
    assert reach[:, 0].min() == 20 - 11 and reach[:, 0].max() == 20 + 11
    assert reach[:, 1].min() == 20 - 2 and reach[:, 1].max() == 20 + 2


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_sdlska_gradcheck(dims: int) -> None:
    torch.manual_seed(0)
    m = _randomize(SDLSKA(2, spatial_dims=dims, kernel_size=7, hidden_channels=1)).double().eval()
    assert len(m.dw_strips) == dims and m.squeeze.out_channels == dims + 1
    x = torch.randn(2, 2, *(4, 3, 3)[:dims], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), fast_mode=True)


def test_sdlska_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="kernel_size must be one of"):
        SDLSKA(8, kernel_size=9)
    with pytest.raises(ValueError, match="hidden_channels"):
        SDLSKA(8, hidden_channels=0)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, H, W\)"):
        SDLSKA(8, kernel_size=7)(torch.randn(2, 6, 5, 5))
    with pytest.raises(ValueError, match="spatial_dims"):
        SDLSKA(8, spatial_dims=4)
    assert SDLSKA(64).reduce[0].out_channels == 32  # official max(C // 16, 32)
