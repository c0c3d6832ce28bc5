"""Local Linear Attention (LLA): attention as local linear regression at every query.

Paper: Zuo et al., "Local Linear Attention: An Optimal Interpolation of Linear and Softmax Attention For
Test-Time Regression", 2025 (arXiv 2510.01450).

**Estimator.** Softmax attention is the Nadaraya–Watson estimator: query ``q_i`` returns the kernel-weighted
mean of the values, with the softmax kernel ``w_ij = exp(q_i·k_j / √d)`` over the keys ``j`` it may attend.
LLA fits, at every query, a *local linear* model of the values on the centred keys ``δ_ij = k_j − q_i``
and returns its intercept (the fitted value at ``k = q_i``)::

    (a_i, B_i) = argmin_{a, B}  Σ_j p_ij ‖v_j − a − B δ_ij‖²  +  λ ‖B‖_F²,      p_ij = w_ij / Σ_j w_ij
    o_i = a_i

The ridge ``λ`` (``ridge``) penalises the slope only, never the intercept. With the p-weighted moments
``k̄_i = Σ_j p_ij k_j``, ``v̄_i = Σ_j p_ij v_j``, the centred key covariance
``C_i = Σ_j p_ij k_j k_jᵀ − k̄_i k̄_iᵀ`` and the value–key cross-covariance
``X_i = Σ_j p_ij v_j k_jᵀ − v̄_i k̄_iᵀ``, the normal equations give the closed form used here::

    o_i = v̄_i − X_i (C_i + λ I)⁻¹ (k̄_i − q_i)

(the covariance of ``δ_ij`` equals that of ``k_j``; only the weighted mean ``k̄_i − q_i`` depends on the query
shift). The first term is softmax attention; the second is the local-linear correction that removes the
first-order bias of Nadaraya–Watson when the query is not at the weighted centre of its keys. ``λ → ∞``
recovers softmax attention exactly. This is the exact (ridge-regularised) intercept; the shorter form
``Σ_j p_ij v_j − (Σ_j p_ij v_j δ_ijᵀ)(Σ_j p_ij δ_ij δ_ijᵀ + λI)⁻¹ Σ_j p_ij δ_ij`` (uncentred second
moments, no renormalisation) is a different estimator and is not used.

**Two algorithms** (same result; tests hold both to a per-query float64 least-squares solve):

* ``dense``: materialises the ``(N, M)`` softmax weights, then the moments by matrix products. ``O(N² d²)``
  time (the per-query ``d × d`` second moments), ``O(N² + N d²)`` memory.
* ``blockwise`` (default, FlashLLA-style): queries in blocks of ``block_size``; for each query block it
  streams over key blocks and accumulates the unnormalised moments ``Σ w``, ``Σ w k``, ``Σ w k kᵀ``,
  ``Σ w v``, ``Σ w v kᵀ`` with online-softmax rescaling (running row max, factor ``exp(m_old − m_new)``),
  then solves the ``d × d`` systems of that block. No ``(N, N)`` tensor; peak memory
  ``O(block² + block · d²)`` per head. Causal runs skip key blocks entirely in the future. Under autograd
  each query block is wrapped in ``torch.utils.checkpoint`` so backward recomputes the block instead of
  storing every per-key-block accumulator.

Masks (True = may attend), causality and fully masked rows (output zero) follow the library's SDPA
conventions. The running max is detached: the result is exactly invariant to it.

No official code exists (``Yifei-Zuo/Flash-LLA`` holds a README only); built from the paper. Differences
from the paper as we understand it:

* The paper's FlashLLA avoids forming the per-query ``d × d`` moments (its memory-efficient primitives and
  a fused kernel with a custom backward); here they are formed per block and solved directly with
  ``torch.linalg.solve``, which costs ``O(N² d²)`` time instead of ``O(N² d)`` per solver iteration.
* The regulariser is a ridge ``λ I`` on the slope with a fixed (configurable) ``λ``; the paper's exact
  regularisation schedule is not reproduced.
"""

import functools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from core.attention.base import TokenMixer, normalize_mask
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "LocalLinearAttention",
    "local_linear_attention",
    "local_linear_attention_blockwise",
    "local_linear_attention_dense",
]

Algorithm = Literal["blockwise", "dense"]


def _allowed(
    mask: Tensor | None, is_causal: bool, rows: slice, cols: slice, device: torch.device
) -> Tensor | None:
    """Boolean ``(B|1, H|1, rows, cols)`` block of the mask and causal pattern, or None for all-True."""
    out = None
    if mask is not None:
        out = mask[:, :, rows if mask.shape[2] > 1 else slice(None), cols]
    if is_causal:
        qi = torch.arange(rows.start, rows.stop, device=device)[:, None]
        kj = torch.arange(cols.start, cols.stop, device=device)[None, :]
        causal = (kj <= qi)[None, None]
        out = causal if out is None else out & causal
    return out


def _solve_intercept(
    q: Tensor, s0: Tensor, s1: Tensor, s2: Tensor, t0: Tensor, t1: Tensor, ridge: float
) -> Tensor:
    """Intercept ``v̄ − X (C + λI)⁻¹ (k̄ − q)`` from unnormalised moments; zero where ``s0 == 0``."""
    has_key = s0 > 0
    inv = 1.0 / torch.where(has_key, s0, torch.ones_like(s0))
    kbar = s1 * inv[..., None]
    vbar = t0 * inv[..., None]
    cov_k = s2 * inv[..., None, None] - kbar[..., :, None] * kbar[..., None, :]
    cov_vk = t1 * inv[..., None, None] - vbar[..., :, None] * kbar[..., None, :]
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    sol = torch.linalg.solve(cov_k + ridge * eye, (kbar - q).unsqueeze(-1))
    out = vbar - (cov_vk @ sol).squeeze(-1)
    return out * has_key[..., None].to(out.dtype)


def _check(q: Tensor, k: Tensor, v: Tensor, is_causal: bool, ridge: float) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            "local_linear_attention: expected q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"local_linear_attention: q and k must share D, got {q.shape[-1]} and {k.shape[-1]}")
    if is_causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"local_linear_attention: is_causal needs N == M, got {q.shape[2]} and {k.shape[2]}")
    if ridge <= 0:
        raise ValueError(f"local_linear_attention: ridge must be positive, got {ridge}")


def local_linear_attention_dense(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    ridge: float = 0.1,
    scale: float | None = None,
) -> Tensor:
    """LLA with the ``(N, M)`` softmax weights materialised (``O(N² d²)`` time, ``O(N² + N d²)`` memory).

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        mask: Boolean mask broadcastable to ``(B, H, N, M)`` (4-D), True = may attend.
        is_causal: Query ``i`` attends keys ``j <= i`` only.
        ridge: Ridge ``λ > 0`` on the local slope.
        scale: Kernel scale of the logits; ``1/√D`` by default.

    Returns:
        ``(B, H, N, Dv)``; rows with no key to attend are zero.
    """
    _check(q, k, v, is_causal, ridge)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    n, m = q.shape[2], k.shape[2]
    logits = (q @ k.transpose(-2, -1)) * scale
    allowed = _allowed(mask, is_causal, slice(0, n), slice(0, m), q.device)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    row_max = logits.detach().amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    w = torch.exp(logits - row_max)
    s0 = w.sum(-1)
    s1 = w @ k
    s2 = torch.einsum("bhnm,bhmd,bhme->bhnde", w, k, k)
    t0 = w @ v
    t1 = torch.einsum("bhnm,bhmv,bhmd->bhnvd", w, v, k)
    return _solve_intercept(q, s0, s1, s2, t0, t1, ridge)


def _query_block(
    qi: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    *,
    start: int,
    is_causal: bool,
    ridge: float,
    scale: float,
    block_size: int,
) -> Tensor:
    """Stream over key blocks for the queries ``[start, start + len(qi))`` with online-softmax moments."""
    b, h, nq, d = qi.shape
    dv = v.shape[-1]
    stop = start + nq
    kv_end = min(k.shape[2], stop) if is_causal else k.shape[2]
    zeros = functools.partial(torch.zeros, dtype=qi.dtype, device=qi.device)
    row_max = torch.full((b, h, nq), float("-inf"), dtype=qi.dtype, device=qi.device)
    s0, s1, s2 = zeros(b, h, nq), zeros(b, h, nq, d), zeros(b, h, nq, d, d)
    t0, t1 = zeros(b, h, nq, dv), zeros(b, h, nq, dv, d)
    for j0 in range(0, kv_end, block_size):
        j1 = min(j0 + block_size, kv_end)
        kj, vj = k[:, :, j0:j1], v[:, :, j0:j1]
        logits = (qi @ kj.transpose(-2, -1)) * scale
        allowed = _allowed(mask, is_causal, slice(start, stop), slice(j0, j1), qi.device)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        new_max = torch.maximum(row_max, logits.detach().amax(dim=-1))
        safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        corr = torch.exp(row_max - safe)
        w = torch.exp(logits - safe[..., None])
        s0 = s0 * corr + w.sum(-1)
        s1 = s1 * corr[..., None] + w @ kj
        s2 = s2 * corr[..., None, None] + torch.einsum("bhij,bhjd,bhje->bhide", w, kj, kj)
        t0 = t0 * corr[..., None] + w @ vj
        t1 = t1 * corr[..., None, None] + torch.einsum("bhij,bhjv,bhjd->bhivd", w, vj, kj)
        row_max = new_max
    return _solve_intercept(qi, s0, s1, s2, t0, t1, ridge)


def local_linear_attention_blockwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    ridge: float = 0.1,
    scale: float | None = None,
    block_size: int = 64,
    use_checkpoint: bool = True,
) -> Tensor:
    """LLA streamed over query and key blocks with online-softmax moment accumulation (no ``(N, M)`` tensor).

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        mask: Boolean mask broadcastable to ``(B, H, N, M)`` (4-D), True = may attend.
        is_causal: Query ``i`` attends keys ``j <= i`` only; future key blocks are skipped.
        ridge: Ridge ``λ > 0`` on the local slope.
        scale: Kernel scale of the logits; ``1/√D`` by default.
        block_size: Query and key block length (any positive int; need not divide N).
        use_checkpoint: Recompute each query block in backward (``torch.utils.checkpoint``) when gradients
            are needed, so autograd does not keep every key block's accumulators.

    Returns:
        ``(B, H, N, Dv)``; rows with no key to attend are zero.
    """
    _check(q, k, v, is_causal, ridge)
    if block_size < 1:
        raise ValueError(f"local_linear_attention: block_size must be positive, got {block_size}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    outs = []
    for i0 in range(0, q.shape[2], block_size):
        qi = q[:, :, i0 : i0 + block_size]
        fn = functools.partial(
            _query_block, start=i0, is_causal=is_causal, ridge=ridge, scale=scale, block_size=block_size
        )
        if grad and use_checkpoint:
            outs.append(checkpoint(fn, qi, k, v, mask, use_reentrant=False))
        else:
            outs.append(fn(qi, k, v, mask))
    return torch.cat(outs, dim=2)


def local_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    ridge: float = 0.1,
    scale: float | None = None,
    algorithm: Algorithm = "blockwise",
    block_size: int = 64,
) -> Tensor:
    """Dispatch to the blockwise (default) or the dense algorithm by name."""
    if algorithm == "dense":
        return local_linear_attention_dense(q, k, v, mask=mask, is_causal=is_causal, ridge=ridge, scale=scale)
    if algorithm == "blockwise":
        return local_linear_attention_blockwise(
            q, k, v, mask=mask, is_causal=is_causal, ridge=ridge, scale=scale, block_size=block_size
        )
    raise ValueError(f"local_linear_attention: algorithm must be 'blockwise' or 'dense', got {algorithm!r}")


@register_mechanism(
    paper="Zuo et al. 2025, Local Linear Attention (arXiv 2510.01450)",
    complexity="O(N^2 d^2)",
    example_kwargs={"num_heads": 2, "block_size": 4},
)
class LocalLinearAttention(TokenMixer):
    """Multi-head Local Linear Attention: per-query ridge-regularised local linear regression of v on k.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads; head size ``d = C / heads`` (the per-query systems are ``d × d``).
        ridge: Ridge ``λ`` on the local slope (``λ → ∞`` gives softmax attention). 0.1 keeps
            ``‖(C + λI)⁻¹‖ ≤ 10`` for stable training while letting the correction act.
        algorithm: ``blockwise`` (streamed, no ``N × N`` tensor; default) or ``dense`` (materialised weights).
        block_size: Query/key block length of the blockwise algorithm.
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "blockwise PyTorch (CPU + GPU); no FlashLLA kernel"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        ridge: float = 0.1,
        algorithm: Algorithm = "blockwise",
        block_size: int = 64,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"LocalLinearAttention: dim={dim} must be divisible by num_heads={num_heads}")
        if ridge <= 0:
            raise ValueError(f"LocalLinearAttention: ridge must be positive, got {ridge}")
        if algorithm not in ("blockwise", "dense"):
            raise ValueError(
                f"LocalLinearAttention: algorithm must be 'blockwise' or 'dense', got {algorithm!r}"
            )
        if block_size < 1:
            raise ValueError(f"LocalLinearAttention: block_size must be positive, got {block_size}")
        self.num_heads = num_heads
        self.ridge = ridge
        self.algorithm: Algorithm = algorithm
        self.block_size = block_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project to heads, run LLA, merge heads and project back."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, "LocalLinearAttention")
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        out = local_linear_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=is_causal,
            ridge=self.ridge,
            algorithm=self.algorithm,
            block_size=self.block_size,
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
        """Pairwise FLOPs: logits (2d), weighted k, v (2d + 2d) and the ``k kᵀ``, ``v kᵀ`` moments (4d²/h)."""
        if is_causal:
            full = min(queries, keys)
            pairs = full * (full + 1) // 2 + (queries - full) * keys
        else:
            pairs = queries * keys
        d = self.dim // self.num_heads
        per_pair_head = 6 * d + 4 * d * d
        return float(batch * self.num_heads * pairs * per_pair_head)

    def extra_repr(self) -> str:
        """Add heads, ridge and algorithm to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, ridge={self.ridge}, "
            f"algorithm={self.algorithm}, block_size={self.block_size}"
        )
