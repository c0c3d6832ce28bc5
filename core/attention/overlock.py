"""OverLoCK's context-mixing dynamic convolution (ContMix), guided by a top-down context map.

Paper: Lou & Yu, "OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic
Kernels", CVPR 2025 (arXiv 2502.20087); official code ``LMMMEng/OverLoCK@2c8ab3b``,
``models/overlock.py`` (``DynamicConvBlock``) and ``models/contmix.py``.

In OverLoCK's Focus-Net every block receives the feature map ``x`` and a context map ``g`` produced by
the coarse Overview-Net (upsampled to ``x``'s size). ContMix turns the affinity between each pixel and
``P × P`` region-pooled context tokens into a **per-pixel depthwise kernel** (per head group ``h``):

.. code-block:: text

    g'      = Up_bilinear(g)                                       # to x's (H, W), as OverLoCK's ctx_up
    v       = GRN(W_f GELU(BN(DW_{3×3}([x; g']))))                 # fusion of x and context (C channels)
    q       = BN(W_q x) · (C / G)^-½                                # (B, C/2, H, W), G = 2 · num_heads
    k       = BN(W_k AvgPool_{P×P}(g'))                            # (B, C/2, P, P): P² region tokens
    A_h     = q_h k_hᵀ                                             # (B, G, HW, P²) token-region affinity
    [D¹; D²] = A_h W_d                                              # W_d: P² → k_s² + K²
    D^s_h(i) = softmax_taps(D^s_h(i) + rpb^s_h)                   # s ∈ {1: k_s × k_s, 2: K × K}
    y^s_h(i) = Σ_{j ∈ window_s(i)} D^s_h(i, j) · v^s_h(j)         # neighbourhood windows, clamped at borders
    y       = BN(W_p [y¹; y²]) + BN(DW_{K×K}(v))                   # + large-kernel local branch ("lepe")
    out     = W_o BN(SiLU(BN(W_g v)) ⊙ SE(y))

``v¹`` and ``v²`` are the first and second halves of ``v``'s channels, each split into ``G`` groups that
share one dynamic kernel per pixel. The window of pixel ``i`` is the ``K × K`` (or ``k_s × k_s``) block
starting at ``clamp(i − ⌊K/2⌋, 0, H − K)`` (neighbourhood-attention semantics, as ``natten.na2d_av`` and
the official unfold-plus-replicate-pad fallback), and the relative position bias is
``rpb[h, s_i + a − i + K − 1, s_j + b − j + K − 1]`` for tap ``(a, b)``. Maps with ``min(H, W) < K``
are bilinearly enlarged so the short side is ``K`` and average-pooled back afterwards.

Protocol: an :class:`AttentionGate` (``forward(x, g)``), since the context is a second feature map that
may be coarser; the output has ``x``'s shape. The surrounding block (concatenate ``[x; g]``, residual
depthwise conv, LayerNorm, residual, ConvFFN, and the split that also updates the context stream) is
not part of this module.

Differences from the official code:

* The large-kernel local branch is UniRepLKNet's ``DilatedReparamBlock`` during training; we use its
  deploy form (a single depthwise ``K × K`` conv with bias), which has the same expressivity after
  re-parameterisation but a different training parameterisation.
* The enlarged size for small maps uses integer arithmetic (``K · W // H``) instead of
  ``int(K / H * W)``, which can round down by one.
* The region-token projection (a 1×1 conv over the ``P²`` axis) is written as the equivalent ``Linear``.
* The query scale is ``(C / G)^-½`` as in the official code, although each group's query has ``C / (2G)``
  channels; we keep it (it is a constant absorbed by training).
"""

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionGate
from core.attention.registry import register_mechanism

__all__ = ["ContMix", "neighborhood_starts"]


def neighborhood_starts(length: int, kernel: int, device: torch.device | None = None) -> Tensor:
    """First index of each position's ``kernel``-long window, clamped inside ``[0, length)``."""
    pos = torch.arange(length, device=device)
    return (pos - kernel // 2).clamp(0, length - kernel)


class _GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation for ``(B, C, H, W)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return (self.gamma * nx + 1) * x + self.beta


@register_mechanism(
    paper="Lou & Yu 2025, OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing "
    "Dynamic Kernels",
    complexity="O(N (P^2 d + K^2 d))",
    example_kwargs={"kernel_size": 5, "smk_size": 3, "num_heads": 1, "pool_size": 3},
)
class ContMix(AttentionGate):
    """Context-mixing dynamic depthwise convolution of ``x`` guided by a context map ``g``.

    Args:
        channels: Channels ``C`` of ``x``; divisible by ``4 · num_heads``.
        gating_channels: Channels of the context map ``g``.
        spatial_dims: Must be 2.
        kernel_size: Large dynamic kernel ``K`` (OverLoCK: 13 in stage 3, 7 in stage 4); odd.
        smk_size: Small dynamic kernel ``k_s`` (OverLoCK: 5); odd, at most ``kernel_size``.
        num_heads: OverLoCK's ``num_heads``; the kernels use ``G = 2 · num_heads`` groups per size.
        pool_size: Side ``P`` of the region-pooled context grid (OverLoCK: 7).
    """

    supported_dims: ClassVar[tuple[int, ...]] = (2,)

    def __init__(
        self,
        channels: int,
        gating_channels: int,
        *,
        spatial_dims: int = 2,
        kernel_size: int = 7,
        smk_size: int = 5,
        num_heads: int = 4,
        pool_size: int = 7,
    ) -> None:
        super().__init__(channels, gating_channels, spatial_dims=spatial_dims)
        for name, k in (("kernel_size", kernel_size), ("smk_size", smk_size)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"ContMix: {name} must be a positive odd number, got {k}")
        if smk_size > kernel_size:
            raise ValueError(f"ContMix: smk_size={smk_size} must not exceed kernel_size={kernel_size}")
        if num_heads < 1 or channels % (4 * num_heads):
            raise ValueError(
                f"ContMix: channels={channels} must be divisible by 4 * num_heads={4 * num_heads}"
            )
        if pool_size < 1:
            raise ValueError(f"ContMix: pool_size must be positive, got {pool_size}")
        c, cat = channels, channels + gating_channels
        self.kernel_size, self.smk_size, self.pool_size = kernel_size, smk_size, pool_size
        self.groups = 2 * num_heads
        self.scale = (c // self.groups) ** -0.5
        self.fusion = nn.Sequential(
            nn.Conv2d(cat, cat, 3, padding=1, groups=cat),
            nn.BatchNorm2d(cat),
            nn.GELU(),
            nn.Conv2d(cat, c, 1),
            _GRN(c),
        )
        self.weight_query = nn.Sequential(nn.Conv2d(c, c // 2, 1, bias=False), nn.BatchNorm2d(c // 2))
        self.weight_key = nn.Sequential(
            nn.Conv2d(gating_channels, c // 2, 1, bias=False), nn.BatchNorm2d(c // 2)
        )
        self.weight_proj = nn.Linear(pool_size**2, smk_size**2 + kernel_size**2)
        self.rpb_small = nn.Parameter(torch.zeros(self.groups, 2 * smk_size - 1, 2 * smk_size - 1))
        self.rpb_large = nn.Parameter(torch.zeros(self.groups, 2 * kernel_size - 1, 2 * kernel_size - 1))
        self.dyconv_proj = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.lepe = nn.Sequential(
            nn.Conv2d(c, c, kernel_size, padding=kernel_size // 2, groups=c), nn.BatchNorm2d(c)
        )
        hidden = max(16, c // 8)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c, 1), nn.Sigmoid()
        )
        self.gate_proj = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        self.proj = nn.Sequential(nn.BatchNorm2d(c), nn.Conv2d(c, c, 1))

    def gate(self, x: Tensor, g: Tensor) -> Tensor:
        """Mix ``x`` with dynamic kernels generated from its affinity to the region-pooled context ``g``."""
        size = x.shape[-2:]
        if g.shape[-2:] != size:
            g = F.interpolate(g, size=size, mode="bilinear", align_corners=False)
        v = self.fusion(torch.cat([x, g], dim=1))
        gate = self.gate_proj(v)
        lepe = self.lepe(v)
        y = self.dynamic_conv(x, g, v)
        y = self.dyconv_proj(y) + lepe
        y = y * self.se(y)
        return self.proj(gate * y)

    def dynamic_conv(self, x: Tensor, g: Tensor, v: Tensor) -> Tensor:
        """The two dynamic depthwise convolutions of ``v`` (small and large kernel), concatenated."""
        h, w = size = x.shape[-2:]
        k = self.kernel_size
        if min(h, w) < k:
            new = (k, k * w // h) if h < w else (k * h // w, k)
            x, g, v = (F.interpolate(t, size=new, mode="bilinear", align_corners=False) for t in (x, g, v))
            h, w = new
        b, grp = x.shape[0], self.groups
        q = (self.weight_query(x) * self.scale).reshape(b, grp, -1, h * w)
        key = self.weight_key(F.adaptive_avg_pool2d(g, self.pool_size)).reshape(b, grp, -1, self.pool_size**2)
        affinity = torch.einsum("bgcn,bgcl->bgnl", q, key)
        logits = self.weight_proj(affinity).reshape(b, grp, h, w, -1)
        small, large = logits.split([self.smk_size**2, k**2], dim=-1)
        v_small, v_large = v.chunk(2, dim=1)
        out = torch.cat(
            [
                self._window_mix(small, self.rpb_small, v_small, self.smk_size),
                self._window_mix(large, self.rpb_large, v_large, k),
            ],
            dim=1,
        )
        return F.adaptive_avg_pool2d(out, size) if out.shape[-2:] != size else out

    def _window_mix(self, logits: Tensor, rpb: Tensor, v: Tensor, k: int) -> Tensor:
        """Softmax the per-pixel taps (+ relative position bias) and apply them to clamped windows of v."""
        b, grp, h, w, _ = logits.shape
        sh, sw = (neighborhood_starts(n, k, v.device) for n in (h, w))
        taps = torch.arange(k, device=v.device)
        rel_h = sh[:, None] + taps - torch.arange(h, device=v.device)[:, None] + k - 1  # (H, k)
        rel_w = sw[:, None] + taps - torch.arange(w, device=v.device)[:, None] + k - 1  # (W, k)
        bias = rpb[:, rel_h[:, None, :, None], rel_w[None, :, None, :]].reshape(grp, h, w, k * k)
        weights = torch.softmax(logits + bias, dim=-1)
        windows = F.unfold(v, k).reshape(b, grp, -1, k * k, h - k + 1, w - k + 1)
        windows = windows.index_select(-2, sh).index_select(-1, sw)  # (B, G, c, k², H, W)
        out = torch.einsum("bghwt,bgcthw->bgchw", weights, windows)
        return out.reshape(b, -1, h, w)

    def extra_repr(self) -> str:
        """Add the kernel sizes, groups and pool size to the default representation."""
        return (
            f"{super().extra_repr()}, kernel_size={self.kernel_size}, smk_size={self.smk_size}, "
            f"groups={self.groups}, pool_size={self.pool_size}"
        )
