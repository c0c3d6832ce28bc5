"""Multinomial logistic regression on the flattened LOB window, the simplest baseline.

A linear classifier is the floor every deep LOB model should beat; TLOB's paper (Berti & Kasneci 2025,
arXiv 2502.15757) compares against much stronger baselines, but reporting it makes the gain of the
attention models visible on each dataset.
"""

from torch import Tensor, nn

from domains.finance.models.base import LOBNetwork
from domains.finance.models.common import check_window

__all__ = ["LogisticRegressionLOB"]


class LogisticRegressionLOB(LOBNetwork):
    """``Linear(T·F → num_horizons·num_classes)`` on the flattened window; returns logits (no softmax).

    With cross-entropy this is multinomial logistic regression, one per horizon. Regularise it with L2
    through the optimizer's ``weight_decay``.

    Args:
        num_features: Features per snapshot ``F``.
        seq_len: Window length ``T``.
        num_horizons: Number of horizons predicted at once.
        num_classes: Classes per horizon.
    """

    def __init__(self, num_features: int, seq_len: int, num_horizons: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        sizes = {"num_features": num_features, "seq_len": seq_len, "num_horizons": num_horizons}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"LogisticRegressionLOB: {name} must be >= 1, got {value}")
        if num_classes < 2:
            raise ValueError(f"LogisticRegressionLOB: num_classes must be >= 2, got {num_classes}")
        self.num_features = num_features
        self.seq_len = seq_len
        self.num_horizons = num_horizons
        self.num_classes = num_classes
        self.head = nn.Linear(seq_len * num_features, num_horizons * num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify windows.

        Args:
            x: ``(B, T, F)`` float windows.

        Returns:
            Logits ``(B, num_horizons, num_classes)``.
        """
        check_window(x, self.seq_len, self.num_features, "LogisticRegressionLOB")
        return self.head(x.flatten(1)).view(x.shape[0], self.num_horizons, self.num_classes)
