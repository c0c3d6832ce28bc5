"""DaViT's dual-attention blocks: a spatial-window block and a channel-group block, each with ConvPosEnc.

Paper: Ding et al., "DaViT: Dual Attention Vision Transformers", ECCV 2022 (arXiv 2204.03645), §3.3.
Each block is pre-norm with convolutional positional encoding (a depthwise 3×3 convolution added to the
tokens) before the attention and before the MLP::

    x = x + DWConv(x)
    x = x + Attn(LN(x))
    x = x + DWConv(x)
    x = x + MLP(LN(x))

The blocks *take* an attention factory (default: :class:`~core.attention.WindowAttention` for the spatial
block, :class:`~core.attention.ChannelGroupAttention` for the channel block), so any mechanism that
accepts ``grid`` can replace them.
"""

from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn

from core.attention.base import AttentionFactory, check_grid_2d
from core.attention.davit import ChannelGroupAttention, WindowAttention
from core.layers.mlp import Mlp

__all__ = ["ChannelBlock", "ConvPosEnc", "DualAttentionBlock", "SpatialBlock"]


class ConvPosEnc(nn.Module):
    """Convolutional position encoding: ``x + DWConv_k(x)`` on the ``(H, W)`` token grid.

    Args:
        dim: Channels ``C``.
        kernel_size: Odd kernel size of the depthwise convolution (DaViT: 3).
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvPosEnc: kernel_size must be a positive odd number, got {kernel_size}")
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """Add the depthwise-convolved grid to tokens ``x`` of shape ``(B, H·W, C)``.

        The convolution sees the tokens as a channels-last ``(B, C, H, W)`` view and returns a
        channels-last map, so contiguous tokens go in and out without a layout copy.
        """
        height, width = check_grid_2d(grid, x.shape[1], "ConvPosEnc")
        b, n, c = x.shape
        feat = x.reshape(b, height, width, c).permute(0, 3, 1, 2)
        return x + self.proj(feat).permute(0, 2, 3, 1).reshape(b, n, c)


class _DaViTBlock(nn.Module):
    """Shared body of the spatial and channel blocks; only the default mechanism differs."""

    def __init__(
        self,
        dim: int,
        attention: AttentionFactory,
        mlp_ratio: float,
        drop: float,
        layer_idx: int,
        num_layers: int,
    ) -> None:
        super().__init__()
        self.cpe1 = ConvPosEnc(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, layer_idx=layer_idx, num_layers=num_layers)
        self.cpe2 = ConvPosEnc(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """Apply the block to tokens ``(B, H·W, C)`` laid out row-major on ``grid``."""
        x = self.cpe1(x, grid)
        x = x + self.attn(self.norm1(x), grid=tuple(grid))
        x = self.cpe2(x, grid)
        return x + self.mlp(self.norm2(x))


class SpatialBlock(_DaViTBlock):
    """DaViT spatial block: window attention over ``window_size²`` neighbourhoods.

    Args:
        dim: Channels ``C``.
        num_heads: Heads of the default window attention.
        window_size: Window side of the default window attention (DaViT: 7).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLP.
        attention: Mechanism factory; default ``WindowAttention(num_heads, window_size)``.
        layer_idx: Index of this block's attention in its stack.
        num_layers: Number of attention layers in the stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attention: AttentionFactory | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        attention = attention or partial(WindowAttention, num_heads=num_heads, window_size=window_size)
        super().__init__(dim, attention, mlp_ratio, drop, layer_idx, num_layers)


class ChannelBlock(_DaViTBlock):
    """DaViT channel block: channel-group attention, global over all tokens, linear in ``N``.

    Args:
        dim: Channels ``C``.
        num_groups: Channel groups of the default channel attention.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLP.
        attention: Mechanism factory; default ``ChannelGroupAttention(num_groups)``.
        layer_idx: Index of this block's attention in its stack.
        num_layers: Number of attention layers in the stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_groups: int = 8,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attention: AttentionFactory | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        attention = attention or partial(ChannelGroupAttention, num_groups=num_groups)
        super().__init__(dim, attention, mlp_ratio, drop, layer_idx, num_layers)


class DualAttentionBlock(nn.Module):
    """A DaViT stage step: :class:`SpatialBlock` then :class:`ChannelBlock` (local, then global).

    Args:
        dim: Channels ``C``.
        num_heads: Heads of the window attention and groups of the channel attention.
        window_size: Window side of the spatial block.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLPs.
    """

    def __init__(
        self, dim: int, *, num_heads: int = 8, window_size: int = 7, mlp_ratio: float = 4.0, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.spatial = SpatialBlock(
            dim, num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio, drop=drop, num_layers=2
        )
        self.channel = ChannelBlock(
            dim, num_groups=num_heads, mlp_ratio=mlp_ratio, drop=drop, layer_idx=1, num_layers=2
        )

    def forward(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """Spatial then channel block on tokens ``(B, H·W, C)``."""
        return self.channel(self.spatial(x, grid), grid)
