"""Dynamic Perceiver's bidirectional cross-attention between CNN feature tokens and latent tokens.

Paper: Han et al., "Dynamic Perceiver for Efficient Visual Recognition", ICCV 2023 (arXiv 2306.11248),
§3.2, official code LeapLabTHU/Dynamic_Perceiver (``models/perceiver_core/modules.py``,
``models/dyn_perceiver_resnet.py``). A feature branch (a CNN, tokens ``X ∈ R^{N×C_x}``) and a
classification branch (``L`` latent tokens ``Z ∈ R^{L×C_z}``, learned) exchange information with two
pre-norm cross-attention layers, each followed by a pre-norm MLP::

    x2z (features → latents):  Z ← Z + Attn(q = LN(Z), kv = LN(X));   Z ← Z + MLP(LN(Z))
    z2x (latents → features):  X ← X + Attn(q = LN(X), kv = LN(Z));   X ← X + MLP(LN(X))   [q/k/v at C_x / 8]

with ``Attn(q, kv) = softmax((q W_q)(kv W_k + E)ᵀ / √d) (kv W_v) W_o`` per head. ``E`` is an optional
learned embedding of the (fixed) feature-token positions added to the x2z keys only. The latents are
processed by self-attention layers between the two (see :class:`core.blocks.perceiver.PerceiverBlock`).

Both attentions are :class:`~core.attention.cross.CrossAttention` (fused ``kv`` projection, SDPA):
:class:`PerceiverAttention` adds the reduced q/k/v width of z2x and the key embedding of x2z.

Differences from the official code:

* The official ``relative_position_bias`` (``rpb=True`` in x2z) is not relative: it is a learned tensor
  ``(1, H·W, C)`` added to the projected keys, so it needs a fixed number of feature tokens (the official
  model average-pools every stage to 7×7 first). Here it is ``num_feature_tokens`` (None = off) and is
  zero-initialised as in the official code.
* The official pad mask uses True = padding and fills ``-finfo.max`` (so a fully padded row attends
  uniformly); our masks use True = may attend and a fully masked row gives a zero update.
* The official network interleaves CNN stages between the two directions (z2x of stage *i + 1* reads the
  latents of stage *i*) and pools/depthwise-convolves the feature map before x2z; those are model-level
  choices and stay with the model. The official MLP has widening factor 1 in the cross layers
  (``mlp_ratio=1.0`` here) and 4 in the latent self-attention layers.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.attention.cross import CrossAttention
from core.attention.mha import Backend
from core.attention.registry import register_mechanism
from core.layers.mlp import Mlp

__all__ = ["PerceiverAttention", "PerceiverCrossAttention", "PerceiverCrossLayer"]


class PerceiverAttention(CrossAttention):
    """:class:`CrossAttention` with Dyn-Perceiver's options: a narrower q/k/v width and a key embedding.

    Args:
        dim: Width of the queries and of the output.
        context_dim: Width of the keys/values input.
        num_heads: Number of heads (Dyn-Perceiver: 1).
        inner_dim: Width of q, k and v (official ``num_qk_channels = num_v_channels``); defaults to ``dim``.
            z2x uses ``dim // 8``.
        num_key_tokens: If set, a learned ``(num_key_tokens, inner_dim)`` embedding is added to the
            projected keys (the official ``rpb``); the context must then have that many tokens.
        qkv_bias: Bias of the q, k, v projections (official: no).
        attn_drop: Dropout on the attention weights.
        backend: ``auto``/``sdpa`` or ``reference``.
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int | None = None,
        num_heads: int = 1,
        inner_dim: int | None = None,
        num_key_tokens: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            context_dim=context_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            backend=backend,
        )
        inner = inner_dim or dim
        if inner % num_heads:
            raise ValueError(
                f"PerceiverAttention: inner_dim={inner} must be divisible by num_heads={num_heads}"
            )
        if num_key_tokens is not None and num_key_tokens < 1:
            raise ValueError(f"PerceiverAttention: num_key_tokens must be positive, got {num_key_tokens}")
        self.inner_dim = inner
        if inner != dim:  # the official z2x projects to C/8 before attending and back to C after
            self.q = nn.Linear(dim, inner, bias=qkv_bias)
            self.kv = nn.Linear(self.context_dim, 2 * inner, bias=qkv_bias)
            self.proj = nn.Linear(inner, dim)
        self.num_key_tokens = num_key_tokens
        self.key_embed = nn.Parameter(torch.zeros(num_key_tokens, inner)) if num_key_tokens else None

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend the queries to the context, adding the learned key embedding when configured."""
        assert context is not None  # guaranteed by requires_context
        if context.shape[-1] != self.context_dim or (
            self.num_key_tokens is not None and context.shape[1] != self.num_key_tokens
        ):
            m = "M" if self.num_key_tokens is None else str(self.num_key_tokens)
            raise ValueError(
                f"PerceiverAttention: expected context of shape (B, {m}, {self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        k, v = self.kv(context).chunk(2, dim=-1)
        if self.key_embed is not None:
            k = k + self.key_embed
        return self.attend_heads(self.q(x), k, v, mask, is_causal)

    def extra_repr(self) -> str:
        """Add the attention width and the key embedding size."""
        return f"{super().extra_repr()}, inner_dim={self.inner_dim}, num_key_tokens={self.num_key_tokens}"


class PerceiverCrossLayer(nn.Module):
    """One Dyn-Perceiver cross-attention layer (official ``CrossAttentionLayer``), pre-norm with MLP.

    ``x ← x + Attn(LN(x), LN(context));  x ← x + MLP(LN(x))``.

    Args:
        dim: Width of the query stream (and of the output).
        context_dim: Width of the context stream.
        num_heads: Attention heads.
        inner_dim: q/k/v width of the attention; defaults to ``dim``.
        num_key_tokens: Size of the learned key embedding (None = none).
        mlp_ratio: MLP hidden width over ``dim`` (official cross layers: 1).
        qkv_bias: Bias of the q, k, v projections.
        drop: Dropout on the attention weights and on both residual branches.
        backend: ``auto``/``sdpa`` or ``reference``.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        num_heads: int = 1,
        inner_dim: int | None = None,
        num_key_tokens: int | None = None,
        mlp_ratio: float = 1.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0 or int(dim * mlp_ratio) < 1:
            raise ValueError(
                f"PerceiverCrossLayer: mlp_ratio must give a positive hidden width, got {mlp_ratio}"
            )
        self.q_norm = nn.LayerNorm(dim)
        self.kv_norm = nn.LayerNorm(context_dim)
        self.attn = PerceiverAttention(
            dim,
            context_dim=context_dim,
            num_heads=num_heads,
            inner_dim=inner_dim,
            num_key_tokens=num_key_tokens,
            qkv_bias=qkv_bias,
            attn_drop=drop,
            backend=backend,
        )
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """Update ``x (B, N, dim)`` from ``context (B, M, context_dim)``; ``mask`` pads the context."""
        x = x + self.drop(self.attn(self.q_norm(x), context=self.kv_norm(context), mask=mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


@register_mechanism(
    paper="Han et al. 2023, Dynamic Perceiver for Efficient Visual Recognition",
    complexity="O(N L d)",
    example_kwargs={
        "feature_dim": 8,
        "latent_dim": 6,
        "num_heads": 2,
        "z2x_heads": 1,
        "z2x_reduction": 2,
        "mlp_ratio": 1.0,
        "num_feature_tokens": 9,
        "qkv_bias": False,
        "drop": 0.0,
        "backend": "auto",
    },
)
class PerceiverCrossAttention(nn.Module):
    """Dyn-Perceiver's feature↔latent exchange: latents read the features (x2z), features read back (z2x).

    ``forward(features, latents) -> (features_out, latents_out)``; the z2x direction reads the latents
    *after* the x2z update. To process the latents in between (the paper's latent self-attention), call
    :attr:`x2z` and :attr:`z2x` separately, as :class:`core.blocks.perceiver.PerceiverBlock` does.

    Args:
        feature_dim: Width ``C_x`` of the feature tokens.
        latent_dim: Width ``C_z`` of the latent tokens; defaults to ``feature_dim``.
        num_heads: Heads of x2z (official: 1).
        z2x_heads: Heads of z2x (official: 1).
        z2x_reduction: z2x attends at width ``feature_dim // z2x_reduction`` (official: 8).
        mlp_ratio: MLP width ratio of both cross layers (official: 1).
        num_feature_tokens: Learned x2z key embedding for this many feature tokens (official ``rpb``,
            7·7 = 49 after pooling); None disables it and allows any number of feature tokens.
        qkv_bias: Bias of the q, k, v projections (official: no).
        drop: Dropout on attention weights and residual branches.
        backend: ``auto``/``sdpa`` or ``reference``.
    """

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int | None = None,
        *,
        num_heads: int = 1,
        z2x_heads: int = 1,
        z2x_reduction: int = 8,
        mlp_ratio: float = 1.0,
        num_feature_tokens: int | None = None,
        qkv_bias: bool = False,
        drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        latent_dim = latent_dim or feature_dim
        if z2x_reduction < 1 or feature_dim % z2x_reduction:
            raise ValueError(
                f"PerceiverCrossAttention: feature_dim={feature_dim} must be divisible by "
                f"z2x_reduction={z2x_reduction}"
            )
        self.feature_dim, self.latent_dim = feature_dim, latent_dim
        self.x2z = PerceiverCrossLayer(
            latent_dim,
            feature_dim,
            num_heads=num_heads,
            num_key_tokens=num_feature_tokens,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop,
            backend=backend,
        )
        self.z2x = PerceiverCrossLayer(
            feature_dim,
            latent_dim,
            num_heads=z2x_heads,
            inner_dim=feature_dim // z2x_reduction,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop,
            backend=backend,
        )

    def forward(
        self,
        features: Tensor,
        latents: Tensor,
        *,
        feature_mask: Tensor | None = None,
        latent_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exchange information between the feature tokens and the latents.

        Args:
            features: Feature tokens ``(B, N, C_x)`` (a flattened CNN feature map).
            latents: Latent tokens ``(B, L, C_z)``.
            feature_mask: Key padding of the features ``(B, N)``, True = real token; padded features do
                not reach the latents.
            latent_mask: Key padding of the latents ``(B, L)`` for z2x.

        Returns:
            ``(features_out, latents_out)`` with the input shapes.
        """
        self.check_inputs(features, latents)
        latents = self.x2z(latents, features, feature_mask)
        return self.z2x(features, latents, latent_mask), latents

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """A 3×3 feature map of width 8 as 9 tokens, and 4 latents of width 6."""
        return torch.randn(batch, 9, 8, dtype=dtype), torch.randn(batch, 4, 6, dtype=dtype)

    def check_inputs(self, features: Tensor, latents: Tensor) -> None:
        """Raise a ValueError naming the argument when a shape does not fit."""
        name = type(self).__name__
        if features.ndim != 3 or features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"{name}: expected features of shape (B, N, {self.feature_dim}), got {tuple(features.shape)}"
            )
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim or latents.shape[0] != features.shape[0]:
            raise ValueError(
                f"{name}: expected latents of shape ({features.shape[0]}, L, {self.latent_dim}), "
                f"got {tuple(latents.shape)}"
            )

    def extra_repr(self) -> str:
        """Show the two widths."""
        return f"feature_dim={self.feature_dim}, latent_dim={self.latent_dim}"
