"""DANet PAM / CAM / dual attention (and DAUNet's port) against literal fp64 references of the equations."""

import pytest
import torch
import torch.nn.functional as F

from core.attention.danet import ChannelAttention, DualAttention, PositionAttention, channel_attention_map
from tests.core.reference_check import assert_matches_reference

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
SIZES = {1: (7,), 2: (3, 4), 3: (3, 2, 3)}


def _x(channels: int, dims: int, dtype=torch.float32, scale: float = 0.5) -> torch.Tensor:
    return (scale * torch.randn(2, channels, *SIZES[dims], dtype=dtype)).requires_grad_(True)


def _softmax_rows(e: torch.Tensor) -> torch.Tensor:
    """Literal row softmax ``exp(e_ij) / Σ_j exp(e_ij)`` (the max shift only keeps exp finite)."""
    w = torch.exp(e - e.amax(dim=-1, keepdim=True))
    return w / w.sum(dim=-1, keepdim=True)


def _conv1x1(w: torch.Tensor, b: torch.Tensor | None, a: torch.Tensor) -> torch.Tensor:
    """``out[o, n] = Σ_c W[o, c] a[c, n] + b[o]`` on a flattened map ``a (B, C, N)``."""
    out = torch.einsum("oc,bcn->bon", w.flatten(1), a)
    return out if b is None else out + b[None, :, None]


def pam_reference(m: PositionAttention, x: torch.Tensor) -> torch.Tensor:
    """DANet Eq. 1-2: ``s_ji = softmax_i(B_i · C_j)``, ``E_j = α Σ_i s_ji D_i + A_j`` (B = query, C = key)."""
    a = x.flatten(2)
    q = _conv1x1(m.query.weight, m.query.bias, a)
    k = _conv1x1(m.key.weight, m.key.bias, a)
    v = _conv1x1(m.value.weight, m.value.bias, a)
    n = a.shape[-1]
    out = torch.zeros_like(a)
    for j in range(n):  # output position j attends over all positions i
        logits = torch.einsum("bc,bci->bi", q[:, :, j], k)
        s = _softmax_rows(logits)
        out[:, :, j] = torch.einsum("bi,bci->bc", s, v)
    return (m.gamma * out + a).view(x.shape)


def cam_reference(x: torch.Tensor, gamma: torch.Tensor, variant: str) -> torch.Tensor:
    """DANet Eq. 3-4 in the three forms documented in core.attention.danet."""
    a = x.flatten(2)  # (B, C, N)
    c = a.shape[1]
    energy = torch.zeros(a.shape[0], c, c, dtype=a.dtype)
    for i in range(c):
        for j in range(c):
            energy[:, i, j] = (a[:, i] * a[:, j]).sum(-1)
    if variant == "danet":  # official code: softmax over j of (max_k E_ik − E_ij), out_i = Σ_j w_ij A_j
        w = _softmax_rows(energy.amax(dim=-1, keepdim=True) - energy)
        out = torch.einsum("bij,bjn->bin", w, a)
    elif variant == "paper":  # Eq. 3: x_ji = exp(A_i·A_j) / Σ_i exp(A_i·A_j), E_j = Σ_i x_ji A_i
        x_ji = torch.exp(energy) / torch.exp(energy).sum(dim=1, keepdim=True)  # normalise over i (dim 1)
        out = torch.einsum("bij,bin->bjn", x_ji, a)  # x_ji stored at [i, j]; symmetric E so layout is moot
    else:  # DAUNet Keras: vec_a (N, C); out = vec_a @ softmax_lastaxis(vec_aᵀ vec_a)
        vec_a = a.transpose(1, 2)
        ata = vec_a.transpose(1, 2) @ vec_a
        out = (vec_a @ _softmax_rows(ata)).transpose(1, 2)
    return (gamma * out + a).view(x.shape)


def _set_gamma(module: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                p.fill_(value)


def _check_fwd_bwd(module, reference, x: torch.Tensor) -> None:
    """fp32 module vs fp64 reference on copied weights: output, input grad and every parameter grad."""
    assert_matches_reference(module, reference, x)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_pam_matches_reference(dims: int, backend: str) -> None:
    torch.manual_seed(0)
    pam = PositionAttention(16, spatial_dims=dims, backend=backend)
    assert pam.qk_channels == 2
    _set_gamma(pam, 0.7)
    _check_fwd_bwd(pam, pam_reference, _x(16, dims))


def test_pam_without_bias_and_explicit_width() -> None:
    torch.manual_seed(1)
    pam = PositionAttention(4, spatial_dims=3, qk_channels=3, bias=False)
    assert pam.query.bias is None and pam.qk_channels == 3
    _set_gamma(pam, -1.3)
    _check_fwd_bwd(pam, pam_reference, _x(4, 3))
    assert PositionAttention(4, reduction=8).qk_channels == 1  # clamped, the official C // 8 would be 0


@pytest.mark.parametrize("variant", ["danet", "paper", "daunet"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_cam_matches_reference(variant: str, dims: int) -> None:
    torch.manual_seed(2)
    cam = ChannelAttention(6, spatial_dims=dims, variant=variant)
    _set_gamma(cam, 0.8)
    _check_fwd_bwd(cam, lambda m, x: cam_reference(x, m.gamma, variant), _x(6, dims))


def test_cam_variants_differ_and_daunet_normalises_the_destination_axis() -> None:
    torch.manual_seed(3)
    x = _x(5, 2, torch.float64).detach()
    outs = {}
    for variant in ("danet", "paper", "daunet"):
        cam = ChannelAttention(5, variant=variant).double()
        _set_gamma(cam, 1.0)
        outs[variant] = cam(x) - x
    assert not torch.allclose(outs["danet"], outs["paper"], atol=1e-3)
    assert not torch.allclose(outs["paper"], outs["daunet"], atol=1e-3)
    # danet's max-trick equals softmax(-E): it favours the least similar channels.
    a = x.flatten(2)
    torch.testing.assert_close(outs["danet"].flatten(2), torch.softmax(-(a @ a.transpose(1, 2)), -1) @ a)
    # DAUNet's map is the transpose: columns (weights leaving one source channel) sum to 1, rows do not.
    w_paper, w_daunet = channel_attention_map(x, "paper"), channel_attention_map(x, "daunet")
    torch.testing.assert_close(w_paper.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    torch.testing.assert_close(w_daunet.sum(-2), torch.ones(2, 5, dtype=torch.float64))
    assert not torch.allclose(w_daunet.sum(-1), torch.ones(2, 5, dtype=torch.float64))


@pytest.mark.parametrize("cls", [PositionAttention, ChannelAttention])
def test_gamma_zero_is_identity_at_init(cls) -> None:
    torch.manual_seed(4)
    m = cls(8, spatial_dims=3)
    assert m.gamma.item() == 0.0
    x = torch.randn(2, 8, 3, 2, 2)
    assert torch.equal(m(x), x)
    # ... but gamma still receives a gradient, so training moves it off zero.
    m(x).square().sum().backward()
    assert m.gamma.grad is not None and m.gamma.grad.abs().item() > 0


@pytest.mark.parametrize("cls", [PositionAttention, ChannelAttention])
def test_gradcheck(cls) -> None:
    torch.manual_seed(5)
    m = cls(4, spatial_dims=2).double()
    _set_gamma(m, 0.9)
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), fast_mode=True)


def _bn_eval(bn: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (t.ndim - 2)
    inv = (bn.running_var + bn.eps).rsqrt().view(shape)
    return (t - bn.running_mean.view(shape)) * inv * bn.weight.view(shape) + bn.bias.view(shape)


def _conv(conv: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[t.ndim]
    return fn(t, conv.weight, conv.bias, padding=conv.padding)


def dual_reference(m: DualAttention, x: torch.Tensor) -> torch.Tensor:
    """DAUNet bottleneck / DANetHead composition in eval mode (dropout off, BN with running stats)."""
    cam_variant = m.cam.variant

    def cbr(seq, t):  # conv → BN → ReLU
        return torch.relu(_bn_eval(seq[1], _conv(seq[0], t)))

    if m.style == "daunet":
        p = pam_reference(m.pam, x)
        c = cam_reference(x, m.cam.gamma, cam_variant)
        p = _conv(m.pam_out[4], cbr(m.pam_out, p))
        c = _conv(m.cam_out[4], cbr(m.cam_out, c))
        return _bn_eval(m.fuse[2], _conv(m.fuse[1], p + c))
    p = cbr(m.pam_out, pam_reference(m.pam, cbr(m.pam_in, x)))
    c = cbr(m.cam_out, cam_reference(cbr(m.cam_in, x), m.cam.gamma, cam_variant))
    return _conv(m.fuse[1], p + c)


def _randomise_bn(module: torch.nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)


@pytest.mark.parametrize(("style", "dims"), [("daunet", 3), ("daunet", 2), ("danet", 2), ("danet", 1)])
def test_dual_attention_matches_reference(style: str, dims: int) -> None:
    torch.manual_seed(6)
    m = DualAttention(16, spatial_dims=dims, style=style).eval()
    assert m.inner_channels == (16 if style == "daunet" else 4)
    assert m.cam.variant == style and (m.pam.query.bias is None) == (style == "daunet")
    _randomise_bn(m)
    _set_gamma(m, 0.6)
    _check_fwd_bwd(m, dual_reference, _x(16, dims))


def test_dual_attention_train_mode_and_options() -> None:
    torch.manual_seed(7)
    m = DualAttention(8, spatial_dims=3, cam_variant="danet", dropout=0.0)
    assert m.cam.variant == "danet"
    x = torch.randn(2, 8, 3, 2, 2, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert m.pam.gamma.grad is not None and m.cam.gamma.grad is not None


def test_argument_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="variant"):
        ChannelAttention(8, variant="sagan")
    with pytest.raises(ValueError, match="backend"):
        PositionAttention(8, backend="flex")
    with pytest.raises(ValueError, match="reduction"):
        PositionAttention(8, reduction=0)
    with pytest.raises(ValueError, match="style"):
        DualAttention(8, style="psp")
    with pytest.raises(ValueError, match="dropout"):
        DualAttention(8, dropout=1.0)
    with pytest.raises(ValueError, match="spatial_dims"):
        PositionAttention(8, spatial_dims=4)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, D, H, W\) for spatial_dims=3"):
        PositionAttention(8, spatial_dims=3)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, H, W\)"):
        ChannelAttention(8)(torch.randn(2, 7, 4, 4))
