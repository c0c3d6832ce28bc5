"""Channels-first normalisation for ``(B, C, H, W)`` maps."""

from torch import Tensor, nn

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (timm's ``LayerNorm2d``)."""

    def forward(self, x: Tensor) -> Tensor:
        """Normalise every pixel's channel vector."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
