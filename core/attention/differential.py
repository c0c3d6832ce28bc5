"""Differential attention and Grouped Differential Attention: two softmax maps, one subtracted.

**Differential attention.** Paper: Ye, Dong, Xia, Sun, Zhu, Huang, Wei, "Differential Transformer",
ICLR 2025 (arXiv 2410.05258); official code microsoft/unilm ``Diff-Transformer/multihead_diffattn.py``.
For each of the ``h`` heads, queries and keys are split into two groups of width ``d = C / (2h)`` and the
values have width ``2d``::

    [Q1; Q2] = X W_Q,   [K1; K2] = X W_K,   V = X W_V
    DiffAttn(X) = ( softmax(Q1 K1ᵀ / √d) − λ · softmax(Q2 K2ᵀ / √d) ) V
    λ = exp(λ_q1 · λ_k1) − exp(λ_q2 · λ_k2) + λ_init,     λ_init = 0.8 − 0.6 · exp(−0.3 · (l − 1))
    head_i' = (1 − λ_init) · RMSNorm(head_i),              MultiHead = Concat(head_1' … head_h') W_O

``l ∈ [1, L]`` is the paper's **1-based** layer index, so with our **0-based** ``layer_idx``
``λ_init = 0.8 − 0.6 · exp(−0.3 · layer_idx)`` (the official ``lambda_init_fn(depth)`` with a 0-based
``depth``: the first layer gets 0.2). ``λ_q1 … λ_k2 ∈ R^d`` are learned, initialised ``N(0, 0.1²)``, and
shared by the heads of a layer (as in the official code). The norm is per head ("GroupNorm" in the
paper, an RMSNorm over each head's ``2d`` channels in the code); ``head_norm="layer"`` uses a LayerNorm
instead and ``"none"`` removes it.

**Grouped Differential Attention (GDA).** Paper: Lim, Lee, Kim, Cheung, Kim, Kim, Lee, Lee, Oh, Park,
"Grouped Differential Attention", 2025 (arXiv 2510.06949, Motif Technologies). Signal and noise heads
are allocated unevenly: ``h`` signal heads and ``h / r`` noise heads (``r`` = ``noise_ratio``, the
signal:noise ratio; the paper favours moderate ratios such as 3:1 or 4:1). Each noise head is shared,
GQA-style, by the ``r`` consecutive signal heads of its group: signal head ``i`` uses noise head
``g(i) = ⌊i / r⌋``::

    head_i = ( softmax(Q1_i K1_iᵀ / √d) − λ · softmax(Q2_g(i) K2_g(i)ᵀ / √d) ) V_i

with ``V_i`` of width ``2d``, ``d = C / (2h)``, the same λ, λ_init, head norm and ``(1 − λ_init)`` scale.
``noise_ratio=1`` is exactly :class:`DifferentialAttention`. The noise map of a group is computed once
(one SDPA call whose values are the ``r`` heads' values side by side), so GDA costs ``h + h/r`` maps
instead of ``2h``. The paper's *group-differentiated growth* (replicating only signal heads when growing
a trained model) is a training procedure, not part of the layer.

Both run on ``F.scaled_dot_product_attention`` (two calls: the signal and the noise maps applied to the
values, then subtracted, since ``(A1 − λ A2) V = A1 V − λ A2 V``), causal or not, with boolean masks.

Differences from the official code:

* The official Diff-Transformer code applies rotary embeddings inside the layer and supports GQA for the
  key/value heads; positions are the model's business here (no RoPE), and each differential head has its
  own keys and values (``num_kv_heads = h``).
* Projection layout: we store the signal queries/keys of all heads first and the noise ones after
  (``[Q1_1 … Q1_h | Q2_1 … Q2_h]``); the official code interleaves them per head. This is a permutation of
  the weight rows, equivalent in what it can learn.
* The official masks are additive; ours are boolean (True = may attend) and a query with no key to
  attend gets a zero head output (then zero after the RMSNorm).

GDA: no official training code exists (vLLM only ships a CUDA inference backend); built from the paper
text. The assignment of noise heads to consecutive signal heads (GQA's ``repeat_interleave`` order) and
the shared λ are our reading of "controlled repetition (akin to GQA)".
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import dense_attention_flops, sdpa
from core.attention.registry import register_mechanism

__all__ = ["DifferentialAttention", "GroupedDifferentialAttention", "lambda_init_fn"]

HeadNorm = Literal["rms", "layer", "none"]


def lambda_init_fn(layer_idx: int) -> float:
    """``λ_init = 0.8 − 0.6 · exp(−0.3 · layer_idx)`` for a 0-based layer index (paper: ``l − 1``)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


class _DifferentialBase(TokenMixer):
    """Shared implementation: ``num_heads`` signal heads, ``num_heads / noise_ratio`` noise heads."""

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        noise_ratio: int,
        lambda_init: float | None,
        head_norm: HeadNorm,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        norm_eps: float,
        layer_idx: int,
        num_layers: int,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % (2 * num_heads):
            raise ValueError(f"{name}: dim={dim} must be divisible by 2 * num_heads = {2 * num_heads}")
        if noise_ratio < 1 or num_heads % noise_ratio:
            raise ValueError(
                f"{name}: noise_ratio={noise_ratio} must be a positive divisor of num_heads={num_heads}"
            )
        if head_norm not in ("rms", "layer", "none"):
            raise ValueError(f"{name}: head_norm must be 'rms', 'layer' or 'none', got {head_norm!r}")
        self.num_heads = num_heads
        self.noise_ratio = noise_ratio
        self.num_noise_heads = num_heads // noise_ratio
        self.head_dim = dim // (2 * num_heads)
        self.lambda_init = lambda_init_fn(layer_idx) if lambda_init is None else float(lambda_init)
        self.head_norm: HeadNorm = head_norm
        self.attn_drop = attn_drop
        qk_width = (num_heads + self.num_noise_heads) * self.head_dim
        self.q = nn.Linear(dim, qk_width, bias=qkv_bias)
        self.k = nn.Linear(dim, qk_width, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(self.head_dim) * 0.1) for _ in range(4)
        )
        width = 2 * self.head_dim
        if head_norm == "rms":
            self.norm: nn.Module = nn.RMSNorm(width, eps=norm_eps)
        elif head_norm == "layer":
            self.norm = nn.LayerNorm(width, eps=norm_eps)
        else:
            self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def lambda_full(self) -> Tensor:
        """The re-parameterised scalar ``λ = exp(λ_q1·λ_k1) − exp(λ_q2·λ_k2) + λ_init``."""
        lam1 = torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1))
        lam2 = torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2))
        return lam1 - lam2 + self.lambda_init

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Signal map minus λ times the (shared) noise map, per head; head norm; output projection."""
        b, n, _ = x.shape
        h, g, r, d = self.num_heads, self.num_noise_heads, self.noise_ratio, self.head_dim
        q = self.q(x).view(b, n, h + g, d).transpose(1, 2)
        k = self.k(x).view(b, n, h + g, d).transpose(1, 2)
        v = self.v(x).view(b, n, h, 2 * d).transpose(1, 2)  # (B, h, N, 2d)
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, type(self).__name__)
            if mask.shape[1] not in (1, h):
                raise ValueError(
                    f"{type(self).__name__}: a per-head mask must have {h} heads, got {tuple(mask.shape)}"
                )
        p = self.attn_drop if self.training else 0.0
        signal = sdpa(q[:, :h], k[:, :h], v, attn_mask=mask, is_causal=is_causal, dropout_p=p)
        q2, k2 = q[:, h:], k[:, h:]
        if r > 1 and mask is not None and mask.shape[1] > 1:
            # Per-head masks differ inside a group: give every signal head its own copy of the noise map.
            q2, k2 = q2.repeat_interleave(r, dim=1), k2.repeat_interleave(r, dim=1)
            noise = sdpa(q2, k2, v, attn_mask=mask, is_causal=is_causal, dropout_p=p)
        else:
            # One noise map per group, applied to the r signal heads' values side by side.
            v_grouped = v.view(b, g, r, n, 2 * d).transpose(2, 3).reshape(b, g, n, r * 2 * d)
            noise = sdpa(q2, k2, v_grouped, attn_mask=mask, is_causal=is_causal, dropout_p=p)
            noise = noise.view(b, g, n, r, 2 * d).transpose(2, 3).reshape(b, h, n, 2 * d)
        heads = (signal - self.lambda_full() * noise).transpose(1, 2)  # (B, N, h, 2d)
        heads = self.norm(heads) * (1.0 - self.lambda_init)
        return self.proj_drop(self.proj(heads.reshape(b, n, self.dim)))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Signal and noise maps (``QKᵀ`` at width ``d``) and their products with the ``2d``-wide values."""
        h, g, d = self.num_heads, self.num_noise_heads, self.head_dim
        per_channel = dense_attention_flops(batch, queries, keys, 1, is_causal) / 4.0  # attended pairs
        return 2.0 * per_channel * ((h + g) * d + 2 * 2 * h * d)

    def extra_repr(self) -> str:
        """Add heads, the noise ratio and λ_init to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, noise_heads={self.num_noise_heads}, "
            f"lambda_init={self.lambda_init:.4f}, head_norm={self.head_norm}"
        )


@register_mechanism(
    paper="Ye et al. 2025, Differential Transformer (ICLR)",
    complexity="O(N^2 d)",
    example_kwargs={"num_heads": 2},
)
class DifferentialAttention(_DifferentialBase):
    """Differential attention: ``(softmax(Q1K1ᵀ/√d) − λ softmax(Q2K2ᵀ/√d)) V`` per head, on SDPA.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``2 · num_heads``.
        num_heads: Differential heads ``h`` (the paper uses half the heads of the matching Transformer);
            q/k head width ``d = C / (2h)``, value head width ``2d``.
        lambda_init: Fixed ``λ_init``; None uses ``0.8 − 0.6 · exp(−0.3 · layer_idx)`` (0-based layer).
        head_norm: Per-head normalisation: ``rms`` (official), ``layer`` or ``none``.
        qkv_bias: Bias of the q/k/v projections (official: no).
        proj_bias: Bias of the output projection (official: no).
        attn_drop: Dropout on both attention maps (training only).
        proj_drop: Dropout after the output projection.
        norm_eps: Epsilon of the head norm (official: 1e-5).
        layer_idx: Index of the owning layer (0-based); sets λ_init.
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        lambda_init: float | None = None,
        head_norm: HeadNorm = "rms",
        qkv_bias: bool = False,
        proj_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-5,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            noise_ratio=1,
            lambda_init=lambda_init,
            head_norm=head_norm,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            norm_eps=norm_eps,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )


@register_mechanism(
    paper="Lim et al. 2025, Grouped Differential Attention (arXiv 2510.06949)",
    complexity="O(N^2 d)",
    example_kwargs={"num_heads": 2, "noise_ratio": 2},
)
class GroupedDifferentialAttention(_DifferentialBase):
    """Grouped Differential Attention: ``h`` signal heads share ``h / r`` noise heads GQA-style.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``2 · num_heads``.
        num_heads: Signal heads ``h``; q/k head width ``d = C / (2h)``, value head width ``2d``.
        noise_ratio: Signal heads per noise head ``r`` (the signal:noise ratio ``r:1``); must divide
            ``num_heads``; 1 is :class:`DifferentialAttention`. None picks the first of 3, 4, 2, 1 that
            divides ``num_heads`` (the paper finds moderate ratios, 3:1 or 4:1, best).
        lambda_init: Fixed ``λ_init``; None uses ``0.8 − 0.6 · exp(−0.3 · layer_idx)`` (0-based layer).
        head_norm: Per-head normalisation: ``rms``, ``layer`` or ``none``.
        qkv_bias: Bias of the q/k/v projections.
        proj_bias: Bias of the output projection.
        attn_drop: Dropout on both attention maps (training only).
        proj_drop: Dropout after the output projection.
        norm_eps: Epsilon of the head norm.
        layer_idx: Index of the owning layer (0-based); sets λ_init.
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 6,
        noise_ratio: int | None = None,
        lambda_init: float | None = None,
        head_norm: HeadNorm = "rms",
        qkv_bias: bool = False,
        proj_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-5,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        if noise_ratio is None:  # the paper's 3:1 where the heads allow it, else 4:1, 2:1, 1:1
            noise_ratio = next(r for r in (3, 4, 2, 1) if num_heads % r == 0) if num_heads > 0 else 1
        super().__init__(
            dim,
            num_heads=num_heads,
            noise_ratio=noise_ratio,
            lambda_init=lambda_init,
            head_norm=head_norm,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            norm_eps=norm_eps,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
