"""Layers by number of spatial axes, so feature-map mechanisms build 1-D, 2-D and 3-D variants alike."""

from torch import nn

__all__ = ["batch_norm_nd", "channel_dropout_nd", "conv_nd", "interpolate_mode"]

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_DROPOUT: dict[int, type[nn.Module]] = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` for ``spatial_dims`` 1, 2 or 3."""
    return _CONV[spatial_dims]


def batch_norm_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.BatchNorm1d``, ``nn.BatchNorm2d`` or ``nn.BatchNorm3d`` for ``spatial_dims`` 1, 2 or 3."""
    return _BATCH_NORM[spatial_dims]


def channel_dropout_nd(spatial_dims: int) -> type[nn.Module]:
    """Channel ("spatial") dropout ``nn.Dropout1d/2d/3d``, as Keras' ``SpatialDropout``."""
    return _DROPOUT[spatial_dims]


def interpolate_mode(spatial_dims: int) -> str:
    """The (multi-)linear ``F.interpolate`` mode for ``spatial_dims``: linear, bilinear or trilinear."""
    return _LINEAR_MODE[spatial_dims]
