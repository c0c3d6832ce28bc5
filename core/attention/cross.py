"""Multi-head cross-attention: queries from the tokens, keys and values from a context sequence.

Paper: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (encoder-decoder attention, Eq. 1):
``CrossAttn(X, Y) = softmax(X W_Q (Y W_K)ᵀ / √d_h) Y W_V``, per head, then ``W_O``.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from core.attention.functional import dense_attention_flops
from core.attention.mha import Backend, HeadedAttention
from core.attention.registry import register_mechanism

__all__ = ["CrossAttention"]


@register_mechanism(
    paper="Vaswani et al. 2017, Attention Is All You Need",
    complexity="O(N M d)",
    example_kwargs={"num_heads": 2},
)
class CrossAttention(HeadedAttention):
    """Multi-head cross-attention from tokens ``(B, N, C)`` to a context ``(B, M, C_ctx)``.

    Args:
        dim: Channel dimension ``C`` of the queries (and of the output).
        num_heads: Number of heads; ``dim`` must be divisible by it.
        context_dim: Channel dimension of the context; defaults to ``dim``.
        qkv_bias: Whether the q, k and v projections have a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = True
    supports_context = True
    requires_context = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        context_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        self.context_dim = context_dim or dim
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(self.context_dim, 2 * dim, bias=qkv_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend each token to the context; a mask of shape ``(B, M)`` pads context positions."""
        assert context is not None  # guaranteed by requires_context
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"CrossAttention: expected context of shape (B, M, {self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.attend_heads(self.q(x), k, v, mask, is_causal)

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Dense attention FLOPs: every query against every (causally visible) context key."""
        return dense_attention_flops(batch, queries, keys, self.dim, is_causal)

    def extra_repr(self) -> str:
        """Add the context width to the default representation."""
        return f"{super().extra_repr()}, context_dim={self.context_dim}"
