"""DaViT blocks: ConvPosEnc against a plain depthwise convolution, the block equations, injection."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from core.attention import MultiHeadAttention, WindowAttention
from core.blocks import ChannelBlock, ConvPosEnc, DualAttentionBlock, SpatialBlock


def test_conv_pos_enc_is_residual_depthwise_conv() -> None:
    cpe = ConvPosEnc(4).double()
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    grid = torch.zeros(2, 4, 3, 4, dtype=torch.float64)
    for t in range(12):
        grid[:, :, t // 4, t % 4] = x[:, t]
    conv = F.conv2d(grid, cpe.proj.weight, cpe.proj.bias, padding=1, groups=4)
    expected = x + torch.stack([conv[:, :, t // 4, t % 4] for t in range(12)], dim=1)
    torch.testing.assert_close(cpe(x, (3, 4)), expected)
    with pytest.raises(ValueError, match="odd"):
        ConvPosEnc(4, kernel_size=2)


@pytest.mark.parametrize("block_cls", [SpatialBlock, ChannelBlock])
def test_block_follows_the_davit_equations(block_cls) -> None:
    kwargs = {"num_heads": 2, "window_size": 2} if block_cls is SpatialBlock else {"num_groups": 2}
    block = block_cls(8, **kwargs).double()
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    grid = (3, 4)
    y = block.cpe1(x, grid)
    y = y + block.attn(block.norm1(y), grid=grid)
    y = block.cpe2(y, grid)
    y = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x, grid), y)


def test_spatial_block_takes_any_mechanism() -> None:
    block = SpatialBlock(8, attention=partial(MultiHeadAttention, num_heads=4), layer_idx=1, num_layers=3)
    assert isinstance(block.attn, MultiHeadAttention) and block.attn.layer_idx == 1
    assert block(torch.randn(1, 6, 8), (2, 3)).shape == (1, 6, 8)
    assert isinstance(SpatialBlock(8, num_heads=2, window_size=3).attn, WindowAttention)


def test_dual_block_shapes_grads_and_grid_errors() -> None:
    block = DualAttentionBlock(8, num_heads=2, window_size=3)
    x = torch.randn(2, 35, 8, requires_grad=True)
    out = block(x, (5, 7))
    out.sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all()
    assert block.spatial.attn.layer_idx == 0 and block.channel.attn.layer_idx == 1
    with pytest.raises(ValueError, match=r"grid \(5, 6\) holds 30 tokens"):
        block(x, (5, 6))


def test_token_mixer_map_is_a_pre_norm_residual_over_flattened_positions() -> None:
    from core.attention import NeighborhoodAttention
    from core.blocks import TokenMixerMap, token_mixer_map

    x = torch.randn(2, 8, 3, 4, 5)
    block = TokenMixerMap(8, attention=partial(MultiHeadAttention, num_heads=2), spatial_dims=3)
    tokens = x.flatten(2).transpose(1, 2)
    expected = tokens + block.mixer(block.norm(tokens))
    torch.testing.assert_close(block(x), expected.transpose(1, 2).reshape(x.shape))
    # The grid reaches grid-aware mechanisms: 3-D neighbourhood attention needs it.
    factory = token_mixer_map(partial(NeighborhoodAttention, num_heads=2, kernel_size=3))
    mixer = factory(8, spatial_dims=3)
    assert mixer(x).shape == x.shape
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, D, H, W\)"):
        mixer(x[:, :4])
