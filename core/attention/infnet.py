"""INFNet's proxy cross-attention: a few learned proxy tokens carry information between token types.

Paper: Li et al., "INFNet: A Task-aware Information Flow Network for Large-Scale Recommendation Systems",
2025 (arXiv 2508.11565). INFNet splits a ranking model's features into token types (categorical,
sequence and task tokens) and alternates a *heterogeneous* flow (cross-type attention) with a
*homogeneous* one (type-specific Proxy Gated Units). The heterogeneous flow does not attend every token of
one type to every token of another: it goes through ``P`` proxy tokens, which balances the cost between
long (sequence) and short (categorical, task) types.

This mixer is that proxy-mediated cross-attention. With queries ``X ∈ R^{N×C}``, context
``Y ∈ R^{M×C_ctx}``, learned proxies ``Π ∈ R^{P×C}`` and standard multi-head attention
``Attn(Q, K, V) = Concat_h softmax(Q_h K_hᵀ / √d) V_h``::

    gather:   Z = Π + Attn(Π W_q^g,  Y W_k^g,  Y W_v^g) W_o^g          (proxies read the context)
    scatter:  out = Attn(X W_q^s,  Z W_k^s,  Z W_v^s) W_o^s             (queries read the proxies)

so the cost is ``O((N + M) · P · C)`` time and ``O((N + M) · P)`` attention memory instead of ``O(N M C)``.
``proxy_residual=False`` drops the ``Π +`` (proxies then carry only what they gathered).

Context: ``supports_context`` and **not** ``requires_context``: without ``context`` the tokens are their own
context (``Y = X``), i.e. proxy (bottleneck) self-attention, so the mixer also drops into any sequence
model. Masks: only key padding of the context (``(B, M)``, or a 3-/4-D mask whose query axis is 1), used
in the gather step; a per-query ``(N, M)`` pattern has no meaning once queries see only proxies and is
rejected. Not causal: every proxy sees the whole context.

No official code exists (checked: none published with the paper); built from the paper's description of
the heterogeneous flow. What the paper leaves open and we chose: proxies are free parameters shared by
all samples (initialised ``N(0, 0.02²)``), a residual from the proxies to their gathered state, separate
projections for the gather and scatter attentions, and the same number of heads in both.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import sdpa
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["INFNetProxyAttention"]


@register_mechanism(
    paper="Li et al. 2025, INFNet: A Task-aware Information Flow Network for Large-Scale "
    "Recommendation Systems",
    complexity="O((N + M) P d)",
    example_kwargs={"num_heads": 2, "num_proxies": 3},
)
class INFNetProxyAttention(TokenMixer):
    """Cross-attention through ``num_proxies`` learned proxy tokens: gather from context, scatter to queries.

    Args:
        dim: Channel dimension ``C`` of the queries, proxies and output; divisible by ``num_heads``.
        num_heads: Heads of both attentions.
        num_proxies: Number ``P`` of proxy tokens.
        context_dim: Channel dimension of the context; defaults to ``dim`` (and must be ``dim`` when the
            mixer falls back to self-attention without a context).
        proxy_residual: Add the proxies to their gathered state (``Z = Π + gather``).
        qkv_bias: Whether the q/k/v projections have a bias.
        proj_bias: Whether the two output projections have a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = False
    supports_context = True
    requires_context = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        num_proxies: int = 8,
        context_dim: int | None = None,
        proxy_residual: bool = True,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"INFNetProxyAttention: dim={dim} must be divisible by num_heads={num_heads}")
        if num_proxies < 1:
            raise ValueError(f"INFNetProxyAttention: num_proxies must be positive, got {num_proxies}")
        self.num_heads = num_heads
        self.num_proxies = num_proxies
        self.context_dim = context_dim or dim
        self.proxy_residual = proxy_residual
        self.attn_drop = attn_drop
        self.proxies = nn.Parameter(torch.randn(num_proxies, dim) * 0.02)
        self.gather_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.gather_kv = nn.Linear(self.context_dim, 2 * dim, bias=qkv_bias)
        self.gather_proj = nn.Linear(dim, dim, bias=proj_bias)
        self.scatter_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.scatter_kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def gather(self, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """Proxy states ``Z (B, P, C)`` after the proxies attend to ``context (B, M, C_ctx)``.

        ``mask`` is an already normalised ``(B | 1, heads | 1, 1, M)`` key-padding mask or None.
        """
        b = context.shape[0]
        p = self.attn_drop if self.training else 0.0
        q = split_heads(self.gather_q(self.proxies).expand(b, -1, -1), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.gather_kv(context).chunk(2, dim=-1))
        z = self.gather_proj(merge_heads(sdpa(q, k, v, attn_mask=mask, dropout_p=p)))
        return self.proxies + z if self.proxy_residual else z

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Gather the context (or ``x`` itself) into the proxies, then attend the tokens to the proxies."""
        name = type(self).__name__
        source = x if context is None else context
        if source.shape[-1] != self.context_dim:
            what = "context" if context is not None else "x (used as its own context)"
            raise ValueError(
                f"{name}: expected {what} of shape (B, M, {self.context_dim}), got {tuple(source.shape)}"
            )
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, source.shape[1], name)
            if mask.shape[2] != 1 or mask.shape[1] not in (1, self.num_heads):
                raise ValueError(
                    f"{name}: only key-padding masks of the context are supported ((B, M), or a mask whose "
                    f"query axis is 1 and heads 1 or {self.num_heads}); got {tuple(mask.shape)}"
                )
        z = self.gather(source, mask)
        p = self.attn_drop if self.training else 0.0
        q = split_heads(self.scatter_q(x), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.scatter_kv(z).chunk(2, dim=-1))
        return self.proj_drop(self.proj(merge_heads(sdpa(q, k, v, dropout_p=p))))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """``QKᵀ`` and ``AV`` of the gather (``P × M`` pairs) and the scatter (``N × P`` pairs)."""
        return 4.0 * batch * self.num_proxies * (keys + queries) * self.dim

    def extra_repr(self) -> str:
        """Add heads, proxies and the context width to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, num_proxies={self.num_proxies}, "
            f"context_dim={self.context_dim}, proxy_residual={self.proxy_residual}"
        )
