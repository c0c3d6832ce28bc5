"""Tabular networks: rows ``(B, F)`` in, logits ``(B, num_classes)`` out."""

from typing import Protocol

import torch
from torch import Tensor, nn

from core.attention import AttentionFactory, MultiHeadAttention


class TabularNetwork(nn.Module):
    """Base of the tabular networks (their short names resolve among its subclasses)."""


class TabularNetworkFactory(Protocol):
    """A :class:`TabularNetwork` class or factory; the task passes the data sizes it declares."""

    def __call__(
        self, *, num_features: int, num_classes: int, attention: AttentionFactory | None = None
    ) -> TabularNetwork:
        """Build the network."""
        ...


class MLP(TabularNetwork):
    """Two linear layers with a GELU.

    Args:
        num_features: Columns of a row.
        num_classes: Classes.
        hidden_dim: Hidden width.
    """

    def __init__(self, num_features: int, num_classes: int, hidden_dim: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(num_features, hidden_dim), nn.GELU())
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of each row."""
        return self.head(self.body(x))


class FeatureTransformer(TabularNetwork):
    """Each feature becomes a token (value × its embedding); attention mixes the tokens; mean-pool.

    Args:
        num_features: Columns of a row (tokens).
        num_classes: Classes.
        dim: Token width.
        attention: Token mixer factory; default :class:`~core.attention.MultiHeadAttention` with 2 heads.
    """

    def __init__(
        self, num_features: int, num_classes: int, dim: int = 16, attention: AttentionFactory | None = None
    ) -> None:
        super().__init__()
        attention = attention or (lambda d, **kw: MultiHeadAttention(d, num_heads=2, **kw))
        self.embed = nn.Parameter(torch.randn(num_features, dim) * 0.1)
        self.mixer = attention(dim, layer_idx=0, num_layers=1)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of each row."""
        tokens = x[..., None] * self.embed
        tokens = tokens + self.mixer(self.norm(tokens))
        return self.head(tokens.mean(dim=1))
