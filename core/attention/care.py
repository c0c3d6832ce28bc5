"""CARE: decoupled dual-interactive linear attention, and the reusable kernelised linear attention.

Paper: Zhou, Xu, Cui, Zhou, Zhang, Hong, Zhang, "CARE Transformer: Mobile-Friendly Linear Visual Transformer
via Decoupled Dual Interaction", CVPR 2025 (arXiv 2411.16170). Official code:
https://github.com/zhouyuan888888/CARE-Transformer (``models/CARETrans.py``), read for the equations and
defaults below.

**Linear attention** (:func:`linear_attention`). With a positive feature map ``φ`` (``elu(x) + 1`` in CARE),
keys ``k_j``, values ``v_j`` and ``M`` keys, query ``i`` gets::

    out_i = φ(q_i)ᵀ [ (1/M) Σ_j φ(k_j) v_jᵀ ]  /  ( φ(q_i)ᵀ [ (1/M) Σ_j φ(k_j) ] + ε )

computed right-to-left in ``O(N d²)``. Averaging instead of summing over keys (as the official code does)
makes ``ε`` relative to the mean key, so the result does not depend on ``M`` through ``ε``.

**CARE mixer** (:class:`CAREAttention`). The ``C`` channels of every token are split as
``[memory | attention | local-3 | local-7]`` with ``g = mem_dim`` channels in each of the last three
(the official models use ``C = 4g``):

1. *Asymmetric decoupling*: only ``g`` channels go through linear attention (``q, k = W_qk x_att``,
   ``v = x_att`` itself, ``num_heads`` heads); ``2g`` channels go through depthwise ``3×3`` and ``7×7``
   convolutions (local inductive bias); the memory channels skip the token mixing entirely.
2. *Dual interaction*. First interaction (local ↔ global): ``F = [A | L3 | L7]`` is mixed by a residual
   inverted bottleneck ``F ← F + W_2 DW_3×3(GELU(W_1 Norm(F)))`` whose 1×1 convolutions exchange
   information between the global (attention) and local (convolution) channels. Second interaction
   (across layers): the same kind of bottleneck runs on ``[Z | F]``, where ``Z`` is the memory, and its
   output is the mixer's output. The *dynamic memory unit* is therefore not extra state: ``Z`` is a
   slice of the residual stream that the token mixers of earlier layers wrote into (via this second
   interaction) and that the current layer reads without re-mixing, so each layer interacts with
   features kept from earlier layers.

The two interactions are CARE's feed-forward network: a CARE block is ``x + γ · CAREAttention(x)`` with
no separate MLP. Used inside a generic transformer block, the block's own MLP comes on top.

Grids: ``grid=(H, W)`` runs the convolutions on the 2-D grid. Without a grid (or with ``grid=(N,)``) the
tokens are treated as a ``1 × N`` image, so the same ``k × k`` kernels act as their middle row along the
sequence; the mixer therefore needs no grid (``needs_grid`` is False) and plugs into sequence models.

Differences from the official code:

* The official network uses the convolution-only token mixer (``11×1`` + ``1×11`` strip convolutions in
  place of attention) in stages 1–2 and the last block of stage 4 drops its last projection and residual
  to widen the features for the classifier. Both are network-level choices and are not part of this
  mixer, which is the attention form of stages 3–4.
* The official code initialises convolutions with ``trunc_normal(std=0.02)``; we keep PyTorch's default
  initialisation like the other mechanisms of the library. ``norm="none"`` removes the BatchNorms (the
  official choice, and our default, is BatchNorm over batch and grid).
"""

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, grid_2d
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["CAREAttention", "FeatureMap", "feature_map_fn", "linear_attention"]

FeatureMap = Literal["elu", "relu"]
Norm = Literal["batch", "none"]


def feature_map_fn(feature_map: FeatureMap | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The kernel feature map ``φ`` by name (``elu``: ``elu(x) + 1``, CARE's; ``relu``) or as given."""
    if callable(feature_map):
        return feature_map
    if feature_map == "elu":
        return lambda t: F.elu(t) + 1.0
    if feature_map == "relu":
        return F.relu
    raise ValueError(
        f"linear_attention: feature_map must be 'elu', 'relu' or a callable, got {feature_map!r}"
    )


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    feature_map: FeatureMap | Callable[[Tensor], Tensor] = "elu",
    *,
    key_mask: Tensor | None = None,
    is_causal: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    """Normalised kernelised linear attention on ``(B, H, N, D)`` tensors in ``O(N D Dv)``.

    ``out_i = φ(q_i)ᵀ mean_j(φ(k_j) v_jᵀ) / (φ(q_i)ᵀ mean_j φ(k_j) + eps)``, the mean running over the
    keys query ``i`` may attend (all of them, the unmasked ones, and ``j <= i`` when causal).

    Args:
        q: Queries ``(B, H, N, D)`` (before the feature map).
        k: Keys ``(B, H, M, D)`` (before the feature map).
        v: Values ``(B, H, M, Dv)``.
        feature_map: ``elu`` (``elu(x) + 1``), ``relu`` or a callable applied to ``q`` and ``k``.
        key_mask: Optional boolean key padding ``(B, M)``, True = may attend.
        is_causal: Query ``i`` attends keys ``j <= i`` only (prefix sums; needs ``N == M``).
        eps: Added to the normaliser; a query with no key to attend returns zeros.

    Returns:
        ``(B, H, N, Dv)``.

    Raises:
        ValueError: If the shapes do not match or the mask is not a boolean ``(B, M)`` tensor.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            "linear_attention: expected q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"linear_attention: q and k must share D, got {q.shape[-1]} and {k.shape[-1]}")
    b, _, n, _ = q.shape
    m = k.shape[2]
    if is_causal and n != m:
        raise ValueError(f"linear_attention: is_causal needs as many queries as keys, got N={n}, M={m}")
    phi = feature_map_fn(feature_map)
    q, k = phi(q), phi(k)
    if key_mask is not None:
        if key_mask.dtype != torch.bool or key_mask.shape != (b, m):
            raise ValueError(
                f"linear_attention: key_mask must be boolean of shape ({b}, {m}), "
                f"got {key_mask.dtype} {tuple(key_mask.shape)}"
            )
        valid = key_mask[:, None, :, None].to(k.dtype)
        k = k * valid
    else:
        valid = k.new_ones(1, 1, m, 1)
    if not is_causal:
        count = valid.sum(dim=2, keepdim=True).clamp_min(1.0)  # (B|1, 1, 1, 1)
        kv = k.transpose(-2, -1) @ v / count  # (B, H, D, Dv)
        k_mean = k.sum(dim=2, keepdim=True) / count  # (B, H, 1, D)
        return (q @ kv) / ((q * k_mean).sum(-1, keepdim=True) + eps)
    count = valid.cumsum(dim=2).clamp_min(1.0)  # (B|1, 1, N, 1)
    kv = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2) / count.unsqueeze(-1)  # (B, H, N, D, Dv)
    k_mean = k.cumsum(dim=2) / count
    num = (q.unsqueeze(-2) @ kv).squeeze(-2)
    return num / ((q * k_mean).sum(-1, keepdim=True) + eps)


class _Interaction(nn.Module):
    """``x + W_2 Drop(DW_3×3(act(W_1 Norm(x))))``: one interaction of CARE's dual interaction module."""

    def __init__(self, channels: int, ratio: int, norm: Norm, drop: float) -> None:
        super().__init__()
        hidden = ratio * channels
        self.norm = nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.drop(self.dwconv(self.act(self.fc1(self.norm(x))))))


@register_mechanism(
    paper="Zhou et al. 2025, CARE Transformer: Mobile-Friendly Linear Visual Transformer via Decoupled "
    "Dual Interaction",
    complexity="O(N d^2)",
    example_kwargs={"ratios": (2, 2)},
)
class CAREAttention(TokenMixer):
    """CARE's decoupled linear attention + local convolutions, fused by the dual interaction module.

    No mask and no causality: the convolutions and BatchNorm mix neighbouring (and, in training, all)
    tokens. ``grid=(H, W)`` for images; no grid (or ``(N,)``) treats the tokens as a ``1 × N`` image.

    Args:
        dim: Channel dimension ``C``.
        mem_dim: Channels ``g`` of each of the attention, 3×3 and 7×7 branches; the remaining
            ``C - 3g`` channels are the memory. Defaults to ``C // 4`` (the official ``C = 4g`` split).
        num_heads: Heads of the linear attention; must divide ``g``. Defaults to 2 (the official
            stage-3/4 head sizes 16/32 give 2 heads) when ``g`` is even, else 1.
        kernel_sizes: Kernel sizes of the two depthwise local branches (official: 3 and 7).
        ratios: Expansion ratios of the first (local-global) and second (memory) interaction
            (official stages 3–4: ``(4, 4)``).
        feature_map: Kernel feature map of the linear attention (official: ``elu`` = ``elu(x) + 1``).
        norm: ``batch`` (official BatchNorm2d before each interaction) or ``none``.
        drop: Dropout inside the interactions.
        eps: Normaliser epsilon of the linear attention.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = False
    supports_causal = False

    def __init__(
        self,
        dim: int,
        *,
        mem_dim: int | None = None,
        num_heads: int | None = None,
        kernel_sizes: tuple[int, int] = (3, 7),
        ratios: tuple[int, int] = (4, 4),
        feature_map: FeatureMap = "elu",
        norm: Norm = "batch",
        drop: float = 0.0,
        eps: float = 1e-6,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        g = dim // 4 if mem_dim is None else mem_dim
        if g < 1 or 3 * g > dim:
            raise ValueError(f"CAREAttention: mem_dim must satisfy 1 <= 3 * mem_dim <= dim={dim}, got {g}")
        heads = (2 if g % 2 == 0 else 1) if num_heads is None else num_heads
        if heads < 1 or g % heads:
            raise ValueError(f"CAREAttention: mem_dim={g} must be divisible by num_heads={heads}")
        if len(kernel_sizes) != 2 or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"CAREAttention: kernel_sizes must be two odd positive ints, got {kernel_sizes}")
        if len(ratios) != 2 or min(ratios) < 1:
            raise ValueError(f"CAREAttention: ratios must be two positive ints, got {ratios}")
        if norm not in ("batch", "none"):
            raise ValueError(f"CAREAttention: norm must be 'batch' or 'none', got {norm!r}")
        feature_map_fn(feature_map)  # validates the name
        self.mem_dim = g
        self.num_heads = heads
        self.kernel_sizes = tuple(kernel_sizes)
        self.ratios = tuple(ratios)
        self.feature_map: FeatureMap = feature_map
        self.eps = eps
        self.split_sizes = (dim - 3 * g, g, g, g)  # memory | attention | local-3 | local-7
        self.qk = nn.Conv2d(g, 2 * g, 1)
        k1, k2 = kernel_sizes
        self.local1 = nn.Conv2d(g, g, k1, padding=k1 // 2, groups=g)
        self.local2 = nn.Conv2d(g, g, k2, padding=k2 // 2, groups=g)
        self.interact_local_global = _Interaction(3 * g, ratios[0], norm, drop)
        self.interact_memory = _Interaction(dim, ratios[1], norm, drop)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Decouple the channels, run attention and local branches, then the two interactions."""
        b, n, c = x.shape
        height, width = grid_2d(grid, n, "CAREAttention")
        fmap = x.transpose(1, 2).reshape(b, c, height, width)
        memory, att, loc1, loc2 = fmap.split(self.split_sizes, dim=1)
        q, k = self.qk(att).flatten(2).transpose(1, 2).chunk(2, dim=-1)  # (B, N, g) each
        v = att.flatten(2).transpose(1, 2)
        heads = [split_heads(t, self.num_heads) for t in (q, k, v)]
        att = linear_attention(*heads, self.feature_map, eps=self.eps)
        att = merge_heads(att).transpose(1, 2).reshape(b, self.mem_dim, height, width)
        feats = torch.cat([att, self.local1(loc1), self.local2(loc2)], dim=1)
        feats = self.interact_local_global(feats)
        out = self.interact_memory(torch.cat([memory, feats], dim=1))
        return out.flatten(2).transpose(1, 2)

    def extra_repr(self) -> str:
        """Add the channel split, heads and interaction ratios to the default representation."""
        return (
            f"{super().extra_repr()}, split={self.split_sizes}, num_heads={self.num_heads}, "
            f"kernel_sizes={self.kernel_sizes}, ratios={self.ratios}, feature_map={self.feature_map}"
        )
