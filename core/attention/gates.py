"""Attention gates: skip features ``x`` re-weighted by a sigmoid map computed with a gating signal ``g``.

* **Additive attention gate**, Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas",
  MIDL 2018 (arXiv 1804.03999), Eq. 1-2:

  ``q = ψᵀ σ₁(W_xᵀ x + W_gᵀ g + b_g) + b_ψ``, ``α = σ₂(q)``, ``out = α · x``

  with ``σ₁`` = ReLU, ``σ₂`` = sigmoid, and linear (1×1-conv) maps ``W_x`` (no bias), ``W_g`` (bias
  ``b_g``) and ``ψ`` (bias ``b_ψ``) through ``F_int`` intermediate channels. As in the official code
  (``ozan-oktay/Attention-Gated-Networks: models/layers/grid_attention_layer.py``), ``W_x`` is a strided
  conv (kernel = stride = ``sub_sample``) that brings ``x`` to the coarser resolution of ``g``; ``W_g g`` is
  linearly resampled to that grid when the sizes differ, and ``α`` is resampled (linear / bilinear /
  trilinear) back to ``x``'s size.
* **Concatenation attention gate**, the gate of AGUNet (Bouget et al., "Meningioma segmentation in
  T1-weighted MRI leveraging global context and attention mechanisms", Front. Radiol. 2021; official
  ``dbouget/mri_brain_tumor_segmentation``, ``attention_block``, itself taken from
  ``LeeJunHyun/Image_Segmentation``):

  ``g₁ = BN(W_g g)``, ``x₁ = BN(W_x x)``, ``α = σ(BN(ψᵀ ReLU([g₁; x₁]) + b_ψ))``, ``out = α · x``

  with 1×1 convs (all with bias) to ``F_int = C_x / 2`` channels. Because the ReLU acts on the
  *concatenation*, ``ψᵀ ReLU([g₁; x₁]) = ψ_gᵀ ReLU(g₁) + ψ_xᵀ ReLU(x₁)``: g and x interact only through
  the sum before the sigmoid, unlike the additive gate where they interact inside the ReLU. We keep this
  as the official code has it.

Differences from the official code:

* Oktay's official block also returns ``α`` and applies an output transform ``W`` (1×1 conv + BatchNorm)
  to ``α · x``; the paper's Eq. 2 has no such transform. ``output_transform=True`` adds it; the gate
  returns only the gated features.
* The official code resamples with ``F.upsample``, which in the PyTorch of 2018 aligned corners; we use
  ``align_corners=False`` (the modern default), selectable.
* AGUNet's gate receives ``g`` already at ``x``'s resolution (the decoder's transposed conv output).
  Our gate also accepts a coarser ``g`` and resamples it linearly to ``x``'s size before the 1×1 conv.
* Keras' BatchNorm defaults (``eps=1e-3``, ``momentum=0.99``) are replaced by PyTorch's.
* Both official gates are 2-D/3-D only; here ``spatial_dims`` may also be 1.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionGate
from core.attention.registry import register_mechanism
from core.layers.nd import batch_norm_nd, conv_nd, interpolate_mode

__all__ = ["AdditiveAttentionGate", "ConcatAttentionGate"]


def _inter(owner: str, channels: int, inter_channels: int | None) -> int:
    if inter_channels is not None and inter_channels < 1:
        raise ValueError(f"{owner}: inter_channels must be >= 1, got {inter_channels}")
    return max(1, channels // 2) if inter_channels is None else inter_channels


def _resize(t: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """Linearly resample ``t (B, C, *S)`` to ``size``; a no-op when it already has that size."""
    size = tuple(size)
    if tuple(t.shape[2:]) == size:
        return t
    return F.interpolate(t, size=size, mode=interpolate_mode(t.ndim - 2), align_corners=align_corners)


@register_mechanism(
    paper="Oktay et al. 2018, Attention U-Net: Learning Where to Look for the Pancreas",
    complexity="O(N d F_int)",
)
class AdditiveAttentionGate(AttentionGate):
    """Oktay's additive attention gate ``x · σ(ψᵀ ReLU(W_xᵀ x + W_gᵀ g + b_g) + b_ψ)``.

    Args:
        channels: Channels ``C_x`` of the gated skip features ``x``.
        gating_channels: Channels ``C_g`` of the gating signal ``g``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        inter_channels: Intermediate width ``F_int``; default ``max(1, C_x // 2)`` (official code).
        sub_sample: Kernel and stride of ``W_x`` (official: 2, matching a ``g`` one level coarser).
            ``1`` makes ``W_x`` a 1×1 conv at ``x``'s resolution (MONAI-style, with ``g`` resampled).
        output_transform: Apply the official code's 1×1 conv + BatchNorm to ``α · x``.
        align_corners: ``align_corners`` of the linear resampling.
    """

    def __init__(
        self,
        channels: int,
        gating_channels: int,
        *,
        spatial_dims: int = 3,
        inter_channels: int | None = None,
        sub_sample: int = 2,
        output_transform: bool = False,
        align_corners: bool = False,
    ) -> None:
        super().__init__(channels, gating_channels, spatial_dims=spatial_dims)
        if sub_sample < 1:
            raise ValueError(f"AdditiveAttentionGate: sub_sample must be >= 1, got {sub_sample}")
        self.inter_channels = _inter("AdditiveAttentionGate", channels, inter_channels)
        self.sub_sample = sub_sample
        self.align_corners = align_corners
        conv = conv_nd(spatial_dims)
        self.theta = conv(channels, self.inter_channels, sub_sample, stride=sub_sample, bias=False)
        self.phi = conv(gating_channels, self.inter_channels, 1)
        self.psi = conv(self.inter_channels, 1, 1)
        self.output = (
            nn.Sequential(conv(channels, channels, 1), batch_norm_nd(spatial_dims)(channels))
            if output_transform
            else nn.Identity()
        )

    def gate(self, x: Tensor, g: Tensor) -> Tensor:
        """Compute ``α`` on the sub-sampled grid, resample it to ``x``'s size and gate ``x``."""
        if min(x.shape[2:]) < self.sub_sample:
            raise ValueError(
                f"AdditiveAttentionGate: every spatial size of x must be >= sub_sample={self.sub_sample}, "
                f"got x of shape {tuple(x.shape)}"
            )
        theta_x = self.theta(x)
        phi_g = _resize(self.phi(g), theta_x.shape[2:], self.align_corners)
        alpha = torch.sigmoid(self.psi(torch.relu(theta_x + phi_g)))
        alpha = _resize(alpha, x.shape[2:], self.align_corners)
        return self.output(alpha * x)

    def extra_repr(self) -> str:
        """Add the intermediate width and the sub-sampling factor."""
        return f"{super().extra_repr()}, inter_channels={self.inter_channels}, sub_sample={self.sub_sample}"


@register_mechanism(
    paper="Bouget et al. 2021, Meningioma segmentation in T1-weighted MRI leveraging global context "
    "and attention mechanisms (AGUNet gate)",
    complexity="O(N d F_int)",
)
class ConcatAttentionGate(AttentionGate):
    """AGUNet's concatenation gate ``x · σ(BN(ψᵀ ReLU([BN(W_g g); BN(W_x x)]) + b_ψ))``.

    ``g`` is linearly resampled to ``x``'s size first when it is coarser.

    Args:
        channels: Channels ``C_x`` of the gated skip features ``x``.
        gating_channels: Channels ``C_g`` of the gating signal ``g``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        inter_channels: Width of ``g₁`` and ``x₁``; default ``max(1, C_x // 2)`` (AGUNet: half the
            decoder level's filters).
        norm: BatchNorm after each conv, as the official code (``False`` drops all three).
        align_corners: ``align_corners`` of the linear resampling of ``g``.
    """

    def __init__(
        self,
        channels: int,
        gating_channels: int,
        *,
        spatial_dims: int = 3,
        inter_channels: int | None = None,
        norm: bool = True,
        align_corners: bool = False,
    ) -> None:
        super().__init__(channels, gating_channels, spatial_dims=spatial_dims)
        self.inter_channels = inter = _inter("ConcatAttentionGate", channels, inter_channels)
        self.align_corners = align_corners
        conv, bn = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)

        def normed(c_in: int, c_out: int) -> nn.Module:
            return nn.Sequential(conv(c_in, c_out, 1), bn(c_out) if norm else nn.Identity())

        self.gate_proj = normed(gating_channels, inter)
        self.skip_proj = normed(channels, inter)
        self.psi = normed(2 * inter, 1)

    def gate(self, x: Tensor, g: Tensor) -> Tensor:
        """Resample ``g`` to ``x``'s grid, project both, concatenate, ReLU, 1-channel conv, sigmoid."""
        g = _resize(g, x.shape[2:], self.align_corners)
        joint = torch.relu(torch.cat([self.gate_proj(g), self.skip_proj(x)], dim=1))
        return x * torch.sigmoid(self.psi(joint))

    def extra_repr(self) -> str:
        """Add the intermediate width."""
        return f"{super().extra_repr()}, inter_channels={self.inter_channels}"
