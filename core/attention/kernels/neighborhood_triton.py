"""Fused Triton kernels for neighbourhood attention: forward and backward, visiting only neighbour tiles.

The ``triton`` backend of :func:`core.attention.neighborhood.neighborhood_attention` (same NATTEN
semantics: kernel size, dilation, stride and causality per axis; see that module's docstring for the
equation). It follows the "fused Triton kernel that iterates only over the neighbourhood tiles" of the
attention-library issue, because a FlexAttention block mask spends most of its time evaluating the mask
in partial blocks.

How it works (FlashAttention-2 structure, Dao 2023, with FNA's multi-dimensional tiling, Hassani et al.
2024, arXiv 2403.04690):

* Every grid is treated as 3-D (leading axes of size 1). A program owns one query **tile**, a box of
  ``q_tile`` tokens per axis read straight from the row-major ``(B, H, N, D)`` tensor (no permutation
  copy; tiles may overhang the grid and are masked).
* It computes each query's per-axis window, takes the union box of the tile's windows, and loops only
  over the key tiles (``k_tile`` per axis) that meet that box, with an online softmax in fp32.
* A key tile lying inside *every* query's window on every axis (and inside the grid) is a **full**
  tile: it skips the mask arithmetic entirely; partial tiles evaluate the NATTEN window inequalities.
* Backward recomputes the probabilities from the saved log-sum-exp (base 2): one kernel accumulates
  ``dQ`` over the same key tiles; one accumulates ``dK, dV`` per key tile over the query tiles whose
  windows can reach it. That inverse range is exact: it is computed from the window function over the
  candidate queries within ``(k + s − 2) · d`` of the key tile on each axis (a bound a unit test checks).

Only masks and dropout are unsupported (``backend='auto'`` then uses another path). Kernel sizes,
dilations, strides, causality and the grid are compile-time constants, so each geometry compiles once.

Without a GPU the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before this
module is imported; the tests use that to check them against the fp64 reference on CPU. Speed is
measured on a GPU by ``python -m benchmarks.neighborhood_gpu``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = [
    "TritonNAConfig",
    "candidate_constants",
    "default_config",
    "inverse_bound",
    "kernel_constants",
    "na_triton",
]

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class TritonNAConfig:
    """Tile shapes (per grid axis, powers of two) and launch settings of the Triton NA kernels.

    The defaults fit the H100 with head dim 128 (``python -m benchmarks.triton_aot`` compiles them for
    ``sm_90`` and prints registers and shared memory): 8 warps, two pipeline stages; the ``dK/dV``
    kernel at three stages would need 242 KiB of shared memory, over the 227 KiB a block may have.
    """

    q_tile: tuple[int, ...]
    k_tile: tuple[int, ...]
    num_warps: int = 8
    num_stages: int = 2
    bwd_num_warps: int = 8
    bwd_num_stages: int = 2

    def __post_init__(self) -> None:
        for name, tile in (("q_tile", self.q_tile), ("k_tile", self.k_tile)):
            if any(t < 1 or t & (t - 1) for t in tile):
                raise ValueError(f"TritonNAConfig: {name}={tile} must hold powers of two")
            if math.prod(tile) < 16:
                raise ValueError(f"TritonNAConfig: {name}={tile} must hold at least 16 tokens (tl.dot)")


# Defaults per number of axes: 128 queries against 64-key tiles (FNA's 2-D tiles are 8×16 / 8×8).
DEFAULT_CONFIGS: dict[int, TritonNAConfig] = {
    1: TritonNAConfig((128,), (64,)),
    2: TritonNAConfig((8, 16), (8, 8)),
    3: TritonNAConfig((4, 4, 8), (4, 4, 4)),
}


def default_config(ndim: int) -> TritonNAConfig:
    """The default tiles for a grid of ``ndim`` axes."""
    return DEFAULT_CONFIGS[ndim]


def inverse_bound(kernel: int, dilation: int, stride: int) -> int:
    """Largest ``|query − key|`` along an axis for a key in the query's window: ``(k + s − 2) · d``."""
    return (kernel + stride - 2) * dilation


# --------------------------------------------------------------------------------------------- kernels


@triton.jit
def _window(x, L: tl.constexpr, K: tl.constexpr, DIL: tl.constexpr, S: tl.constexpr, CAUSAL: tl.constexpr):
    """Per-axis window of query coordinates ``x`` (valid, ``< L``): ``(group, lo, hi)`` in grid coords.

    Keys ``y`` with ``lo <= y <= hi`` and ``y % DIL == group`` are in the window (NATTEN's rules).
    """
    if DIL == 1:
        g = x * 0
        xd = x
        lg = x * 0 + L
    else:
        g = x % DIL
        xd = x // DIL
        lg = (L - g + DIL - 1) // DIL
    if CAUSAL:
        if S == 1:
            leader = xd
        else:
            leader = tl.minimum((xd // S) * S + S - 1, lg - 1)
        lo = tl.maximum(leader - K + 1, 0)
        hi = xd
    else:
        if S == 1:
            leader = xd
        else:
            leader = tl.minimum((xd // S) * S + S // 2, lg - 1)
        center = tl.maximum(tl.minimum(leader, lg - 1 - (K - 1 - K // 2)), K // 2)
        lo = center - K // 2
        hi = center + (K - 1 - K // 2)
    return g, lo * DIL + g, hi * DIL + g


@triton.jit
def _axis_ok(g, lo, hi, y, DIL: tl.constexpr):
    """``(M, N)`` membership of keys ``y`` (N,) in the windows ``(g, lo, hi)`` (M,) along one axis."""
    ok = (y[None, :] >= lo[:, None]) & (y[None, :] <= hi[:, None])
    if DIL > 1:
        ok = ok & ((y % DIL)[None, :] == g[:, None])
    return ok


@triton.jit
def _coords(tile, idx, T0: tl.constexpr, T1: tl.constexpr, T2: tl.constexpr, NT1, NT2):
    """Grid coordinates of the tokens ``idx`` (local, row-major in the tile) of flat tile ``tile``."""
    t0 = tile // (NT1 * NT2)
    t1 = (tile // NT2) % NT1
    t2 = tile % NT2
    x0 = t0 * T0 + idx // (T1 * T2)
    x1 = t1 * T1 + (idx // T2) % T1
    x2 = t2 * T2 + idx % T2
    return x0, x1, x2


@triton.jit
def _tile_range(lo, hi, T: tl.constexpr):
    """First and last tile (of size ``T``) meeting the union of the windows ``[lo, hi]``."""
    return tl.min(lo, 0) // T, tl.max(hi, 0) // T


@triton.jit
def _unflatten(j, a0, a1, a2, n1, n2):
    """Tile ``(a0, a1, a2) + unravel(j, (·, n1, n2))`` of a box of tiles visited in one flat loop."""
    return a0 + j // (n1 * n2), a1 + (j // n2) % n1, a2 + j % n2


@triton.jit
def _is_full(in_lo, in_hi, start, T: tl.constexpr, L: tl.constexpr, DIL: tl.constexpr):
    """Whether keys ``[start, start + T)`` lie inside the grid and in every window of a tile.

    ``in_lo``/``in_hi`` are the largest window start and smallest window end over the tile's queries.
    """
    if DIL == 1:
        full = (in_lo <= start) & (start + T - 1 <= in_hi) & (start + T <= L)
    else:
        full = start < 0  # never: a dilated window skips keys
    return full


@triton.jit
def _load_rows(ptr, rows, ok, cols, C: tl.constexpr):
    """``(len(rows), len(cols))`` block of a row-major matrix; rows where ``ok`` is False read zeros."""
    return tl.load(ptr + rows[:, None] + cols[None, :], mask=ok[:, None] & (cols[None, :] < C), other=0.0)


@triton.jit
def _store_rows(ptr, rows, ok, cols, C: tl.constexpr, value):
    tl.store(
        ptr + rows[:, None] + cols[None, :],
        value.to(ptr.dtype.element_ty),
        mask=ok[:, None] & (cols[None, :] < C),
    )


@triton.jit
def _tokens(tile, idx, L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
            T0: tl.constexpr, T1: tl.constexpr, T2: tl.constexpr):  # fmt: skip
    """Coordinates (clamped into the grid), validity and row-major row of the tokens of a tile."""
    x0, x1, x2 = _coords(tile, idx, T0, T1, T2, (L1 + T1 - 1) // T1, (L2 + T2 - 1) // T2)
    ok = (x0 < L0) & (x1 < L1) & (x2 < L2)
    x0 = tl.minimum(x0, L0 - 1)
    x1 = tl.minimum(x1, L1 - 1)
    x2 = tl.minimum(x2, L2 - 1)
    return x0, x1, x2, ok, (x0 * L1 + x1) * L2 + x2


@triton.jit
def _pair_mask(w0, w1, w2, y0, y1, y2, L0: tl.constexpr, L1: tl.constexpr,
               D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr):  # fmt: skip
    """``(M, N)``: key ``(y0, y1, y2)[n]`` is in query ``m``'s window ``w_a = (group, lo, hi)``."""
    ok = _axis_ok(w2[0], w2[1], w2[2], y2, D2)
    if L1 > 1:
        ok = ok & _axis_ok(w1[0], w1[1], w1[2], y1, D1)
    if L0 > 1:
        ok = ok & _axis_ok(w0[0], w0[1], w0[2], y0, D0)
    return ok


@triton.jit
def _query_windows(x0, x1, x2, L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
                   K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr,
                   D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
                   S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
                   C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
                   TK0: tl.constexpr, TK1: tl.constexpr, TK2: tl.constexpr):  # fmt: skip
    """A query tile's windows per axis, the box of key tiles meeting them, and its full-tile bounds.

    Returns ``(w0, w1, w2)``, the first key tile per axis, the box's size per axis, and per axis the
    largest window start and smallest window end over the tile (for :func:`_is_full`).
    """
    w0 = _window(x0, L0, K0, D0, S0, C0)
    w1 = _window(x1, L1, K1, D1, S1, C1)
    w2 = _window(x2, L2, K2, D2, S2, C2)
    a0, z0 = _tile_range(w0[1], w0[2], TK0)
    a1, z1 = _tile_range(w1[1], w1[2], TK1)
    a2, z2 = _tile_range(w2[1], w2[2], TK2)
    inner = (tl.max(w0[1], 0), tl.min(w0[2], 0), tl.max(w1[1], 0), tl.min(w1[2], 0), tl.max(w2[1], 0),
             tl.min(w2[2], 0))  # fmt: skip
    return (w0, w1, w2), (a0, a1, a2), (z0 - a0 + 1, z1 - a1 + 1, z2 - a2 + 1), inner


@triton.jit
def _key_tile(Kb, Vb, skn, svn, j, first, size, inner, d, dv,
              D: tl.constexpr, DV: tl.constexpr, L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
              D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
              TK0: tl.constexpr, TK1: tl.constexpr, TK2: tl.constexpr):  # fmt: skip
    """Key tile ``j`` of the box: its keys and values, coordinates, validity, and whether it is full."""
    KT1: tl.constexpr = (L1 + TK1 - 1) // TK1
    KT2: tl.constexpr = (L2 + TK2 - 1) // TK2
    k0, k1, k2 = _unflatten(j, first[0], first[1], first[2], size[1], size[2])
    y0, y1, y2 = _coords((k0 * KT1 + k1) * KT2 + k2, tl.arange(0, TK0 * TK1 * TK2), TK0, TK1, TK2, KT1, KT2)
    k_ok = (y0 < L0) & (y1 < L1) & (y2 < L2)
    k_row = (y0 * L1 + y1) * L2 + y2
    kt = _load_rows(Kb, k_row * skn, k_ok, d, D)
    vt = _load_rows(Vb, k_row * svn, k_ok, dv, DV)
    full = (
        _is_full(inner[0], inner[1], k0 * TK0, TK0, L0, D0)
        & _is_full(inner[2], inner[3], k1 * TK1, TK1, L1, D1)
        & _is_full(inner[4], inner[5], k2 * TK2, TK2, L2, D2)
    )
    return kt, vt, (y0, y1, y2), k_ok, full


@triton.jit
def _na_fwd(
    Q, K, V, Out, LSE,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    H, qk_scale,
    D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
    K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
    TQ0: tl.constexpr, TQ1: tl.constexpr, TQ2: tl.constexpr,
    TK0: tl.constexpr, TK1: tl.constexpr, TK2: tl.constexpr,
    PREC: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One query tile: online softmax over the key tiles that meet its windows; writes O and LSE."""
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    d = tl.arange(0, BD)
    dv = tl.arange(0, BDV)
    x0, x1, x2, q_ok, q_row = _tokens(
        tl.program_id(0), tl.arange(0, TQ0 * TQ1 * TQ2), L0, L1, L2, TQ0, TQ1, TQ2
    )
    q = _load_rows(Q + b * sqb + h * sqh, q_row * sqn, q_ok, d, D)
    w, first, size, inner = _query_windows(
        x0, x1, x2, L0, L1, L2, K0, K1, K2, D0, D1, D2, S0, S1, S2, C0, C1, C2, TK0, TK1, TK2
    )
    m_i = tl.full([TQ0 * TQ1 * TQ2], float("-inf"), ACC)
    l_i = tl.zeros([TQ0 * TQ1 * TQ2], ACC)
    acc = tl.zeros([TQ0 * TQ1 * TQ2, BDV], ACC)
    for j in range(0, size[0] * size[1] * size[2]):
        kt, vt, y, k_ok, full = _key_tile(
            K + b * skb + h * skh, V + b * svb + h * svh, skn, svn, j, first, size, inner, d, dv,
            D, DV, L0, L1, L2, D0, D1, D2, TK0, TK1, TK2,
        )  # fmt: skip
        s = tl.dot(q, tl.trans(kt), input_precision=PREC) * qk_scale
        if not full:
            ok = k_ok[None, :] & _pair_mask(w[0], w[1], w[2], y[0], y[1], y[2], L0, L1, D0, D1, D2)
            s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt, input_precision=PREC)
        m_i = m_new

    has_key = l_i > 0
    l_safe = tl.where(has_key, l_i, 1.0)
    _store_rows(Out + b * sob + h * soh, q_row * son, q_ok, dv, DV, acc / l_safe[:, None])
    lse = tl.where(has_key, m_i + tl.log2(l_safe), float("inf"))
    tl.store(LSE + bh * (L0 * L1 * L2) + q_row, lse, mask=q_ok)


@triton.jit
def _na_bwd_dq(
    Q, K, V, DO, LSE, DELTA, DQ,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgqb, sgqh, sgqn,
    H, qk_scale, sm_scale,
    D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
    K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
    TQ0: tl.constexpr, TQ1: tl.constexpr, TQ2: tl.constexpr,
    TK0: tl.constexpr, TK1: tl.constexpr, TK2: tl.constexpr,
    PREC: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """``dQ`` of one query tile over the forward's key tiles (DO has O's strides)."""
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    d = tl.arange(0, BD)
    dv = tl.arange(0, BDV)
    x0, x1, x2, q_ok, q_row = _tokens(
        tl.program_id(0), tl.arange(0, TQ0 * TQ1 * TQ2), L0, L1, L2, TQ0, TQ1, TQ2
    )
    q = _load_rows(Q + b * sqb + h * sqh, q_row * sqn, q_ok, d, D)
    do = _load_rows(DO + b * sob + h * soh, q_row * son, q_ok, dv, DV)
    lse = tl.load(LSE + bh * (L0 * L1 * L2) + q_row, mask=q_ok, other=float("inf"))
    delta = tl.load(DELTA + bh * (L0 * L1 * L2) + q_row, mask=q_ok, other=0.0)
    w, first, size, inner = _query_windows(
        x0, x1, x2, L0, L1, L2, K0, K1, K2, D0, D1, D2, S0, S1, S2, C0, C1, C2, TK0, TK1, TK2
    )
    dq = tl.zeros([TQ0 * TQ1 * TQ2, BD], ACC)
    for j in range(0, size[0] * size[1] * size[2]):
        kt, vt, y, k_ok, full = _key_tile(
            K + b * skb + h * skh, V + b * svb + h * svh, skn, svn, j, first, size, inner, d, dv,
            D, DV, L0, L1, L2, D0, D1, D2, TK0, TK1, TK2,
        )  # fmt: skip
        p = tl.exp2(tl.dot(q, tl.trans(kt), input_precision=PREC) * qk_scale - lse[:, None])
        if not full:
            ok = k_ok[None, :] & _pair_mask(w[0], w[1], w[2], y[0], y[1], y[2], L0, L1, D0, D1, D2)
            p = tl.where(ok, p, 0.0)
        ds = p * (tl.dot(do, tl.trans(vt), input_precision=PREC) - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), kt, input_precision=PREC)
    _store_rows(DQ + b * sgqb + h * sgqh, q_row * sgqn, q_ok, d, D, dq * sm_scale)


@triton.jit
def _query_range(start, L: tl.constexpr, K: tl.constexpr, DIL: tl.constexpr, S: tl.constexpr,
                 CAUSAL: tl.constexpr, T: tl.constexpr, TQ: tl.constexpr, CAND: tl.constexpr):  # fmt: skip
    """First and last query tile (size ``TQ``) with a window meeting keys ``[start, start + T)``.

    Every such query lies within :func:`inverse_bound` of the keys, so the ``CAND`` candidates
    (``≥ T + 2·bound``) around them hold all of them and the range is exact.
    """
    bound = (K + S - 2) * DIL
    x = start - bound + tl.arange(0, CAND)
    valid = (x >= 0) & (x < L) & (x <= start + T - 1 + bound)
    _, lo, hi = _window(tl.minimum(tl.maximum(x, 0), L - 1), L, K, DIL, S, CAUSAL)
    reach = valid & (hi >= start) & (lo <= tl.minimum(start + T - 1, L - 1))
    first = tl.min(tl.where(reach, x, L), 0)
    last = tl.max(tl.where(reach, x, -1), 0)
    return first // TQ, tl.where(last >= 0, last // TQ, first // TQ - 1)


@triton.jit
def _na_bwd_dkdv(
    Q, K, V, DO, LSE, DELTA, DK, DV_,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgkb, sgkh, sgkn, sgvb, sgvh, sgvn,
    H, qk_scale, sm_scale,
    D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr,
    K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr,
    TQ0: tl.constexpr, TQ1: tl.constexpr, TQ2: tl.constexpr,
    TK0: tl.constexpr, TK1: tl.constexpr, TK2: tl.constexpr,
    CAND0: tl.constexpr, CAND1: tl.constexpr, CAND2: tl.constexpr,
    PREC: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """``dK, dV`` of one key tile over the query tiles whose windows reach it (DO has O's strides)."""
    KT1: tl.constexpr = (L1 + TK1 - 1) // TK1
    KT2: tl.constexpr = (L2 + TK2 - 1) // TK2
    NT1: tl.constexpr = (L1 + TQ1 - 1) // TQ1
    NT2: tl.constexpr = (L2 + TQ2 - 1) // TQ2
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    m = tl.arange(0, TQ0 * TQ1 * TQ2)
    d = tl.arange(0, BD)
    dv = tl.arange(0, BDV)
    y0, y1, y2, k_ok, k_row = _tokens(pid, tl.arange(0, TK0 * TK1 * TK2), L0, L1, L2, TK0, TK1, TK2)
    kt = _load_rows(K + b * skb + h * skh, k_row * skn, k_ok, d, D)
    vt = _load_rows(V + b * svb + h * svh, k_row * svn, k_ok, dv, DV)
    s0 = (pid // (KT1 * KT2)) * TK0
    s1 = ((pid // KT2) % KT1) * TK1
    s2 = (pid % KT2) * TK2
    a0, z0 = _query_range(s0, L0, K0, D0, S0, C0, TK0, TQ0, CAND0)
    a1, z1 = _query_range(s1, L1, K1, D1, S1, C1, TK1, TQ1, CAND1)
    a2, z2 = _query_range(s2, L2, K2, D2, S2, C2, TK2, TQ2, CAND2)

    dk = tl.zeros([TK0 * TK1 * TK2, BD], ACC)
    dvacc = tl.zeros([TK0 * TK1 * TK2, BDV], ACC)
    n1 = z1 - a1 + 1
    n2 = z2 - a2 + 1
    for j in range(0, tl.maximum(z0 - a0 + 1, 0) * tl.maximum(n1, 0) * tl.maximum(n2, 0)):
        q0, q1, q2 = _unflatten(j, a0, a1, a2, n1, n2)
        x0, x1, x2, q_ok, q_row = _tokens((q0 * NT1 + q1) * NT2 + q2, m, L0, L1, L2, TQ0, TQ1, TQ2)
        q = _load_rows(Q + b * sqb + h * sqh, q_row * sqn, q_ok, d, D)
        do = _load_rows(DO + b * sob + h * soh, q_row * son, q_ok, dv, DV)
        lse = tl.load(LSE + bh * (L0 * L1 * L2) + q_row, mask=q_ok, other=float("inf"))
        delta = tl.load(DELTA + bh * (L0 * L1 * L2) + q_row, mask=q_ok, other=0.0)
        w, _, _, inner = _query_windows(
            x0, x1, x2, L0, L1, L2, K0, K1, K2, D0, D1, D2, S0, S1, S2, C0, C1, C2, TK0, TK1, TK2
        )
        # Keys are rows here: (BN, BM).
        pt = tl.exp2(tl.dot(kt, tl.trans(q), input_precision=PREC) * qk_scale - lse[None, :])
        full = (
            _is_full(inner[0], inner[1], s0, TK0, L0, D0)
            & _is_full(inner[2], inner[3], s1, TK1, L1, D1)
            & _is_full(inner[4], inner[5], s2, TK2, L2, D2)
        )
        if not full:
            ok = q_ok[:, None] & k_ok[None, :] & _pair_mask(w[0], w[1], w[2], y0, y1, y2, L0, L1, D0, D1, D2)
            pt = tl.where(tl.trans(ok), pt, 0.0)
        dvacc += tl.dot(pt.to(do.dtype), do, input_precision=PREC)
        dst = pt * (tl.dot(vt, tl.trans(do), input_precision=PREC) - delta[None, :])
        dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)
    _store_rows(DK + b * sgkb + h * sgkh, k_row * sgkn, k_ok, d, D, dk * sm_scale)
    _store_rows(DV_ + b * sgvb + h * sgvh, k_row * sgvn, k_ok, dv, DV, dvacc)


# --------------------------------------------------------------------------------------------- launch


def _pad3(values: Sequence, fill: object) -> tuple:
    return (fill,) * (3 - len(values)) + tuple(values)


def kernel_constants(geom_key: tuple, config: TritonNAConfig, dtype: torch.dtype, d: int, dv: int) -> dict:
    """The kernels' compile-time constants: geometry and tiles padded to 3 axes, head dims, precision."""
    grid, kernel, dil, stride, causal = geom_key
    # tl.dot needs every dimension >= 16; the padding columns are loaded as zeros.
    consts: dict = {
        "D": d,
        "DV": dv,
        "BD": max(16, triton.next_power_of_2(d)),
        "BDV": max(16, triton.next_power_of_2(dv)),
    }
    for name, values, fill in (
        ("L", grid, 1), ("K", kernel, 1), ("D", dil, 1), ("S", stride, 1), ("C", causal, False),
        ("TQ", config.q_tile, 1), ("TK", config.k_tile, 1),
    ):  # fmt: skip
        for a, value in enumerate(_pad3(values, fill)):
            consts[f"{name}{a}"] = value
    consts["PREC"] = "ieee" if dtype in (torch.float32, torch.float64) else "tf32"
    consts["ACC"] = tl.float64 if dtype == torch.float64 else tl.float32
    return consts


def candidate_constants(geom_key: tuple, config: TritonNAConfig) -> dict:
    """``CAND0..2`` of the ``dK/dV`` kernel: candidate queries per axis, ``≥ k_tile + 2 · inverse_bound``."""
    padded = (_pad3(values, 1) for values in (geom_key[1], geom_key[2], geom_key[3], config.k_tile))
    return {
        f"CAND{a}": triton.next_power_of_2(tile + 2 * inverse_bound(kernel, dil, stride))
        for a, (kernel, dil, stride, tile) in enumerate(zip(*padded, strict=True))
    }


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics and accumulators: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tiles(grid: Sequence[int], tile: Sequence[int]) -> int:
    return math.prod(-(-g // t) for g, t in zip(grid, tile, strict=True))


def _strides(*tensors: Tensor) -> list[int]:
    return [s for t in tensors for s in t.stride()[:3]]


class _NeighborhoodTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, geom_key: tuple, config: TritonNAConfig) -> Tensor:  # type: ignore[override]
        b, h, n, d = q.shape
        dv = v.shape[-1]
        out = torch.empty(b, h, n, dv, device=q.device, dtype=q.dtype)
        lse = torch.empty(b, h, n, device=q.device, dtype=_acc_dtype(q.dtype))
        consts = kernel_constants(geom_key, config, q.dtype, d, dv)
        sm_scale = d**-0.5
        launch = (_tiles(geom_key[0], config.q_tile), b * h)
        _na_fwd[launch](
            q, k, v, out, lse, *_strides(q, k, v, out), h, sm_scale * LOG2E, **consts,
            num_warps=config.num_warps, num_stages=config.num_stages,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.geom_key, ctx.config = geom_key, config
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        geom_key, config = ctx.geom_key, ctx.config
        b, h, _, d = q.shape
        dv = v.shape[-1]
        grad = grad.contiguous() if grad.stride() != out.stride() else grad
        acc = _acc_dtype(q.dtype)
        delta = (grad.to(acc) * out.to(acc)).sum(-1).contiguous()
        # Fresh contiguous gradients: q/k/v may be strided views (e.g. heads split from one projection).
        dq, dk, dvv = (torch.empty(t.shape, device=t.device, dtype=t.dtype) for t in (q, k, v))
        consts = kernel_constants(geom_key, config, q.dtype, d, dv)
        sm_scale = d**-0.5
        inputs = _strides(q, k, v, out)
        scales = (h, sm_scale * LOG2E, sm_scale)
        _na_bwd_dq[(_tiles(geom_key[0], config.q_tile), b * h)](
            q, k, v, grad, lse, delta, dq, *inputs, *_strides(dq), *scales, **consts,
            num_warps=config.bwd_num_warps, num_stages=config.bwd_num_stages,
        )  # fmt: skip
        _na_bwd_dkdv[(_tiles(geom_key[0], config.k_tile), b * h)](
            q, k, v, grad, lse, delta, dk, dvv, *inputs, *_strides(dk, dvv), *scales, **consts,
            **candidate_constants(geom_key, config), num_warps=config.bwd_num_warps,
            num_stages=config.bwd_num_stages,
        )  # fmt: skip
        return dq, dk, dvv, None, None


def na_triton(
    q: Tensor, k: Tensor, v: Tensor, geom_key: tuple, config: TritonNAConfig | None = None
) -> Tensor:
    """Neighbourhood attention with the fused Triton kernels (differentiable).

    Args:
        q: Queries ``(B, H, N, D)`` on CUDA (or CPU under ``TRITON_INTERPRET=1``); any strides with a
            unit last stride.
        k: Keys ``(B, H, N, D)``, same strides as ``q``'s layout rules.
        v: Values ``(B, H, N, Dv)``.
        geom_key: ``(grid, kernel_size, dilation, stride, causal)``, each a per-axis tuple (a
            validated :class:`~core.attention.neighborhood.NAGeometry`'s fields).
        config: Tiles and launch settings; default :data:`DEFAULT_CONFIGS` for the grid's rank.

    Returns:
        ``(B, H, N, Dv)`` in ``q``'s dtype.

    Raises:
        ValueError: If the shapes disagree with each other or with the grid, or the tiles' rank differs
            from the grid's.
    """
    grid = geom_key[0]
    config = config or default_config(len(grid))
    if len(config.q_tile) != len(grid) or len(config.k_tile) != len(grid):
        raise ValueError(
            f"na_triton: tiles {config.q_tile}/{config.k_tile} must have one entry per axis of {grid}"
        )
    if q.ndim != 4 or q.shape[2] != math.prod(grid) or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"na_triton: expected q, k (B, H, N, D) and v (B, H, N, Dv) with N = prod{tuple(grid)} = "
            f"{math.prod(grid)}; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return _NeighborhoodTriton.apply(q, k, v, geom_key, config)
