"""SE, ECA, CBAM and CBAM's spatial gate against literal fp64 references of their equations."""

import itertools

import pytest
import torch

from core.attention.channel_gates import CBAM, ECA, SpatialGate, SqueezeExcitation, eca_kernel_size
from tests.core.reference_check import assert_matches_reference

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
SIZES = {1: (7,), 2: (5, 4), 3: (3, 4, 2)}


def _sigmoid(t: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-t))


def _pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Global pooling ``(B, C, *S) → (B, C)``: the mean ``Σ x / N`` or the maximum over positions."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return flat.sum(-1) / flat.shape[-1] if kind == "avg" else flat.max(dim=-1).values


def _mlp(w1, b1, w2, b2, z: torch.Tensor) -> torch.Tensor:
    """``W₂ ReLU(W₁ z + b₁) + b₂`` on ``z (B, C)``."""
    h = torch.einsum("hc,bc->bh", w1, z) + b1
    return torch.einsum("ch,bh->bc", w2, torch.clamp(h, min=0.0)) + b2


def _scale(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return x * s.view(*s.shape, *([1] * (x.ndim - 2)))


def se_reference(m: SqueezeExcitation, x: torch.Tensor) -> torch.Tensor:
    """Hu et al. Eq. 2-4: ``s = σ(W₂ δ(W₁ z))``, ``out = s · x``."""
    s = _sigmoid(_mlp(m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias, _pool(x, m.pool)))
    return _scale(x, s)


def eca_reference(m: ECA, x: torch.Tensor) -> torch.Tensor:
    """Wang et al. Eq. 12-13: ``s_c = σ(Σ_t w_t z_{c + t − k//2})`` with zero padding at the ends."""
    z = _pool(x, "avg")
    w = m.conv.weight.view(-1)
    k, c = w.numel(), z.shape[1]
    logits = torch.zeros_like(z)
    for ch in range(c):
        for t in range(k):
            src = ch + t - k // 2
            if 0 <= src < c:
                logits[:, ch] = logits[:, ch] + w[t] * z[:, src]
    return _scale(x, _sigmoid(logits))


def same_conv_single_output(weight: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Zero-padded "same" conv to 1 channel: ``out[p] = Σ_{c, δ} W[0, c, δ] t[c, p + δ − k//2]``."""
    k = weight.shape[-1]
    spatial = t.shape[2:]
    out = torch.zeros(t.shape[0], *spatial, dtype=t.dtype)
    for pos in itertools.product(*(range(n) for n in spatial)):
        acc = torch.zeros(t.shape[0], dtype=t.dtype)
        for off in itertools.product(range(k), repeat=len(spatial)):
            src = tuple(p + o - k // 2 for p, o in zip(pos, off, strict=True))
            if all(0 <= s < n for s, n in zip(src, spatial, strict=True)):
                acc = acc + (weight[(0, slice(None), *off)] * t[(slice(None), slice(None), *src)]).sum(-1)
        out[(slice(None), *pos)] = acc
    return out.unsqueeze(1)


def spatial_reference(m: SpatialGate, x: torch.Tensor) -> torch.Tensor:
    """Woo et al. Eq. 3: ``M_s = σ(f^{k×k}([mean_c(x); max_c(x)]))``, ``out = M_s · x`` (+ x if residual)."""
    pooled = torch.cat([x.sum(1, keepdim=True) / x.shape[1], x.max(dim=1, keepdim=True).values], dim=1)
    logits = same_conv_single_output(m.conv.weight, pooled)
    if isinstance(m.norm, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d | torch.nn.BatchNorm3d):
        bn = m.norm  # eval mode: running statistics
        logits = (logits - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    out = x * _sigmoid(logits)
    return out + x if m.residual else out


def cbam_reference(m: CBAM, x: torch.Tensor) -> torch.Tensor:
    """Woo et al. Eq. 2 then Eq. 3: one MLP shared by the avg- and max-pooled descriptors."""
    fc1, fc2 = m.mlp[0], m.mlp[2]
    logits = sum(_mlp(fc1.weight, fc1.bias, fc2.weight, fc2.bias, _pool(x, kind)) for kind in ("avg", "max"))
    x = _scale(x, _sigmoid(logits))
    return x if m.spatial is None else spatial_reference(m.spatial, x)


def _check(module, reference, channels: int, dims: int) -> None:
    """fp32 module vs fp64 reference on copied weights: output, input grad and every parameter grad."""
    assert_matches_reference(module, reference, torch.randn(2, channels, *SIZES[dims], requires_grad=True))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_se_matches_reference(dims: int, pool: str) -> None:
    torch.manual_seed(0)
    se = SqueezeExcitation(16, spatial_dims=dims, reduction=4, pool=pool)
    assert se.fc1.out_features == 4
    _check(se, se_reference, 16, dims)


def test_eca_kernel_size_follows_the_paper() -> None:
    # k = |log2(C)/2 + 1/2|_odd: C=8 → 2 → 3; 64 → 3.5 → 3; 256 → 4.5 → 5; 512 → 5; 2048 → 6 → 7.
    assert [eca_kernel_size(c) for c in (8, 64, 256, 512, 2048)] == [3, 3, 5, 5, 7]
    assert ECA(256).kernel_size == 5 and ECA(256, kernel_size=7).kernel_size == 7


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_eca_matches_reference(dims: int) -> None:
    torch.manual_seed(1)
    eca = ECA(12, spatial_dims=dims, kernel_size=5)
    _check(eca, eca_reference, 12, dims)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [3, 7])
def test_cbam_matches_reference(dims: int, kernel_size: int) -> None:
    torch.manual_seed(2)
    cbam = CBAM(8, spatial_dims=dims, reduction=2, kernel_size=kernel_size)
    _check(cbam, cbam_reference, 8, dims)


def test_cbam_channel_only_and_spatial_options() -> None:
    torch.manual_seed(3)
    _check(CBAM(8, spatial_dims=2, reduction=16, use_spatial=False), cbam_reference, 8, 2)
    assert CBAM(8, reduction=16).mlp[0].out_features == 1  # C // r clamped to 1
    gate = SpatialGate(6, spatial_dims=2, kernel_size=3, norm=True).eval()
    gate.norm.running_mean.fill_(0.3)
    gate.norm.running_var.fill_(2.0)
    _check(gate, spatial_reference, 6, 2)
    _check(SpatialGate(6, spatial_dims=3, kernel_size=3, residual=True), spatial_reference, 6, 3)


@pytest.mark.parametrize(
    "module",
    [
        SqueezeExcitation(4, reduction=2),
        SqueezeExcitation(4, reduction=2, pool="max"),
        ECA(4, kernel_size=3),
        CBAM(4, reduction=2, kernel_size=3),
        SpatialGate(4, kernel_size=3, residual=True),
    ],
    ids=["se", "se-max", "eca", "cbam", "spatial-gate"],
)
def test_gradcheck(module) -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module.double(), (x,), fast_mode=True)


def test_argument_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="pool"):
        SqueezeExcitation(8, pool="min")
    with pytest.raises(ValueError, match="reduction"):
        CBAM(8, reduction=0)
    with pytest.raises(ValueError, match="kernel_size"):
        ECA(8, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size"):
        SpatialGate(8, kernel_size=6)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, W\) for spatial_dims=1"):
        ECA(8, spatial_dims=1)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, D, H, W\)"):
        CBAM(8, spatial_dims=3)(torch.randn(2, 4, 3, 4, 4))
