"""A small spectral-spatial transformer for patch tables (UCI Statlog: 3×3 pixels × 4 bands).

Every (pixel, band) value is one token, so attention relates any band of any pixel to any other::

    t_{p,b} = v_{p,b} · w_b + c_b + P_p + E_b          per-band value embedding, pixel and band embeddings
    z = [CLS; t]  →  L × (z + Attn(LN z);  z + MLP(LN z))  →  LN  →  Linear(z_CLS)

The value embedding has its own weight per band, as bands differ in physical meaning and range. The
attention is injected (``--model.attention=<Name>``; default multi-head self-attention) and receives the
tokens as a sequence; a 36-token patch is small enough for any mechanism. Ours, for this repository
(no paper): spectral-spatial tokenisation of a patch is the SpectralFormer / HSI-transformer idea applied
at the finest granularity.
"""

from functools import partial

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.mha import MultiHeadAttention
from core.layers.mlp import Mlp
from domains.remote_sensing.models.base import SceneClassifier
from domains.remote_sensing.models.layers import check_image

__all__ = ["SpectralSpatialTransformer"]


class _Block(nn.Module):
    def __init__(
        self, dim: int, attention: AttentionFactory, mlp_ratio: float, drop: float, index: int, depth: int
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, layer_idx=index, num_layers=depth)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class SpectralSpatialTransformer(SceneClassifier):
    """Transformer over the pixel × band tokens of a small patch.

    Args:
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        patch_size: Side of the square patch (Statlog: 3); the pixel embedding has ``patch_size²`` rows.
        dim: Token width.
        depth: Transformer layers.
        num_heads: Heads of the default attention.
        mlp_ratio: MLP hidden width ratio.
        dropout: Dropout on the attention output, inside the MLP and before the head.
        attention: Token-mixer factory (default: multi-head self-attention with ``num_heads``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        patch_size: int = 3,
        dim: int = 64,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if patch_size < 1 or depth < 1:
            raise ValueError(
                f"SpectralSpatialTransformer: patch_size and depth must be >= 1, got {patch_size}, {depth}"
            )
        attention = attention or partial(MultiHeadAttention, num_heads=num_heads)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.value_weight = nn.Parameter(torch.randn(in_channels, dim) * 0.02)
        self.value_bias = nn.Parameter(torch.zeros(in_channels, dim))
        self.pixel_embed = nn.Parameter(torch.randn(patch_size * patch_size, 1, dim) * 0.02)
        self.band_embed = nn.Parameter(torch.randn(1, in_channels, dim) * 0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            _Block(dim, attention, mlp_ratio, dropout, i, depth) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` for patches ``(B, bands, patch_size, patch_size)``."""
        check_image(type(self).__name__, x, self.in_channels)
        if tuple(x.shape[-2:]) != (self.patch_size, self.patch_size):
            raise ValueError(
                f"SpectralSpatialTransformer: expected {self.patch_size}×{self.patch_size} patches "
                f"(patch_size), got {tuple(x.shape[-2:])}"
            )
        b = x.shape[0]
        values = x.flatten(2).transpose(1, 2)  # (B, P, bands)
        tokens = values[..., None] * self.value_weight + self.value_bias + self.pixel_embed + self.band_embed
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens.flatten(1, 2)], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, 0]))
