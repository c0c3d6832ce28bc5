"""Segmentation networks of the medical domain and the per-architecture defaults the task builds them with.

* :class:`UNet` (2-D/3-D): the U-Net family of Bouget et al. 2021 as switches: ``unet``, ``agunet``
  (attention gates, input pyramid, deep supervision), ``daunet`` (DANet dual attention at the
  bottleneck) and ``dagunet`` (gates + dual attention + attention guiding of every decoder level).
* :class:`QTSeg` (2-D): query-token dual-mix attention decoder (Tran et al. 2024).

Every network returns logits (no softmax). :func:`build_network` is what the task calls; ``ARCHITECTURES``
holds the defaults a ``None`` option falls back to.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from torch import nn

from core.attention.base import AttentionFactory, AttentionGateFactory, SpatialMixerFactory
from core.attention.danet import DualAttention
from core.attention.gates import ConcatAttentionGate
from core.blocks.token_map import token_mixer_map
from domains.medical.models.qtseg import QTSeg
from domains.medical.models.unet import UNet

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CHANNELS",
    "ArchitectureDefaults",
    "NetworkName",
    "QTSeg",
    "UNet",
    "build_network",
]

NetworkName = Literal["unet", "agunet", "daunet", "dagunet", "qtseg"]

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
"""U-Net widths when none are given (the official list is set outside the repository; a common choice)."""


@dataclass(frozen=True)
class ArchitectureDefaults:
    """What a U-Net architecture name means when an option is left at ``None``.

    Attributes:
        gate: Attention gate on the skips (``None``: plain skips).
        attention: Bottleneck feature-map mechanism (``None``: none).
        attention_guiding: Concatenate the bottleneck attention at every decoder level.
        multiscale_input: Input pyramid.
        deep_supervision: A head per decoder level.
    """

    gate: AttentionGateFactory | None = None
    attention: SpatialMixerFactory | None = None
    attention_guiding: bool = False
    multiscale_input: bool = False
    deep_supervision: bool = False


_DAUNET_ATTENTION = partial(DualAttention, style="daunet")

ARCHITECTURES: dict[str, ArchitectureDefaults] = {
    "unet": ArchitectureDefaults(),
    # AGUNet as in the paper's final configuration: gates, multi-scale input and deep supervision.
    "agunet": ArchitectureDefaults(gate=ConcatAttentionGate, multiscale_input=True, deep_supervision=True),
    # DAUNet: the official DualAttentionUnet defaults (no pyramid, no deep supervision).
    "daunet": ArchitectureDefaults(attention=_DAUNET_ATTENTION),
    "dagunet": ArchitectureDefaults(
        gate=ConcatAttentionGate,
        attention=_DAUNET_ATTENTION,
        attention_guiding=True,
        multiscale_input=True,
        deep_supervision=True,
    ),
}


def build_network(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int = 3,
    channels: Sequence[int] | None = None,
    attention: AttentionFactory | None = None,
    spatial_attention: SpatialMixerFactory | None = None,
    gate: AttentionGateFactory | None = None,
    multiscale_input: bool | None = None,
    deep_supervision: bool | None = None,
) -> nn.Module:
    """Build ``name`` with the architecture's defaults for every option left at ``None``.

    Args:
        name: ``unet``, ``agunet``, ``daunet``, ``dagunet`` or ``qtseg``.
        in_channels: Image channels.
        num_classes: Classes including background.
        spatial_dims: 2 or 3 (``qtseg``: 2 only).
        channels: U-Net widths, shallow to deep (default :data:`DEFAULT_CHANNELS`); for ``qtseg`` a single
            value, the encoder base width ``n``.
        attention: A token mixer. U-Nets run it on the bottleneck's flattened positions (pre-norm residual,
            :func:`~core.blocks.token_map.token_mixer_map`) instead of the default bottleneck mechanism;
            QTSeg uses it for its token/feature cross-attentions (it must accept ``context``).
        spatial_attention: A feature-map mechanism for the U-Net bottleneck (overrides the default).
        gate: Attention gate for the U-Net skips (overrides the default).
        multiscale_input: U-Net input pyramid (``None``: the architecture's default).
        deep_supervision: U-Net deep supervision (``None``: the architecture's default).

    Returns:
        The network (logits out).

    Raises:
        ValueError: For an unknown name, both ``attention`` and ``spatial_attention``, or a U-Net-only
            option given to ``qtseg``.
    """
    if name == "qtseg":
        if spatial_dims != 2:
            raise ValueError(f"build_network: qtseg is a 2-D network, got spatial_dims={spatial_dims}")
        bad = {"spatial_attention": spatial_attention, "gate": gate}
        bad |= {"multiscale_input": multiscale_input or None, "deep_supervision": deep_supervision or None}
        given = [k for k, v in bad.items() if v is not None]
        if given:
            raise ValueError(f"build_network: qtseg has no U-Net options; remove {', '.join(given)}")
        kwargs: dict[str, object] = {}
        if channels is not None:
            widths = list(channels)
            if len(widths) != 1:
                raise ValueError(
                    f"build_network: for qtseg, channels is [base width n] (decoder widths 4n, 8n, 16n), "
                    f"got {widths}"
                )
            kwargs["base_channels"] = int(widths[0])
        return QTSeg(in_channels, num_classes, attention=attention, **kwargs)
    if name not in ARCHITECTURES:
        raise ValueError(
            f"build_network: unknown network {name!r}; choose one of {[*ARCHITECTURES, 'qtseg']}"
        )
    if attention is not None and spatial_attention is not None:
        raise ValueError(
            "build_network: give either `attention` (a token mixer) or `spatial_attention` (a feature-map "
            "mechanism) for the bottleneck, not both"
        )
    arch = ARCHITECTURES[name]
    if attention is not None:
        bottleneck: SpatialMixerFactory | None = token_mixer_map(attention)
    elif spatial_attention is not None:
        bottleneck = spatial_attention
    else:
        bottleneck = arch.attention
    return UNet(
        in_channels,
        num_classes,
        spatial_dims=spatial_dims,
        channels=tuple(channels) if channels is not None else DEFAULT_CHANNELS,
        gate=gate if gate is not None else arch.gate,
        attention=bottleneck,
        attention_guiding=arch.attention_guiding,
        multiscale_input=arch.multiscale_input if multiscale_input is None else multiscale_input,
        deep_supervision=arch.deep_supervision if deep_supervision is None else deep_supervision,
    )
