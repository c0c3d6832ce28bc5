"""Small layers the remote-sensing networks share.

The FPN decoder, the band-count adaptation of a stem convolution, and input checks (stochastic depth and
the channels-first LayerNorm are in ``core.layers``).
"""

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from core.utils import InputError

__all__ = [
    "FPNDecoder",
    "adapt_input_conv",
    "check_image",
    "upsample_to",
]


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """A stem weight ``(O, I, k, k)`` re-shaped for ``in_channels`` bands, as timm's ``adapt_input_conv``.

    One band gets the sum over the checkpoint's bands; more bands repeat the checkpoint's bands cyclically and
    rescale by ``I / in_channels`` so that the activations keep their scale.
    """
    have = weight.shape[1]
    if in_channels == have:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // have)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (have / in_channels)


def check_image(owner: str, image: Tensor, in_channels: int, multiple: int = 1, name: str = "image") -> None:
    """Refuse an image that is not ``(B, in_channels, H, W)`` with ``H, W`` multiples of ``multiple``.

    Raises:
        InputError: Naming the network, the tensor and the expected shape.
    """
    if image.ndim != 4 or image.shape[1] != in_channels:
        raise InputError(
            f"{owner}: expected {name} of shape (B, {in_channels}, H, W) ({in_channels} bands), "
            f"got {tuple(image.shape)}"
        )
    h, w = image.shape[-2:]
    if h % multiple or w % multiple:
        raise InputError(
            f"{owner}: {name} height and width must be multiples of {multiple} (the network's total "
            f"stride), got {h}×{w}; choose a tile size that is"
        )


class FPNDecoder(nn.Module):
    """Feature pyramid decoder (Lin et al. 2017; Kirillov et al. 2019's semantic FPN head, "lite").

    Lateral 1×1 convs bring every level to ``dim``, a top-down pass adds each upsampled coarser level, a
    3×3 conv-BN-ReLU smooths each, and the levels are upsampled to the finest, summed and classified. The
    output is at the finest level's resolution; the network upsamples it to the label grid.

    Args:
        in_channels: Channels of the encoder levels, finest first.
        dim: Decoder width.
        num_classes: Output classes.
        dropout: Dropout before the classifier.
    """

    def __init__(self, in_channels: Sequence[int], dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
            for _ in in_channels
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Logits at the finest level's resolution from the levels ``features`` (finest first)."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(
                laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest"
            )
        size = laterals[0].shape[-2:]
        fused = sum(
            F.interpolate(smooth(x), size=size, mode="bilinear", align_corners=False) if i else smooth(x)
            for i, (smooth, x) in enumerate(zip(self.smooth, laterals, strict=True))
        )
        return self.classifier(self.dropout(fused))


def upsample_to(logits: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of logits to the label grid (no-op when already there)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
