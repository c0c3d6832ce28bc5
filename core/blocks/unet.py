"""N-d U-Net pieces: conv blocks, size-adaptive pooling, a stride-adaptive up-convolution, a decoder level.

The layout follows the 3-D U-Net of AGUNet / DAUNet (Bouget et al., "Meningioma segmentation in
T1-weighted MRI leveraging global context and attention mechanisms", Front. Radiol. 2021; official Keras
code ``dbouget/mri_brain_tumor_segmentation: src/Models/UNet/DualAttentionUNet.py``), written for 2-D and
3-D inputs of any size:

* :class:`ConvBlock`: ``n × (conv3 → BN → ReLU)``; the convs have no bias because a BatchNorm follows
  (Keras' ``use_bias=True`` there is a no-op that only costs time).
* :func:`pool_factors` picks, per axis, whether a level halves it (axes shorter than ``min_size`` are
  kept, the official code's "no pooling on axes ≤ 4" generalised); pooling uses ``ceil_mode`` so odd
  sizes lose no voxel.
* :class:`UpConv`: a transposed conv ``(3, stride f, padding 1, output_padding f − 1)`` whose stride ``f``
  is chosen per axis at call time (the same factors the encoder pooled with), so it exactly inverts the
  pooling size-wise; the result is cropped to the skip's size (``ceil_mode`` pooling can add one voxel).
  With all factors 2 it is Keras' ``Conv3DTranspose(3, strides=2, padding="same")``.
* :class:`DecoderLevel`: up-convolution, optional attention gate on the skip, optional guiding map,
  concatenation, conv block.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionGateFactory
from core.layers.nd import batch_norm_nd, conv_nd

__all__ = ["ConvBlock", "DecoderLevel", "UpConv", "crop_to", "pool_factors", "pool_nd"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _check_dims(owner: str, spatial_dims: int) -> None:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"{owner}: spatial_dims must be 1, 2 or 3, got {spatial_dims}")


class ConvBlock(nn.Sequential):
    """``num_convs × (Conv(k, padding k//2, no bias) → BatchNorm → ReLU(inplace))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of every conv.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        num_convs: Number of conv/BN/ReLU triples (the official block has 2).
        kernel_size: Odd kernel size (3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 3,
        num_convs: int = 2,
        kernel_size: int = 3,
    ) -> None:
        _check_dims("ConvBlock", spatial_dims)
        if in_channels < 1 or out_channels < 1 or num_convs < 1:
            raise ValueError(
                f"ConvBlock: in_channels, out_channels and num_convs must be >= 1, "
                f"got {in_channels}, {out_channels}, {num_convs}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvBlock: kernel_size must be a positive odd int, got {kernel_size}")
        conv, norm = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        layers: list[nn.Module] = []
        for i in range(num_convs):
            c_in = in_channels if i == 0 else out_channels
            layers += [
                conv(c_in, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                norm(out_channels),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def pool_factors(size: Sequence[int], min_size: int = 2) -> tuple[int, ...]:
    """Per-axis down-sampling factor of one U-Net level: 2 where the axis has ``>= min_size`` voxels, else 1.

    The official AGUNet code does not pool axes of size ``<= 4`` (``min_size=5``); the default 2 pools
    every axis that can be halved.
    """
    if min_size < 2:
        raise ValueError(f"pool_factors: min_size must be >= 2, got {min_size}")
    return tuple(2 if s >= min_size else 1 for s in size)


def pool_nd(x: Tensor, factors: Sequence[int], mode: str = "max") -> Tensor:
    """Max- or average-pool ``x (B, C, *S)`` by ``factors`` per axis, ``ceil_mode`` (odd sizes round up)."""
    factors = tuple(factors)
    if all(f == 1 for f in factors):
        return x
    pool = (_MAX_POOL if mode == "max" else _AVG_POOL)[x.ndim - 2]
    return pool(x, kernel_size=factors, stride=factors, ceil_mode=True)


def crop_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop the trailing spatial axes of ``x`` to ``size`` (a view; a no-op when the sizes already match)."""
    size = tuple(size)
    if tuple(x.shape[2:]) == size:
        return x
    if any(s < t for s, t in zip(x.shape[2:], size, strict=True)):
        raise ValueError(f"crop_to: cannot crop a map of shape {tuple(x.shape)} to the larger size {size}")
    return x[(slice(None), slice(None), *(slice(0, t) for t in size))]


class UpConv(nn.Module):
    """Transposed conv (kernel 3, padding 1) with a per-call, per-axis stride; output cropped to ``size``.

    With stride ``f`` on an axis of ``m`` voxels the output has ``m · f`` voxels (``output_padding = f − 1``),
    so ``f = 1`` keeps the axis and ``f = 2`` doubles it like Keras' ``padding="same"``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        bias: Whether the conv has a bias (False when a BatchNorm follows).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, spatial_dims: int = 3, bias: bool = False
    ) -> None:
        super().__init__()
        _check_dims("UpConv", spatial_dims)
        self.spatial_dims = spatial_dims
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, *([3] * spatial_dims)))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # The default initialisation of nn.ConvTranspose (kaiming-uniform on the weight's fan).
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor, factors: Sequence[int], size: Sequence[int]) -> Tensor:
        """Up-sample ``x`` by ``factors`` and crop to ``size`` (the skip connection's spatial size)."""
        factors = tuple(factors)
        if len(factors) != self.spatial_dims or len(tuple(size)) != self.spatial_dims:
            raise ValueError(
                f"UpConv: expected {self.spatial_dims} factors and sizes, got {factors} and {tuple(size)}"
            )
        out = _CONV_T[self.spatial_dims](
            x, self.weight, self.bias, stride=factors, padding=1, output_padding=tuple(f - 1 for f in factors)
        )
        return crop_to(out, size)

    def extra_repr(self) -> str:
        """Show the channel counts."""
        return (
            f"{self.weight.shape[0]}, {self.weight.shape[1]}, kernel_size=3, spatial_dims={self.spatial_dims}"
        )


class DecoderLevel(nn.Module):
    """One decoder level of the AGUNet/DAUNet family.

    Without a gate (official ``decoder_block``):
    ``h = ReLU(BN(cat[guide?, skip, up(x)]))``, ``out = ConvBlock(h)``.

    With a gate (AGUNet's decoder): ``g = ReLU(BN(up(x)))``, ``h = cat[guide?, g, gate(skip, g)]``,
    ``out = ConvBlock(h)``; a guiding map then gets its own BN → ReLU.

    Args:
        in_channels: Channels of ``x`` (the coarser decoder level or the bottleneck).
        skip_channels: Channels of the skip connection.
        out_channels: Output channels (the level's width).
        spatial_dims: Number of spatial axes (1, 2 or 3).
        gate: Optional attention-gate factory, called as ``gate(skip_channels, out_channels,
            spatial_dims=d)``.
        guide_channels: Channels of the guiding map concatenated at this level (DAGUNet); 0 for none.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 3,
        gate: AttentionGateFactory | None = None,
        guide_channels: int = 0,
    ) -> None:
        super().__init__()
        _check_dims("DecoderLevel", spatial_dims)
        norm = batch_norm_nd(spatial_dims)
        self.up = UpConv(in_channels, out_channels, spatial_dims=spatial_dims)
        self.gate = None if gate is None else gate(skip_channels, out_channels, spatial_dims=spatial_dims)
        self.guide_channels = guide_channels
        if self.gate is None:
            self.norm = norm(guide_channels + skip_channels + out_channels)
            self.guide_norm = None
            joint = guide_channels + skip_channels + out_channels
        else:
            self.norm = norm(out_channels)
            self.guide_norm = norm(guide_channels) if guide_channels else None
            joint = guide_channels + out_channels + skip_channels
        self.block = ConvBlock(joint, out_channels, spatial_dims=spatial_dims)

    def forward(self, x: Tensor, skip: Tensor, factors: Sequence[int], guide: Tensor | None = None) -> Tensor:
        """Up-sample ``x`` by ``factors`` to ``skip``'s size, merge with the (gated) skip and convolve."""
        if (guide is None) != (self.guide_channels == 0):
            raise ValueError(
                f"DecoderLevel: built with guide_channels={self.guide_channels}, "
                f"called with guide={'None' if guide is None else tuple(guide.shape)}"
            )
        up = self.up(x, factors, skip.shape[2:])
        if self.gate is None:
            parts = [skip, up] if guide is None else [guide, skip, up]
            h = F.relu(self.norm(torch.cat(parts, dim=1)), inplace=True)
        else:
            g = F.relu(self.norm(up), inplace=True)
            parts = [g, self.gate(skip, g)]
            if guide is not None:
                assert self.guide_norm is not None
                parts.insert(0, F.relu(self.guide_norm(guide), inplace=True))
            h = torch.cat(parts, dim=1)
        return self.block(h)
