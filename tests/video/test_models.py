"""The video networks by shapes, exact properties and overfitting.

TimeSformer (attention types, sizes, image-ViT weights) and VideoDiT (flow matching, UltraGen blocks,
Mask²DiT masks, FreeLong++ sampling).
"""

import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.attention.masks import scene_mask
from core.attention.mha import MultiHeadAttention
from core.attention.neighborhood import NeighborhoodAttention
from core.attention.ultragen import UltraGenAttention
from core.utils import InputError
from domains.video.models import (
    MotionBaseline,
    TimeSformer,
    TimeSformerMicro,
    TimeSformerSmall,
    TimeSformerTiny,
    VideoDiT,
)
from domains.video.models.baseline import motion_features
from domains.video.models.dit import JointAttention, conditioning_mask, scene_attention_mask
from domains.video.models.flow import euler_sample, noised, velocity_target
from domains.video.models.freelong import band_filters, freelong_windows, gaussian_low_pass, spectral_fusion

TYPES = ("divided_space_time", "joint", "space_only")


def _clip(b: int = 2, t: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- TimeSformer


@pytest.mark.parametrize("attention_type", TYPES)
def test_timesformer_shapes_and_other_lengths(attention_type: str) -> None:
    net = TimeSformerMicro(num_classes=5, num_frames=4, image_size=32, attention_type=attention_type).eval()
    assert net(_clip()).shape == (2, 5)
    # time and position embeddings are resized (nearest) for other clip lengths and frame sizes
    assert net(_clip(t=6, size=48)).shape == (2, 5)
    assert (net.time_embed is None) == (attention_type == "space_only")


@pytest.mark.parametrize(
    ("attention_type", "num_classes", "millions"),
    [
        ("divided_space_time", 174, 121.4),
        ("joint", 174, 85.9),
        ("space_only", 174, 85.9),
        ("divided_space_time", 400, 121.6),
    ],
)
def test_vit_b_parameter_count_matches_paper(attention_type: str, num_classes: int, millions: float) -> None:
    net = TimeSformer(num_classes=num_classes, num_frames=8, image_size=224, attention_type=attention_type)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == millions


def test_presets_set_vit_sizes() -> None:
    small = TimeSformerSmall(num_classes=10, num_frames=8, image_size=224)
    tiny = TimeSformerTiny(num_classes=10, num_frames=8, image_size=224)
    assert small.pos_embed.shape == (1, 197, 384) and len(small.blocks) == 12
    assert small.blocks[0].attn.num_heads == 6
    assert tiny.pos_embed.shape == (1, 197, 192) and tiny.blocks[0].attn.num_heads == 3


def test_temporal_fc_zero_except_first_block() -> None:
    net = TimeSformerMicro(num_classes=3, num_frames=4, image_size=32)
    assert net.blocks[0].temporal_fc.weight.abs().sum() > 0
    for block in list(net.blocks)[1:]:
        assert block.temporal_fc.weight.abs().sum() == 0 and block.temporal_fc.bias.abs().sum() == 0


def test_divided_mixes_time_joint_too_space_only_not() -> None:
    """Changing frame 0 changes the features of the others only through temporal attention."""
    x = _clip(b=1)
    y = x.clone()
    y[:, :, 0] += 1.0
    for attention_type, mixes in (("divided_space_time", True), ("joint", True), ("space_only", False)):
        torch.manual_seed(0)
        net = TimeSformerMicro(
            num_classes=3, num_frames=4, image_size=32, attention_type=attention_type, pool="mean"
        )
        for block in net.blocks:  # make every temporal path active
            if hasattr(block, "temporal_fc"):
                torch.nn.init.normal_(block.temporal_fc.weight, std=0.1)
        net.eval()
        hooks: list[torch.Tensor] = []
        handle = net.blocks[-1].register_forward_hook(lambda m, i, o, out=hooks: out.append(o[1]))
        net(x), net(y)
        handle.remove()
        later = (hooks[0][:, 1:] - hooks[1][:, 1:]).abs().max()
        assert (later > 1e-4) == mixes, attention_type


@pytest.mark.parametrize(
    "mixer",
    [
        functools.partial(NeighborhoodAttention, num_heads=4, kernel_size=3),
        functools.partial(UltraGenAttention, num_heads=4),
    ],
)
@pytest.mark.parametrize("attention_type", TYPES)
def test_grid_mechanisms_injected(mixer: object, attention_type: str) -> None:
    if attention_type == "joint" and getattr(mixer, "func", None) is NeighborhoodAttention:
        mixer = functools.partial(NeighborhoodAttention, num_heads=4, kernel_size=(3, 3, 3))
    net = TimeSformerMicro(
        num_classes=3,
        num_frames=4,
        image_size=32,
        attention=mixer,
        attention_type=attention_type,
        pool="mean",
    )
    assert isinstance(net.blocks[1].attn, mixer.func)  # type: ignore[attr-defined]
    assert net(_clip()).shape == (2, 3)


def test_grid_mechanism_with_cls_token_is_refused() -> None:
    with pytest.raises(ValueError, match="pool='mean'"):
        TimeSformerMicro(
            pool="cls",
            num_classes=3,
            num_frames=4,
            image_size=32,
            attention=functools.partial(UltraGenAttention, num_heads=4),
        )


def test_temporal_attention_injected_separately() -> None:
    net = TimeSformerMicro(
        num_classes=3,
        num_frames=4,
        image_size=32,
        temporal_attention=functools.partial(MultiHeadAttention, num_heads=1),
    )
    assert net.blocks[0].temporal_attn.num_heads == 1 and net.blocks[0].attn.num_heads == 4
    assert net(_clip()).shape == (2, 3)


def test_bad_input_is_named() -> None:
    net = TimeSformerMicro(num_classes=3, num_frames=4, image_size=32)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        net(torch.randn(2, 4, 32, 32))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        net(torch.randn(1, 3, 4, 30, 30))


def test_frame_difference_channels() -> None:
    torch.manual_seed(0)
    net = TimeSformerMicro(num_classes=3, num_frames=4, image_size=16, frame_difference=True)
    assert net.patch_embed.proj.in_channels == 6
    seen = []
    net.patch_embed.proj.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    clip = torch.zeros(1, 3, 4, 16, 16)
    clip[:, :, 1:] = 2.0  # a step up at frame 1, then constant
    assert net(clip).shape == (1, 3)
    frames = seen[0].view(1, 4, 6, 16, 16)  # (B·T, 2C, H, W): the clip, then its frame differences
    assert torch.equal(frames[0, :, :3].amax(dim=(1, 2, 3)), torch.tensor([0.0, 2.0, 2.0, 2.0]))
    assert torch.equal(frames[0, :, 3:].amax(dim=(1, 2, 3)), torch.tensor([0.0, 2.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        net(torch.zeros(1, 6, 4, 16, 16))
    with pytest.raises(ValueError, match="image_weights"):
        TimeSformerMicro(
            num_classes=3, num_frames=4, image_size=16, frame_difference=True, image_weights="x.pth"
        )


@pytest.mark.parametrize("attention_type", TYPES)
def test_timesformer_overfits_tiny_batch(attention_type: str) -> None:
    torch.manual_seed(0)
    net = TimeSformerMicro(
        num_classes=4, num_frames=4, image_size=16, attention_type=attention_type, dim=32, depth=2
    )
    x, y = _clip(b=8, size=16, seed=1), torch.arange(8) % 4
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    assert loss.item() < 0.05
    assert (net(x).argmax(1) == y).all()


@pytest.fixture(scope="module")
def vit_tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    path = tmp_path_factory.mktemp("weights") / "vit_tiny.pth"
    torch.save(vit.state_dict(), path)
    return path, vit


@pytest.mark.parametrize("attention_type", ["joint", "space_only"])
def test_image_weights_one_frame_equals_image_vit(
    vit_tiny_weights: tuple[Path, torch.nn.Module], attention_type: str
) -> None:
    """A one-frame clip through the video model is exactly the image ViT (time embedding starts at 0)."""
    path, vit = vit_tiny_weights
    net = TimeSformerTiny(
        num_classes=1000, num_frames=1, image_size=224, attention_type=attention_type, image_weights=str(path)
    ).eval()
    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(net(image[:, :, None]), vit(image), atol=1e-4, rtol=1e-4)


def test_image_weights_divided_copies_temporal_and_resizes(
    vit_tiny_weights: tuple[Path, torch.nn.Module],
) -> None:
    path, vit = vit_tiny_weights
    net = TimeSformerTiny(num_classes=7, num_frames=4, image_size=64, image_weights=str(path))
    state = vit.state_dict()
    block = net.blocks[3]
    torch.testing.assert_close(block.temporal_attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    torch.testing.assert_close(block.attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    torch.testing.assert_close(block.temporal_norm1.weight, state["blocks.3.norm1.weight"])
    assert block.temporal_fc.weight.abs().sum() == 0
    assert net.time_embed.abs().sum() == 0  # type: ignore[union-attr]
    assert net.pos_embed.shape == (1, 17, 192)
    torch.testing.assert_close(net.pos_embed[:, 0], state["pos_embed"][:, 0])
    assert net.head.weight.shape == (7, 192)
    assert net(torch.randn(1, 3, 4, 64, 64)).shape == (1, 7)


def test_image_weights_wrong_model_is_named(
    vit_tiny_weights: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    path, _ = vit_tiny_weights
    with pytest.raises(InputError, match=r"vit_tiny\.pth.*(pos_embed|qkv)"):
        TimeSformerSmall(num_classes=3, num_frames=2, image_size=32, depth=1, image_weights=str(path))
    with pytest.raises(InputError, match="does not exist"):
        TimeSformerTiny(
            num_classes=3, num_frames=2, image_size=32, image_weights=str(tmp_path / "missing.pth")
        )


def test_image_weights_into_mean_pooling_drops_cls(vit_tiny_weights: tuple[Path, torch.nn.Module]) -> None:
    path, vit = vit_tiny_weights
    net = TimeSformerTiny(num_classes=3, num_frames=2, image_size=224, pool="mean", image_weights=str(path))
    torch.testing.assert_close(net.pos_embed, vit.state_dict()["pos_embed"][:, 1:])


# ---------------------------------------------------------------- VideoDiT


def _dit(**kw: object) -> VideoDiT:
    torch.manual_seed(0)
    opts = {"num_frames": 4, "image_size": 16, "num_scenes": 2, "dim": 48, "depth": 4, "num_heads": 4}
    return VideoDiT(**(opts | kw))  # type: ignore[arg-type]


def _randomise_zero_init(net: VideoDiT) -> None:
    """AdaLN-Zero starts every block at the identity; give the gates weights to test the paths."""
    for module in net.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.abs().sum() == 0:
            torch.nn.init.normal_(module.weight, std=0.05)


def test_dit_shapes_and_zero_init() -> None:
    net = _dit()
    x = _clip(size=16)
    out = net(x, torch.rand(2), torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]]))
    assert out.shape == x.shape
    assert out.abs().max() == 0  # AdaLN-Zero: zero-initialised output layer
    assert isinstance(net.blocks[1].attn, UltraGenAttention) and isinstance(
        net.blocks[0].attn, JointAttention
    )
    assert isinstance(net.blocks[3].attn, JointAttention)
    assert net.blocks[1].gate_global is not None  # timestep-gated as the paper
    _randomise_zero_init(net)
    out = net(x, torch.rand(2, 4))  # per-frame timesteps
    assert out.shape == x.shape and out.abs().max() > 0


def test_dit_injected_mechanism() -> None:
    net = _dit(attention=functools.partial(NeighborhoodAttention, num_heads=4, kernel_size=(3, 3, 3)))
    assert isinstance(net.blocks[1].attn, NeighborhoodAttention)
    assert net(_clip(size=16), torch.rand(2)).shape == (2, 3, 4, 16, 16)


def test_scene_mask_matches_core_builder_and_separates_scenes() -> None:
    """Mask²DiT's symmetric mask: video of scene A never attends the conditioning tokens of scene B."""
    net = _dit(scene_tokens=3)
    latent_scene = torch.tensor([[0, 0, 1, 1]])
    mask = net.attention_mask(latent_scene, spatial=16)[0, 0]  # type: ignore[index]
    expected = scene_mask([3, 3], [32, 32])  # contiguous scenes: same as core's builder
    assert torch.equal(mask, expected) and torch.equal(mask, mask.T)
    cond_b = slice(3, 6)
    video_a = slice(6, 6 + 32)
    assert not mask[video_a, cond_b].any()
    assert mask[video_a, 0:3].all() and mask[video_a, 6:].all()
    # a sample with a single scene: its video never sees slot 1's tokens
    single = scene_attention_mask(torch.zeros(1, 8, dtype=torch.long), 2, 3)[0, 0]
    assert not single[6:, 3:6].any()


@pytest.mark.parametrize("block_idx", [0, 1])
def test_scene_mask_in_attention_weights(block_idx: int) -> None:
    """Scene A's video outputs have zero gradient to scene B's conditioning tokens, nonzero to A's.

    Checked through the attention each block runs: full joint attention, or the conditioning attention next
    to UltraGen.
    """
    net = _dit(scene_tokens=2)
    block = net.blocks[block_idx]
    spatial = 16
    mask = net.attention_mask(torch.tensor([[0, 0, 1, 1]]), spatial)
    attn = block.attn if block_idx == 0 else block.cond_attn
    if block_idx == 1:
        mask = conditioning_mask(mask, 4, 4 + 4 * spatial, torch.device("cpu"))
    h = torch.randn(1, 4 + 4 * spatial, 48, requires_grad=True)
    out = attn(h, mask, None)
    out[0, 4 : 4 + 2 * spatial].sum().backward()  # video tokens of scene 0
    assert h.grad is not None
    assert h.grad[0, 2:4].abs().max() == 0  # conditioning tokens of scene 1
    assert h.grad[0, 0:2].abs().max() > 0


def test_without_scene_mask_all_tokens_attend() -> None:
    net = _dit(scene_mask=False)
    assert net.attention_mask(torch.tensor([[0, 0, 1, 1]]), 16) is None


def test_flow_matching_paths() -> None:
    x0, eps = _clip(size=8), _clip(size=8, seed=1)
    t = torch.tensor([0.0, 1.0])
    xt = noised(x0, eps, t)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], eps[1])
    # exact velocity integrates the straight path exactly
    out = euler_sample(lambda x, t: velocity_target(x0, eps), eps, steps=3)
    torch.testing.assert_close(out, x0)
    # known frames stay clean and are given timestep 0
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros_like(x)

    known_frames = torch.tensor([[True, True, False, False]] * 2)
    out = euler_sample(velocity, eps, steps=2, known=x0, known_frames=known_frames)
    torch.testing.assert_close(out[:, :, :2], x0[:, :, :2])
    torch.testing.assert_close(out[:, :, 2:], eps[:, :, 2:])
    assert (seen[0][:, :2] == 0).all() and (seen[0][:, 2:] == 1).all()


def test_band_filters_partition_unity_and_fusion_identity() -> None:
    bands = band_filters((8, 6, 6), 3)
    torch.testing.assert_close(sum(bands), torch.ones(8, 6, 6))
    assert (bands[0][4, 3, 3] - 1).abs() < 1e-6  # the zero frequency is all in the global band
    z = torch.randn(2, 8, 6, 6, 5)
    torch.testing.assert_close(spectral_fusion([z, z, z]), z, atol=1e-5, rtol=1e-5)
    a, b = torch.randn(1, 8, 6, 6, 1), torch.randn(1, 8, 6, 6, 1)
    fused = spectral_fusion([a, b])
    # the DC component comes from the global branch only
    torch.testing.assert_close(fused.mean(dim=(1, 2, 3)), a.mean(dim=(1, 2, 3)), atol=1e-5, rtol=1e-5)


def test_band_filters_follow_the_official_freelong_formula() -> None:
    # aniki-ly/FreeLong@98cf95e gaussian_low_pass_filter: coordinates arange(n) * 2 / n - 1 (here -1, 0),
    # mask exp(-(t²/d_t² + h²/d_s² + w²/d_s²) / 2); FreeLong mixes LPF·global + (1 - LPF)·local.
    low, high = band_filters((2, 2, 2), 2)
    expected = torch.tensor([[[math.exp(-24), math.exp(-16)], [math.exp(-16), math.exp(-8)]],
                             [[math.exp(-16), math.exp(-8)], [math.exp(-8), 1.0]]])  # fmt: skip
    torch.testing.assert_close(low, expected)
    torch.testing.assert_close(high, 1 - expected)
    # Three bands (ours [O]): cut-offs 0.25 and 0.5, the middle band between their low-passes.
    bands = band_filters((2, 2, 2), 3)
    torch.testing.assert_close(bands[1][0, 1, 1], torch.tensor(math.exp(-2) - math.exp(-8)))
    torch.testing.assert_close(bands[2][0, 1, 1], torch.tensor(1 - math.exp(-2)))
    torch.testing.assert_close(gaussian_low_pass((2, 2, 2), 0.25, 0.5)[0, 1, 1], torch.tensor(math.exp(-2)))


def test_freelong_windows() -> None:
    assert freelong_windows(32, 8) == [32, 16, 8]
    assert freelong_windows(8, 8) == [8, 8]
    assert freelong_windows(12, 4) == [12, 6, 4]


def test_freelong_at_training_length_equals_plain_sampling() -> None:
    net = _dit()
    _randomise_zero_init(net)
    net.eval()
    noise = _clip(b=1, size=16, seed=5)
    scenes = torch.tensor([[0, 0, 1, 1]])
    plain = net.sample(noise, scenes, steps=3)
    fused = net.sample(noise, scenes, steps=3, freelong=True)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    # longer than training: the branches differ and FreeLong++ changes the sample
    long_noise = _clip(b=1, t=16, size=16, seed=6)
    long_plain = net.sample(long_noise, steps=2)
    long_fused = net.sample(long_noise, steps=2, freelong=True)
    assert long_fused.shape == (1, 3, 16, 16, 16) and long_fused.isfinite().all()
    assert (long_fused - long_plain).abs().max() > 1e-4


def test_dit_overfits_one_clip() -> None:
    """Flow matching on one clip with fixed noise and timesteps: the network memorises the velocities."""
    net = _dit(depth=3, dim=32)
    x0 = _clip(b=3, size=16, seed=2).clamp(-1, 1)
    eps = _clip(b=3, size=16, seed=3)
    t = torch.tensor([0.2, 0.5, 0.8])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = F.mse_loss(net(noised(x0, eps, t), t), velocity_target(x0, eps))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_dit_bad_inputs_are_named() -> None:
    net = _dit()
    with pytest.raises(ValueError, match="scene_index values"):
        net(_clip(size=16), torch.rand(2), torch.full((2, 4), 2))
    with pytest.raises(ValueError, match="timestep of shape"):
        net(_clip(size=16), torch.rand(3))
    with pytest.raises(ValueError, match="patch_size"):
        VideoDiT(num_frames=4, image_size=18)


# ---------------------------------------------------------------- baseline


def _moving_bars(
    speeds: list[int], n: int = 4, frames: int = 6, size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a vertical bar moving right by ``speed`` pixels per frame; the label is the speed's index."""
    clips, labels = [], []
    for label, speed in enumerate(speeds):
        for start in range(n):
            clip = torch.zeros(3, frames, size, size)
            for t in range(frames):
                clip[:, t, :, (start + speed * t) % size] = 1.0
            clips.append(clip)
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


def test_motion_features_values() -> None:
    clip = torch.zeros(1, 3, 3, 4, 4)
    clip[:, :, 1] = 1.0
    feats = motion_features(clip)
    assert feats.shape == (1, 4 * 2 + 2 * 3)
    torch.testing.assert_close(feats[0, :2], torch.tensor([1.0, 1.0]))  # motion energy
    torch.testing.assert_close(feats[0, 2:4], torch.tensor([1.0, -1.0]))  # signed drift


def test_motion_baseline_learns_speed() -> None:
    torch.manual_seed(0)
    x, y = _moving_bars([0, 1, 3])
    net = MotionBaseline(num_classes=3, num_frames=6)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert (net(x).argmax(1) == y).all()
