"""Flux Attention: a context-aware layer router choosing full or sliding-window sparse attention per layer.

Paper: "Flux Attention: Context-Aware Hybrid Attention for Efficient LLMs Inference", 2026. A lightweight
*Layer Router* looks at the input context and routes each layer to Full Attention (FA) or Sparse Attention
(SA); routing whole layers (not heads) keeps memory access contiguous and avoids the load imbalance of
head-level sparsity. The router is trained (parameter-efficiently, on frozen LLMs in the paper) with a
differentiable relaxation of the binary decision and a sparsity budget.

Equations implemented (one :class:`FluxAttention` per layer, sharing ``W_q, W_k, W_v, W_o`` between both
paths)::

    c       = mean_{j valid} x_j                           (non-causal: one context vector per sample)
    c_i     = mean_{j ≤ i, j valid} x_j                    (causal: prefix mean, one decision per token)
    ℓ       = w_2ᵀ GELU(W_1 LN(c) + b_1) + b_2              (router logit; p = σ(ℓ) = P(full attention))
    FA      = softmax(q kᵀ / √d) v,   SA = sliding-window attention of width w (1-D neighbourhood attention)
    y       = W_o (z · FA + (1 − z) · SA)

Training (``relaxation``): ``"gumbel"`` (default) uses the Gumbel-sigmoid (binary Concrete) sample
``y_soft = σ((ℓ + log U − log(1 − U)) / τ)``, ``U ~ U(0, 1)``; ``"sigmoid"`` uses ``y_soft = σ(ℓ / τ)``
(deterministic). With ``straight_through=True`` (default) the forward value is the hard decision
``z = 1[y_soft > 1/2]`` and the gradient is that of ``y_soft`` (straight-through estimator); otherwise
``z = y_soft`` (a soft mixture). Both paths run in training so the router gets a gradient. The budget
regulariser, stored in ``self.aux_loss`` in training only, keeps the expected share of full attention
near the target ``ρ = budget``::

    aux = λ · (mean_b p_b − ρ)²

Inference: the hard decision ``z = 1[ℓ > 0]`` per sample (non-causal) or per token (causal); only the
path(s) some sample needs are computed, and with ``force="full" | "sparse"`` only that path. The last
decisions are kept in ``self.last_decision`` (``(B,)`` or ``(B, N)``, bool, True = full).

Causality: a per-sample decision pooled over the whole sequence would let future tokens change the path
used for past tokens, so with ``is_causal=True`` the context is the causal prefix mean and the decision is
taken per token. A ``mask`` (True = may attend) is applied to both paths; only keys that some query may
attend (for a key-padding mask: the real tokens) enter the pooled context.

No official code was available to us; built from the paper abstract. What the paper leaves open here:
the router's input features (we pool the layer input), its architecture (a 2-layer MLP), the relaxation
(Gumbel-sigmoid + straight-through), the regulariser's exact form (squared deviation from a target
ratio, per layer rather than over the whole model, since a mixer only sees its own layer) and the sparse
pattern (a sliding window, via :func:`core.attention.neighborhood.neighborhood_attention`; non-causal
windows are centred and shifted inward at the borders as in NATTEN, causal windows end at the query).
"""

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import dense_attention_flops, sdpa
from core.attention.mha import merge_heads, split_heads
from core.attention.neighborhood import na_geometry, neighborhood_attention
from core.attention.registry import register_mechanism

__all__ = ["FluxAttention", "FluxLayerRouter"]

Relaxation = Literal["gumbel", "sigmoid"]
Force = Literal["full", "sparse"]


class FluxLayerRouter(nn.Module):
    """The layer router: pooled context -> LayerNorm -> MLP -> logit of routing to full attention.

    Args:
        dim: Channel dimension ``C`` of the tokens.
        hidden: Hidden width of the MLP (default ``max(16, C // 4)``).
        init_bias: Initial logit bias (0: ``p = 1/2``; positive favours full attention).
    """

    def __init__(self, dim: int, *, hidden: int | None = None, init_bias: float = 0.0) -> None:
        super().__init__()
        hidden = hidden or max(16, dim // 4)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        nn.init.constant_(self.fc2.bias, init_bias)

    @staticmethod
    def pool(x: Tensor, valid: Tensor, is_causal: bool) -> Tensor:
        """Mean of the valid tokens: ``(B, C)``, or the causal prefix mean ``(B, N, C)``."""
        w = valid.to(x.dtype).unsqueeze(-1)
        if is_causal:
            return (x * w).cumsum(1) / w.cumsum(1).clamp(min=1)
        return (x * w).sum(1) / w.sum(1).clamp(min=1)

    def forward(self, x: Tensor, valid: Tensor, is_causal: bool = False) -> Tensor:
        """Router logits ``ℓ``: ``(B,)`` (non-causal) or ``(B, N)`` (causal)."""
        c = self.pool(x, valid, is_causal)
        return self.fc2(F.gelu(self.fc1(self.norm(c)))).squeeze(-1)


@register_mechanism(
    paper="Flux Attention: Context-Aware Hybrid Attention for Efficient LLMs Inference (2026)",
    complexity="O(N^2 d) full / O(N w d) sparse layer (training runs both)",
    example_kwargs={"num_heads": 2, "window": 3, "relaxation": "sigmoid"},
)
class FluxAttention(TokenMixer):
    """A layer that a learned router sends to full attention or sliding-window attention.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        window: Sliding-window width ``w`` of the sparse path (clipped to ``N``).
        relaxation: ``"gumbel"`` (Gumbel-sigmoid, stochastic) or ``"sigmoid"`` (deterministic) in training.
        temperature: Relaxation temperature ``τ``.
        straight_through: Hard forward decision with the relaxed gradient (else a soft mixture).
        budget: Target share ``ρ`` of full-attention routing.
        budget_weight: Weight ``λ`` of the budget regulariser (``aux_loss``).
        router_hidden: Hidden width of the router MLP.
        router_init_bias: Initial router logit bias.
        force: ``"full"`` or ``"sparse"`` to bypass the router (ablations, tests); ``None`` routes.
        qkv_bias: Whether the shared q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
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
        window: int = 128,
        relaxation: Relaxation = "gumbel",
        temperature: float = 1.0,
        straight_through: bool = True,
        budget: float = 0.5,
        budget_weight: float = 0.01,
        router_hidden: int | None = None,
        router_init_bias: float = 0.0,
        force: Force | None = None,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if window < 1:
            raise ValueError(f"{name}: window must be >= 1, got {window}")
        if relaxation not in ("gumbel", "sigmoid"):
            raise ValueError(f"{name}: relaxation must be 'gumbel' or 'sigmoid', got {relaxation!r}")
        if temperature <= 0:
            raise ValueError(f"{name}: temperature must be positive, got {temperature}")
        if not 0.0 <= budget <= 1.0:
            raise ValueError(f"{name}: budget must be in [0, 1], got {budget}")
        if force not in (None, "full", "sparse"):
            raise ValueError(f"{name}: force must be None, 'full' or 'sparse', got {force!r}")
        self.num_heads = num_heads
        self.window = window
        self.relaxation: Relaxation = relaxation
        self.temperature = temperature
        self.straight_through = straight_through
        self.budget = budget
        self.budget_weight = budget_weight
        self.force: Force | None = force
        self.router = FluxLayerRouter(dim, hidden=router_hidden, init_bias=router_init_bias)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.last_decision: Tensor | None = None

    def full_path(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """Dense attention on ``(B, H, N, D)`` heads."""
        return sdpa(q, k, v, attn_mask=mask, is_causal=is_causal)

    def sparse_path(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """Sliding-window attention of width ``min(window, N)`` on ``(B, H, N, D)`` heads."""
        n = q.shape[2]
        geom = na_geometry((n,), min(self.window, n), causal=is_causal, owner=type(self).__name__)
        return neighborhood_attention(q, k, v, geom, mask=mask, backend="sdpa", owner=type(self).__name__)

    def _decide(self, logits: Tensor) -> Tensor:
        """Relaxed (training) or hard (inference) routing value ``z`` in the shape of ``logits``."""
        if not self.training:
            return (logits > 0).to(logits.dtype)
        if self.relaxation == "gumbel":
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            logits = logits + torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid(logits / self.temperature)
        if not self.straight_through:
            return soft
        return (soft > 0.5).to(soft.dtype) + soft - soft.detach()

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Route the layer (per sample, or per token when causal), then run the chosen path(s)."""
        b, n, _ = x.shape
        name = type(self).__name__
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, name)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        self.aux_loss = None
        if self.force is not None:
            self.last_decision = torch.full((b,), self.force == "full", device=x.device)
            path = self.full_path if self.force == "full" else self.sparse_path
            return self.proj(merge_heads(path(q, k, v, mask, is_causal)))
        valid = torch.ones(b, n, dtype=torch.bool, device=x.device)
        if mask is not None:
            valid = valid & mask.any(dim=(1, 2))
        logits = self.router(x, valid, is_causal)  # (B,) or (B, N)
        z = self._decide(logits)
        self.last_decision = z.detach() > 0.5
        if self.training:
            p = torch.sigmoid(logits)
            self.aux_loss = self.budget_weight * (p.mean() - self.budget) ** 2
        z_b = z.view(b, 1, n if is_causal else 1, 1)
        if self.training:
            out = z_b * self.full_path(q, k, v, mask, is_causal) + (1 - z_b) * self.sparse_path(
                q, k, v, mask, is_causal
            )
            return self.proj(merge_heads(out))
        # inference: hard decisions; compute a path only if some sample (token) uses it
        use_full, use_sparse = bool(self.last_decision.any()), bool((~self.last_decision).any())
        if use_full and not use_sparse:
            out = self.full_path(q, k, v, mask, is_causal)
        elif use_sparse and not use_full:
            out = self.sparse_path(q, k, v, mask, is_causal)
        elif not is_causal:
            out = torch.empty_like(q)
            for rows, path in ((self.last_decision, self.full_path), (~self.last_decision, self.sparse_path)):
                m = None if mask is None else mask[rows] if mask.shape[0] > 1 else mask
                out[rows] = path(q[rows], k[rows], v[rows], m, is_causal)
        else:  # per-token decisions: both paths, then select
            full, sparse = (
                self.full_path(q, k, v, mask, is_causal),
                self.sparse_path(q, k, v, mask, is_causal),
            )
            out = torch.where(z_b > 0.5, full, sparse)
        return self.proj(merge_heads(out))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """FLOPs of the forced path; unforced: dense (the upper bound; the router may pick the window)."""
        if self.force == "sparse":
            w = min(self.window, queries)
            geom = na_geometry((queries,), w, causal=is_causal, owner=type(self).__name__)
            return 4.0 * batch * geom.num_pairs() * self.dim
        return dense_attention_flops(batch, queries, keys, self.dim, is_causal)

    def extra_repr(self) -> str:
        """Add heads, window, relaxation and budget."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, window={self.window}, "
            f"relaxation={self.relaxation}, budget={self.budget}, force={self.force}"
        )
