"""Channel and spatial gates of convolutional feature maps: SE, ECA and CBAM.

All three re-weight a feature map ``x (B, C, *S)`` with a sigmoid gate computed from pooled statistics;
they are :class:`SpatialMixer` s for ``spatial_dims`` 1, 2 and 3.

* **SE**, Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, Eq. 2-4:
  ``z = pool(x) ∈ R^C``, ``s = σ(W₂ δ(W₁ z))`` with ``W₁ ∈ R^{C/r × C}``, ``W₂ ∈ R^{C × C/r}``,
  ``out = s ⊙ x`` (δ = ReLU, r = 16). The paper squeezes with global average pooling; DFYP's "RCA" is an
  SE block with global *max* pooling, so ``pool`` selects either.
* **ECA**, Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
  CVPR 2020, Eq. 12-13: ``s = σ(conv1d_k(avgpool(x)))`` over the channel axis (no dimensionality
  reduction), with the adaptive kernel size ``k = |log₂(C)/γ + b/γ|_odd`` (γ = 2, b = 1).
* **CBAM**, Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, Eq. 2-3: channel
  attention ``M_c = σ(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP (C → C/r → C, ReLU),
  ``x' = M_c ⊙ x``; then spatial attention ``M_s = σ(f^{7×7}([mean_c(x'); max_c(x')]))``,
  ``out = M_s ⊙ x'``. :class:`SpatialGate` is the spatial half alone (QTSeg's "SAM", which adds a
  residual: ``x · M_s + x``).

Differences from the official code:

* SE (``hujie-frank/SENet``, Caffe) and CBAM (``Jongchan/attention-module``) are 2-D only; here the pools
  and convs follow ``spatial_dims``.
* CBAM's official ``ChannelPool`` concatenates ``[max, mean]`` and its 7×7 conv is followed by a
  BatchNorm (``BasicConv(bn=True)``); the paper writes ``[AvgPool; MaxPool]`` and no norm. We follow the
  paper (``[mean, max]``, no norm, conv without bias as in the official code); ``spatial_norm=True``
  adds the official BatchNorm. The channel order only matters when loading official weights.
* ECA's official ``eca_layer`` uses a fixed ``k_size=3``; the adaptive ``k`` of the paper is the
  default here (``kernel_size=None``) and a fixed size can be passed.
* The hidden width ``C // r`` of SE and CBAM is clamped to at least 1, so narrow maps still build.
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import SpatialMixer
from core.attention.registry import register_mechanism
from core.layers.nd import batch_norm_nd, conv_nd

__all__ = [
    "CBAM",
    "ECA",
    "SpatialGate",
    "SqueezeExcitation",
    "eca_kernel_size",
]


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA's adaptive kernel size ``k = |log₂(C)/γ + b/γ|_odd`` (Wang et al. 2020, Eq. 12).

    ``|t|_odd`` is the nearest odd number; as in the official code, ``t`` is truncated to an int and an
    even value is rounded up.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _spatial_axes(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def _broadcast_channels(s: Tensor, x: Tensor) -> Tensor:
    """``(B, C)`` → ``(B, C, 1, ..., 1)`` to broadcast against ``x (B, C, *S)``."""
    return s.view(*s.shape, *([1] * (x.ndim - 2)))


def _hidden(owner: str, channels: int, reduction: int) -> int:
    if reduction < 1:
        raise ValueError(f"{owner}: reduction must be >= 1, got {reduction}")
    return max(1, channels // reduction)


@register_mechanism(
    paper="Hu et al. 2018, Squeeze-and-Excitation Networks",
    complexity="O(N d + d^2 / r)",
    example_kwargs={"reduction": 4},
)
class SqueezeExcitation(SpatialMixer):
    """Squeeze-and-Excitation: ``x · σ(W₂ ReLU(W₁ pool(x)))`` per channel.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        reduction: Bottleneck ratio ``r``; hidden width ``max(1, C // r)`` (paper: 16).
        pool: Global pooling of the squeeze: ``avg`` (paper) or ``max`` (DFYP's "RCA").
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        reduction: int = 16,
        pool: Literal["avg", "max"] = "avg",
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if pool not in ("avg", "max"):
            raise ValueError(f"SqueezeExcitation: pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        hidden = _hidden("SqueezeExcitation", channels, reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def mix(self, x: Tensor) -> Tensor:
        """Squeeze (global pool), excite (bottleneck MLP + sigmoid), scale."""
        axes = _spatial_axes(x)
        z = x.mean(dim=axes) if self.pool == "avg" else x.amax(dim=axes)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))
        return x * _broadcast_channels(s, x)

    def extra_repr(self) -> str:
        """Add the hidden width and pooling."""
        return f"{super().extra_repr()}, hidden={self.fc1.out_features}, pool={self.pool}"


@register_mechanism(
    paper="Wang et al. 2020, ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    complexity="O(N d + d k)",
)
class ECA(SpatialMixer):
    """Efficient Channel Attention: ``x · σ(conv1d_k(avgpool(x)))`` along the channel axis.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        kernel_size: Odd size ``k`` of the channel conv; ``None`` uses the adaptive
            ``k = |log₂(C)/γ + b/γ|_odd`` of the paper.
        gamma: ``γ`` of the adaptive kernel size (paper: 2).
        b: ``b`` of the adaptive kernel size (paper: 1).
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        b: float = 1.0,
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if gamma <= 0:
            raise ValueError(f"ECA: gamma must be positive, got {gamma}")
        k = eca_kernel_size(channels, gamma, b) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA: kernel_size must be a positive odd int, got {k}")
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def mix(self, x: Tensor) -> Tensor:
        """Pool, 1-D conv across neighbouring channels, sigmoid, scale."""
        z = x.mean(dim=_spatial_axes(x))  # (B, C)
        s = torch.sigmoid(self.conv(z.unsqueeze(1)).squeeze(1))
        return x * _broadcast_channels(s, x)

    def extra_repr(self) -> str:
        """Add the kernel size."""
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"


@register_mechanism(
    paper="Woo et al. 2018, CBAM: Convolutional Block Attention Module (spatial attention)",
    complexity="O(N d + N k^D)",
    example_kwargs={"kernel_size": 3},
)
class SpatialGate(SpatialMixer):
    """CBAM's spatial attention ``x · σ(conv_k([mean_c(x); max_c(x)]))`` (+ ``x`` with ``residual``).

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        kernel_size: Odd size of the conv over the two pooled maps (paper: 7).
        norm: Add a BatchNorm after the conv, as CBAM's official code does (paper: none).
        residual: Return ``x · M_s + x`` (QTSeg's "SAM") instead of ``x · M_s``.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        kernel_size: int = 7,
        norm: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialGate: kernel_size must be a positive odd int, got {kernel_size}")
        self.kernel_size = kernel_size
        self.residual = residual
        self.conv = conv_nd(spatial_dims)(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = batch_norm_nd(spatial_dims)(1) if norm else nn.Identity()

    def mix(self, x: Tensor) -> Tensor:
        """Pool over channels (mean, max), conv, sigmoid, scale."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        gated = x * torch.sigmoid(self.norm(self.conv(pooled)))
        return gated + x if self.residual else gated

    def extra_repr(self) -> str:
        """Add the kernel size and the residual flag."""
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, residual={self.residual}"


@register_mechanism(
    paper="Woo et al. 2018, CBAM: Convolutional Block Attention Module",
    complexity="O(N d + d^2 / r + N k^D)",
    example_kwargs={"reduction": 4, "kernel_size": 3},
)
class CBAM(SpatialMixer):
    """CBAM: channel attention (shared MLP on avg- and max-pooled descriptors), then spatial attention.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        reduction: MLP bottleneck ratio ``r``; hidden width ``max(1, C // r)`` (paper: 16).
        kernel_size: Odd size of the spatial-attention conv (paper: 7).
        spatial_norm: BatchNorm after the spatial conv, as the official code (paper: none).
        use_spatial: Keep the spatial-attention stage (``False``: channel attention only).
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        reduction: int = 16,
        kernel_size: int = 7,
        spatial_norm: bool = False,
        use_spatial: bool = True,
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        hidden = _hidden("CBAM", channels, reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = (
            SpatialGate(channels, spatial_dims=spatial_dims, kernel_size=kernel_size, norm=spatial_norm)
            if use_spatial
            else None
        )

    def mix(self, x: Tensor) -> Tensor:
        """``x' = σ(MLP(avg) + MLP(max)) ⊙ x``, then the spatial gate on ``x'``."""
        axes = _spatial_axes(x)
        logits = self.mlp(x.mean(dim=axes)) + self.mlp(x.amax(dim=axes))
        x = x * _broadcast_channels(torch.sigmoid(logits), x)
        return x if self.spatial is None else self.spatial(x)

    def extra_repr(self) -> str:
        """Add the hidden width and whether the spatial stage is used."""
        return (
            f"{super().extra_repr()}, hidden={self.mlp[0].out_features}, spatial={self.spatial is not None}"
        )
