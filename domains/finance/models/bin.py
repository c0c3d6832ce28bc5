"""BiN: bilinear input normalisation for limit-order-book windows.

Paper: Tran, Kanniainen, Gabbouj, Iosifidis, "Data Normalization for Bilinear Structures in
High-Frequency Financial Time-series", ICPR 2020 (arXiv 2003.00598); used as the first layer of TLOB and
MLPLOB (Berti & Kasneci 2025, arXiv 2502.15757).

For a window ``X`` of shape ``(F, T)`` (features × time steps) BiN mixes two z-scored views:

* temporal branch: ``X2[f, t] = l2[f] · (X[f, t] − mean_t X[f, :]) / std_t X[f, :] + B2[f]``;
* feature branch: ``X1[f, t] = l1[t] · (X[f, t] − mean_f X[:, t]) / std_f X[:, t] + B1[t]``;
* output: ``y1 · X1 + y2 · X2``.
"""

import torch
from torch import Tensor, nn

__all__ = ["BiN"]


class BiN(nn.Module):
    """Bilinear input normalisation of a ``(B, F, T)`` window (TABL-style, as in TLOB).

    Standard deviations are unbiased (Bessel-corrected, as ``torch.std``); a standard deviation below
    ``eps`` (1e-4) is replaced by 1 so that constant rows (e.g. an empty book level) stay finite. The
    official code does this in the temporal branch only; we do it in the feature branch too, since a
    time step whose features are all equal would otherwise divide by zero.

    Fix vs the official code: the official ``forward`` "resets" a negative ``y1``/``y2`` by replacing the
    ``nn.Parameter`` with a new ``torch.cuda.FloatTensor``. That fails on CPU and silently detaches the
    weight from the optimizer (it is never updated again). Here the parameters are left alone and the
    value used in ``forward`` is clamped at ``min_weight`` (0.01) with a straight-through gradient: the
    forward value never drops below 0.01, and the gradient still reaches the parameter so it can recover.

    Initialisation as the official code: ``y1 = y2 = 0.5``, ``l1`` and ``l2`` xavier-normal (as ``(T, 1)``
    and ``(F, 1)`` columns), ``B1 = B2 = 0``.

    Args:
        num_features: Number of features ``F`` (rows).
        seq_len: Window length ``T`` (columns).
        eps: Standard deviations below this are replaced by 1.
        min_weight: Lower bound of the branch weights ``y1``, ``y2`` in the forward pass.
    """

    def __init__(self, num_features: int, seq_len: int, eps: float = 1e-4, min_weight: float = 0.01) -> None:
        super().__init__()
        if num_features < 2:
            raise ValueError(f"BiN: num_features must be >= 2 (a std over features), got {num_features}")
        if seq_len < 2:
            raise ValueError(f"BiN: seq_len must be >= 2 (a std over time), got {seq_len}")
        self.num_features = num_features
        self.seq_len = seq_len
        self.eps = eps
        self.min_weight = min_weight
        self.l1 = nn.Parameter(torch.empty(seq_len, 1))
        self.B1 = nn.Parameter(torch.zeros(seq_len, 1))
        self.l2 = nn.Parameter(torch.empty(num_features, 1))
        self.B2 = nn.Parameter(torch.zeros(num_features, 1))
        self.y1 = nn.Parameter(torch.full((1,), 0.5))
        self.y2 = nn.Parameter(torch.full((1,), 0.5))
        nn.init.xavier_normal_(self.l1)
        nn.init.xavier_normal_(self.l2)

    def _zscore(self, x: Tensor, dim: int) -> Tensor:
        mean = x.mean(dim=dim, keepdim=True)
        std = x.std(dim=dim, keepdim=True)
        std = torch.where(std < self.eps, torch.ones_like(std), std)
        return (x - mean) / std

    def _clamped(self, weight: Tensor) -> Tensor:
        # Forward value max(weight, min_weight); gradient of the identity (straight-through).
        return weight + (weight.clamp(min=self.min_weight) - weight).detach()

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a window.

        Args:
            x: ``(B, F, T)``.

        Returns:
            ``(B, F, T)``.
        """
        if x.ndim != 3 or x.shape[1:] != (self.num_features, self.seq_len):
            raise ValueError(
                f"BiN: expected x of shape (B, {self.num_features}, {self.seq_len}), got {tuple(x.shape)}"
            )
        x2 = self.l2 * self._zscore(x, dim=2) + self.B2  # (F, 1) broadcasts over time
        x1 = self.l1.T * self._zscore(x, dim=1) + self.B1.T  # (1, T) broadcasts over features
        return self._clamped(self.y1) * x1 + self._clamped(self.y2) * x2

    def extra_repr(self) -> str:
        """Show the sizes."""
        return f"num_features={self.num_features}, seq_len={self.seq_len}"
