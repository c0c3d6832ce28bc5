"""MLPLOB: an MLP-Mixer over limit-order-book windows, TLOB's non-attention contender.

Paper: Berti & Kasneci, "TLOB: A Novel Transformer Model with Dual Attention for Stock Price Trend
Prediction with Limit Order Book Data", arXiv 2502.15757 (2025), where MLPLOB is introduced alongside
TLOB. It alternates an MLP over the feature channels and an MLP over time, with no attention.
"""

from torch import Tensor, nn

from domains.finance.models.base import LOBNetwork
from domains.finance.models.bin import BiN
from domains.finance.models.common import build_head, check_window

__all__ = ["MLPLOB", "MixerBlock"]


class MixerBlock(nn.Module):
    """``GELU(LN(fc2(GELU(fc1(x))) [+ x]))`` on the last dimension; the residual only if the width is kept.

    Args:
        in_features: Input width.
        hidden_features: Hidden width.
        out_features: Output width.
        dropout: Dropout after each activation inside the block.
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_features)
        self.residual = in_features == out_features

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to the last dimension."""
        y = self.fc2(self.drop(self.act(self.fc1(x))))
        if self.residual:
            y = y + x
        return self.drop(self.act(self.norm(y)))


class MLPLOB(LOBNetwork):
    """MLPLOB: BiN → ``Linear(F → H)`` → GELU → ``num_layers`` × [feature MLP, time MLP] → head.

    Each layer applies a :class:`MixerBlock` over the ``H`` channels of every time step (``H → 4H → H``)
    and one over the ``T`` time steps of every channel (``T → 4T → T``). The last layer shrinks instead:
    ``H → 2H → H/4`` and ``T → 2T → T/4``. The flattened ``(T/4)·(H/4)`` representation goes through the
    TLOB head (:func:`~domains.finance.models.common.build_head`). No softmax: the loss takes logits.

    As for TLOB, ``hidden_dim`` is honoured (the official code forces it to the number of features; pass
    ``hidden_dim=num_features`` to reproduce the paper: 6.33 M parameters on FI-2010 with T = 384).

    Args:
        num_features: Features per snapshot ``F``.
        seq_len: Window length ``T``; divisible by 4.
        num_horizons: Number of horizons predicted at once.
        num_classes: Classes per horizon.
        hidden_dim: Width ``H`` after the input projection; divisible by 4.
        num_layers: Number of mixer layers, the last one included.
        dropout: Dropout inside the mixer blocks.
    """

    def __init__(
        self,
        num_features: int,
        seq_len: int,
        num_horizons: int = 1,
        num_classes: int = 3,
        hidden_dim: int = 40,
        num_layers: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        values = {"num_features": num_features, "seq_len": seq_len, "hidden_dim": hidden_dim}
        values |= {"num_layers": num_layers, "num_horizons": num_horizons, "num_classes": num_classes}
        minimum = {"num_features": 2, "seq_len": 4, "hidden_dim": 4, "num_layers": 1}
        minimum |= {"num_horizons": 1, "num_classes": 2}
        for name, low in minimum.items():
            if values[name] < low:
                raise ValueError(f"MLPLOB: {name} must be >= {low}, got {values[name]}")
        for name in ("seq_len", "hidden_dim"):
            if values[name] % 4:
                raise ValueError(
                    f"MLPLOB: {name} must be divisible by 4 (the last layer shrinks it by 4), "
                    f"got {values[name]}"
                )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPLOB: dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.seq_len = seq_len
        self.hidden_dim = hidden_dim
        self.num_horizons = num_horizons
        self.num_classes = num_classes

        self.bin = BiN(num_features, seq_len)
        self.embed = nn.Linear(num_features, hidden_dim)
        self.act = nn.GELU()
        h, t = hidden_dim, seq_len
        feature_mlps, time_mlps = [], []
        for i in range(num_layers):
            if i < num_layers - 1:
                feature_mlps.append(MixerBlock(h, 4 * h, h, dropout))
                time_mlps.append(MixerBlock(t, 4 * t, t, dropout))
            else:
                feature_mlps.append(MixerBlock(h, 2 * h, h // 4, dropout))
                time_mlps.append(MixerBlock(t, 2 * t, t // 4, dropout))
        self.feature_mlps = nn.ModuleList(feature_mlps)
        self.time_mlps = nn.ModuleList(time_mlps)
        self.head = build_head((seq_len // 4) * (hidden_dim // 4), num_horizons * num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify windows.

        Args:
            x: ``(B, T, F)`` float windows.

        Returns:
            Logits ``(B, num_horizons, num_classes)``.
        """
        check_window(x, self.seq_len, self.num_features, "MLPLOB")
        x = self.bin(x.transpose(1, 2)).transpose(1, 2)
        x = self.act(self.embed(x))  # (B, T, H)
        for feature_mlp, time_mlp in zip(self.feature_mlps, self.time_mlps, strict=True):
            x = feature_mlp(x)  # mixes channels of each time step
            x = time_mlp(x.transpose(1, 2)).transpose(1, 2)  # mixes time steps of each channel
        logits = self.head(x.flatten(1))
        return logits.view(x.shape[0], self.num_horizons, self.num_classes)
