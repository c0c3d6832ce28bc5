"""BCAF: bidirectional parent↔child cross-attention between a fine grid and a coarse grid, and SpectralSE.

Paper: "Bidirectional Cross-Attention Fusion (BCAF)" for high-resolution RGB + low-resolution hyperspectral
(HSI) waste sorting (2026; official code ``jonasvilhofunk/BCAF_2026``, ``cross_attention_fusion.py`` and
``segmentation_head.py``). The fine grid (RGB, ``(H·r_h) × (W·r_w)``) and the coarse grid (HSI, ``H × W``
with ``S`` spectral tokens per cell) stay at their native resolutions. Each coarse cell ("parent") owns the
``L = r_h·r_w`` fine cells ("children") it covers; attention never leaves a parent's group, so the cost is
``O(B·H·W·L·S·C)`` — the groups are batched as ``(B·H·W, L, C)`` tiny SDPA calls.

With ``F_p ∈ ℝ^{L×C}`` the children of parent ``p`` and ``Z_p ∈ ℝ^{S×C}`` its spectral tokens (both
already layer-normed by the caller), per head of width ``d``::

    ΔF_p = softmax(F_p W_Q^f (Z_p W_K^c)ᵀ / √d) Z_p W_V^c  W_O^f      children query their parent
    ΔZ_p = softmax(Z_p W_Q^c (F_p W_K^f)ᵀ / √d) F_p W_V^f  W_O^c      parent tokens query their children

:class:`ParentChildCrossAttention` returns ``(ΔF, ΔZ)`` — the residual updates; the full fusion layer with
norms, FFNs, the spectral collapse and the gate is :class:`core.blocks.bcaf.BCAFBlock`.

:class:`SpectralSE` collapses the spectral axis with squeeze-and-excitation weights::

    w = σ(W_2 ReLU(W_1 mean_{h,w} Z + b_1) + b_2) ∈ ℝ^{C×S},     out_{c,h,w} = Σ_s w_{c,s} Z_{c,s,h,w}

Differences from the official code:

* The official ratio check is an ``assert`` and requires ``r_h == r_w``; we raise a ``ValueError`` naming
  both grids, and accept different integer ratios per axis (the children are gathered by a reshape, not
  ``pixel_unshuffle``; the child order inside a group is the same row-major order, and attention is
  permutation-invariant over the children anyway).
* Inputs are channels-last tensors ``fine (B, H_f, W_f, C)`` and ``coarse (B, H_c, W_c, S, C)`` — the
  layout the official block uses internally; a 4-D ``coarse`` is read as ``S = 1``.
* A disabled direction (``direction="fine_from_coarse"`` / ``"coarse_from_fine"``, the official
  ``rgb_to_hsi`` / ``hsi_to_rgb``) returns a zero update instead of skipping the residual add; the outputs
  are identical.
* ``SpectralSE`` uses ``nn.Linear`` layers where the official code uses 1×1 ``Conv1d`` (same maps; a
  checkpoint converts with ``weight[..., 0]``). Note that its squeeze is a *global* spatial mean, so every
  output cell depends on the whole coarse map — kept as in the official code.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.mha import Backend, attend, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "ParentChildCrossAttention",
    "SpectralSE",
    "children_to_fine",
    "fine_to_children",
    "parent_child_ratio",
    "swin_heads",
]

Direction = Literal["bidirectional", "fine_from_coarse", "coarse_from_fine"]


def swin_heads(dim: int) -> int:
    """Swin's head count for a width: heads of 32 channels (96 → 3, 192 → 6, …), 1 if 32 does not divide."""
    return dim // 32 if dim >= 32 and dim % 32 == 0 else 1


def parent_child_ratio(fine_hw: tuple[int, int], coarse_hw: tuple[int, int], owner: str) -> tuple[int, int]:
    """The integer ratios ``(r_h, r_w)`` of a fine grid over a coarse grid.

    Raises:
        ValueError: Naming both grids if the fine grid is not an integer multiple of the coarse grid.
    """
    (hf, wf), (hc, wc) = fine_hw, coarse_hw
    if hc <= 0 or wc <= 0 or hf % hc or wf % wc:
        raise ValueError(
            f"{owner}: the fine grid {tuple(fine_hw)} must be an integer multiple (r_h·H, r_w·W) of the "
            f"coarse grid {tuple(coarse_hw)}"
        )
    return hf // hc, wf // wc


def fine_to_children(fine: Tensor, ratio: tuple[int, int]) -> Tensor:
    """``(B, H·r_h, W·r_w, C) -> (B, H, W, r_h·r_w, C)``: the children of every coarse cell, row-major."""
    b, hf, wf, c = fine.shape
    rh, rw = ratio
    x = fine.reshape(b, hf // rh, rh, wf // rw, rw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hf // rh, wf // rw, rh * rw, c)


def children_to_fine(children: Tensor, ratio: tuple[int, int]) -> Tensor:
    """``(B, H, W, r_h·r_w, C) -> (B, H·r_h, W·r_w, C)``, the inverse of :func:`fine_to_children`."""
    b, hc, wc, _, c = children.shape
    rh, rw = ratio
    x = children.reshape(b, hc, wc, rh, rw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hc * rh, wc * rw, c)


@register_mechanism(
    paper="BCAF 2026, Bidirectional Cross-Attention Fusion of RGB and hyperspectral images (BCAF_2026)",
    complexity="O(B H_c W_c r^2 S d)",
    example_kwargs={"dim": 8, "num_heads": 2},
)
class ParentChildCrossAttention(nn.Module):
    """BCAF's localized bidirectional cross-attention between a fine and a coarse grid.

    Args:
        dim: Channel width ``C`` of both streams; must be divisible by ``num_heads``.
        num_heads: Heads; defaults to Swin's ``dim // 32`` (BCAF uses the HSI backbone's per-stage heads
            3, 6, 12, 24 at widths 96 … 768).
        direction: ``bidirectional`` (BCAF), ``fine_from_coarse`` (only children query their parent; the
            official ``rgb_to_hsi``) or ``coarse_from_fine`` (only parent tokens query their children).
        qkv_bias: Whether the q/k/v projections have a bias (official: yes).
        attn_drop: Dropout on the attention weights (official: the block's ``dropout``, default 0).
        backend: ``auto``/``sdpa`` use ``F.scaled_dot_product_attention`` on the ``(B·H·W, L, C)``
            groups; ``reference`` runs the literal equation.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int | None = None,
        direction: Direction = "bidirectional",
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        num_heads = swin_heads(dim) if num_heads is None else num_heads
        if dim <= 0 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be positive and divisible by num_heads={num_heads}")
        if direction not in ("bidirectional", "fine_from_coarse", "coarse_from_fine"):
            raise ValueError(
                f"{name}: direction must be bidirectional, fine_from_coarse or coarse_from_fine, "
                f"got {direction!r}"
            )
        if backend not in ("auto", "sdpa", "reference"):
            raise ValueError(f"{name}: unknown backend {backend!r}; expected auto, sdpa or reference")
        self.dim = dim
        self.num_heads = num_heads
        self.direction: Direction = direction
        self.attn_drop = attn_drop
        self.backend: Backend = backend
        if direction != "coarse_from_fine":
            self.fine_q = nn.Linear(dim, dim, bias=qkv_bias)
            self.coarse_k = nn.Linear(dim, dim, bias=qkv_bias)
            self.coarse_v = nn.Linear(dim, dim, bias=qkv_bias)
            self.fine_proj = nn.Linear(dim, dim)
        if direction != "fine_from_coarse":
            self.coarse_q = nn.Linear(dim, dim, bias=qkv_bias)
            self.fine_k = nn.Linear(dim, dim, bias=qkv_bias)
            self.fine_v = nn.Linear(dim, dim, bias=qkv_bias)
            self.coarse_proj = nn.Linear(dim, dim)

    def forward(self, fine: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attend every parent group in both directions.

        Args:
            fine: Fine-grid tokens ``(B, H·r_h, W·r_w, C)`` (normalised by the caller).
            coarse: Coarse-grid tokens ``(B, H, W, S, C)``, or ``(B, H, W, C)`` for ``S = 1``.

        Returns:
            ``(fine_update, coarse_update)`` shaped like ``fine`` and ``coarse``; the caller adds them to
            its residual streams. A disabled direction's update is zero.
        """
        squeeze = self._check(fine, coarse)
        if squeeze:
            coarse = coarse.unsqueeze(-2)
        b, hc, wc, s, c = coarse.shape
        ratio = parent_child_ratio((fine.shape[1], fine.shape[2]), (hc, wc), type(self).__name__)
        children = fine_to_children(fine, ratio).reshape(b * hc * wc, ratio[0] * ratio[1], c)
        parents = coarse.reshape(b * hc * wc, s, c)
        if self.direction != "coarse_from_fine":
            out = self._attend(self.fine_q(children), self.coarse_k(parents), self.coarse_v(parents))
            fine_update = self.fine_proj(children_to_fine(out.reshape(b, hc, wc, -1, c), ratio))
        else:
            fine_update = torch.zeros_like(fine)
        if self.direction != "fine_from_coarse":
            out = self._attend(self.coarse_q(parents), self.fine_k(children), self.fine_v(children))
            coarse_update = self.coarse_proj(out.reshape(b, hc, wc, s, c))
        else:
            coarse_update = torch.zeros_like(coarse)
        return fine_update, coarse_update.squeeze(-2) if squeeze else coarse_update

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """A 4×6 fine grid over a 2×3 coarse grid (``r = 2``) with ``S = 3`` spectral tokens, ``C = 8``."""
        return torch.randn(batch, 4, 6, 8, dtype=dtype), torch.randn(batch, 2, 3, 3, 8, dtype=dtype)

    def _check(self, fine: Tensor, coarse: Tensor) -> bool:
        name, c = type(self).__name__, self.dim
        if fine.ndim != 4 or fine.shape[-1] != c:
            raise ValueError(f"{name}: expected fine of shape (B, H_f, W_f, {c}), got {tuple(fine.shape)}")
        if coarse.ndim not in (4, 5) or coarse.shape[-1] != c or coarse.shape[0] != fine.shape[0]:
            raise ValueError(
                f"{name}: expected coarse of shape ({fine.shape[0]}, H_c, W_c, S, {c}) or "
                f"({fine.shape[0]}, H_c, W_c, {c}), got {tuple(coarse.shape)}"
            )
        return coarse.ndim == 4

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Multi-head attention inside each group: ``q (G, L_q, C)``, ``k, v (G, L_k, C)``."""
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        dropout_p = self.attn_drop if self.training else 0.0
        return merge_heads(attend(q, k, v, dropout_p=dropout_p, backend=self.backend))

    def extra_repr(self) -> str:
        """Width, heads, direction and backend."""
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, direction={self.direction}, backend={self.backend}"
        )


@register_mechanism(
    paper="BCAF 2026, Bidirectional Cross-Attention Fusion of RGB and hyperspectral images (BCAF_2026)",
    complexity="O(B C S (H W + C / reduction))",
    example_kwargs={"channels": 8, "reduction": 2},
)
class SpectralSE(nn.Module):
    """Squeeze-and-excitation over the spectral axis that collapses ``(B, C, S, H, W)`` to ``(B, C, H, W)``.

    Args:
        channels: Channels ``C``.
        reduction: Bottleneck ratio; the hidden width is ``max(C // reduction, min_hidden)`` (BCAF: 8).
        min_hidden: Smallest hidden width (official: 8).
    """

    def __init__(self, channels: int, *, reduction: int = 8, min_hidden: int = 8) -> None:
        super().__init__()
        if channels <= 0 or reduction <= 0 or min_hidden <= 0:
            raise ValueError(
                f"SpectralSE: channels, reduction and min_hidden must be positive, got "
                f"{channels}, {reduction}, {min_hidden}"
            )
        self.channels = channels
        hidden = max(channels // reduction, min_hidden)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        """Weight every (channel, spectral slot) by its excitation and sum over the spectral axis."""
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(
                f"SpectralSE: expected x of shape (B, {self.channels}, S, H, W), got {tuple(x.shape)}"
            )
        squeezed = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, S, C)
        weights = torch.sigmoid(self.fc2(self.act(self.fc1(squeezed)))).transpose(1, 2)  # (B, C, S)
        return (x * weights[..., None, None]).sum(dim=2)

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor]:
        """``(B, 8, S=3, 4, 4)``."""
        return (torch.randn(batch, 8, 3, 4, 4, dtype=dtype),)

    def extra_repr(self) -> str:
        """Channels and hidden width."""
        return f"channels={self.channels}, hidden={self.fc1.out_features}"
