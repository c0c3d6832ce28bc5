"""Stochastic depth (Huang et al. 2016), as timm's ``drop_path``, ``DropPath`` and its linear rate rule."""

import torch
from torch import Tensor, nn

__all__ = ["DropPath", "drop_path", "drop_path_rates"]


def drop_path(x: Tensor, p: float = 0.0, training: bool = False, scale_by_keep: bool = True) -> Tensor:
    """Zero whole samples of a residual branch ``x`` with probability ``p`` in training.

    With ``scale_by_keep`` the kept samples are scaled by ``1 / (1 - p)``, so the expectation is ``x`` and
    evaluation needs no rescaling (timm's semantics).
    """
    if p == 0.0 or not training:
        return x
    keep_prob = 1.0 - p
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    if scale_by_keep and keep_prob > 0.0:
        keep.div_(keep_prob)
    return x * keep


def drop_path_rates(rate: float, count: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``count`` blocks (timm's rule)."""
    return [float(r) for r in torch.linspace(0.0, rate, max(count, 1))][:count]


class DropPath(nn.Module):
    """Module form of :func:`drop_path`: drops the branch per sample with probability ``p`` in training.

    Args:
        p: Drop probability, in ``[0, 1)``.
        scale_by_keep: Rescale the kept samples by ``1 / (1 - p)``.
    """

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}")
        self.p = p
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        """Zero whole samples of ``x`` in training."""
        return drop_path(x, self.p, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        """The drop probability."""
        return f"p={self.p}"
