"""DANet's position and channel attention modules, and DAUNet's 3-D port of them.

Paper: Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019 (arXiv 1809.02983), §3.2-3.4;
official code ``junfu1115/DANet: encoding/nn/da_att.py`` (``PAM_Module``, ``CAM_Module``) and
``encoding/models/sseg/danet.py`` (``DANetHead``). The 3-D port is DAUNet, Bouget et al., "Meningioma
segmentation in T1-weighted MRI leveraging global context and attention mechanisms", Front. Radiol. 2021
(arXiv 2101.07715); official code ``dbouget/mri_brain_tumor_segmentation:
src/Models/UNet/DualAttentionUNet.py`` (Keras, derived from ``niecongchong/DANet-keras``).

Write the feature map as ``A ∈ R^{C×N}`` with ``N`` the number of positions (``H·W`` or ``D·H·W``).

* **Position attention (PAM)**, Eq. 1-2: ``Q = W_q A``, ``K = W_k A`` (1×1 convs to ``C/8`` channels),
  ``V = W_v A`` (``C`` channels); ``S = softmax_keys(Qᵀ K)`` (``N×N``, unscaled), and
  ``out = γ · V Sᵀ + A`` with a learnable scalar ``γ`` initialised to 0, so the module is the identity at
  initialisation. The fast path is SDPA with ``scale=1.0``.
* **Channel attention (CAM)**, Eq. 3-4: ``E = A Aᵀ`` (``C×C``, no projections), then
  ``out = γ · (W A) + A`` with ``γ`` initialised to 0 and the channel map ``W`` chosen by ``variant``:

  - ``"danet"`` (official DANet code, the default): ``W = softmax_row(max_row(E) − E)``. Because softmax
    is shift-invariant per row this equals ``softmax_row(−E)``: each channel attends most to the channels
    it is *least* similar to. This is what the released models were trained with.
  - ``"paper"`` (DANet Eq. 3 as printed): ``W = softmax_row(E)``.
  - ``"daunet"`` (DAUNet's Keras port): ``W = softmax_row(E)ᵀ``. The port computes
    ``A'ᵀ softmax(A' A'ᵀ)`` on the ``N×C`` layout, i.e. it normalises over the *destination* channel, so
    the weights that reach one output channel do not sum to 1. There is no max-subtraction either.
* **Dual attention** (DANet §3.4 / DAUNet bottleneck): PAM and CAM branches in parallel, each wrapped in
  convolutions, summed and fused (see :class:`DualAttention`).

Differences from the official code:

* Both official codes are fixed to one dimensionality (DANet 2-D, DAUNet 3-D); here every module takes
  ``spatial_dims`` 1, 2 or 3.
* The query/key width ``C // reduction`` is clamped to at least 1 (the official ``in_dim // 8`` is 0 for
  ``C < 8``).
* DAUNet's PAM convs have no bias (Keras ``use_bias=False``); DANet's have one. ``bias`` selects;
  :class:`DualAttention` sets it from ``style``.
* DAUNet's Keras BatchNorm uses ``eps=1e-3, momentum=0.99`` (Keras convention); we use PyTorch's
  defaults. DANet's head also returns the two per-branch predictions for auxiliary losses; a mixer
  returns only the fused map.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.backends import check_backend, resolve_backend
from core.attention.base import SpatialMixer
from core.attention.functional import reference_attention, sdpa
from core.attention.registry import register_mechanism
from core.layers.nd import batch_norm_nd, channel_dropout_nd, conv_nd

__all__ = ["ChannelAttention", "DualAttention", "PositionAttention", "channel_attention_map"]

CamVariant = Literal["danet", "paper", "daunet"]
_PAM_BACKENDS = ("sdpa", "reference")


@register_mechanism(
    paper="Fu et al. 2019, Dual Attention Network for Scene Segmentation (PAM)",
    complexity="O(N^2 d)",
)
class PositionAttention(SpatialMixer):
    """DANet's position attention module: ``γ · V softmax(QᵀK)ᵀ + x`` over all positions.

    Memory is ``O(N²)`` in the number of positions (SDPA may avoid materialising it on GPU), so it is
    meant for bottleneck resolutions.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        reduction: Query/key width is ``max(1, C // reduction)`` (DANet: 8).
        qk_channels: Explicit query/key width; overrides ``reduction``.
        bias: Whether the 1×1 q/k/v convs have a bias (DANet: yes; DAUNet: no).
        backend: ``auto``/``sdpa`` use ``F.scaled_dot_product_attention`` with ``scale=1``;
            ``reference`` runs the literal equation.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        reduction: int = 8,
        qk_channels: int | None = None,
        bias: bool = True,
        backend: Literal["auto", "sdpa", "reference"] = "auto",
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if reduction < 1:
            raise ValueError(f"PositionAttention: reduction must be >= 1, got {reduction}")
        if qk_channels is not None and qk_channels < 1:
            raise ValueError(f"PositionAttention: qk_channels must be >= 1, got {qk_channels}")
        check_backend("PositionAttention", backend, _PAM_BACKENDS)
        self.qk_channels = qk_channels if qk_channels is not None else max(1, channels // reduction)
        self.backend = backend
        conv = conv_nd(spatial_dims)
        self.query = conv(channels, self.qk_channels, 1, bias=bias)
        self.key = conv(channels, self.qk_channels, 1, bias=bias)
        self.value = conv(channels, channels, 1, bias=bias)
        self.gamma = nn.Parameter(torch.zeros(1))

    def mix(self, x: Tensor) -> Tensor:
        """Unscaled single-head attention over the ``N`` positions, scaled by ``γ``, plus ``x``."""
        # (B, 1, N, d): one head over all positions.
        q, k, v = (
            proj(x).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.query, self.key, self.value)
        )
        backend = resolve_backend(
            "PositionAttention", self.backend, _PAM_BACKENDS, x.device, torch.is_grad_enabled()
        )
        attend = reference_attention if backend == "reference" else sdpa
        out = attend(q, k, v, scale=1.0)  # (B, 1, N, C)
        out = out.squeeze(1).transpose(1, 2).reshape(x.shape)
        return self.gamma * out + x

    def extra_repr(self) -> str:
        """Add the query/key width and the backend."""
        return f"{super().extra_repr()}, qk_channels={self.qk_channels}, backend={self.backend}"


def channel_attention_map(x: Tensor, variant: CamVariant) -> Tensor:
    """The ``(B, C, C)`` channel map ``W`` of :class:`ChannelAttention` (``out = γ · W A + A``)."""
    a = x.flatten(2)
    energy = a @ a.transpose(1, 2)
    if variant == "danet":
        return torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
    weights = torch.softmax(energy, dim=-1)
    return weights.transpose(1, 2) if variant == "daunet" else weights


@register_mechanism(
    paper="Fu et al. 2019, Dual Attention Network for Scene Segmentation (CAM)",
    complexity="O(N d^2)",
)
class ChannelAttention(SpatialMixer):
    """DANet's channel attention module: ``γ · W A + A`` with a ``C×C`` map ``W`` from ``E = A Aᵀ``.

    No parameters besides ``γ`` (initialised to 0, so the module starts as the identity).

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        variant: ``danet`` (official code: ``softmax(max(E) − E)``), ``paper`` (Eq. 3: ``softmax(E)``)
            or ``daunet`` (DAUNet's Keras port: ``softmax(E)ᵀ``); see the module docstring.
    """

    def __init__(self, channels: int, *, spatial_dims: int = 2, variant: CamVariant = "danet") -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if variant not in ("danet", "paper", "daunet"):
            raise ValueError(
                f"ChannelAttention: variant must be 'danet', 'paper' or 'daunet', got {variant!r}"
            )
        self.variant = variant
        self.gamma = nn.Parameter(torch.zeros(1))

    def mix(self, x: Tensor) -> Tensor:
        """Mix channels with the map of the chosen variant, scale by ``γ``, add ``x``."""
        out = channel_attention_map(x, self.variant) @ x.flatten(2)
        return self.gamma * out.view(x.shape) + x

    def extra_repr(self) -> str:
        """Add the variant."""
        return f"{super().extra_repr()}, variant={self.variant}"


@register_mechanism(
    paper="Fu et al. 2019, Dual Attention Network for Scene Segmentation (head); Bouget et al. 2021 (DAUNet)",
    complexity="O(N^2 d + N d^2)",
)
class DualAttention(SpatialMixer):
    """PAM and CAM in parallel, each wrapped in convolutions, summed and fused: ``(B, C, *S) → (B, C, *S)``.

    ``style="daunet"`` (DAUNet's bottleneck, default):
    ``branch(M) = conv3(dropout(ReLU(BN(conv3(M(x))))))`` for ``M ∈ {PAM, CAM}``, then
    ``out = BN(conv1(dropout(branch_PAM + branch_CAM)))`` with channel dropout 0.5, all at ``C`` channels.

    ``style="danet"`` (``DANetHead``): each branch reduces to ``C' = C/4`` first,
    ``branch(M) = ReLU(BN(conv3(M(ReLU(BN(conv3(x)))))))``, then
    ``out = conv1(dropout(branch_PAM + branch_CAM))`` back to ``C`` (dropout 0.1). DANet maps to class
    logits here; as a mixer the output width is ``C``.

    The output has no residual to ``x``; a block that wants one adds it.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
        style: ``daunet`` or ``danet`` wrapping, as above.
        reduction: PAM query/key reduction (8 in both).
        cam_variant: CAM variant; ``None`` takes the one of ``style`` (``daunet`` → ``"daunet"``,
            ``danet`` → ``"danet"``).
        dropout: Channel-dropout probability; ``None`` takes the style's (0.5 DAUNet, 0.1 DANet).
        backend: PAM backend (``auto``, ``sdpa`` or ``reference``).
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        style: Literal["daunet", "danet"] = "daunet",
        reduction: int = 8,
        cam_variant: CamVariant | None = None,
        dropout: float | None = None,
        backend: Literal["auto", "sdpa", "reference"] = "auto",
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if style not in ("daunet", "danet"):
            raise ValueError(f"DualAttention: style must be 'daunet' or 'danet', got {style!r}")
        p = (0.5 if style == "daunet" else 0.1) if dropout is None else dropout
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DualAttention: dropout must be in [0, 1), got {p}")
        self.style = style
        conv, norm, drop = (
            conv_nd(spatial_dims),
            batch_norm_nd(spatial_dims),
            channel_dropout_nd(spatial_dims),
        )
        daunet = style == "daunet"
        inner = channels if daunet else max(1, channels // 4)
        self.inner_channels = inner

        def reduce_in() -> nn.Module:
            if daunet:
                return nn.Identity()
            return nn.Sequential(conv(channels, inner, 3, padding=1, bias=False), norm(inner), nn.ReLU())

        def branch_out() -> nn.Module:
            if daunet:
                return nn.Sequential(
                    conv(inner, inner, 3, padding=1),
                    norm(inner),
                    nn.ReLU(),
                    drop(p),
                    conv(inner, inner, 3, padding=1),
                )
            return nn.Sequential(conv(inner, inner, 3, padding=1, bias=False), norm(inner), nn.ReLU())

        self.pam_in, self.cam_in = reduce_in(), reduce_in()
        self.pam = PositionAttention(
            inner, spatial_dims=spatial_dims, reduction=reduction, bias=not daunet, backend=backend
        )
        self.cam = ChannelAttention(inner, spatial_dims=spatial_dims, variant=cam_variant or style)
        self.pam_out, self.cam_out = branch_out(), branch_out()
        fuse: list[nn.Module] = [drop(p), conv(inner, channels, 1)]
        if daunet:
            fuse.append(norm(channels))
        self.fuse = nn.Sequential(*fuse)

    def mix(self, x: Tensor) -> Tensor:
        """Run both branches and fuse their sum."""
        pam = self.pam_out(self.pam(self.pam_in(x)))
        cam = self.cam_out(self.cam(self.cam_in(x)))
        return self.fuse(pam + cam)

    def extra_repr(self) -> str:
        """Add the style and the inner width."""
        return f"{super().extra_repr()}, style={self.style}, inner_channels={self.inner_channels}"
