"""Dynamic Mask Attention (DMA): content-aware top-k key masks generated from the values, plus a learned bias.

Paper: Shi et al. (SmallDoges), "Trainable Dynamic Mask Sparse Attention", 2025 (arXiv 2508.02124).
Official code: ``SmallDoges/flash-dmattn`` (renamed ``flash-sparse-attn``; CUDA / Triton / Flex kernels and
the Python reference ``benchmarks/forward_equivalence.py``) and the Doge models (``DogeAttention``).

Equations, per head ``h`` (``v_j ∈ R^C`` is the value of token ``j`` with all heads concatenated):

* Content-aware importance of every key, from the values (a zero-order-hold "dt" as in Mamba-2)::

      δ_{h,j} = exp(A_h · softplus((v_j W_Δ + b_Δ)_h))                     (W_Δ ∈ R^{C×H}, A ∈ R^H)

* Dynamic mask: query ``i`` keeps the ``k`` eligible keys with the largest ``δ_{h,j}``, where eligible
  means allowed by the user mask and, when causal, ``j ≤ i``::

      S_{h,i} = top-k_{j ∈ E(i)} δ_{h,j}

* Attention with the dynamic bias added to the logits, keys outside ``S`` skipped::

      o_{h,i} = Σ_{j ∈ S_{h,i}} softmax_j(q_{h,i}·k_{h,j} / √d + δ_{h,j}) v_{h,j}

The mask is *content-aware* (it depends on the values through ``δ``) and *position-aware* in computation:
the ``gather`` path (default) gathers only the ``k`` selected keys per query row, so the attention core
costs ``O(N k d)`` instead of ``O(N² d)``. Choosing the keys is a top-k over ``N`` scalars per row, i.e.
``O(N² h)`` without the ``d`` factor when causal; without causality the eligible set is the same for every
query of a sample (a key-padding mask), so the top-k is taken once per (sample, head): ``O(N h)``. The
top-k itself is not differentiable; ``δ`` (hence ``W_Δ`` and ``A``) learns through the bias it adds.

Backends: ``gather`` / ``auto`` (the sparse computation above), ``sdpa`` (SDPA on the dense logits with the
additive bias ``δ`` on selected keys and ``-inf`` elsewhere, like the official Flex/CUDA interface) and
``reference`` (the literal dense softmax). All three give the same result.

Differences from the official code:

* The official code (Doge) initialises ``A = 0``, which makes every ``δ = 1`` and the initial top-k a tie
  broken by the kernel; here ``A`` starts at ``a_init = -1`` (``δ ∈ (0, 1]``, bounded bias, distinct
  scores). Set ``a_init=0.0`` for the official initialisation.
* The official ``keep_window_size`` (default 2048) is ``top_k`` here; as there, rows with fewer eligible
  keys than ``top_k`` attend all of them.
* No grouped-query attention (``num_kv_heads == num_heads``) and no KV cache.
* A user ``mask`` (True = may attend) removes keys from the eligible set before the top-k, exactly as the
  official ``prepare_dynamic_mask`` fills masked entries with the dtype minimum before its top-k.
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import causal_mask
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["DynamicMaskAttention", "dynamic_mask_attention", "dynamic_topk"]

DMABackend = Literal["auto", "gather", "sdpa", "reference"]


def _eligible(
    mask: Tensor | None,
    is_causal: bool,
    batch: int,
    heads: int,
    q_len: int,
    kv_len: int,
    device: torch.device,
) -> Tensor:
    """Boolean ``(B|1, H|1, N|1, M)`` of the keys a query may select (user mask AND causal)."""
    out = torch.ones(1, 1, 1, kv_len, dtype=torch.bool, device=device) if mask is None else mask
    if is_causal:
        out = out & causal_mask(q_len, kv_len, device)
    return out


def dynamic_topk(
    delta: Tensor,
    top_k: int,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    q_len: int | None = None,
) -> tuple[Tensor, Tensor]:
    """DMA's dynamic mask as indices: the ``top_k`` eligible keys with the largest ``δ`` per query row.

    Args:
        delta: Key importance ``δ`` of shape ``(B, H, M)``.
        top_k: Keys kept per query row.
        mask: Optional boolean 4-D mask ``(B|1, H|1, N|1, M)`` (True = may attend).
        is_causal: Only keys ``j ≤ i`` are eligible for query ``i``.
        q_len: Number of queries ``N`` (defaults to ``M``).

    Returns:
        ``(index, valid)`` of shape ``(B, H, N', k')`` with ``k' = min(top_k, M)`` and ``N' = N`` when the
        eligible set depends on the query (causal or a per-query mask), else ``N' = 1`` (shared by all
        queries). ``valid`` is False where a row had fewer than ``k'`` eligible keys.
    """
    b, h, m = delta.shape
    n = m if q_len is None else q_len
    eligible = _eligible(mask, is_causal, b, h, n, m, delta.device)
    scores = delta[:, :, None, :].masked_fill(~eligible, float("-inf"))
    kk = min(top_k, m)
    values, index = scores.topk(kk, dim=-1)
    return index, values > float("-inf")


def _gather_keys(t: Tensor, index: Tensor) -> Tensor:
    """``t (B, H, M, D)`` at ``index (B, H, N', k)`` -> ``(B, H, N', k, D)``."""
    b, h, n, kk = index.shape
    flat = index.reshape(b, h, n * kk, 1).expand(-1, -1, -1, t.shape[-1])
    return t.gather(2, flat).reshape(b, h, n, kk, t.shape[-1])


def dynamic_mask_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    delta: Tensor,
    top_k: int,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    backend: DMABackend = "auto",
    scale: float | None = None,
) -> Tensor:
    """DMA on ``(B, H, N, D)`` tensors: top-k keys by ``δ``, logits ``q·k·scale + δ``, masked softmax.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        delta: Per-key dynamic bias / importance ``(B, H, M)``.
        top_k: Keys kept per query row.
        mask: Optional boolean mask, already 4-D ``(B|1, H|1, N|1, M)``; True = may attend.
        is_causal: Restrict query ``i`` to keys ``j ≤ i`` before the top-k.
        backend: ``auto``/``gather`` (sparse), ``sdpa`` (dense SDPA with additive bias) or ``reference``.
        scale: Logit scale; defaults to ``1/√D``.

    Returns:
        ``(B, H, N, Dv)``; rows with no eligible key are zero.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    n, m = q.shape[2], k.shape[2]
    index, valid = dynamic_topk(delta, top_k, mask=mask, is_causal=is_causal, q_len=n)
    if backend in ("auto", "gather"):
        kg, vg = _gather_keys(k, index), _gather_keys(v, index)  # (B, H, N', k, D)
        bias = delta.gather(2, index.flatten(2)).view_as(index)  # (B, H, N', k)
        logits = (q.unsqueeze(-2) @ kg.transpose(-1, -2)).squeeze(-2) * scale + bias  # (B, H, N, k)
        logits = logits.masked_fill(~valid, float("-inf"))
        has_key = valid.any(-1, keepdim=True)
        weights = torch.softmax(logits.masked_fill(~has_key, 0.0), dim=-1) * has_key.to(q.dtype)
        return (weights.unsqueeze(-2) @ vg).squeeze(-2)
    selected = torch.zeros(*index.shape[:3], m, dtype=torch.bool, device=q.device)
    selected = selected.scatter(-1, index, valid)  # (B, H, N', M)
    has_key = selected.any(-1, keepdim=True)
    bias = delta[:, :, None, :].masked_fill(~selected, float("-inf")).masked_fill(~has_key, 0.0)
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
        return out * has_key.to(out.dtype)
    if backend != "reference":
        raise ValueError(f"unknown DMA backend {backend!r}; expected auto, gather, sdpa or reference")
    weights = torch.softmax(q @ k.transpose(-1, -2) * scale + bias, dim=-1) * has_key.to(q.dtype)
    return weights @ v


@register_mechanism(
    paper="Shi et al. 2025, Trainable Dynamic Mask Sparse Attention (DMA, arXiv 2508.02124)",
    complexity="O(N k d + N^2 h) causal (top-k selection), O(N k d) non-causal",
    example_kwargs={"num_heads": 2, "top_k": 3},
)
class DynamicMaskAttention(TokenMixer):
    """Multi-head Dynamic Mask Attention: each query attends the top-k keys by a value-derived score.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        top_k: Keys kept per query row and head (the official ``keep_window_size``).
        a_init: Initial value of the per-head coefficient ``A`` in ``δ = exp(A · softplus(v W_Δ))``.
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        backend: ``auto``/``gather`` (sparse, default), ``sdpa`` (dense SDPA + bias) or ``reference``.
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
        top_k: int = 64,
        a_init: float = -1.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        backend: DMABackend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if top_k < 1:
            raise ValueError(f"{name}: top_k must be >= 1, got {top_k}")
        if backend not in ("auto", "gather", "sdpa", "reference"):
            raise ValueError(f"{name}: unknown backend {backend!r}; expected auto, gather, sdpa or reference")
        self.num_heads = num_heads
        self.top_k = top_k
        self.backend: DMABackend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.dt_proj = nn.Linear(dim, num_heads)
        self.A = nn.Parameter(torch.full((num_heads,), float(a_init)))
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def importance(self, v: Tensor) -> Tensor:
        """``δ (B, H, N)`` from the values ``v (B, N, C)`` (all heads concatenated)."""
        return torch.exp(self.A * F.softplus(self.dt_proj(v))).transpose(1, 2)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        delta = self.importance(v)
        return (
            split_heads(q, self.num_heads),
            split_heads(k, self.num_heads),
            split_heads(v, self.num_heads),
            delta,
        )

    def selection(self, x: Tensor, *, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """The dynamic mask as a dense boolean ``(B, H, N, N)`` (True = attended), for inspection."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, type(self).__name__)
        _, _, _, delta = self._project(x)
        index, valid = dynamic_topk(delta, self.top_k, mask=mask, is_causal=is_causal, q_len=n)
        out = torch.zeros(*index.shape[:3], n, dtype=torch.bool, device=x.device).scatter(-1, index, valid)
        return out.expand(b, self.num_heads, n, n)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend each query to its top-k keys by ``δ``, with ``δ`` added to the logits."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, type(self).__name__)
        q, k, v, delta = self._project(x)
        out = dynamic_mask_attention(
            q, k, v, delta, self.top_k, mask=mask, is_causal=is_causal, backend=self.backend
        )
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
        """``4 · B · pairs · C`` with ``min(top_k, eligible keys)`` pairs per query."""
        if is_causal:
            pairs = sum(min(self.top_k, min(i + 1, keys)) for i in range(queries))
        else:
            pairs = queries * min(self.top_k, keys)
        return 4.0 * batch * pairs * self.dim

    def extra_repr(self) -> str:
        """Add heads, top-k and backend."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, top_k={self.top_k}, backend={self.backend}"
        )
