"""Functional attention ops on ``(B, heads, N, D)`` tensors: the SDPA fast path and its literal reference.

Both follow Vaswani et al., "Attention Is All You Need" (2017), Eq. 1:
``Attention(Q, K, V) = softmax(Q Kᵀ / √d + bias) V``, where a boolean mask (True = may attend) becomes an
additive ``-inf`` bias. Two conventions differ from a bare ``F.scaled_dot_product_attention`` call and are
handled here for every caller:

* ``attn_mask`` and ``is_causal`` may be given together (SDPA refuses that); they are combined with AND.
* A query row whose keys are all masked returns zeros instead of NaN (SDPA's math path returns NaN).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["causal_mask", "dense_attention_flops", "reference_attention", "sdpa"]


def causal_mask(q_len: int, kv_len: int, device: torch.device | None = None) -> Tensor:
    """Top-left aligned causal mask ``(N, M)``: query ``i`` may attend key ``j`` iff ``j <= i``."""
    return torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril()


def dense_attention_flops(batch: int, queries: int, keys: int, dim: int, is_causal: bool = False) -> float:
    """FLOPs of ``QKᵀ`` and ``AV`` (2 multiply-adds each per attended pair and channel) for dense attention.

    Causal attention (top-left aligned) visits ``Σ_i min(i + 1, M)`` pairs instead of ``N · M``.
    """
    if is_causal:  # rows 1..keys grow by one key each, later rows see all keys
        full = min(queries, keys)
        pairs = full * (full + 1) // 2 + (queries - full) * keys
    else:
        pairs = queries * keys
    return 4.0 * batch * pairs * dim


def _combine(
    attn_mask: Tensor | None, is_causal: bool, q_len: int, kv_len: int, device: torch.device
) -> Tensor | None:
    if not is_causal:
        return attn_mask
    causal = causal_mask(q_len, kv_len, device)
    return causal if attn_mask is None else attn_mask & causal


def sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Scaled dot-product attention on ``(B, H, N, D)`` tensors via ``F.scaled_dot_product_attention``.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        attn_mask: Boolean mask broadcastable to ``(B, H, N, M)``, True = may attend.
        is_causal: Restrict query ``i`` to keys ``j <= i`` (top-left aligned).
        dropout_p: Dropout on the attention weights (pass 0 in eval mode).
        scale: Logit scale; defaults to ``1/√D``.

    Returns:
        ``(B, H, N, Dv)``; rows with no key to attend are zero.
    """
    n, m = q.shape[-2], k.shape[-2]
    if attn_mask is None:
        # Every causal row has at least key 0, so SDPA's own (faster) causal path is safe.
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    mask = _combine(attn_mask, is_causal, n, m, q.device)
    # Rows with no key would be NaN; let them attend everything, then zero them. No host sync needed.
    has_key = mask.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key, dropout_p=dropout_p, scale=scale)
    return out * has_key.to(out.dtype)


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Literal ``softmax(Q Kᵀ · scale + mask) V``, written for readability, not speed.

    This is the reference the tests hold every fast path to (run it in float64), and the ``reference``
    backend of the mechanisms. Fully masked rows return zeros.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        attn_mask: Boolean mask broadcastable to ``(B, H, N, M)``, True = may attend.
        is_causal: Restrict query ``i`` to keys ``j <= i``.
        scale: Logit scale; defaults to ``1/√D``.

    Returns:
        ``(B, H, N, Dv)``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale
    mask = _combine(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
        has_key = mask.any(dim=-1, keepdim=True)
        logits = logits.masked_fill(~has_key, 0.0)
    weights = torch.softmax(logits, dim=-1)
    if mask is not None:
        weights = weights * has_key.to(weights.dtype)
    return torch.matmul(weights, v)
