"""The U-Net family of Bouget et al. 2021: :class:`UNet` and its presets AGUNet, DAUNet and DAGUNet.

Paper: Bouget et al., "Meningioma segmentation in T1-weighted MRI leveraging global context and attention
mechanisms", Front. Radiol. 2021 (arXiv 2101.07715). Official code (Keras, inference only):
``dbouget/mri_brain_tumor_segmentation: src/Models/UNet/DualAttentionUNet.py``.

One nd network with switches; the presets are subclasses whose defaults are the paper's architectures.
Backbone (``channels = (c_0, ..., c_K)``): ``K`` encoder levels ``ConvBlock(c_i) → MaxPool 2``, a bottleneck
``ConvBlock(c_K)``, ``K`` decoder levels ``ConvTranspose(3, stride 2) → cat skip → BN → ReLU → ConvBlock``
and a ``1×1`` output conv. Switches:

* ``gate`` (AGUNet): an :class:`~core.attention.AttentionGate` on every skip, gated by ``g`` = the
  up-sampled decoder features after BN → ReLU; then ``cat[g, gate(skip, g)] → ConvBlock``.
* ``spatial_attention`` (DAUNet): a :class:`~core.attention.SpatialMixer` on the bottleneck output; the
  decoder starts from its output (the official DAUNet has no residual around the dual-attention head).
  ``attention`` (a token mixer, the task's ``--model.attention``) takes that place when given, run on the
  bottleneck's flattened positions (:func:`~core.blocks.token_map.token_mixer_map`, pre-norm residual).
* ``attention_guiding`` (DAGUNet): the bottleneck attention output is brought to every decoder level and
  concatenated there.
* ``multiscale_input``: an average-pooled input pyramid; encoder level ``i > 0`` concatenates
  ``ReLU(conv3(pooled input))`` (``c_i`` channels) with its input before the conv block.
* ``deep_supervision``: a ``1×1`` head on every decoder level; in training mode the forward returns the
  logits of every level, full resolution first.

Differences from the official Keras code:

* **Logits, no softmax**: the losses (MONAI ``DiceCELoss``) apply the softmax.
* Any input size works: axes shorter than ``min_pool_size`` are not pooled (official: axes ``<= 4``),
  pooling rounds up (``ceil_mode``), and the transposed conv uses the same per-axis factors and is cropped
  to the skip's size. The official network needs sizes divisible by ``2^K`` on the pooled axes.
* The pyramid pools the input with the encoder's factors (official: always ``2³``, which only agrees when
  every axis is pooled).
* Convs followed by a BatchNorm have no bias (the bias is cancelled by the BN); BatchNorm uses PyTorch's
  ``eps=1e-5, momentum=0.1`` instead of Keras' ``eps=1e-3, momentum=0.99``; weights use PyTorch's default
  initialisation (Keras: Glorot-uniform).
* Attention guiding: the official code up-samples the bottleneck map with
  ``Conv3DTranspose(c_i, kernel 3, stride 2^i)``, which for strides ``>= 4`` leaves zero "holes" between
  the kernel footprints. We apply a ``1×1`` conv (``c_K → c_i``) at the bottleneck and resize the result
  linearly to the level's size (same parameters per voxel as a 1×1 up-conv, no holes, far cheaper). With
  a gate, the guide gets its own BN → ReLU (the official gated+guided decoder is not in the repository).
* Official AGUNet decoders apply the gate only on gated models; ``gate`` may be combined with any other
  switch here, and any registered gate / spatial mixer may be injected.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from core.attention.base import AttentionFactory, AttentionGateFactory, SpatialMixerFactory
from core.attention.danet import DualAttention
from core.attention.gates import ConcatAttentionGate
from core.blocks.token_map import token_mixer_map
from core.blocks.unet import ConvBlock, DecoderLevel, pool_factors, pool_nd
from core.layers.nd import conv_nd, interpolate_mode
from core.training.networks import factory_target
from domains.medical.models.base import SegmentationNetwork

__all__ = ["AGUNet", "DAGUNet", "DAUNet", "UNet"]


class UNet(SegmentationNetwork):
    """N-d U-Net with optional gates, bottleneck attention, guiding, input pyramid and deep supervision.

    With every switch off (the defaults) this is the plain U-Net baseline of Bouget et al. 2021.

    Args:
        in_channels: Image channels (modalities; linked from the data).
        num_classes: Output classes including background (logit channels; linked from the data).
        spatial_dims: 2 or 3 (linked from the data).
        channels: Widths of the encoder levels, shallow to deep; the last is the bottleneck (at least 2).
        gate: Attention-gate factory for the skips (AGUNet: ``ConcatAttentionGate``; Oktay et al.:
            ``AdditiveAttentionGate``), called as ``gate(skip_channels, level_channels, spatial_dims=d)``.
        spatial_attention: Feature-map mechanism at the bottleneck (DAUNet: ``DualAttention``), called as
            ``spatial_attention(c_K, spatial_dims=d)``. Any registered :class:`SpatialMixer` that supports
            ``spatial_dims`` works (``CBAM``, ``PositionAttention``, ...).
        attention: A token mixer (the task's ``--model.attention``) run on the bottleneck's flattened
            positions with a pre-norm residual. When given, it takes the bottleneck in place of
            ``spatial_attention`` (so ``--model.attention`` also swaps DAUNet's dual attention).
        attention_guiding: Concatenate the (resized, ``1×1``-projected) bottleneck attention output at every
            decoder level (DAGUNet). Requires ``spatial_attention`` or ``attention``.
        multiscale_input: Feed an average-pooled input pyramid to encoder levels ``1..K-1``.
        deep_supervision: Add a ``1×1`` head per decoder level; in training mode return all their logits.
        min_pool_size: Axes with fewer voxels than this at some level are not pooled there (>= 2).
        channels_last: Keep weights and activations in the ``channels_last(_3d)`` memory format (the input
            is converted on entry, the logits are returned contiguous): faster 3-D convolutions on CPU
            (oneDNN), the same results up to rounding.

    Shapes:
        ``forward(x (B, in_channels, *S)) -> (B, num_classes, *S)``; in training mode with deep supervision a
        list of ``K`` logit maps, full resolution first, then each coarser decoder level at its own size.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        *,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        gate: AttentionGateFactory | None = None,
        spatial_attention: SpatialMixerFactory | None = None,
        attention: AttentionFactory | None = None,
        attention_guiding: bool = False,
        multiscale_input: bool = False,
        deep_supervision: bool = False,
        min_pool_size: int = 2,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        channels = tuple(int(c) for c in channels)
        if spatial_dims not in (2, 3):
            raise ValueError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"{name}: channels must hold at least 2 positive widths, got {channels}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"{name}: in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}"
            )
        bottleneck = spatial_attention
        if attention is not None:
            if spatial_attention is not None:
                rank_zero_info(
                    f"{name}: the token mixer `attention` ({_name(attention)}) takes the bottleneck in place "
                    f"of spatial_attention ({_name(spatial_attention)})"
                )
            bottleneck = token_mixer_map(attention)
        if attention_guiding and bottleneck is None:
            raise ValueError(
                f"{name}: attention_guiding=True needs a bottleneck mechanism (`spatial_attention` or "
                "`attention`), as in DAGUNet"
            )
        if min_pool_size < 2:
            raise ValueError(f"{name}: min_pool_size must be >= 2, got {min_pool_size}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.attention_guiding = attention_guiding
        self.multiscale_input = multiscale_input
        self.deep_supervision = deep_supervision
        self.min_pool_size = min_pool_size
        d = spatial_dims
        conv = conv_nd(d)
        levels = len(channels) - 1

        self.encoders = nn.ModuleList()
        self.pyramid = nn.ModuleList()
        for i in range(levels):
            c_in = in_channels if i == 0 else channels[i - 1]
            if multiscale_input and i > 0:
                self.pyramid.append(conv(in_channels, channels[i], 3, padding=1))
                c_in += channels[i]
            self.encoders.append(ConvBlock(c_in, channels[i], spatial_dims=d))
        self.bottleneck = ConvBlock(channels[-2], channels[-1], spatial_dims=d)
        self.attention = None if bottleneck is None else bottleneck(channels[-1], spatial_dims=d)

        self.guides = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(levels):  # decoder level i produces channels[i] at encoder level i's resolution
            if attention_guiding:
                self.guides.append(conv(channels[-1], channels[i], 1, bias=False))
            self.decoders.append(
                DecoderLevel(
                    channels[i + 1],
                    channels[i],
                    channels[i],
                    spatial_dims=d,
                    gate=gate,
                    guide_channels=channels[i] if attention_guiding else 0,
                )
            )
        n_heads = levels if deep_supervision else 1
        self.heads = nn.ModuleList(conv(channels[i], num_classes, 1) for i in range(n_heads))
        self.channels_last = channels_last
        self._memory_format = torch.channels_last_3d if d == 3 else torch.channels_last
        if channels_last:
            self.to(memory_format=self._memory_format)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, num_classes, *S)``; a list (full size first) when training with deep supervision."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "H, W, D" if self.spatial_dims == 3 else "H, W"
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (B, {self.in_channels}, {axes}), "
                f"got {tuple(x.shape)}"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=self._memory_format)
        skips: list[Tensor] = []
        factors: list[tuple[int, ...]] = []
        pyramid = x
        h = x
        for i, encoder in enumerate(self.encoders):
            if self.multiscale_input and i > 0:
                pyramid = pool_nd(pyramid, factors[i - 1], mode="avg")
                h = torch.cat([F.relu(self.pyramid[i - 1](pyramid), inplace=True), h], dim=1)
            h = encoder(h)
            skips.append(h)
            factors.append(pool_factors(h.shape[2:], self.min_pool_size))
            h = pool_nd(h, factors[-1])
        h = self.bottleneck(h)
        if self.attention is not None:
            h = self.attention(h)
        bottom = h

        want_all = self.deep_supervision and self.training
        outputs: list[Tensor] = []
        for i in reversed(range(len(self.decoders))):
            guide = None
            if self.attention_guiding:
                guide = self.guides[i](bottom)
                size = skips[i].shape[2:]
                if tuple(guide.shape[2:]) != tuple(size):
                    guide = F.interpolate(
                        guide, size=size, mode=interpolate_mode(self.spatial_dims), align_corners=False
                    )
            h = self.decoders[i](h, skips[i], factors[i], guide)
            if want_all and i > 0:
                outputs.append(self.heads[i](h).contiguous())
        logits = self.heads[0](h).contiguous()
        if want_all:
            return [logits, *reversed(outputs)]
        return logits

    def extra_repr(self) -> str:
        """Show the switches."""
        return (
            f"spatial_dims={self.spatial_dims}, channels={self.channels}, "
            f"attention_guiding={self.attention_guiding}, multiscale_input={self.multiscale_input}, "
            f"deep_supervision={self.deep_supervision}, channels_last={self.channels_last}"
        )


def _name(factory: Callable[..., Any]) -> str:
    """A factory's class name, through ``functools.partial`` layers (jsonargparse's factories included)."""
    target, _ = factory_target(factory)
    return getattr(target, "__name__", type(target).__name__)


class AGUNet(UNet):
    """AGUNet (Bouget et al. 2021): concatenation attention gates, input pyramid, deep supervision.

    The paper's final AGUNet configuration; ``multiscale_input`` and ``deep_supervision`` are its ablation
    switches. Every other option is :class:`UNet`'s.

    Args:
        in_channels: Image channels (linked from the data).
        num_classes: Classes including background (linked from the data).
        spatial_dims: 2 or 3 (linked from the data).
        gate: Attention gate on the skips (default: the official ``ConcatAttentionGate``;
            ``AdditiveAttentionGate`` is Oktay et al.'s).
        multiscale_input: Input pyramid (on in the paper).
        deep_supervision: A ``1×1`` head per decoder level, trained against the downsampled truth (on).
        **kwargs: The other options of :class:`UNet` (``channels``, ``spatial_attention``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        *,
        gate: AttentionGateFactory | None = ConcatAttentionGate,
        multiscale_input: bool = True,
        deep_supervision: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            spatial_dims,
            gate=gate,
            multiscale_input=multiscale_input,
            deep_supervision=deep_supervision,
            **kwargs,
        )


class DAUNet(UNet):
    """DAUNet (Bouget et al. 2021): DANet's position + channel attention at the bottleneck (γ = 0 at init).

    The official ``DualAttentionUnet`` defaults: no gate, no input pyramid, no deep supervision. The CAM
    formulation is the mechanism's own option (``--model.network.spatial_attention.cam_variant``). Every
    other option is :class:`UNet`'s.

    Args:
        in_channels: Image channels (linked from the data).
        num_classes: Classes including background (linked from the data).
        spatial_dims: 2 or 3 (linked from the data).
        spatial_attention: Bottleneck mechanism (default ``DualAttention`` in DAUNet style); a token mixer
            given as ``attention`` (``--model.attention``) takes its place.
        **kwargs: The other options of :class:`UNet` (``channels``, ``gate``, ``deep_supervision``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        *,
        spatial_attention: SpatialMixerFactory | None = DualAttention,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            in_channels, num_classes, spatial_dims, spatial_attention=spatial_attention, **kwargs
        )


class DAGUNet(AGUNet):
    """DAGUNet (Bouget et al. 2021): AGUNet plus DAUNet's dual attention, guiding every decoder level.

    AGUNet's gates, input pyramid and deep supervision, DAUNet's dual attention at the bottleneck, and that
    attention's output concatenated at every decoder level (attention guiding). Every other option is
    :class:`AGUNet`'s and :class:`UNet`'s.

    Args:
        in_channels: Image channels (linked from the data).
        num_classes: Classes including background (linked from the data).
        spatial_dims: 2 or 3 (linked from the data).
        spatial_attention: Bottleneck mechanism (default ``DualAttention`` in DAUNet style); a token mixer
            given as ``attention`` (``--model.attention``) takes its place.
        attention_guiding: Concatenate the bottleneck attention output at every decoder level (on).
        **kwargs: The options of :class:`AGUNet` (``gate``, ``multiscale_input``, ``deep_supervision``) and
            :class:`UNet` (``channels``, ``attention``, ``min_pool_size``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        *,
        spatial_attention: SpatialMixerFactory | None = DualAttention,
        attention_guiding: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            spatial_dims,
            spatial_attention=spatial_attention,
            attention_guiding=attention_guiding,
            **kwargs,
        )
