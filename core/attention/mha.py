"""Multi-head scaled dot-product self-attention.

Paper: Vaswani et al., "Attention Is All You Need", NeurIPS 2017. Eq. 1 and the multi-head form:
``MultiHead(X) = Concat(head_1..head_h) W_O`` with ``head_i = softmax(X W_Qi (X W_Ki)ᵀ / √d_h) X W_Vi``.

The fast path is ``F.scaled_dot_product_attention`` (flash / math kernels on CPU and CUDA); the
``reference`` backend runs the literal equation and exists for debugging and tests.
"""

import functools
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import dense_attention_flops, reference_attention, sdpa
from core.attention.registry import register_mechanism

__all__ = [
    "HeadedAttention",
    "MultiHeadAttention",
    "attend",
    "default_heads_factory",
    "merge_heads",
    "split_heads",
]

Backend = Literal["auto", "sdpa", "reference"]


def split_heads(t: Tensor, num_heads: int) -> Tensor:
    """``(B, N, C) -> (B, heads, N, C / heads)``, shared by mechanisms built on SDPA."""
    b, n, c = t.shape
    return t.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """``(B, heads, N, D) -> (B, N, heads · D)``, the inverse of :func:`split_heads`."""
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    backend: Backend = "auto",
) -> Tensor:
    """Dispatch ``(B, H, N, D)`` attention to SDPA or the literal reference by backend name."""
    if backend not in ("auto", "sdpa", "reference"):
        raise ValueError(f"unknown attention backend {backend!r}; expected 'auto', 'sdpa' or 'reference'")
    if backend == "reference":
        return reference_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return sdpa(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)


class HeadedAttention(TokenMixer):
    """Shared plumbing of the SDPA-based multi-head mechanisms: heads, backend, output projection.

    Subclasses build their q/k/v projections and call :meth:`attend_heads` with ``(B, N, C)`` queries
    and ``(B, M, C)`` keys/values; it splits heads, applies the mask, attends and projects back.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads ``h``; head size is ``C / h``.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` use ``F.scaled_dot_product_attention``; ``reference`` runs the
            literal equation (slow, for debugging).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if backend not in ("auto", "sdpa", "reference"):
            raise ValueError(f"{name}: unknown backend {backend!r}; expected auto, sdpa or reference")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.backend: Backend = backend
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend_heads(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """Multi-head attention of ``q (B, N, C)`` over ``k, v (B, M, C)``, then the output projection."""
        if mask is not None:
            mask = normalize_mask(mask, q.shape[0], q.shape[1], k.shape[1], type(self).__name__)
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        dropout_p = self.attn_drop if self.training else 0.0
        out = attend(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, backend=self.backend)
        return self.proj_drop(self.proj(merge_heads(out)))

    def extra_repr(self) -> str:
        """Add heads and backend to the default representation."""
        return f"{super().extra_repr()}, num_heads={self.num_heads}, backend={self.backend}"


@register_mechanism(
    paper="Vaswani et al. 2017, Attention Is All You Need",
    complexity="O(N^2 d)",
    example_kwargs={"num_heads": 2},
)
class MultiHeadAttention(HeadedAttention):
    """Multi-head self-attention with a fused qkv projection (timm-style), on SDPA.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads ``h``; head size is ``C / h``.
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` use ``F.scaled_dot_product_attention``; ``reference`` runs the
            literal equation (slow, for debugging).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend every token to every (unmasked, and past if causal) token."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.attend_heads(q, k, v, mask, is_causal)

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Dense attention FLOPs: every query against every (causally visible) key."""
        return dense_attention_flops(batch, queries, keys, self.dim, is_causal)


def default_heads_factory(
    owner: str, num_heads: int, widths: dict[str, int], cls: type | None = None, **kwargs: object
) -> "functools.partial[TokenMixer]":
    """A model's default attention: ``cls`` (MultiHeadAttention) with ``num_heads``, checked against widths.

    Models that take an injected ``attention`` factory fall back to this when none is given; the check
    turns a width that the heads do not divide into an error naming the model, the width and the heads
    (instead of a failure deep inside the first layer).

    Args:
        owner: Model name for the error message.
        num_heads: Heads of the default mechanism.
        widths: The channel widths the factory will be called with, by argument name.
        cls: The mechanism class; :class:`MultiHeadAttention` when None.
        **kwargs: Further constructor arguments (e.g. ``attn_drop``).

    Raises:
        ValueError: If ``num_heads < 1`` or it does not divide one of ``widths``.
    """
    for name, width in widths.items():
        if num_heads < 1 or width % num_heads:
            raise ValueError(
                f"{owner}: {name}={width} must be divisible by num_heads={num_heads} "
                "(the default attention splits the channels into heads)"
            )
    return functools.partial(cls or MultiHeadAttention, num_heads=num_heads, **kwargs)
