"""Remote-sensing networks: reference sizes, shapes for any band count, input errors, and overfitting."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from core.attention import LinearAttention, MultiHeadAttention
from core.utils import InputError
from domains.remote_sensing.models import (
    BCAF,
    DFYP,
    CASWiT,
    DaViT,
    DaViTSmall,
    LWGANet,
    LWGANetL0,
    LWGANetL1,
    LWGANetL2,
    LWGANetSeg,
    SpectralSpatialTransformer,
)
from domains.remote_sensing.models.dfyp import EdgeOperator
from domains.remote_sensing.models.layers import adapt_input_conv

SMALL_DAVIT = {"dims": (16, 32, 64, 128), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8)}
SMALL_LWGA = {"stem_dim": 16, "depths": (1, 1, 1, 1)}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def overfit(model: torch.nn.Module, loss_fn, steps: int = 40, lr: float = 3e-3) -> tuple[float, float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    return first, loss.item()


# ---------------------------------------------------------------- LWGANet


@pytest.mark.parametrize(
    ("cls", "expected"),
    # Counted from the official constructors (AeroVILab-AHU/LWGANet@d46a47d), 3 bands, 1000 classes.
    [(LWGANetL0, 2_940_778), (LWGANetL1, 7_130_330), (LWGANetL2, 14_264_022)],
)
def test_lwganet_parameter_counts_match_the_official_variants(cls, expected):
    assert n_params(cls(in_channels=3, num_classes=1000)) == expected


def test_lwganet_variants_differ_as_in_the_paper():
    l1, l2 = LWGANetL1(3, 10), LWGANetL2(3, 10)
    assert isinstance(l2.pre_head[-1], torch.nn.ReLU) and isinstance(l1.pre_head[-1], torch.nn.GELU)
    assert [len(s) for s in l2.backbone.stages] == [1, 4, 4, 2]
    assert l1.backbone.dims == [64, 128, 256, 512]
    globals_ = [type(s[0].mixer).__name__ + s[0].mixer.global_attention for s in l1.backbone.stages]
    assert globals_ == ["LWGAga12", "LWGAga12", "LWGAdga", "LWGAga"]


@pytest.mark.parametrize("bands", [1, 4, 13])
def test_lwganet_any_band_count(bands):
    model = LWGANetL0(bands, 5, **SMALL_LWGA, input_size=96).eval()
    assert model(torch.randn(2, bands, 3, 3)).shape == (2, 5)
    seg = LWGANetSeg(bands, 3, **SMALL_LWGA, decoder_dim=16).eval()
    assert seg(torch.randn(2, bands, 96, 128)).shape == (2, 3, 96, 128)


def test_lwganet_stem_from_another_band_count_loads_with_timms_rule():
    rgb = LWGANetL0(3, 4, **SMALL_LWGA)
    state = rgb.state_dict()
    six = LWGANetL0(6, 4, **SMALL_LWGA)
    six.load_state_dict(state)
    w = state["backbone.stem.0.weight"]
    assert torch.allclose(six.backbone.stem[0].weight, torch.cat([w, w], dim=1) * 0.5)
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))


def test_lwganet_refuses_wrong_bands_and_pads_small_tiles_for_pretraining():
    seg = LWGANetSeg(4, 2, **SMALL_LWGA)
    with pytest.raises(InputError, match=r"\(B, 4, H, W\)"):
        seg(torch.randn(1, 3, 96, 96))
    features = seg.eval().encode_masked(torch.randn(1, 4, 64, 64), torch.zeros(1, 16, 16, dtype=torch.bool))
    assert features.shape == (1, 128, 3, 3)  # padded to 96


def test_lwganet_seg_pads_small_tiles_and_crops_back():
    seg = LWGANetSeg(4, 2, **SMALL_LWGA, decoder_dim=8).eval()
    x = torch.randn(1, 4, 64, 70)
    padded = F.pad(x, (0, 26, 0, 32), mode="replicate")
    with torch.no_grad():
        assert torch.allclose(seg(x), seg(padded)[..., :64, :70], atol=1e-5)


def test_lwganet_takes_an_injected_token_mixer():
    model = LWGANetSeg(3, 2, **SMALL_LWGA, decoder_dim=8, attention=LinearAttention)
    assert not any(type(m).__name__ == "LWGA" for m in model.modules())
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 2, 96, 96)


# ---------------------------------------------------------------- DaViT


def test_davit_tiny_equals_timm():
    timm = pytest.importorskip("timm")
    theirs = timm.create_model("davit_tiny", pretrained=False).eval()
    ours = DaViT(3, 1000).eval()
    assert n_params(ours) == n_params(theirs) == 28_360_168
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-4)
    assert n_params(DaViTSmall(3, 1000)) == n_params(timm.create_model("davit_small", pretrained=False))


def test_davit_benchmark_rounds_alternate_and_count_steps():
    from benchmarks.davit_throughput import timed_rounds

    now, calls = [0.0], []

    def step(name: str, seconds: float):
        def run() -> None:
            calls.append(name)
            now[0] += seconds

        return run

    steps = {"ours": step("ours", 1.0), "timm": step("timm", 2.0)}
    rates = timed_rounds(steps, torch.device("cpu"), total=4, rounds=2, clock=lambda: now[0])
    # Round 1 runs ours then timm, round 2 the other way round; 2 steps each per round.
    assert calls == ["ours", "ours", "timm", "timm", "timm", "timm", "ours", "ours"]
    assert rates == {"ours": 1.0, "timm": 0.5}


@pytest.mark.parametrize("bands", [2, 11])
def test_davit_any_band_count_and_attention(bands):
    model = DaViT(bands, 4, **SMALL_DAVIT, attention=partial(MultiHeadAttention, num_heads=2))
    assert model(torch.randn(2, bands, 64, 64)).shape == (2, 4)


# ---------------------------------------------------------------- CASWiT, BCAF


def test_caswit_shapes_aux_and_errors():
    model = CASWiT(5, 3, **SMALL_DAVIT, decoder_dim=16)
    x, ctx = torch.randn(2, 5, 64, 64), torch.randn(2, 5, 64, 64)
    out = model.forward_train(x, context=ctx)
    assert out["logits"].shape == out["aux_logits"].shape == (2, 3, 64, 64)
    assert float(out["aux_weight"]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="context"):
        model(x)
    with pytest.raises(ValueError, match="tile's shape"):
        model(x, context=torch.randn(2, 5, 32, 32))


def test_caswit_starts_as_the_hr_model_and_masking_hides_the_context_centre():
    model = CASWiT(3, 2, **SMALL_DAVIT, decoder_dim=8).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x, context=torch.randn(1, 3, 64, 64)), model(x, context=torch.randn(1, 3, 64, 64))
    assert torch.allclose(a, b), "gates start at 0: the context must not change the output yet"
    for fusion in model.fusion:
        torch.nn.init.ones_(fusion.gate)
    ctx = torch.randn(1, 3, 64, 64)
    changed = ctx.clone()
    # Pixels 24..39 reach only stem cells 6..10 (7×7, stride 4, padding 3): inside the centre cells 4..11
    # that show the tile's own footprint, which pre-training replaces by the context mask token.
    changed[..., 24:40, 24:40] += 5.0
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    with torch.no_grad():
        assert not torch.allclose(model(x, context=ctx), model(x, context=changed))
        assert torch.equal(
            model.encode_masked(x, mask, context=ctx), model.encode_masked(x, mask, context=changed)
        )


def test_bcaf_shapes_and_errors():
    model = BCAF(7, 3, **SMALL_DAVIT, decoder_dim=16)
    x, pan = torch.randn(2, 7, 64, 64), torch.randn(2, 1, 128, 128)
    assert model(x, pan=pan).shape == (2, 3, 64, 64)
    assert model.coarse.num_tokens == 4  # 7 bands in groups of 2, zero-padded
    with pytest.raises(ValueError, match="'pan'"):
        model(x)
    with pytest.raises(ValueError, match="integer"):
        model(x, pan=torch.randn(2, 1, 96, 128))


def test_bcaf_chains_its_fusion_layers():
    model = BCAF(4, 2, **SMALL_DAVIT, decoder_dim=8, fusion_layers=2)
    out = model(torch.randn(1, 4, 64, 64), pan=torch.randn(1, 1, 128, 128))
    out.sum().backward()
    first = model.fusion[0][0]
    # The official wrapper drops the first layer's output (no gradient to its attention); chained, it has one.
    assert first.attn.fine_q.weight.grad is not None and first.attn.fine_q.weight.grad.abs().sum() > 0


def test_bcaf_masked_encoding_hides_both_streams_over_the_masked_ground():
    model = BCAF(4, 2, **SMALL_DAVIT, decoder_dim=8).eval()
    assert (model.patch_size, model.encoder_stride, model.encoder_channels) == (4, 16, 128)
    x, pan = torch.randn(1, 4, 64, 64), torch.randn(1, 1, 128, 128)
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 4:8, 4:8] = True  # image pixels 16..31, pan pixels 32..63
    x2, pan2 = x.clone(), pan.clone()
    # Image pixels 16..31 are exactly the 4×4/s4 spectral tokens 4..7; pan pixels 40..55 reach only the pan
    # stem cells 10..14 (7×7, stride 4, padding 3), inside the hidden cells 8..15.
    x2[..., 16:32, 16:32] += 5.0
    pan2[..., 40:56, 40:56] += 5.0
    with torch.no_grad():
        out = model.encode_masked(x, mask, pan=pan)
        assert out.shape == (1, 128, 4, 4)  # 64 / 16
        assert torch.equal(out, model.encode_masked(x2, mask, pan=pan2))
        visible = torch.zeros_like(mask)
        assert not torch.allclose(
            model.encode_masked(x, visible, pan=pan), model.encode_masked(x2, visible, pan=pan2)
        )
    with pytest.raises(ValueError, match="pan_scale=2"):
        model.encode_masked(x, mask, pan=torch.randn(1, 1, 192, 192))
    with pytest.raises(ValueError, match="pan_scale"):
        BCAF(4, 2, **SMALL_DAVIT, pan_scale=3)


# ---------------------------------------------------------------- DFYP


def test_edge_operators_on_a_ramp():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # d/dx = 1
    assert EdgeOperator("sobel")(ramp)[0, 0, 4, 4] == pytest.approx(8.0, rel=1e-4)
    assert EdgeOperator("scharr")(ramp)[0, 0, 4, 4] == pytest.approx(32.0, rel=1e-4)
    learnable = EdgeOperator("learnable")
    a = torch.sigmoid(torch.tensor(0.5))
    # Mixed kernel a·Sobel + (1 − a)·Scharr, divided by its largest entry (the middle row's 2a + 10(1 − a)).
    expected = (a * 8 + (1 - a) * 32) / (2 * a + 10 * (1 - a)) * torch.sigmoid(torch.tensor(0.1))
    assert learnable(ramp)[0, 0, 4, 4].item() == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(ValueError, match="operator"):
        EdgeOperator("canny")


def test_dfyp_shapes_and_layout_errors():
    model = DFYP(9, depth=1).eval()
    assert model(torch.randn(2, 9, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="32 bins"):
        model(torch.randn(2, 9, 32, 16))
    with pytest.raises(InputError, match="histogram"):
        model(torch.randn(2, 7, 32, 32))


# ---------------------------------------------------------------- spectral-spatial transformer


@pytest.mark.parametrize(("bands", "side"), [(1, 3), (4, 3), (10, 5)])
def test_spectral_spatial_transformer_any_band_count(bands, side):
    model = SpectralSpatialTransformer(bands, 6, patch_size=side, dim=16, depth=1, attention=LinearAttention)
    assert model(torch.randn(2, bands, side, side)).shape == (2, 6)
    with pytest.raises(ValueError, match=f"{side}×{side} patches"):
        model(torch.randn(2, bands, side + 1, side + 1))


# ---------------------------------------------------------------- overfitting a tiny batch


def test_spectral_spatial_transformer_overfits():
    x, y = torch.randn(16, 4, 3, 3), torch.arange(16) % 6
    model = SpectralSpatialTransformer(4, 6, dim=32, depth=2, dropout=0.0)
    first, last = overfit(model, lambda m: F.cross_entropy(m(x), y), steps=60)
    assert last < 0.1 * first
    assert (model.eval()(x).argmax(-1) == y).all()


def test_lwganet_classifier_overfits():
    x, y = torch.randn(8, 4, 3, 3), torch.arange(8) % 4
    model = LWGANet(4, 4, **SMALL_LWGA, feature_dim=64, input_size=96, drop_path_rate=0.0)
    first, last = overfit(model, lambda m: F.cross_entropy(m(x), y), steps=30)
    assert last < 0.2 * first


def _segmentation_batch(bands: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes constant on 8×8 blocks, shown (with noise) in band 0; a few ignored rows."""
    torch.manual_seed(0)
    blocks = torch.randint(0, 2, (2, 1, size // 8, size // 8)).float()
    mask = F.interpolate(blocks, scale_factor=8).squeeze(1).long()
    x = 0.3 * torch.randn(2, bands, size, size)
    x[:, 0] += 2.0 * mask - 1.0
    mask[:, :4] = -1
    return x, mask


@pytest.mark.parametrize("name", ["lwganet", "caswit", "bcaf"])
def test_segmentation_networks_overfit(name):
    if name == "lwganet":
        x, mask = _segmentation_batch(3, 96)
        model = LWGANetSeg(3, 2, **SMALL_LWGA, decoder_dim=16, dropout=0.0)
        extras = {}
    elif name == "caswit":
        x, mask = _segmentation_batch(3)
        model = CASWiT(3, 2, **SMALL_DAVIT, decoder_dim=16, dropout=0.0)
        extras = {"context": torch.randn_like(x)}
    else:
        x, mask = _segmentation_batch(3)
        model = BCAF(3, 2, **SMALL_DAVIT, decoder_dim=16, dropout=0.0)
        extras = {"pan": F.interpolate(x[:, :1], scale_factor=2)}

    def loss(m):
        out = m.forward_train(x, **extras)
        value = F.cross_entropy(out["logits"], mask, ignore_index=-1)
        if "aux_logits" in out:
            value = value + out["aux_weight"] * F.cross_entropy(out["aux_logits"], mask, ignore_index=-1)
        return value

    first, last = overfit(model, loss, steps=30)
    assert last < 0.3 * first


def test_dfyp_overfits():
    torch.manual_seed(0)
    x, y = torch.rand(4, 9, 16, 16), torch.tensor([1.0, -1.0, 0.5, 2.0])
    model = DFYP(9, bins=16, time_steps=16, depth=1, cnn_dropout=0.0, vit_dropout=0.0)
    first, last = overfit(model, lambda m: F.mse_loss(m(x), y), steps=20, lr=5e-4)
    assert last < 0.2 * first
