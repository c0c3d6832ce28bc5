"""DaViT (Ding et al., "DaViT: Dual Attention Vision Transformers", ECCV 2022), built on core's blocks.

Official code ``dingmyu/davit@fc79470`` (timm-based). Layout (parameter names follow timm's ``davit_*``)::

    stem:            Conv 7×7 s4 p3 → LN                                   stride 4, width C_1
    stage i > 0:     LN → Conv 2×2 s2                                       width C_i
    each stage:      depth_i × [SpatialBlock (7×7 window attention), ChannelBlock (channel-group attention)]
    head:            GAP → LN → Linear

Blocks are :class:`core.blocks.davit.SpatialBlock` / :class:`~core.blocks.davit.ChannelBlock` (ConvPosEnc
before the attention and before the MLP, no relative position bias). An injected ``attention`` replaces the
spatial window attention (it receives ``grid=(H, W)``); the channel blocks keep their channel attention.

Differences from the official code: core's blocks have no stochastic depth, so ``drop_path`` (0.1 in the
ImageNet recipe) is not available; padded window positions are masked as keys (see
:mod:`core.attention.davit`) instead of attended as zeros. Parameter count equals timm's (28.36 M for T).
"""

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.davit import WindowAttention
from core.blocks.davit import ChannelBlock, SpatialBlock
from core.layers.norm import LayerNorm2d
from domains.remote_sensing.models.base import SceneClassifier
from domains.remote_sensing.models.layers import check_image

__all__ = ["DaViT", "DaViTBase", "DaViTEncoder", "DaViTSmall", "DaViTStage"]


class _Stem(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, 7, stride=4, padding=3)
        self.norm = LayerNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class _Downsample(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_dim)
        self.conv = nn.Conv2d(in_dim, dim, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.norm(x))


class DaViTStage(nn.Module):
    """Optional downsampling, then ``depth`` pairs of spatial and channel blocks, on ``(B, C, H, W)`` maps.

    Args:
        in_dim: Input width (ignored without downsampling).
        dim: Stage width.
        depth: Number of [spatial, channel] pairs.
        num_heads: Window-attention heads and channel groups.
        window_size: Window side.
        mlp_ratio: MLP hidden width ratio.
        downsample: Whether the stage starts with LN → Conv 2×2 s2.
        attention: Factory replacing the window attention.
        layer_offset: Index of this stage's first attention layer in the network.
        num_layers: Attention layers in the network.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        downsample: bool = True,
        attention: AttentionFactory | None = None,
        layer_offset: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = _Downsample(in_dim, dim) if downsample else nn.Identity()
        spatial = attention or partial(WindowAttention, num_heads=num_heads, window_size=window_size)
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    SpatialBlock(
                        dim,
                        mlp_ratio=mlp_ratio,
                        attention=spatial,
                        layer_idx=layer_offset + 2 * j,
                        num_layers=num_layers,
                    ),
                    ChannelBlock(
                        dim,
                        num_groups=num_heads,
                        mlp_ratio=mlp_ratio,
                        layer_idx=layer_offset + 2 * j + 1,
                        num_layers=num_layers,
                    ),
                ]
            )
            for j in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Downsample, run the block pairs on the tokens, return the map.

        Tokens ``(B, H·W, C)`` are the channels-last layout of the map: a channels-last input (what
        ``LayerNorm2d`` and the blocks' convolutions produce) becomes tokens without a copy, and the
        returned map is a channels-last view of the tokens.
        """
        x = self.downsample(x)
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        for spatial, channel in self.blocks:
            tokens = channel(spatial(tokens, (h, w)), (h, w))
        return tokens.view(b, h, w, c).permute(0, 3, 1, 2)


class DaViTEncoder(nn.Module):
    """Stem and four DaViT stages; :meth:`forward` returns the four stage maps (strides 4, 8, 16, 32).

    Args:
        in_channels: Bands.
        dims: Stage widths.
        depths: [spatial, channel] pairs per stage.
        num_heads: Heads (= channel groups) per stage.
        window_size: Window side.
        mlp_ratio: MLP hidden width ratio.
        attention: Factory replacing the window attention.
    """

    def __init__(
        self,
        in_channels: int,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (1, 1, 3, 1),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if not len(dims) == len(depths) == len(num_heads) or min(depths) < 1:
            raise ValueError(
                f"DaViT: dims {list(dims)}, depths {list(depths)} and num_heads {list(num_heads)} must have "
                "the same length and positive depths"
            )
        self.in_channels = in_channels
        self.dims = list(dims)
        self.stem = _Stem(in_channels, dims[0])
        total, offset = 2 * sum(depths), 0
        self.stages = nn.ModuleList()
        for i, (dim, depth, heads) in enumerate(zip(dims, depths, num_heads, strict=True)):
            self.stages.append(
                DaViTStage(
                    dims[max(i - 1, 0)],
                    dim,
                    depth,
                    heads,
                    window_size,
                    mlp_ratio,
                    downsample=i > 0,
                    attention=attention,
                    layer_offset=offset,
                    num_layers=total,
                )
            )
            offset += 2 * depth
        self.apply(_init_weights)

    @property
    def stride(self) -> int:
        """Total stride of the deepest stage."""
        return 4 * 2 ** (len(self.stages) - 1)

    def forward_stage(self, index: int, x: Tensor) -> Tensor:
        """Stage ``index`` (the stem runs before stage 0)."""
        if index == 0:
            x = self.stem(x)
        return self.stages[index](x)

    def forward(self, x: Tensor) -> list[Tensor]:
        """The stage maps, finest first."""
        features = []
        for i in range(len(self.stages)):
            x = self.forward_stage(i, x)
            features.append(x)
        return features


def _init_weights(m: nn.Module) -> None:
    """Timm's DaViT initialisation: truncated normal (std 0.02) linears with zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DaViT(SceneClassifier):
    """DaViT classifier (default: DaViT-T, 28.36 M parameters at 3 bands and 1000 classes).

    Args:
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        dims: Stage widths.
        depths: [spatial, channel] pairs per stage.
        num_heads: Heads (= channel groups) per stage.
        window_size: Window side (7).
        mlp_ratio: MLP hidden width ratio (4).
        attention: Factory replacing the spatial window attention.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 1, 3, 1),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        encoder = DaViTEncoder(in_channels, dims, depths, num_heads, window_size, mlp_ratio, attention)
        self.stem, self.stages = encoder.stem, encoder.stages
        self.in_channels = in_channels
        self.head = _Head(dims[-1], num_classes)
        self.head.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``; ``H, W`` multiples of 32."""
        check_image(type(self).__name__, x, self.in_channels, multiple=32)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


class _Head(nn.Module):
    """GAP → LN → Linear (timm's ``NormMlpClassifierHead`` without a hidden layer)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(torch.mean(x, dim=(2, 3))))


class DaViTSmall(DaViT):
    """DaViT-S: DaViT-T's widths with depths (1, 1, 9, 1) (49.7 M)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 1, 9, 1),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(in_channels, num_classes, dims, depths, num_heads, window_size, mlp_ratio, attention)


class DaViTBase(DaViT):
    """DaViT-B: widths (128, 256, 512, 1024), heads (4, 8, 16, 32), depths (1, 1, 9, 1) (87.95 M)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dims: tuple[int, ...] = (128, 256, 512, 1024),
        depths: tuple[int, ...] = (1, 1, 9, 1),
        num_heads: tuple[int, ...] = (4, 8, 16, 32),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(in_channels, num_classes, dims, depths, num_heads, window_size, mlp_ratio, attention)
