"""A Dynamic Perceiver stage: latents read the features, think, and write back.

Paper: Han et al., "Dynamic Perceiver for Efficient Visual Recognition", ICCV 2023, §3.2 (Fig. 3). One
stage of the classification branch holds ``L`` learned latent tokens ``Z`` and, given feature tokens
``X`` of the CNN branch::

    Z ← x2z(Z, X)                                   (features → latents cross-attention + MLP)
    Z ← Z + SA(LN(Z));  Z ← Z + MLP(LN(Z))          (depth times, the latent self-attention layers)
    X ← z2x(X, Z)                                   (latents → features cross-attention + MLP)

The cross layers are :class:`core.attention.perceiver.PerceiverCrossAttention`; the latent self-attention
is *injected* as an attention factory (default: :class:`~core.attention.MultiHeadAttention` without q/k/v
bias, as the official ``SelfAttention``), so any token mixer can think over the latents. The official
MLP widening of the latent layers is 4 and the heads per stage are 1, 2, 4, 8.

In the official network the CNN stage runs between x2z/self-attention and the next stage's z2x; a model
that wants exactly that order calls ``block.cross.x2z`` / ``block.cross.z2x`` around its CNN stages.
"""

from functools import partial

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.mha import Backend, MultiHeadAttention
from core.attention.perceiver import PerceiverCrossAttention
from core.layers.mlp import Mlp

__all__ = ["LatentLayer", "PerceiverBlock"]


class LatentLayer(nn.Module):
    """Pre-norm transformer layer on the latents: ``z + SA(LN(z))`` then ``z + MLP(LN(z))``.

    Args:
        dim: Latent width.
        attention: Factory of the self-attention token mixer.
        mlp_ratio: MLP hidden width over ``dim`` (official: 4).
        drop: Dropout on both residual branches.
        layer_idx: Index of this layer in the latent stack.
        num_layers: Depth of the latent stack.
    """

    def __init__(
        self,
        dim: int,
        attention: AttentionFactory,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, layer_idx=layer_idx, num_layers=num_layers)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop = nn.Dropout(drop)

    def forward(self, z: Tensor) -> Tensor:
        """Apply the layer to latents ``(B, L, dim)``."""
        z = z + self.drop(self.attn(self.norm1(z)))
        return z + self.drop(self.mlp(self.norm2(z)))


class PerceiverBlock(nn.Module):
    """One Dyn-Perceiver stage with its own learned latents: x2z → ``depth`` latent layers → z2x.

    Args:
        feature_dim: Width ``C_x`` of the feature tokens.
        latent_dim: Width ``C_z`` of the latents; defaults to ``feature_dim``.
        num_latents: Number ``L`` of learned latent tokens (official: 32-512 at the first stage).
        depth: Number of latent self-attention layers.
        attention: Factory of the latent self-attention; default multi-head attention with ``num_heads``
            heads and no q/k/v bias.
        num_heads: Heads of the default latent self-attention.
        mlp_ratio: MLP widening of the latent layers (official: 4).
        cross_heads: Heads of both cross-attentions (official: 1).
        z2x_reduction: z2x attends at ``feature_dim // z2x_reduction`` (official: 8).
        num_feature_tokens: Learned x2z key embedding for this many feature tokens (None = off).
        drop: Dropout on attention weights and residual branches.
        backend: Backend of the cross-attentions.
    """

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int | None = None,
        *,
        num_latents: int = 32,
        depth: int = 1,
        attention: AttentionFactory | None = None,
        num_heads: int = 1,
        mlp_ratio: float = 4.0,
        cross_heads: int = 1,
        z2x_reduction: int = 8,
        num_feature_tokens: int | None = None,
        drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        latent_dim = latent_dim or feature_dim
        if num_latents < 1 or depth < 0:
            raise ValueError(
                f"PerceiverBlock: num_latents must be positive and depth non-negative, "
                f"got {num_latents}, {depth}"
            )
        attention = attention or partial(MultiHeadAttention, num_heads=num_heads, qkv_bias=False)
        self.latents = nn.Parameter(torch.empty(num_latents, latent_dim))
        self.cross = PerceiverCrossAttention(
            feature_dim,
            latent_dim,
            num_heads=cross_heads,
            z2x_heads=cross_heads,
            z2x_reduction=z2x_reduction,
            num_feature_tokens=num_feature_tokens,
            drop=drop,
            backend=backend,
        )
        self.layers = nn.ModuleList(
            LatentLayer(latent_dim, attention, mlp_ratio=mlp_ratio, drop=drop, layer_idx=i, num_layers=depth)
            for i in range(depth)
        )
        with torch.no_grad():  # official initialisation of the latents
            self.latents.normal_(0.0, 0.02).clamp_(-2.0, 2.0)

    def forward(
        self, features: Tensor, latents: Tensor | None = None, *, feature_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run the stage.

        Args:
            features: Feature tokens ``(B, N, C_x)``.
            latents: Latents ``(B, L, C_z)`` from a previous stage; defaults to this block's learned ones.
            feature_mask: Key padding of the features ``(B, N)``, True = real token.

        Returns:
            ``(features_out, latents_out)``.
        """
        if latents is None:
            latents = self.latents.expand(features.shape[0], -1, -1)
        self.cross.check_inputs(features, latents)
        latents = self.cross.x2z(latents, features, feature_mask)
        for layer in self.layers:
            latents = layer(latents)
        return self.cross.z2x(features, latents), latents
