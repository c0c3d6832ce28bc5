"""MONAI's ``AttentionUnet`` (Oktay et al. 2018) behind the task's network interface: the peer baseline."""

from collections.abc import Sequence

from torch import Tensor

from domains.medical.models.base import SegmentationNetwork

__all__ = ["MonaiAttentionUnet"]


class MonaiAttentionUnet(SegmentationNetwork):
    """``monai.networks.nets.AttentionUnet`` as MONAI builds it, for peer rows trained by the same task.

    The task passes the data-derived sizes by keyword; MONAI's own names are ``out_channels`` and positional
    ``spatial_dims``, hence this adapter. No deep supervision, no input pyramid (MONAI has neither).

    Args:
        in_channels: Image channels (from the data).
        num_classes: Output classes including background (from the data).
        spatial_dims: 2 or 3 (from the data).
        channels: Widths per level (MONAI's ``channels``).
        strides: Down-sampling stride per level after the first (default 2 each).
        dropout: Dropout probability.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import AttentionUnet

        self.channels = tuple(channels)
        self.net = AttentionUnet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=num_classes,
            channels=self.channels,
            strides=tuple(strides) if strides is not None else (2,) * (len(self.channels) - 1),
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes, *S)``."""
        return self.net(x)
