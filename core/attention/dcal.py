"""DCAL: global-local cross-attention (GLCA), pair-wise cross-attention (PWCA) and attention rollout.

Paper: Zhu, Ke, Li, Liu, Tian, Shan, "Dual Cross-Attention Learning for Fine-Grained Visual Categorization
and Object Re-Identification", CVPR 2022 (arXiv 2205.02151). Tokens carry a CLS token at index 0.

Attention rollout (Abnar & Zuidema 2020; DCAL Eq. 2) accumulates the head-averaged attention maps
``S_1 … S_i`` of the self-attention layers, with the identity standing in for the residual path::

    Ŝ_i = S̄_i S̄_{i-1} … S̄_1,        S̄ = 0.5 S + 0.5 E

GLCA (Eq. 3): the ``R`` patch tokens with the highest CLS-row response ``Ŝ[0, 1:]`` (plus the CLS token)
form the local queries ``Q^l``, which attend *all* keys and values::

    f_GLCA(Q^l, K^g, V^g) = softmax(Q^l K^gᵀ / √d) V^g

PWCA (Eq. 4): the queries of image ``I_1`` attend the concatenated keys and values of ``I_1`` and a
distractor image ``I_2``, all computed with the *self-attention's own* weights::

    f_PWCA(Q_1, K_c, V_c) = softmax(Q_1 K_cᵀ / √d) V_c,    K_c = [K_1; K_2],  V_c = [V_1; V_2]

Protocol in attnlab:

* :func:`attention_rollout` turns a list of attention maps ``(B, H, N, N)`` or ``(B, N, N)`` into ``Ŝ``.
* :class:`PairwiseCrossAttention` is the DCAL backbone's self-attention *and* its PWCA (shared weights,
  T = L = 12 in the paper): a :class:`~core.attention.base.TokenMixer` whose optional ``context`` is the
  paired image's tokens. Without ``context`` it is plain multi-head self-attention — the inference path,
  since PWCA is used only in training (the model decides; the mixer does not look at ``self.training``).
  With ``store_attention=True`` it keeps its (detached) attention weights in ``attention_weights`` so a
  model can build the rollout for GLCA.
* :class:`GlobalLocalCrossAttention` (kind ``module``, not shape-preserving) maps ``(x, rollout)`` to the
  ``1 + R`` local outputs ``(B, 1 + R, C)``; :meth:`GlobalLocalCrossAttention.local_index` gives the
  token indices so a block can gather its residual. GLCA has its own weights (M = 1 block in the paper).

Differences from the paper (no official code was found): ``R = ⌈ratio · (N − 1)⌉`` patch tokens
(the paper says "top R = 10 %" (FGVC) / "30 %" (Re-ID) without the rounding); the CLS query is always kept,
first, followed by the selected patches in descending rollout order; heads are averaged for the rollout
(Abnar & Zuidema's convention, which the paper does not state). Gradients flow into the distractor's keys
and values; pass ``context.detach()`` to stop them.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import normalize_mask
from core.attention.mha import Backend, MultiHeadAttention, attend, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["GlobalLocalCrossAttention", "PairwiseCrossAttention", "attention_rollout", "select_local_tokens"]


def attention_rollout(weights: Sequence[Tensor], *, residual_weight: float = 0.5) -> Tensor:
    """Accumulated attention ``Ŝ = S̄_L … S̄_1`` with ``S̄ = (1 − a) S + a E`` (DCAL Eq. 2, ``a = 0.5``).

    Args:
        weights: Attention maps of the layers in forward order, each ``(B, H, N, N)`` (heads are averaged)
            or ``(B, N, N)``; rows sum to 1.
        residual_weight: Weight ``a`` of the identity standing in for the residual connection.

    Returns:
        The rollout ``(B, N, N)``.

    Raises:
        ValueError: If the list is empty or a map is not square / does not match the first one.
    """
    if not weights:
        raise ValueError("attention_rollout: expected at least one attention map, got an empty list")
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"attention_rollout: residual_weight must be in [0, 1], got {residual_weight}")
    rollout: Tensor | None = None
    for i, w in enumerate(weights):
        s = w.mean(dim=1) if w.ndim == 4 else w
        if s.ndim != 3 or s.shape[-1] != s.shape[-2] or (rollout is not None and s.shape != rollout.shape):
            expected = "(B, H, N, N) or (B, N, N)" if rollout is None else f"{tuple(rollout.shape)} (+heads)"
            raise ValueError(f"attention_rollout: weights[{i}] of shape {tuple(w.shape)} is not {expected}")
        eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
        s_bar = (1.0 - residual_weight) * s + residual_weight * eye
        rollout = s_bar if rollout is None else s_bar @ rollout
    assert rollout is not None
    return rollout


def select_local_tokens(rollout: Tensor, ratio: float) -> Tensor:
    """Indices ``(B, 1 + R)``: CLS (0), then the ``R = ⌈ratio·(N−1)⌉`` patches with the top CLS rollout.

    Args:
        rollout: Accumulated attention ``(B, N, N)`` from :func:`attention_rollout`; token 0 is CLS.
        ratio: Fraction of patch tokens to select, in ``(0, 1]``.
    """
    if rollout.ndim != 3 or rollout.shape[-1] != rollout.shape[-2] or rollout.shape[-1] < 2:
        raise ValueError(
            "select_local_tokens: expected rollout of shape (B, N, N) with N >= 2, "
            f"got {tuple(rollout.shape)}"
        )
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"select_local_tokens: ratio must be in (0, 1], got {ratio}")
    num_patches = rollout.shape[-1] - 1
    r = min(num_patches, max(1, math.ceil(ratio * num_patches - 1e-9)))
    top = rollout[:, 0, 1:].topk(r, dim=-1).indices + 1
    cls = torch.zeros(rollout.shape[0], 1, dtype=top.dtype, device=top.device)
    return torch.cat([cls, top], dim=1)


@register_mechanism(
    paper="Zhu et al. 2022, Dual Cross-Attention Learning for Fine-Grained Visual Categorization and "
    "Object Re-Identification (PWCA)",
    complexity="O(N (N + M) d)",
    example_kwargs={"num_heads": 2},
)
class PairwiseCrossAttention(MultiHeadAttention):
    """DCAL's self-attention / pair-wise cross-attention with shared weights.

    ``context`` is the paired (distractor) image's tokens ``(B, M, C)``: its keys and values are computed
    with this layer's ``qkv`` weights and appended to the image's own. A ``mask`` then covers the
    ``N + M`` concatenated keys (own keys first).

    Args:
        dim: Width ``C``; must be divisible by ``num_heads``.
        num_heads: Heads (default 8).
        qkv_bias: Whether the fused q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        store_attention: Keep the detached attention weights ``(B, H, N, N + M)`` of the last call in
            ``attention_weights`` (an explicit softmax path instead of SDPA), for :func:`attention_rollout`.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = False
    supports_context = True
    requires_context = False
    context_extends_keys = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        store_attention: bool = False,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        self.store_attention = store_attention
        self.attention_weights: Tensor | None = None

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Self-attention over ``x``; with ``context``, over the keys/values of ``[x; context]``."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if context is not None:
            if context.shape[-1] != self.dim:
                raise ValueError(
                    f"PairwiseCrossAttention: expected context of shape (B, M, {self.dim}) (the paired "
                    f"image's tokens), got {tuple(context.shape)}"
                )
            bias = None if self.qkv.bias is None else self.qkv.bias[self.dim :]
            k2, v2 = F.linear(context, self.qkv.weight[self.dim :], bias).chunk(2, dim=-1)
            k, v = torch.cat([k, k2], dim=1), torch.cat([v, v2], dim=1)
        if not self.store_attention:
            return self.attend_heads(q, k, v, mask, False)
        return self._attend_storing(q, k, v, mask)

    def _attend_storing(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """Explicit ``softmax(QKᵀ/√d) V`` that keeps the weights; fully masked rows give zeros."""
        b, n, m = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            allowed = normalize_mask(mask, b, n, m, type(self).__name__)
            logits = logits.masked_fill(~allowed, float("-inf"))
            has_key = allowed.any(dim=-1, keepdim=True)
            weights = torch.softmax(logits.masked_fill(~has_key, 0.0), dim=-1) * has_key.to(q.dtype)
        else:
            weights = torch.softmax(logits, dim=-1)
        self.attention_weights = weights.detach()
        weights = F.dropout(weights, self.attn_drop, self.training)
        return self.proj_drop(self.proj(merge_heads(weights @ v)))

    def extra_repr(self) -> str:
        """Add the storing flag."""
        return f"{super().extra_repr()}, store_attention={self.store_attention}"


@register_mechanism(
    paper="Zhu et al. 2022, Dual Cross-Attention Learning for Fine-Grained Visual Categorization and "
    "Object Re-Identification (GLCA)",
    complexity="O(R N d)",
    example_kwargs={"dim": 8, "num_heads": 2, "ratio": 0.4},
)
class GlobalLocalCrossAttention(nn.Module):
    """GLCA: the CLS token and the top-``R`` rollout tokens attend all tokens; returns ``(B, 1 + R, C)``.

    Args:
        dim: Width ``C``; must be divisible by ``num_heads``.
        num_heads: Heads (default 8).
        ratio: Fraction of patch tokens used as local queries (paper: 0.1 for FGVC, 0.3 for Re-ID).
        qkv_bias: Whether the fused q/k/v projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        ratio: float = 0.1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if dim <= 0 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be positive and divisible by num_heads={num_heads}")
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"{name}: ratio must be in (0, 1], got {ratio}")
        if backend not in ("auto", "sdpa", "reference"):
            raise ValueError(f"{name}: unknown backend {backend!r}; expected auto, sdpa or reference")
        self.dim = dim
        self.num_heads = num_heads
        self.ratio = ratio
        self.attn_drop = attn_drop
        self.backend: Backend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, rollout: Tensor | None = None, *, index: Tensor | None = None) -> Tensor:
        """Attend the local queries to all keys/values.

        Args:
            x: Tokens ``(B, N, C)`` with CLS at index 0 (normalised by the caller).
            rollout: Accumulated attention ``(B, N, N)`` of the preceding self-attention layers.
            index: Instead of ``rollout``: the query indices ``(B, R')`` from :meth:`local_index`.

        Returns:
            The outputs of the selected queries ``(B, R', C)``, in the order of ``index``.
        """
        name = type(self).__name__
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}")
        b, n, c = x.shape
        if (rollout is None) == (index is None):
            raise ValueError(f"{name}: pass exactly one of `rollout` (B, N, N) and `index` (B, R)")
        if rollout is not None:
            if rollout.shape != (b, n, n):
                raise ValueError(
                    f"{name}: expected rollout of shape ({b}, {n}, {n}), got {tuple(rollout.shape)}"
                )
            index = self.local_index(rollout)
        assert index is not None
        if index.ndim != 2 or index.shape[0] != b or index.dtype != torch.long:
            raise ValueError(f"{name}: expected a long index of shape ({b}, R), got {tuple(index.shape)}")
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.gather(1, index[..., None].expand(-1, -1, c))
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        dropout_p = self.attn_drop if self.training else 0.0
        out = attend(q, k, v, dropout_p=dropout_p, backend=self.backend)
        return self.proj_drop(self.proj(merge_heads(out)))

    def local_index(self, rollout: Tensor) -> Tensor:
        """The query indices ``(B, 1 + R)``: CLS, then the top-``R`` patches by CLS rollout."""
        return select_local_tokens(rollout, self.ratio)

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Six tokens of width 8 (CLS + 5 patches) and the rollout of two random 2-head attention maps."""
        maps = [torch.softmax(torch.randn(batch, 2, 6, 6, dtype=dtype), dim=-1) for _ in range(2)]
        return torch.randn(batch, 6, 8, dtype=dtype), attention_rollout(maps)

    def extra_repr(self) -> str:
        """Width, heads, ratio and backend."""
        return f"dim={self.dim}, num_heads={self.num_heads}, ratio={self.ratio}, backend={self.backend}"
