"""Attention gates (Oktay additive, AGUNet concatenation) against literal fp64 references."""

import math

import pytest
import torch

from core.attention.gates import AdditiveAttentionGate, ConcatAttentionGate
from tests.core.reference_check import assert_matches_reference

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
LETTERS = "xyz"


def linear_weights(size_in: int, size_out: int, dtype=torch.float64) -> torch.Tensor:
    """``(out, in)`` matrix of 1-D linear resampling with half-pixel centres (``align_corners=False``).

    Output sample ``o`` sits at source coordinate ``(o + ½)·in/out − ½``, clamped at 0; it mixes the two
    neighbouring inputs (the upper one clamped to the last sample) with linear weights.
    """
    m = torch.zeros(size_out, size_in, dtype=dtype)
    for o in range(size_out):
        src = max((o + 0.5) * size_in / size_out - 0.5, 0.0)
        i0 = min(math.floor(src), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        lam = src - i0
        m[o, i0] += 1.0 - lam
        m[o, i1] += lam
    return m


def resample(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Separable (bi/tri)linear resampling of ``t (B, C, *S)``: one matrix per spatial axis."""
    for axis, (s_in, s_out) in enumerate(zip(t.shape[2:], size, strict=True)):
        t = torch.movedim(torch.movedim(t, axis + 2, -1) @ linear_weights(s_in, s_out).T, -1, axis + 2)
    return t


def pointwise(w: torch.Tensor, b: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    """1×1 conv ``out[o] = Σ_c W[o, c] t[c] + b[o]``."""
    out = torch.einsum("oc,bc...->bo...", w.flatten(1), t)
    return out if b is None else out + b.view(1, -1, *([1] * (t.ndim - 2)))


def strided_patch_conv(w: torch.Tensor, t: torch.Tensor, s: int) -> torch.Tensor:
    """Conv with kernel = stride = ``s``, no padding: ``out[o, p] = Σ_{c, δ} W[o, c, δ] t[c, s·p + δ]``."""
    d = t.ndim - 2
    t = t[(..., *(slice(0, s * (n // s)) for n in t.shape[2:]))]  # drop the ragged tail, as the conv does
    blocks = t.reshape(t.shape[0], t.shape[1], *[v for n in t.shape[2:] for v in (n // s, s)])
    pos, off = LETTERS[:d], "".join(chr(ord("i") + k) for k in range(d))
    block_idx = "".join(p + q for p, q in zip(pos, off, strict=True))
    return torch.einsum(f"oc{off},bc{block_idx}->bo{pos}", w, blocks)


def additive_reference(m: AdditiveAttentionGate, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Oktay Eq. 1-2 on the sub-sampled grid, with α resampled to x's size."""
    wx = strided_patch_conv(m.theta.weight, x, m.sub_sample)
    wg = pointwise(m.phi.weight, m.phi.bias, g)
    if wg.shape[2:] != wx.shape[2:]:
        wg = resample(wg, tuple(wx.shape[2:]))
    q = pointwise(m.psi.weight, m.psi.bias, torch.relu(wx + wg))
    alpha = 1.0 / (1.0 + torch.exp(-q))
    return resample(alpha, tuple(x.shape[2:])) * x


def batch_norm(bn: torch.nn.Module, t: torch.Tensor, train: bool) -> torch.Tensor:
    """BatchNorm: biased batch statistics over (B, *S) in training, running statistics in eval."""
    shape = (1, -1) + (1,) * (t.ndim - 2)
    axes = [0, *range(2, t.ndim)]
    if train:
        mean = t.mean(dim=axes, keepdim=True)
        var = ((t - mean) ** 2).mean(dim=axes, keepdim=True)
    else:
        mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (t - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def concat_reference(m: ConcatAttentionGate, x: torch.Tensor, g: torch.Tensor, train: bool) -> torch.Tensor:
    """AGUNet: α = σ(BN(ψ ReLU([BN(W_g g↑); BN(W_x x)]))), out = α · x."""
    g = resample(g, tuple(x.shape[2:])) if g.shape[2:] != x.shape[2:] else g

    def proj(seq, t):
        return batch_norm(seq[1], pointwise(seq[0].weight, seq[0].bias, t), train)

    joint = torch.relu(torch.cat([proj(m.gate_proj, g), proj(m.skip_proj, x)], dim=1))
    return x * torch.sigmoid(proj(m.psi, joint))


def _pair(cx: int, cg: int, x_size, g_size):
    x = torch.randn(2, cx, *x_size).requires_grad_(True)
    g = torch.randn(2, cg, *g_size).requires_grad_(True)
    return x, g


def _check(module, reference, x: torch.Tensor, g: torch.Tensor) -> None:
    """fp32 module vs fp64 reference on copied weights: output and the grads of x, g and parameters."""
    out = assert_matches_reference(module, reference, x, g)
    assert out.shape == x.shape


def test_linear_weights_match_torch_interpolate() -> None:
    """The test's own resampling reference is the standard half-pixel linear interpolation."""
    t = torch.randn(1, 2, 3, 5, dtype=torch.float64)
    for size in ((6, 10), (7, 4), (3, 5)):
        expected = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(resample(t, size), expected)


CASES = [  # (spatial_dims, x size, g size): g half resolution (floor), g at x's resolution, ragged sizes
    (3, (6, 4, 4), (3, 2, 2)),
    (3, (6, 4, 4), (6, 4, 4)),
    (2, (5, 7), (2, 3)),
    (2, (6, 4), (6, 4)),
    (1, (7,), (3,)),
]


@pytest.mark.parametrize(("dims", "x_size", "g_size"), CASES)
def test_additive_gate_matches_reference(dims: int, x_size, g_size) -> None:
    torch.manual_seed(0)
    gate = AdditiveAttentionGate(8, 6, spatial_dims=dims)
    assert gate.inter_channels == 4 and gate.theta.bias is None and gate.sub_sample == 2
    _check(gate, additive_reference, *_pair(8, 6, x_size, g_size))


def test_additive_gate_without_subsampling_and_with_output_transform() -> None:
    torch.manual_seed(1)
    gate = AdditiveAttentionGate(4, 3, spatial_dims=2, sub_sample=1, inter_channels=5)
    _check(gate, additive_reference, *_pair(4, 3, (4, 6), (2, 3)))

    gate = AdditiveAttentionGate(4, 3, spatial_dims=3, output_transform=True).eval()
    bn = gate.output[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)

    def with_transform(m, x, g):
        y = additive_reference(m, x, g)
        return batch_norm(m.output[1], pointwise(m.output[0].weight, m.output[0].bias, y), train=False)

    _check(gate, with_transform, *_pair(4, 3, (4, 4, 2), (2, 2, 1)))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("dims", "x_size", "g_size"), CASES)
def test_concat_gate_matches_reference(dims: int, x_size, g_size, train: bool) -> None:
    torch.manual_seed(2)
    gate = ConcatAttentionGate(8, 6, spatial_dims=dims).train(train)
    for bn in (gate.gate_proj[1], gate.skip_proj[1], gate.psi[1]):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    _check(gate, lambda m, x, g: concat_reference(m, x, g, train), *_pair(8, 6, x_size, g_size))


def test_concat_gate_without_norm() -> None:
    torch.manual_seed(3)
    gate = ConcatAttentionGate(4, 5, spatial_dims=2, norm=False, inter_channels=3)
    ref_norm_free = ConcatAttentionGate(4, 5, spatial_dims=2, norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ref_norm_free.modules())

    def reference(m, x, g):
        g = resample(g, tuple(x.shape[2:]))
        g1 = pointwise(m.gate_proj[0].weight, m.gate_proj[0].bias, g)
        x1 = pointwise(m.skip_proj[0].weight, m.skip_proj[0].bias, x)
        joint = torch.relu(torch.cat([g1, x1], dim=1))
        return x * torch.sigmoid(pointwise(m.psi[0].weight, m.psi[0].bias, joint))

    _check(gate, reference, *_pair(4, 5, (4, 4), (2, 2)))


@pytest.mark.parametrize("cls", [AdditiveAttentionGate, ConcatAttentionGate])
def test_gates_scale_x_by_a_map_in_unit_interval(cls) -> None:
    torch.manual_seed(4)
    gate = cls(3, 2, spatial_dims=3).eval()
    x = torch.ones(2, 3, 4, 4, 4)
    alpha = gate(x, torch.randn(2, 2, 2, 2, 2))
    assert ((alpha > 0) & (alpha < 1)).all()
    assert torch.equal(alpha[:, 0], alpha[:, 1])  # one map shared by every channel


@pytest.mark.parametrize("cls", [AdditiveAttentionGate, ConcatAttentionGate])
def test_gradcheck(cls) -> None:
    torch.manual_seed(5)
    gate = cls(3, 2, spatial_dims=2).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gate, (x, g), fast_mode=True)


def test_argument_and_shape_errors() -> None:
    gate = AdditiveAttentionGate(8, 6, spatial_dims=3)
    x = torch.randn(2, 8, 6, 4, 4)
    with pytest.raises(ValueError, match=r"expected g of shape \(B, 6, D, H, W\) for spatial_dims=3"):
        gate(x, torch.randn(2, 5, 3, 2, 2))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, D, H, W\)"):
        gate(torch.randn(2, 8, 6, 4), torch.randn(2, 6, 3, 2, 2))
    with pytest.raises(ValueError, match="batch size"):
        gate(x, torch.randn(1, 6, 3, 2, 2))
    with pytest.raises(ValueError, match="sub_sample=2"):
        gate(torch.randn(2, 8, 6, 1, 4), torch.randn(2, 6, 3, 1, 2))
    with pytest.raises(ValueError, match="sub_sample"):
        AdditiveAttentionGate(8, 6, sub_sample=0)
    with pytest.raises(ValueError, match="inter_channels"):
        ConcatAttentionGate(8, 6, inter_channels=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        ConcatAttentionGate(8, 6, spatial_dims=0)
