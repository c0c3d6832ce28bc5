"""Neighbourhood attention (NA) on 1-D, 2-D and 3-D token grids, with dilation, stride and causal axes.

Papers:

* Hassani, Walton, Li, Li, Shi, "Neighborhood Attention Transformer", CVPR 2023 (arXiv 2204.07143):
  every query attends the ``k`` nearest keys per axis around itself; dilation from Hassani & Shi,
  "Dilated Neighborhood Attention Transformer" (arXiv 2209.15001).
* Hassani, Hwu, Shi, "Faster Neighborhood Attention: Reducing the O(n^2) Cost of Self Attention at the
  Threadblock Level", NeurIPS 2024 (arXiv 2403.04690): fused kernels and per-axis causal masking.
* Hassani et al., "Generalized Neighborhood Attention: Multi-dimensional Sparse Attention at the Speed
  of Light", 2025 (arXiv 2504.16922): ``stride`` (queries in a stride tile share one neighbourhood) and
  even kernel sizes.

Equation, for a query ``i`` at grid coordinate ``(i_1, …, i_D)`` and its neighbourhood ``ρ(i)``::

    NA(X)_i = softmax(q_i K_ρ(i)ᵀ / √d_h) V_ρ(i),   ρ(i) = ρ_1(i_1) × … × ρ_D(i_D)

The per-axis neighbourhood follows NATTEN (``src/natten/backends/flex.py``, the semantics of every
NATTEN backend). Along an axis of length ``L`` with kernel ``k``, dilation ``d`` and stride ``s``, only
keys of the query's dilation group (``j ≡ i mod d``) take part; inside the group, coordinates are
``i' = i // d`` and the group holds ``L_g = ⌈(L − i mod d) / d⌉`` tokens.

* Non-causal: the stride tile's *leader* is its centre query ``ℓ = min(⌊i'/s⌋·s + ⌊s/2⌋, L_g − 1)``;
  the window centre is ``c = clamp(ℓ, ⌊k/2⌋, L_g − 1 − r)`` with ``r = k − 1 − ⌊k/2⌋`` (even kernels
  take one more key on the left), and ``ρ = [c − ⌊k/2⌋, c + r]``. Clamping shifts the window inward at
  the borders, so every query attends exactly ``k`` keys per axis.
* Causal: the leader is the tile's last query ``ℓ = min(⌊i'/s⌋·s + s − 1, L_g − 1)`` and
  ``ρ = [ℓ − k + 1, i']``: the window ends at the query itself and is not shifted at the start (early
  queries see fewer keys).

``kernel_size == grid`` on every (non-causal) axis is full self-attention; 1-D NA with ``causal=True``
is causal **sliding-window attention** of width ``kernel_size`` (no separate class is needed).

Backends (``backend=``, see :mod:`core.attention.backends`):

* ``sdpa`` (CPU / training path): *blocked* SDPA. Queries are cut into tiles (per axis, inside each
  dilation group); each tile gathers the union of its queries' neighbourhoods (``tile + k − 1`` keys per
  axis) and runs ``F.scaled_dot_product_attention`` with a small boolean mask. Memory is
  ``O(N (t + k)^D)`` instead of the ``O(N²)`` of a dense mask. The default tiles (8×8 in 2-D, 64 in
  1-D, 4×4×4 in 3-D) were the fastest measured against a dense mask and per-query gathers
  (docs/mechanisms/neighborhood.md).
* ``flex``: FlexAttention with a block mask built from an arithmetic ``mask_mod``. Tokens are first
  permuted into tiles of one Flex block each (default block 64: 8×8 in 2-D, 4×4×4 in 3-D; with
  ``flex_block_size=128``: 8×16, 4×4×8) so most blocks are entirely inside or outside every
  neighbourhood; ``create_block_mask`` marks the full blocks so the mask is only evaluated in partial
  ones. Block 64 is the default because it halves the computed-but-masked keys: for a 15×15 window a
  query tile meets 3×3 key tiles, i.e. 9·64 = 576 computed keys per query for 225 useful (39 %) against
  9·128 = 1152 (20 %) with 8×16 tiles. Grids not divisible by the tile fall back to row-major order.
  Compiled and cached per geometry on CUDA; eager and forward-only on CPU (torch 2.14 has no Flex
  backward on CPU). A ``mask`` rebuilds the block mask on every call.
* ``natten``: NATTEN's ``na1d/na2d/na3d`` (``(B, *grid, heads, D)`` layout); no masks.
* ``triton``: our fused Triton kernels (:mod:`core.attention.kernels.neighborhood_triton`), forward
  and backward: each query tile loops only over the key tiles its windows meet, and tiles inside every
  window skip the mask arithmetic (the issue measured Flex's partial-block mask evaluation as the
  bottleneck). No ``mask``, no dropout. Tested here against the fp64 reference in Triton's CPU
  interpreter and compiled for ``sm_90`` without a GPU (``python -m benchmarks.triton_aot``); not yet
  timed on a GPU, so ``auto`` does not pick it yet (``python -m benchmarks.neighborhood_gpu`` times it).
* ``reference``: a dense ``(N, N)`` boolean neighbourhood mask and the literal attention equation.
* ``auto``: on CUDA ``flex`` then ``natten``; otherwise ``sdpa``. With a ``mask`` or dropout it never
  picks a backend that lacks them.

Differences from the official code:

* NATTEN ≥ 0.20 dropped relative positional biases (RPB), which NAT/DiNAT used; like NATTEN we have none.
* NATTEN accepts no attention mask; here a key-padding or general boolean ``mask`` is AND-ed with the
  neighbourhood (``sdpa``, ``flex``, ``reference``), and a query with no key left outputs zeros.
* NATTEN requires ``kernel_size ≥ 2``; ``kernel_size = 1`` (attend to oneself) is allowed here.
* ``is_causal=True`` in ``forward`` makes every axis causal, which implies the row-major ``j ≤ i``
  contract of :class:`~core.attention.base.TokenMixer`.
"""

import functools
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from core.attention.backends import check_backend, resolve_backend
from core.attention.base import check_grid, normalize_mask
from core.attention.functional import reference_attention, sdpa
from core.attention.mha import HeadedAttention, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "NAGeometry",
    "NeighborhoodAttention",
    "axis_neighborhood",
    "na_geometry",
    "neighborhood_attention",
    "neighborhood_mask",
]

Backend = Literal["auto", "sdpa", "flex", "natten", "triton", "reference"]
FlexLayout = Literal["tiled", "row_major"]
SUPPORTED_BACKENDS: tuple[str, ...] = ("sdpa", "flex", "natten", "triton", "reference")

# Query tile of the blocked SDPA path, per number of axes (see the module docstring for the timing).
SDPA_QUERY_TILE: dict[int, tuple[int, ...]] = {1: (64,), 2: (8, 8), 3: (4, 4, 4)}
# Token tile of the tiled Flex layout per (axes, Flex block size): one Flex block per tile.
FLEX_TOKEN_TILE: dict[tuple[int, int], tuple[int, ...]] = {
    (2, 64): (8, 8),
    (2, 128): (8, 16),
    (3, 64): (4, 4, 4),
    (3, 128): (4, 4, 8),
}


@dataclass(frozen=True)
class NAGeometry:
    """A validated neighbourhood: per-axis grid size, kernel, dilation, stride and causality."""

    grid: tuple[int, ...]
    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    stride: tuple[int, ...]
    causal: tuple[bool, ...]

    @property
    def num_tokens(self) -> int:
        """``N = prod(grid)``."""
        return math.prod(self.grid)

    def num_pairs(self) -> int:
        """Query-key pairs attended: the neighbourhood is a product of per-axis windows."""
        pairs = 1
        for args in zip(self.grid, self.kernel_size, self.dilation, self.stride, self.causal, strict=True):
            pairs *= int(axis_neighborhood(*args)[1].sum())
        return pairs

    def is_full_attention(self) -> bool:
        """Whether every query attends every key (non-causal, kernel equal to the grid on every axis)."""
        return all(k == g and not c for k, g, c in zip(self.kernel_size, self.grid, self.causal, strict=True))


def _per_axis(value: Any, ndim: int, name: str, owner: str) -> tuple:
    if isinstance(value, (bool, int)):
        return (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{owner}: {name}={value} has {len(value)} entries but the grid has {ndim} axes")
    return value


def na_geometry(
    grid: Sequence[int],
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    causal: bool | Sequence[bool] = False,
    owner: str = "NeighborhoodAttention",
) -> NAGeometry:
    """Broadcast per-axis arguments to the grid and check them (NATTEN's rules).

    Args:
        grid: ``(L,)``, ``(H, W)`` or ``(T, H, W)``.
        kernel_size: Window size per axis (an int applies to every axis).
        dilation: Dilation per axis.
        stride: GNA stride per axis (``1`` = standard NA).
        causal: Causal masking per axis.
        owner: Name for error messages.

    Returns:
        The validated geometry.

    Raises:
        ValueError: If a tuple's length differs from the grid's rank, a value is not positive,
            ``kernel_size · dilation > grid`` or ``stride > kernel_size`` on some axis.
    """
    grid = tuple(int(g) for g in grid)
    nd = len(grid)
    if not 1 <= nd <= 3 or min(grid) < 1:
        raise ValueError(f"{owner}: grid must be 1 to 3 positive sizes, got {grid}")
    kernel = tuple(int(k) for k in _per_axis(kernel_size, nd, "kernel_size", owner))
    dil = tuple(int(d) for d in _per_axis(dilation, nd, "dilation", owner))
    strd = tuple(int(s) for s in _per_axis(stride, nd, "stride", owner))
    caus = tuple(bool(c) for c in _per_axis(causal, nd, "causal", owner))
    for name, values in (("kernel_size", kernel), ("dilation", dil), ("stride", strd)):
        if min(values) < 1:
            raise ValueError(f"{owner}: {name} must be positive on every axis, got {values}")
    if any(k * d > g for k, d, g in zip(kernel, dil, grid, strict=True)):
        raise ValueError(
            f"{owner}: kernel_size={kernel} times dilation={dil} must not exceed the grid {grid} on any "
            "axis (each query attends kernel_size keys of its dilation group)"
        )
    if any(s > k for s, k in zip(strd, kernel, strict=True)):
        raise ValueError(f"{owner}: stride={strd} must not exceed kernel_size={kernel} on any axis")
    return NAGeometry(grid, kernel, dil, strd, caus)


@functools.lru_cache(maxsize=256)
def axis_neighborhood(
    length: int, kernel: int, dilation: int, stride: int, causal: bool
) -> tuple[Tensor, Tensor]:
    """The neighbourhood of every query along one axis (NATTEN semantics, see the module docstring).

    Returns:
        ``keys (L, kernel)`` long key positions and ``valid (L, kernel)`` bool; only causal windows
        near the start have invalid slots.
    """
    q = torch.arange(length)
    group, qd = q % dilation, q // dilation
    group_len = (length - group + dilation - 1) // dilation
    offsets = torch.arange(kernel)
    if causal:
        leader = torch.minimum((qd // stride) * stride + stride - 1, group_len - 1)
        kd = leader[:, None] - kernel + 1 + offsets
        valid = (kd >= 0) & (kd <= qd[:, None])
    else:
        left = kernel // 2
        right = kernel - 1 - left
        leader = torch.minimum((qd // stride) * stride + stride // 2, group_len - 1)
        center = torch.maximum(torch.minimum(leader, group_len - 1 - right), torch.tensor(left))
        kd = center[:, None] - left + offsets
        valid = torch.ones(length, kernel, dtype=torch.bool)
    kd = torch.minimum(kd.clamp(min=0), (group_len - 1)[:, None])
    return kd * dilation + group[:, None], valid


def _axis_mask(length: int, kernel: int, dilation: int, stride: int, causal: bool) -> Tensor:
    keys, valid = axis_neighborhood(length, kernel, dilation, stride, causal)
    # scatter_add counts duplicates (clamped invalid slots) correctly, unlike scatter_.
    hits = torch.zeros(length, length, dtype=torch.long).scatter_add_(1, keys, valid.long())
    return hits > 0


def _outer(parts: Sequence[Tensor], combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Combine per-axis tensors of shapes ``(n_a1, …, n_am)`` into ``(∏ n_a1, …, ∏ n_am)`` (row-major)."""
    nd, groups = len(parts), parts[0].ndim
    out: Tensor | None = None
    for a, part in enumerate(parts):
        shape = [1] * (nd * groups)
        for j in range(groups):
            shape[j * nd + a] = part.shape[j]
        view = part.reshape(shape)
        out = view if out is None else combine(out, view)
    assert out is not None
    sizes = [math.prod(p.shape[j] for p in parts) for j in range(groups)]
    return out.expand(*[p.shape[j] for j in range(groups) for p in parts]).reshape(sizes)


def _geometry_key(geom: NAGeometry) -> tuple:
    return (geom.grid, geom.kernel_size, geom.dilation, geom.stride, geom.causal)


@functools.lru_cache(maxsize=64)
def _dense_mask_cached(key: tuple, device: torch.device) -> Tensor:
    parts = [_axis_mask(*args) for args in zip(*key, strict=True)]
    return _outer(parts, torch.logical_and).to(device)


def neighborhood_mask(geom: NAGeometry, device: torch.device | str | None = None) -> Tensor:
    """The dense ``(N, N)`` boolean neighbourhood mask (True = query row may attend key column).

    Cached per geometry and device; do not modify the returned tensor.
    """
    return _dense_mask_cached(_geometry_key(geom), torch.device(device or "cpu"))


class _BlockedPlan(NamedTuple):
    q_index: Tensor  # (T, tq) query token of each tile slot (padding slots repeat a query)
    kv_index: Tensor  # (T, R) key tokens of each tile's region
    tile_mask: Tensor  # (T, tq, R) neighbourhood inside the tile
    inverse: Tensor  # (N,) flat slot (t · tq + i) holding each query's valid output


def _axis_tiles(length: int, kernel: int, dilation: int, stride: int, causal: bool, tile: int):
    keys, valid = axis_neighborhood(length, kernel, dilation, stride, causal)
    chunks = [c for g in range(dilation) for c in torch.arange(g, length, dilation).split(tile)]
    regions = [torch.unique(keys[c][valid[c]]) for c in chunks]
    tq = max(len(c) for c in chunks)
    r = max(len(reg) for reg in regions)
    q_idx = torch.stack([torch.cat([c, c[-1:].expand(tq - len(c))]) for c in chunks])
    q_ok = torch.stack([torch.arange(tq) < len(c) for c in chunks])
    kv_idx = torch.stack([torch.cat([reg, reg[-1:].expand(r - len(reg))]) for reg in regions])
    kv_ok = torch.stack([torch.arange(r) < len(reg) for reg in regions])
    # (T, tq, R): key slot j of the tile is in query slot i's neighbourhood.
    member = (keys[q_idx][..., None] == kv_idx[:, None, None, :]) & valid[q_idx][..., None]
    return q_idx, q_ok, kv_idx, member.any(dim=2) & kv_ok[:, None, :]


@functools.lru_cache(maxsize=64)
def _blocked_plan_cached(key: tuple, tile: tuple[int, ...], device: torch.device) -> _BlockedPlan:
    grid = key[0]
    axes = [_axis_tiles(*args, t) for *args, t in zip(*key, tile, strict=True)]
    strides = [math.prod(grid[a + 1 :]) for a in range(len(grid))]
    q_index = _outer([ax[0] * s for ax, s in zip(axes, strides, strict=True)], torch.add)
    q_ok = _outer([ax[1] for ax in axes], torch.logical_and)
    kv_index = _outer([ax[2] * s for ax, s in zip(axes, strides, strict=True)], torch.add)
    tile_mask = _outer([ax[3] for ax in axes], torch.logical_and)
    slots = q_ok.flatten().nonzero().squeeze(1)
    inverse = torch.empty(math.prod(grid), dtype=torch.long)
    inverse[q_index.flatten()[slots]] = slots
    return _BlockedPlan(*(t.to(device) for t in (q_index, kv_index, tile_mask, inverse)))


def _attend_blocked(
    q: Tensor, k: Tensor, v: Tensor, geom: NAGeometry, mask: Tensor | None, dropout_p: float, tile: tuple
) -> Tensor:
    """Blocked SDPA: tiles of queries against the union of their neighbourhoods."""
    b, h, _, d = q.shape
    tile = tuple(min(t, g) for t, g in zip(tile, geom.grid, strict=True))
    plan = _blocked_plan_cached(_geometry_key(geom), tile, q.device)
    t, tq = plan.q_index.shape
    r = plan.kv_index.shape[1]
    attn_mask = plan.tile_mask
    if mask is not None:
        if mask.shape[2] == 1:
            user = mask[:, :, 0][:, :, plan.kv_index][:, :, :, None, :]
        else:
            user = mask[:, :, plan.q_index[:, :, None], plan.kv_index[:, None, :]]
        attn_mask = attn_mask & user
    if attn_mask.ndim == 3:
        attn_mask = attn_mask[None, None]
    attn_mask = attn_mask.expand(attn_mask.shape[0], h, t, tq, r).reshape(-1, h * t, tq, r)
    qt = q[:, :, plan.q_index].reshape(b, h * t, tq, d)
    kt = k[:, :, plan.kv_index].reshape(b, h * t, r, d)
    vt = v[:, :, plan.kv_index].reshape(b, h * t, r, v.shape[-1])
    out = sdpa(qt, kt, vt, attn_mask=attn_mask, dropout_p=dropout_p)
    return out.reshape(b, h, t * tq, -1)[:, :, plan.inverse]


def _cap(x: Tensor, hi: Tensor | int) -> Tensor:
    return torch.minimum(x, hi) if isinstance(hi, Tensor) else x.clamp(max=hi)


def _flex_axis_ok(qc: Tensor, kc: Tensor, length: int, kernel: int, dil: int, stride: int, causal: bool):
    """The per-axis NATTEN neighbourhood as arithmetic on coordinates (for a Flex ``mask_mod``)."""
    same_group: Tensor | None = None
    group_len: Tensor | int = length
    if dil > 1:
        group = qc % dil
        same_group = kc % dil == group
        qc, kc = qc // dil, kc // dil
        group_len = (length - group + dil - 1) // dil
    if causal:
        leader = qc if stride == 1 else _cap((qc // stride) * stride + stride - 1, group_len - 1)
        ok = (kc <= qc) & (leader - kc < kernel)
    else:
        left, right = kernel // 2, kernel - 1 - kernel // 2
        leader = qc if stride == 1 else _cap((qc // stride) * stride + stride // 2, group_len - 1)
        center = _cap(leader, group_len - 1 - right).clamp(min=left)
        ok = (kc >= center - left) & (kc <= center + right)
    return ok if same_group is None else ok & same_group


def _flex_block_size(geom: NAGeometry, layout: str, block_size: int | None) -> int:
    """Flex block size: 64 (8×8 / 4×4×4 tiles) for tiled 2-D/3-D, else Flex's default 128."""
    if block_size is not None:
        return block_size
    return 64 if layout == "tiled" and len(geom.grid) > 1 else 128


def _flex_layout(geom: NAGeometry, layout: str, block_size: int) -> tuple[int, ...] | None:
    """The token tile of the ``tiled`` layout, or ``None`` for row-major order."""
    tile = FLEX_TOKEN_TILE.get((len(geom.grid), block_size))
    if layout == "row_major" or tile is None:
        return None
    if any(g % t for g, t in zip(geom.grid, tile, strict=True)):
        return None
    return tile


def _to_coords(idx: Tensor, grid: tuple[int, ...], tile: tuple[int, ...] | None) -> list[Tensor]:
    def unravel(i: Tensor, shape: Sequence[int]) -> list[Tensor]:
        out = []
        for size in reversed(shape):
            out.append(i % size)
            i = i // size
        return out[::-1]

    if tile is None:
        return unravel(idx, grid)
    size = math.prod(tile)
    outer = unravel(idx // size, [g // t for g, t in zip(grid, tile, strict=True)])
    inner = unravel(idx % size, tile)
    return [o * t + i for o, t, i in zip(outer, tile, inner, strict=True)]


@functools.lru_cache(maxsize=32)
def _token_permutation(grid: tuple[int, ...], tile: tuple[int, ...], device: torch.device) -> Tensor:
    """``perm[p]`` = row-major token at position ``p`` of the tiled layout."""
    coords = _to_coords(torch.arange(math.prod(grid)), grid, tile)
    strides = [math.prod(grid[a + 1 :]) for a in range(len(grid))]
    return sum(c * s for c, s in zip(coords, strides, strict=True)).to(device)


def _flex_mask_mod(geom: NAGeometry, tile: tuple[int, ...] | None) -> Callable:
    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        qcs, kcs = _to_coords(q_idx, geom.grid, tile), _to_coords(kv_idx, geom.grid, tile)
        ok = None
        for qc, kc, *args in zip(qcs, kcs, *_geometry_key(geom), strict=True):
            axis_ok = _flex_axis_ok(qc, kc, *args)
            ok = axis_ok if ok is None else ok & axis_ok
        return ok

    return mask_mod


@functools.lru_cache(maxsize=64)
def _flex_block_mask_cached(
    key: tuple, tile: tuple[int, ...] | None, block_size: int, device: torch.device
) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    geom = NAGeometry(*key)
    n = geom.num_tokens
    return create_block_mask(
        _flex_mask_mod(geom, tile), None, None, n, n, device=device, BLOCK_SIZE=block_size,
        _compile=device.type == "cuda",
    )  # fmt: skip


@functools.cache
def _compiled_flex_attention() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _attend_flex(
    q: Tensor, k: Tensor, v: Tensor, geom: NAGeometry, mask: Tensor | None, layout: str, block: int | None
) -> Tensor:
    """FlexAttention with the neighbourhood block mask, in the tiled or row-major token order."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    block = _flex_block_size(geom, layout, block)
    tile = _flex_layout(geom, layout, block)
    n = geom.num_tokens
    perm = None if tile is None else _token_permutation(geom.grid, tile, q.device)
    if perm is not None:
        q, k, v = (t[:, :, perm] for t in (q, k, v))
    if mask is None:
        block_mask = _flex_block_mask_cached(_geometry_key(geom), tile, block, q.device)
    else:
        if perm is not None:
            mask = mask[..., perm]
            mask = mask[:, :, perm] if mask.shape[2] > 1 else mask
        na_mod = _flex_mask_mod(geom, tile)
        mb, mh, mn = mask.shape[:3]

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            user = mask[
                b if mb > 1 else b * 0, h if mh > 1 else h * 0, q_idx if mn > 1 else q_idx * 0, kv_idx
            ]
            return na_mod(b, h, q_idx, kv_idx) & user

        block_mask = create_block_mask(
            mask_mod, mb if mb > 1 else None, mh if mh > 1 else None, n, n, device=q.device,
            BLOCK_SIZE=block, _compile=q.device.type == "cuda",
        )  # fmt: skip
    fn = _compiled_flex_attention() if q.device.type == "cuda" else flex_attention
    out = fn(q, k, v, block_mask=block_mask)
    if perm is not None:
        out = torch.empty_like(out).index_copy_(2, perm, out)
    return out


def _attend_natten(q: Tensor, k: Tensor, v: Tensor, geom: NAGeometry) -> Tensor:
    """NATTEN's fused kernels; they take ``(B, *grid, heads, D)``."""
    natten = importlib.import_module("natten")
    fn = (natten.na1d, natten.na2d, natten.na3d)[len(geom.grid) - 1]
    b, h, n, _ = q.shape

    def to_natten(t: Tensor) -> Tensor:
        return t.transpose(1, 2).reshape(b, *geom.grid, h, t.shape[-1])

    out = fn(
        to_natten(q), to_natten(k), to_natten(v),
        kernel_size=geom.kernel_size, stride=geom.stride, dilation=geom.dilation, is_causal=geom.causal,
    )  # fmt: skip
    return out.reshape(b, n, h, -1).transpose(1, 2)


def neighborhood_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    geom: NAGeometry,
    *,
    mask: Tensor | None = None,
    backend: Backend = "auto",
    dropout_p: float = 0.0,
    flex_layout: FlexLayout = "tiled",
    flex_block_size: int | None = None,
    sdpa_tile: Sequence[int] | None = None,
    triton_config: Any = None,
    owner: str = "neighborhood_attention",
) -> Tensor:
    """Neighbourhood attention on ``(B, heads, N, D)`` tensors whose tokens form ``geom.grid`` row-major.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, N, D)``.
        v: Values ``(B, H, N, Dv)``.
        geom: The neighbourhood, from :func:`na_geometry`.
        mask: Optional boolean mask (True = may attend), already normalised to 4-D
            ``(B|1, H|1, N|1, N)``; AND-ed with the neighbourhood. Not supported by ``natten``.
        backend: ``auto``, ``sdpa``, ``flex``, ``natten``, ``triton`` or ``reference`` (module docstring).
        dropout_p: Attention dropout, ``sdpa`` only (``auto`` then runs ``sdpa``).
        flex_layout: ``tiled`` (token tiles, default) or ``row_major`` token order for ``flex``.
        flex_block_size: Flex block size (and tile size) for ``flex``; default 64 for tiled 2-D/3-D
            (8×8 / 4×4×4 tiles), else 128 (8×16 / 4×4×8 tiles when tiled).
        sdpa_tile: Query tile per axis of the blocked ``sdpa`` path (default :data:`SDPA_QUERY_TILE`).
        triton_config: A :class:`~core.attention.kernels.neighborhood_triton.TritonNAConfig` (tiles and
            launch settings) for ``triton``; default per grid rank.
        owner: Name for error messages.

    Returns:
        ``(B, H, N, Dv)``; queries with no key left to attend output zeros.

    Raises:
        RuntimeError: If an explicitly requested backend cannot run here.
        ValueError: If ``natten`` or ``triton`` is asked for with a mask, or ``flex``, ``natten`` or
            ``triton`` with attention dropout (only ``sdpa`` has it).
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    name = resolve_backend(owner, backend, SUPPORTED_BACKENDS, q.device, needs_grad)
    lacks_mask = mask is not None and name in ("natten", "triton")
    lacks_dropout = dropout_p > 0 and name in ("flex", "natten", "triton")
    if lacks_mask or lacks_dropout:
        if backend == name:
            missing = "`mask`" if lacks_mask else "attention dropout"
            raise ValueError(f"{owner}: backend={name!r} does not support {missing}; use 'sdpa'")
        name = "sdpa"  # auto: never drop a mask or dropout silently
    if name == "natten":
        return _attend_natten(q, k, v, geom)
    if name == "triton":
        from core.attention.kernels.neighborhood_triton import na_triton

        return na_triton(q, k, v, _geometry_key(geom), triton_config)
    if name == "flex":
        return _attend_flex(q, k, v, geom, mask, flex_layout, flex_block_size)
    if name == "reference" or geom.is_full_attention():
        attn_mask = None if geom.is_full_attention() else neighborhood_mask(geom, q.device)
        if mask is not None:
            attn_mask = mask if attn_mask is None else attn_mask & mask
        if name == "reference":
            return reference_attention(q, k, v, attn_mask=attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    tile = tuple(sdpa_tile) if sdpa_tile is not None else SDPA_QUERY_TILE[len(geom.grid)]
    return _attend_blocked(q, k, v, geom, mask, dropout_p, tile)


@register_mechanism(
    paper="Hassani et al. 2023/2024/2025, Neighborhood Attention Transformer (NAT); Faster Neighborhood "
    "Attention (FNA); Generalized Neighborhood Attention (GNA)",
    complexity="O(N k^d d)",
    example_kwargs={"num_heads": 2, "kernel_size": 3},
)
class NeighborhoodAttention(HeadedAttention):
    """Multi-head neighbourhood attention on a 1-D, 2-D or 3-D token grid (NAT / DiNAT / FNA / GNA).

    ``grid`` is ``(L,)``, ``(H, W)`` or ``(T, H, W)``; without a grid the tokens are a 1-D sequence, so
    the mixer drops into sequence models. ``kernel_size``, ``dilation``, ``stride`` and ``causal`` are
    per axis (an int/bool applies to every axis). ``forward(is_causal=True)`` makes every axis causal;
    1-D with ``causal=True`` is causal sliding-window attention of width ``kernel_size``. A ``mask``
    (key padding ``(B, N)`` or any shape :func:`~core.attention.base.normalize_mask` accepts) is AND-ed
    with the neighbourhood.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        kernel_size: Neighbourhood size per axis (NAT: 7); ``kernel_size · dilation ≤ grid``.
        dilation: Dilation per axis (DiNAT).
        stride: GNA stride per axis (``≤ kernel_size``); ``stride == kernel_size`` is blocked attention.
        causal: Causal masking per axis (FNA).
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Attention dropout (``sdpa`` backend only; training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``, ``sdpa``, ``flex``, ``natten``, ``triton`` or ``reference`` (module
            docstring).
        flex_layout: Token order for ``flex``: ``tiled`` (one Flex block per tile) or ``row_major``.
        flex_block_size: Flex block size for ``flex``; default 64 when tiled in 2-D/3-D, else 128.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "sdpa blocked (CPU + GPU), reference; flex, natten and triton on GPU"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        kernel_size: int | tuple[int, ...] = 7,
        dilation: int | tuple[int, ...] = 1,
        stride: int | tuple[int, ...] = 1,
        causal: bool | tuple[bool, ...] = False,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        flex_layout: FlexLayout = "tiled",
        flex_block_size: int | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        name = type(self).__name__
        check_backend(name, backend, SUPPORTED_BACKENDS)
        if flex_layout not in ("tiled", "row_major"):
            raise ValueError(f"{name}: flex_layout must be 'tiled' or 'row_major', got {flex_layout!r}")
        if flex_block_size is not None and (flex_block_size < 16 or flex_block_size & (flex_block_size - 1)):
            raise ValueError(f"{name}: flex_block_size must be a power of two >= 16, got {flex_block_size}")
        for arg, value in (("kernel_size", kernel_size), ("dilation", dilation), ("stride", stride)):
            values = (value,) if isinstance(value, int) else tuple(value)
            if not 1 <= len(values) <= 3 or min(values) < 1:
                raise ValueError(f"{name}: {arg} must be a positive int or 1 to 3 of them, got {value}")
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.stride = stride
        self.causal = causal
        self.backend = backend  # type: ignore[assignment]  # wider than HeadedAttention's Literal
        self.flex_layout: FlexLayout = flex_layout
        self.flex_block_size = flex_block_size
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
        """Attend every token to its neighbourhood on ``grid`` (a 1-D sequence when ``grid`` is None)."""
        b, n, _ = x.shape
        name = type(self).__name__
        sizes = (n,) if grid is None else check_grid(grid, n, name)
        causal = True if is_causal else self.causal
        geom = na_geometry(sizes, self.kernel_size, self.dilation, self.stride, causal, name)
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, name)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        out = neighborhood_attention(
            q,
            k,
            v,
            geom,
            mask=mask,
            backend=self.backend,
            dropout_p=self.attn_drop if self.training else 0.0,
            flex_layout=self.flex_layout,
            flex_block_size=self.flex_block_size,
            owner=name,
        )
        return self.proj_drop(self.proj(merge_heads(out)))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """``4 · B · pairs · C`` with the exact number of neighbourhood pairs (fewer at causal starts)."""
        sizes = (queries,) if grid is None else tuple(grid)
        causal = True if is_causal else self.causal
        geom = na_geometry(sizes, self.kernel_size, self.dilation, self.stride, causal, type(self).__name__)
        return 4.0 * batch * geom.num_pairs() * self.dim

    def extra_repr(self) -> str:
        """Add the neighbourhood to the representation."""
        return (
            f"{super().extra_repr()}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"stride={self.stride}, causal={self.causal}"
        )
