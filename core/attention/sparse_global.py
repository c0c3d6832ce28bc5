"""Windowed sparse attention with global tokens (QualityFM) and Hydra's intermittent sparse global attention.

Papers:

* "QualityFM: a Multimodal Physiological Signal Foundation Model with Self-Distillation for Signal Quality
  Challenges in Critically Ill Patients", 2025: a *windowed sparse attention* inside the Transformer
  encoder "to efficiently handle long sequential signals and capture essential local quasi-periodic
  patterns" of PPG / ECG waveforms.
* Chaudhary, Browning, "Hydra: A 1.6B-Parameter State-Space Language Model with Sparse Attention,
  Mixture-of-Experts, and Memory", 2025 (arXiv 2508.15099): a Mamba-style SSM backbone with *intermittent
  sparse global attention* layers.

The pattern (:func:`sparse_global_pattern`), for ``N`` tokens, window ``w``, ``g`` leading global tokens
and a global stride ``s`` (``0`` = none). Global positions are ``𝒢 = {0, …, g−1} ∪ {j : j mod s = s−1}``
(with ``s``: the last token of every stride block, which in causal mode has seen its whole block). Query
``i`` may attend key ``j`` when::

    local(i, j)  = −⌊w/2⌋ ≤ j − i ≤ w − 1 − ⌊w/2⌋     (non-causal: w keys around i, not shifted at edges)
                 = 0 ≤ i − j ≤ w − 1                    (causal: the w most recent keys, i included)
    allowed(i, j) = (local(i, j) ∨ j ∈ 𝒢 ∨ i ∈ 𝒢) ∧ (j ≤ i if causal) ∧ mask(i, j)

i.e. every token sees its window and the global keys, and global queries see the whole (causal)
sequence (Longformer-style symmetric global attention); one softmax over the union of allowed keys::

    o_i = Σ_{j : allowed(i, j)} softmax_j(q_i · k_j / √d) v_j

Computation: non-global queries gather their ``w`` window keys (``O(N w d)``) and score the ``|𝒢|`` global
keys (``O(N |𝒢| d)``; global keys inside the window are counted once), one joint softmax; the ``|𝒢|``
global queries run dense rows (``O(|𝒢| N d)``). Total ``O(N (w + g + N/s) d)``: linear in ``N`` without a
stride, ``O(N²/s)`` with one. No ``(N, N)`` tensor is built (except by the ``reference`` backend).

Hydra: :class:`HydraSparseGlobalAttention` is the same pattern applied only in every ``every``-th layer
(``layer_idx % every == every − 1``); the other layers take the *off path*: the local window alone
(``off_path="local"``, default; Hydra's SSM layers carry the local/sequential mixing there, which this
library's attention slot cannot hold) or nothing (``off_path="zero"``: the mixer returns zeros so a
residual block reduces to the identity).

No official code exists for QualityFM's attention that we could read; built from the abstract. The
paper text available to us does not give the window, the global tokens or the stride, so the pattern above
(Longformer/BigBird-style local + global) and its defaults are our choice. Hydra's code
(``sidcraftscode/hydra``) was not available to us either; the sparse global attention layer is modelled by
the same pattern, and the layer schedule follows the "intermittent" description.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import reference_attention
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "HydraSparseGlobalAttention",
    "WindowedSparseAttention",
    "global_positions",
    "sparse_global_pattern",
    "windowed_sparse_attention",
]

OffPath = Literal["local", "zero"]


def global_positions(n: int, num_global: int, stride: int, device: torch.device | None = None) -> Tensor:
    """Sorted global positions ``{0..g−1} ∪ {j : j mod s = s−1}`` among ``n`` tokens (long ``(G,)``)."""
    is_global = torch.arange(n, device=device) < num_global
    if stride > 0:
        is_global = is_global | (torch.arange(n, device=device) % stride == stride - 1)
    return is_global.nonzero().flatten()


def _window_offsets(window: int, causal: bool, device: torch.device | None) -> Tensor:
    if causal:
        return torch.arange(-(window - 1), 1, device=device)
    return torch.arange(window, device=device) - window // 2


def sparse_global_pattern(
    n: int, window: int, num_global: int = 0, stride: int = 0, causal: bool = False, device=None
) -> Tensor:
    """The dense boolean ``(N, N)`` pattern (True = may attend), for references and inspection."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    off = j - i
    offsets = _window_offsets(window, causal, device)
    local = (off >= offsets[0]) & (off <= offsets[-1])
    g = torch.zeros(n, dtype=torch.bool, device=device)
    g[global_positions(n, num_global, stride, device)] = True
    allowed = local | g[None, :] | g[:, None]
    return allowed & (j <= i) if causal else allowed


def _softmax_rows(logits: Tensor, ok: Tensor) -> Tensor:
    logits = logits.masked_fill(~ok, float("-inf"))
    has = ok.any(-1, keepdim=True)
    return torch.softmax(logits.masked_fill(~has, 0.0), -1) * has.to(logits.dtype)


def windowed_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    num_global: int = 0,
    stride: int = 0,
    mask: Tensor | None = None,
    is_causal: bool = False,
    backend: Literal["auto", "gather", "reference"] = "auto",
) -> Tensor:
    """Local-window + global-token attention on ``(B, H, N, D)`` self-attention tensors.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, N, D)``.
        v: Values ``(B, H, N, Dv)``.
        window: Window width ``w``.
        num_global: Leading global tokens ``g``.
        stride: Global stride ``s`` (0: none).
        mask: Optional boolean 4-D mask ``(B|1, H|1, N|1, N)``; True = may attend.
        is_causal: Causal window and causal global attention.
        backend: ``auto``/``gather`` (sparse) or ``reference`` (dense pattern + literal attention).

    Returns:
        ``(B, H, N, Dv)``; queries with no allowed key output zeros.
    """
    b, h, n, d = q.shape
    if backend == "reference":
        pattern = sparse_global_pattern(n, window, num_global, stride, is_causal, q.device)
        return reference_attention(q, k, v, attn_mask=pattern if mask is None else pattern & mask)
    scale = d**-0.5
    pos = torch.arange(n, device=q.device)
    idx = pos[:, None] + _window_offsets(window, is_causal, q.device)[None, :]  # (N, w)
    in_range = (idx >= 0) & (idx < n)
    idx_c = idx.clamp(0, n - 1)
    m = None if mask is None else mask.expand(b, h, n, n)
    # local part: (B, H, N, w)
    kl, vl = k[:, :, idx_c], v[:, :, idx_c]  # (B, H, N, w, D)
    local_logits = (q.unsqueeze(-2) * kl).sum(-1) * scale
    local_ok = in_range.expand(b, h, n, -1)
    if m is not None:
        local_ok = local_ok & m.gather(3, idx_c.expand(b, h, n, -1))
    gpos = global_positions(n, num_global, stride, q.device)
    if gpos.numel() == 0:
        w = _softmax_rows(local_logits, local_ok)
        return (w.unsqueeze(-2) @ vl).squeeze(-2)
    # global keys for every query, excluding those already in the query's window: (B, H, N, G)
    kg, vg = k[:, :, gpos], v[:, :, gpos]
    glob_logits = q @ kg.transpose(-1, -2) * scale
    rel = gpos[None, :] - pos[:, None]
    offsets = _window_offsets(window, is_causal, q.device)
    glob_ok = ~((rel >= offsets[0]) & (rel <= offsets[-1]))
    if is_causal:
        glob_ok = glob_ok & (rel <= 0)
    glob_ok = glob_ok.expand(b, h, n, -1)
    if m is not None:
        glob_ok = glob_ok & m[..., gpos]
    w = _softmax_rows(torch.cat([local_logits, glob_logits], -1), torch.cat([local_ok, glob_ok], -1))
    wl, wg = w[..., :window], w[..., window:]
    out = (wl.unsqueeze(-2) @ vl).squeeze(-2) + wg @ vg
    # global queries: dense (causal) rows, (B, H, G, N)
    rows_logits = q[:, :, gpos] @ k.transpose(-1, -2) * scale
    rows_ok = torch.ones(gpos.numel(), n, dtype=torch.bool, device=q.device)
    if is_causal:
        rows_ok = pos[None, :] <= gpos[:, None]
    rows_ok = rows_ok.expand(b, h, -1, -1)
    if m is not None:
        rows_ok = rows_ok & m[:, :, gpos]
    rows = _softmax_rows(rows_logits, rows_ok) @ v
    return out.index_copy(2, gpos, rows)


@register_mechanism(
    paper="QualityFM (2025), windowed sparse attention for long physiological signals (local window + "
    "global tokens)",
    complexity="O(N (w + g + N/s) d); O(N (w + g) d) without a global stride",
    example_kwargs={"num_heads": 2, "window": 3, "num_global": 1, "stride": 4},
)
class WindowedSparseAttention(TokenMixer):
    """Multi-head local-window attention plus global tokens and strided global positions.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        window: Local window width ``w``.
        num_global: Leading global tokens ``g`` (e.g. a CLS / summary token).
        stride: Every ``s``-th position (``j mod s = s−1``) is global as well; 0 disables.
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        backend: ``auto``/``gather`` (sparse) or ``reference`` (dense pattern, literal attention).
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
        window: int = 32,
        num_global: int = 1,
        stride: int = 0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        backend: Literal["auto", "gather", "reference"] = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if window < 1 or num_global < 0 or stride < 0:
            raise ValueError(
                f"{name}: need window >= 1, num_global >= 0 and stride >= 0, "
                f"got {window}, {num_global}, {stride}"
            )
        if backend not in ("auto", "gather", "reference"):
            raise ValueError(f"{name}: unknown backend {backend!r}; expected auto, gather or reference")
        self.num_heads = num_heads
        self.window = window
        self.num_global = num_global
        self.stride = stride
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def pattern_args(self) -> tuple[int, int]:
        """``(num_global, stride)`` used by this layer."""
        return self.num_global, self.stride

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend the window, the global keys and (for global queries) everything."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, type(self).__name__)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        num_global, stride = self.pattern_args()
        out = windowed_sparse_attention(
            q, k, v, window=self.window, num_global=num_global, stride=stride, mask=mask, is_causal=is_causal,
            backend=self.backend,
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
        """``4 · B · pairs · C`` with the exact number of allowed pairs of the pattern."""
        num_global, stride = self.pattern_args()
        pattern = sparse_global_pattern(queries, self.window, num_global, stride, is_causal)
        return 4.0 * batch * int(pattern.sum()) * self.dim

    def extra_repr(self) -> str:
        """Add heads and the pattern."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, window={self.window}, "
            f"num_global={self.num_global}, stride={self.stride}"
        )


@register_mechanism(
    paper="Chaudhary & Browning 2025, Hydra (arXiv 2508.15099): intermittent sparse global attention",
    complexity="O(N (w + g + N/s) d) every k-th layer, O(N w d) otherwise",
    example_kwargs={"num_heads": 2, "every": 2, "window": 3, "num_global": 1, "stride": 4},
)
class HydraSparseGlobalAttention(WindowedSparseAttention):
    """Sparse global attention in every ``every``-th layer (``layer_idx % every == every − 1``), else off.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        every: Period ``k`` of the sparse global attention layers.
        off_path: ``"local"`` (window attention only) or ``"zero"`` (returns zeros: identity residual block).
        num_heads: Number of heads.
        window: Local window width ``w``.
        num_global: Leading global tokens ``g`` of the global layers.
        stride: Global stride ``s`` of the global layers (0: none).
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        backend: ``auto``/``gather`` or ``reference``.
        layer_idx: Index of the owning layer (decides whether this layer is global).
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        every: int = 4,
        off_path: OffPath = "local",
        num_heads: int = 8,
        window: int = 32,
        num_global: int = 1,
        stride: int = 0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        backend: Literal["auto", "gather", "reference"] = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim, num_heads=num_heads, window=window, num_global=num_global, stride=stride, qkv_bias=qkv_bias,
            proj_bias=proj_bias, backend=backend, layer_idx=layer_idx, num_layers=num_layers,
        )  # fmt: skip
        name = type(self).__name__
        if every < 1:
            raise ValueError(f"{name}: every must be >= 1, got {every}")
        if off_path not in ("local", "zero"):
            raise ValueError(f"{name}: off_path must be 'local' or 'zero', got {off_path!r}")
        self.every = every
        self.off_path: OffPath = off_path

    @property
    def is_global_layer(self) -> bool:
        """Whether this layer applies the sparse global attention."""
        return self.layer_idx % self.every == self.every - 1

    def pattern_args(self) -> tuple[int, int]:
        """Global tokens and stride in global layers; none (window only) in the others."""
        return (self.num_global, self.stride) if self.is_global_layer else (0, 0)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Sparse global attention in global layers; the off path elsewhere."""
        if not self.is_global_layer and self.off_path == "zero":
            return x * 0.0
        return super().mix(x, grid=grid, mask=mask, is_causal=is_causal, context=context)

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Zero for a ``zero`` off layer, else the pattern's pairs."""
        if not self.is_global_layer and self.off_path == "zero":
            return 0.0
        return super().attention_flops(batch, queries, keys, is_causal=is_causal, grid=grid)

    def extra_repr(self) -> str:
        """Add the schedule."""
        return f"{super().extra_repr()}, every={self.every}, global_layer={self.is_global_layer}"
