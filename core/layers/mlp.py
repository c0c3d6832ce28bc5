"""The two-layer feed-forward block of transformers (Vaswani et al. 2017, Eq. 2), timm-style."""

from torch import Tensor, nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` with optional output width.

    Args:
        in_features: Input width.
        hidden_features: Hidden width; defaults to ``4 * in_features``.
        out_features: Output width; defaults to ``in_features``.
        drop: Dropout after the activation and after ``fc2``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or 4 * in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to the last dimension."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
