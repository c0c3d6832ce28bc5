"""The medical networks: shapes, odd sizes, what each switch and preset builds, swaps, overfitting."""

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.channel_gates import CBAM
from core.attention.cross import CrossAttention
from core.attention.danet import ChannelAttention, DualAttention, PositionAttention
from core.attention.gates import AdditiveAttentionGate, ConcatAttentionGate
from core.attention.mha import MultiHeadAttention
from core.blocks.token_map import TokenMixerMap
from core.blocks.unet import UpConv, crop_to, pool_factors
from core.training import instantiate_network
from domains.medical.models import AGUNet, DAGUNet, DAUNet, QTSeg, SegmentationNetwork, UNet

TINY = (4, 8, 16)
UNETS = (UNet, AGUNet, DAUNet, DAGUNet)


def _shapes(out: Tensor | list[Tensor]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in out] if isinstance(out, list) else [tuple(out.shape)]


def _net(cls: type[UNet], spatial_dims: int = 3, channels: tuple[int, ...] = TINY, **kw: object) -> UNet:
    return cls(in_channels=2, num_classes=3, spatial_dims=spatial_dims, channels=channels, **kw)


@pytest.mark.parametrize("cls", UNETS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("spatial_dims", "size", "coarse"),
    [(3, (35, 51, 35), (18, 26, 18)), (2, (37, 29), (19, 15))],
)
def test_unet_shapes_odd_sizes(cls: type[UNet], spatial_dims: int, size: tuple, coarse: tuple) -> None:
    net = _net(cls, spatial_dims)
    x = torch.randn(2, 2, *size)
    out = net.train()(x)
    if cls in (AGUNet, DAGUNet):
        # K = 2 decoder levels: full resolution first, then the coarser level at its own size.
        assert _shapes(out) == [(2, 3, *size), (2, 3, *coarse)]
    else:
        assert _shapes(out) == [(2, 3, *size)]
    with torch.no_grad():
        assert _shapes(net.eval()(x[:1])) == [(1, 3, *size)]


def test_deep_supervision_levels_and_eval_tensor() -> None:
    net = UNet(1, 2, channels=(4, 8, 16, 32), deep_supervision=True)
    out = net.train()(torch.randn(1, 1, 20, 16, 9))
    # 9 → 5 → 3 along the last axis (ceil pooling), 20 → 10 → 5, 16 → 8 → 4.
    assert _shapes(out) == [(1, 2, 20, 16, 9), (1, 2, 10, 8, 5), (1, 2, 5, 4, 3)]
    assert all(t.is_contiguous() for t in out)
    assert isinstance(net.eval()(torch.randn(1, 1, 20, 16, 9)), Tensor)


def test_tiny_axes_are_not_pooled() -> None:
    assert pool_factors((1, 5, 2)) == (1, 2, 2)
    assert pool_factors((4, 5), min_size=5) == (1, 2)
    net = UNet(1, 2, channels=(2, 4, 8, 8))
    assert net(torch.randn(1, 1, 1, 9, 3)).shape == (1, 2, 1, 9, 3)


def test_upconv_inverts_pooling_and_crops() -> None:
    up = UpConv(3, 2, spatial_dims=3)
    assert up(torch.randn(1, 3, 4, 5, 2), (2, 2, 1), (7, 10, 2)).shape == (1, 2, 7, 10, 2)
    with pytest.raises(ValueError, match="larger size"):
        crop_to(torch.randn(1, 1, 3, 3), (4, 3))


def _types(net: nn.Module) -> set[type]:
    return {type(m) for m in net.modules()}


def test_presets_are_the_papers_switches() -> None:
    def switches(net: UNet) -> tuple:
        gate = {type(m) for m in net.modules()} & {ConcatAttentionGate, AdditiveAttentionGate}
        return (
            gate,
            type(net.attention),
            net.attention_guiding,
            net.multiscale_input,
            net.deep_supervision,
        )

    none = type(None)
    assert switches(_net(UNet)) == (set(), none, False, False, False)
    assert switches(_net(AGUNet)) == ({ConcatAttentionGate}, none, False, True, True)
    assert switches(_net(DAUNet)) == (set(), DualAttention, False, False, False)
    assert switches(_net(DAGUNet)) == ({ConcatAttentionGate}, DualAttention, True, True, True)
    # A preset's defaults are only defaults: the ablation switches turn them off.
    ablated = _net(AGUNet, multiscale_input=False, deep_supervision=False, gate=AdditiveAttentionGate)
    assert switches(ablated) == ({AdditiveAttentionGate}, none, False, False, False)
    assert all(issubclass(cls, SegmentationNetwork) for cls in (*UNETS, QTSeg))


def test_switches_build_what_they_say() -> None:
    unet, agunet = _types(_net(UNet)), _types(_net(AGUNet))
    daunet, dagunet = _net(DAUNet), _net(DAGUNet)
    assert ConcatAttentionGate not in unet and DualAttention not in unet
    assert ConcatAttentionGate in agunet and DualAttention not in agunet
    assert DualAttention in _types(daunet) and ConcatAttentionGate not in _types(daunet)
    assert {ConcatAttentionGate, DualAttention} <= _types(dagunet)
    assert len(dagunet.guides) == len(TINY) - 1 and len(daunet.guides) == 0
    assert all(
        m.style == "daunet" and m.cam.variant == "daunet"
        for m in dagunet.modules()
        if isinstance(m, DualAttention)
    )
    pyramid = UNet(1, 2, channels=TINY, multiscale_input=True)
    assert len(pyramid.pyramid) == len(TINY) - 2 and len(UNet(1, 2, channels=TINY).pyramid) == 0
    # The input pyramid really feeds the encoder: zeroing its convs changes the output.
    x = torch.randn(1, 1, 12, 12, 12)
    with torch.no_grad():
        ref = pyramid.eval()(x)
        for conv in pyramid.pyramid:
            nn.init.zeros_(conv.weight)
            nn.init.constant_(conv.bias, -1.0)  # ReLU(-1) = 0: the pyramid branch contributes nothing
        assert not torch.allclose(ref, pyramid(x))
    with pytest.raises(ValueError, match="attention_guiding"):
        UNet(1, 2, channels=TINY, attention_guiding=True)


def _batch_stat_eval(net: nn.Module) -> nn.Module:
    """Eval mode (no dropout) with BatchNorm on batch statistics, as in training.

    A fresh network's running statistics (mean 0, variance 1) shrink its activations towards 0.
    """
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    return net


def test_gamma_zero_makes_dual_attention_branches_identity() -> None:
    net = _batch_stat_eval(_net(DAUNet))
    ablated = copy.deepcopy(net)
    ablated.attention.pam = nn.Identity()
    ablated.attention.cam = nn.Identity()
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ablated(x))
        net.attention.pam.gamma.fill_(1.0)
        assert not torch.allclose(net(x), ablated(x))


def test_cam_variant_and_other_mechanisms_swap_in() -> None:
    cam = functools.partial(DualAttention, style="daunet", cam_variant="danet")
    net = _net(DAUNet, spatial_attention=cam)
    assert net.attention.cam.variant == "danet"
    for mixer in (CBAM, PositionAttention, functools.partial(ChannelAttention, variant="paper")):
        net = _net(DAGUNet, spatial_attention=mixer, gate=AdditiveAttentionGate)
        assert AdditiveAttentionGate in _types(net) and ConcatAttentionGate not in _types(net)
        out = net.train()(torch.randn(2, 2, 16, 13, 16))
        assert _shapes(out)[0] == (2, 3, 16, 13, 16)
    mha = functools.partial(MultiHeadAttention, num_heads=2)
    tokens = _net(UNet, attention=mha)
    assert isinstance(tokens.attention, TokenMixerMap)
    assert tokens(torch.randn(1, 2, 12, 12, 12)).shape == (1, 3, 12, 12, 12)
    # A token mixer takes DAGUNet's bottleneck in place of its dual attention, and guides the decoder.
    guided = _net(DAGUNet, attention=mha)
    assert isinstance(guided.attention, TokenMixerMap) and len(guided.guides) == len(TINY) - 1
    assert DualAttention not in _types(guided)


def test_the_task_offers_sizes_and_attention_by_keyword() -> None:
    """What ``BaseTask.build_network`` does: every network takes the offered sizes and the token mixer."""
    sizes = {"in_channels": 1, "num_classes": 2, "spatial_dims": 3}
    mha = functools.partial(MultiHeadAttention, num_heads=2)
    for cls in (UNet, AGUNet):
        net = instantiate_network(functools.partial(cls, channels=TINY), attention=mha, **sizes)
        assert type(net) is cls and isinstance(net.attention, TokenMixerMap)
    qtseg = instantiate_network(
        functools.partial(QTSeg, base_channels=4, mlp_dim=16),
        attention=functools.partial(CrossAttention, num_heads=1),
        **{**sizes, "spatial_dims": 2},
    )
    assert isinstance(qtseg, QTSeg) and any(isinstance(m, CrossAttention) for m in qtseg.modules())


def test_network_errors() -> None:
    with pytest.raises(ValueError, match="attention_guiding"):
        _net(DAGUNet, spatial_attention=None)
    with pytest.raises(ValueError, match="QTSeg is a 2-D network, got spatial_dims=3"):
        QTSeg(in_channels=1, num_classes=2, spatial_dims=3)
    with pytest.raises(ValueError, match="input of shape"):
        _net(UNet)(torch.randn(1, 1, 8, 8, 8))


@pytest.mark.parametrize("size", [(64, 64), (37, 29)])
def test_qtseg_shapes(size: tuple[int, int]) -> None:
    net = QTSeg(in_channels=1, num_classes=3, spatial_dims=2, base_channels=4)
    assert net(torch.randn(2, 1, *size)).shape == (2, 3, *size)


def test_qtseg_attention_injection() -> None:
    net = QTSeg(1, 2, base_channels=4, attention=functools.partial(CrossAttention, num_heads=1), mlp_dim=16)
    mixers = [m for m in net.modules() if isinstance(m, CrossAttention)]
    assert mixers and all(m.num_heads == 1 and m.dim == 8 * (m.dim // 8) for m in mixers)
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match="context"):
        QTSeg(1, 2, base_channels=4, attention=functools.partial(MultiHeadAttention, num_heads=1))
    # The channel branch is DANet's CAM with max-subtraction and γ = 0.
    cams = [m for m in net.modules() if isinstance(m, ChannelAttention)]
    assert cams and all(m.variant == "danet" and m.gamma.item() == 0.0 for m in cams)


def _blob(spatial_dims: int, size: int) -> tuple[Tensor, Tensor]:
    axes = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * spatial_dims, indexing="ij")
    centre = [size * 0.45, size * 0.55, size * 0.5][:spatial_dims]
    dist = sum((a - c) ** 2 for a, c in zip(axes, centre, strict=True)) ** 0.5
    label = (dist < size / 4).float()[None, None]
    gen = torch.Generator().manual_seed(0)
    image = 2 * label - 1 + 0.3 * torch.randn(label.shape, generator=gen)
    return image, label


def _fit(net: nn.Module, image: Tensor, label: Tensor, steps: int, lr: float) -> float:
    """Adam on cross-entropy + soft Dice; the foreground Dice of the argmax (no dropout, batch-stat BN)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    target = label.long()[:, 0]
    net.train()
    for _ in range(steps):
        out = net(image)
        outs = out if isinstance(out, list) else [out]
        loss = image.new_zeros(())
        for logits in outs:
            t = (
                target
                if logits.shape[2:] == target.shape[1:]
                else F.interpolate(label, logits.shape[2:]).long()[:, 0]
            )
            prob = logits.softmax(1)[:, 1]
            fg = (t == 1).float()
            dice = 1 - (2 * (prob * fg).sum() + 1) / (prob.sum() + fg.sum() + 1)
            loss = loss + F.cross_entropy(logits, t) + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = _batch_stat_eval(net)(image).argmax(1)
    fg = target == 1
    return (2 * (pred.bool() & fg).sum() / (pred.bool().sum() + fg.sum())).item()


@pytest.mark.parametrize("cls", UNETS, ids=lambda c: c.__name__)
def test_unet_family_overfits_one_volume(cls: type[UNet]) -> None:
    image, label = _blob(3, 24)
    net = cls(in_channels=1, num_classes=2, spatial_dims=3, channels=[4, 8, 16])
    assert _fit(net, image, label, steps=60, lr=0.02) > 0.9


def test_qtseg_overfits_one_image() -> None:
    image, label = _blob(2, 64)  # 64: the /32 level has 2×2 positions (BatchNorm needs > 1 value)
    net = QTSeg(1, 2, base_channels=4, mlp_dim=32)
    assert _fit(net, image, label, steps=80, lr=0.005) > 0.85
