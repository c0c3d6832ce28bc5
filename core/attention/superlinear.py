"""Superlinear multi-step attention, baseline ``N = 2``: span search over blocks, then span attention.

Paper: "Superlinear Multi-Step Attention", 2026 (one author; concavity-ai, model ``superlinear-exp-v0.1``).
Causal self-attention is reformulated as a two-step search, analogous to jump search: step 1 (*span
search*) scores ``O(√L)`` candidate spans for every query and keeps the top ``k``; step 2 (*span
attention*) runs standard attention restricted to the selected spans. Both steps cost ``O(L^{3/2})``
(``O(L^{1 + 1/N})`` for ``N`` steps). The key property is *structural non-exclusion* (random context
access): every causally eligible position can be selected by the content-dependent routing; no fixed
pattern excludes it.

Equations implemented (per head; blocks of ``S`` tokens, ``S = ⌈√L⌉`` by default, block ``β(i)`` holds
query ``i``; ``u_i = x_i W_S`` is a separate *search query*, ``q, k, v`` the usual projections)::

    k̄_b     = mean_{j ∈ b, j valid} k_j                                   (block summary)
    s_{i,b} = u_i · k̄_b / √d                                              (span search)
    E(i)    = {b ≠ β(i) : b has a valid key, and b < β(i) when causal}   (eligible spans)
    T(i)    = top-k_{b ∈ E(i)} s_{i,b}                                    (selected spans)
    P(i)    = [own block β(i)] + T(i);   keys of the own block restricted to j ≤ i when causal

The query's own (local) block is always attended and never scored (its summary would contain future
tokens). Two ways to combine the spans (``combine``):

* ``"gated"`` (default, the paper's "softmax-weighted gating over span attention outputs")::

      o_{i,p} = softmax_{j ∈ p}(q_i · k_j / √d) V_p,    g_i = softmax_p(s_{i,p}),    o_i = Σ_p g_{i,p} o_{i,p}

  with the own block's gate score ``s_{i,β(i)} = u_i · mean_{j ∈ β(i), j ≤ i} k_j / √d`` (prefix mean when
  causal). The gates make the span search trainable end to end (top-k itself is not differentiable).
* ``"joint"``: one softmax over the union of the selected spans' keys. With ``top_k`` at least the
  number of blocks this is exactly dense (causal) attention; the search query then gets no gradient.

Complexity: the search is ``N · ⌈N/S⌉ · d`` and the span attention ``N · (k + 1) · S · d``; with
``S = √N`` and constant ``k`` both are ``O(N^{3/2} d)``. Memory of the gather path is ``O(N (k+1) S d)``.

Non-causal use (``is_causal=False``) follows the same rules with every other block eligible. A ``mask``
(True = may attend) restricts span attention exactly; block summaries (routing only) average the keys
that some query may attend (for a key-padding mask: the non-padded keys), so padded keys never influence
the output.

No official PyTorch reference was available to us; built from the paper abstract and the model card.
Differences from the official code (as far as its public interface shows): the official kernels score
individual *anchor* positions on power-law "stripes" and attend a span around each selected anchor plus a
separate sliding window, and the per-position representatives come from the Mamba-2 layers of the hybrid
model; here spans are fixed blocks of ``S`` tokens scored by their mean key, and the local block plays
the sliding window's role.
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["SuperlinearAttention", "span_search", "superlinear_attention"]

Combine = Literal["gated", "joint"]


def _blocks(t: Tensor, size: int) -> Tensor:
    """``(B, H, N, ...)`` zero-padded to whole blocks -> ``(B, H, nb, S, ...)``."""
    b, h, n = t.shape[:3]
    nb = -(-n // size)
    pad = nb * size - n
    if pad:
        t = torch.cat([t, t.new_zeros(b, h, pad, *t.shape[3:])], dim=2)
    return t.reshape(b, h, nb, size, *t.shape[3:])


def _key_valid(mask: Tensor | None, b: int, h: int, n: int, device: torch.device) -> Tensor:
    """Keys that some query may attend, ``(B, H, N)`` bool: they enter the block summaries."""
    if mask is None:
        return torch.ones(b, h, n, dtype=torch.bool, device=device)
    return mask.any(dim=-2).expand(b, h, n)


def span_search(
    u: Tensor,
    k: Tensor,
    block_size: int,
    top_k: int,
    *,
    key_valid: Tensor | None = None,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step 1: score every block summary against the search queries and keep the top-k eligible blocks.

    Args:
        u: Search queries ``(B, H, N, D)``.
        k: Keys ``(B, H, N, D)``.
        block_size: Span length ``S``.
        top_k: Spans selected per query (besides its own block).
        key_valid: ``(B, H, N)`` keys that enter the summaries; all when None.
        is_causal: Only blocks entirely before the query's block are eligible.

    Returns:
        ``(index, valid, score, summary)``: the selected blocks ``(B, H, N, k')`` with
        ``k' = min(top_k, nb)``, whether each selection is a real eligible block, its search score
        ``(B, H, N, k')``, and the block summaries ``(B, H, nb, D)``.
    """
    b, h, n, d = k.shape
    valid = _key_valid(None, b, h, n, k.device) if key_valid is None else key_valid
    kb = _blocks(k * valid.unsqueeze(-1).to(k.dtype), block_size).sum(3)  # (B, H, nb, D)
    count = _blocks(valid.to(k.dtype), block_size).sum(3)  # (B, H, nb)
    summary = kb / count.clamp(min=1).unsqueeze(-1)
    nb = summary.shape[2]
    scores = u @ summary.transpose(-1, -2) / math.sqrt(d)  # (B, H, N, nb)
    own = torch.arange(n, device=k.device) // block_size
    blocks = torch.arange(nb, device=k.device)
    eligible = (blocks[None, :] < own[:, None]) if is_causal else (blocks[None, :] != own[:, None])
    eligible = eligible & (count > 0).unsqueeze(2)  # (B, H, N, nb)
    masked = scores.masked_fill(~eligible, float("-inf"))
    score, index = masked.topk(min(top_k, nb), dim=-1)
    ok = score > float("-inf")
    return index, ok, score.masked_fill(~ok, 0.0), summary


def superlinear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    u: Tensor,
    *,
    block_size: int,
    top_k: int,
    mask: Tensor | None = None,
    is_causal: bool = False,
    combine: Combine = "gated",
) -> Tensor:
    """Two-step superlinear attention on ``(B, H, N, D)`` self-attention tensors.

    Args:
        q: Attention queries ``(B, H, N, D)``.
        k: Keys ``(B, H, N, D)``.
        v: Values ``(B, H, N, Dv)``.
        u: Search queries ``(B, H, N, D)``.
        block_size: Span length ``S``.
        top_k: Spans selected per query besides its own block.
        mask: Optional boolean 4-D mask ``(B|1, H|1, N|1, N)``; True = may attend.
        is_causal: Causal attention (query ``i`` sees keys ``j ≤ i``).
        combine: ``"gated"`` (per-span softmax, gated by the search scores) or ``"joint"`` (one softmax).

    Returns:
        ``(B, H, N, Dv)``; queries with no key to attend output zeros.
    """
    if combine not in ("gated", "joint"):
        raise ValueError(f"combine must be 'gated' or 'joint', got {combine!r}")
    b, h, n, d = q.shape
    s = block_size
    key_valid = _key_valid(mask, b, h, n, q.device)
    index, sel_ok, sel_score, summary = span_search(u, k, s, top_k, key_valid=key_valid, is_causal=is_causal)
    pos_q = torch.arange(n, device=q.device)
    own = (pos_q // s).view(1, 1, n, 1).expand(b, h, n, 1)
    spans = torch.cat([own, index], dim=-1)  # (B, H, N, P) with P = 1 + k'
    span_ok = torch.cat([torch.ones_like(own, dtype=torch.bool), sel_ok], dim=-1)
    p = spans.shape[-1]
    # gather the spans' keys and values: (B, H, N, P, S, D)
    kb, vb = _blocks(k, s), _blocks(v, s)
    flat = spans.reshape(b, h, n * p)

    def take(t: Tensor) -> Tensor:
        src = t.flatten(3)  # (B, H, nb, S*D)
        idx = flat.unsqueeze(-1).expand(-1, -1, -1, src.shape[-1])
        return src.gather(2, idx).view(b, h, n, p, s, t.shape[-1])

    kg, vg = take(kb), take(vb)
    pos_k = spans.unsqueeze(-1) * s + torch.arange(s, device=q.device)  # (B, H, N, P, S)
    ok = span_ok.unsqueeze(-1) & (pos_k < n)
    if is_causal:
        ok = ok & (pos_k <= pos_q.view(1, 1, n, 1, 1))
    if mask is not None:
        m = mask.expand(b, h, n, n)
        ok = ok & m.gather(3, pos_k.clamp(max=n - 1).reshape(b, h, n, p * s)).view(b, h, n, p, s)
    logits = (q.view(b, h, n, 1, 1, d) * kg).sum(-1) / math.sqrt(d)  # (B, H, N, P, S)
    logits = logits.masked_fill(~ok, float("-inf"))
    if combine == "joint":
        flat_ok = ok.view(b, h, n, p * s)
        has = flat_ok.any(-1, keepdim=True)
        w = torch.softmax(logits.view(b, h, n, p * s).masked_fill(~has, 0.0), -1) * has.to(q.dtype)
        return (w.unsqueeze(-2) @ vg.view(b, h, n, p * s, -1)).squeeze(-2)
    span_has = ok.any(-1, keepdim=True)  # (B, H, N, P, 1)
    w = torch.softmax(logits.masked_fill(~span_has, 0.0), -1) * span_has.to(q.dtype)
    o = (w.unsqueeze(-2) @ vg).squeeze(-2)  # (B, H, N, P, Dv)
    # gate score of the own block: search query against the mean of its visible valid keys
    kv_valid = key_valid.unsqueeze(-1).to(k.dtype)
    if is_causal:
        csum = _blocks(k * kv_valid, s).cumsum(3).flatten(2, 3)[:, :, :n]
        ccount = _blocks(kv_valid, s).cumsum(3).flatten(2, 3)[:, :, :n]
        own_summary = csum / ccount.clamp(min=1)
    else:
        own_summary = summary.gather(2, own.expand(b, h, n, 1).expand(-1, -1, -1, d).reshape(b, h, n, d))
    own_score = (u * own_summary).sum(-1, keepdim=True) / math.sqrt(d)
    gate_logits = torch.cat([own_score, sel_score], dim=-1).masked_fill(~span_has.squeeze(-1), float("-inf"))
    any_span = span_has.squeeze(-1).any(-1, keepdim=True)
    g = torch.softmax(gate_logits.masked_fill(~any_span, 0.0), -1) * any_span.to(q.dtype)
    return (g.unsqueeze(-2) @ o).squeeze(-2)


@register_mechanism(
    paper="Superlinear Multi-Step Attention (2026), baseline N=2: span search + span attention",
    complexity="O(N^1.5 d) (block S = sqrt(N), constant top_k)",
    example_kwargs={"num_heads": 2, "block_size": 2, "top_k": 1},
)
class SuperlinearAttention(TokenMixer):
    """Multi-head two-step superlinear attention: span search over blocks, then span attention.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        block_size: Span length ``S``; ``None`` uses ``⌈√N⌉`` per call (the ``O(N^{3/2})`` setting).
        top_k: Spans selected per query besides its own block.
        combine: ``"gated"`` (paper's gating, trainable search) or ``"joint"`` (one softmax over the spans).
        qkv_bias: Whether the q/k/v/search projections have a bias.
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
        block_size: int | None = None,
        top_k: int = 4,
        combine: Combine = "gated",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"{name}: block_size must be >= 1 or None, got {block_size}")
        if top_k < 1:
            raise ValueError(f"{name}: top_k must be >= 1, got {top_k}")
        if combine not in ("gated", "joint"):
            raise ValueError(f"{name}: combine must be 'gated' or 'joint', got {combine!r}")
        self.num_heads = num_heads
        self.block_size = block_size
        self.top_k = top_k
        self.combine: Combine = combine
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.search = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def span_size(self, n: int) -> int:
        """The block size used for ``n`` tokens."""
        return self.block_size if self.block_size is not None else max(1, math.ceil(math.sqrt(n)))

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Search the spans with the search queries, then attend the selected spans and the own block."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, type(self).__name__)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        u = split_heads(self.search(x), self.num_heads)
        out = superlinear_attention(
            q, k, v, u, block_size=self.span_size(n), top_k=self.top_k, mask=mask, is_causal=is_causal,
            combine=self.combine,
        )  # fmt: skip
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
        """Span attention pairs (own block + selected blocks) at 4 FLOPs each, plus 2 per search score."""
        s = self.span_size(queries)
        nb = -(-queries // s)
        sizes = [min(s, queries - c * s) for c in range(nb)]
        pairs = 0
        for i in range(queries):
            own = i // s
            local = (i - own * s + 1) if is_causal else sizes[own]
            others = sorted(sizes[:own] if is_causal else sizes[:own] + sizes[own + 1 :], reverse=True)
            pairs += local + sum(others[: self.top_k])
        return 4.0 * batch * pairs * self.dim + 2.0 * batch * queries * nb * self.dim

    def extra_repr(self) -> str:
        """Add heads, span size, top-k and the combination."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, block_size={self.block_size}, "
            f"top_k={self.top_k}, combine={self.combine}"
        )
