"""BEVANet's sparse decomposed large separable kernel attention (SDLSKA) with comprehensive kernel selection.

Paper: Huang et al., "BEVANet: Bilateral Efficient Visual Attention Network for Real-Time Semantic
Segmentation", 2025 (arXiv 2508.07300; official code ``maomao0819/BEVANet``, ``models/LSKA.py``,
``models/FS.py``, ``models/EVAN.py``).

BEVANet builds on VAN's large kernel attention (Guo et al. 2022, LKA: ``x ⊙ Conv1×1(DWDConv(DWConv(x)))``)
and LSKA (Lau et al. 2024, which splits each depthwise conv into a horizontal and a vertical strip).
SDLSKA keeps a small square depthwise conv and then runs the two dilated strips **in parallel** (not in
series) on its output, so there are three receptive fields, which CKS then weighs per channel and per pixel:

.. code-block:: text

    u      = GELU(W_1 x)                                    # proj_1 of VAN's attention module
    a_s    = DWConv_{k×k}(u)                                 # small, dense
    a_h    = DWDConv_{1×m, dilation d}(a_s)                  # large, horizontal strip
    a_v    = DWDConv_{m×1, dilation d}(a_s)                  # large, vertical strip
    # comprehensive kernel selection (CKS)
    s      = a_s + a_h + a_v
    z      = ReLU(BN(DW(W_r · GAP(s))))                      # hidden = max(C / 16, 32)
    c_i    = σ(ReLU(BN(DW(W_i z))))          i ∈ {s, h, v}   # channel weights (B, C, 1, 1)
    p      = σ(Conv_{7×7}([mean_c(s); max_c(s)]))            # 3 spatial maps (B, 3, H, W)
    a      = Σ_i a_i ⊙ c_i ⊙ p_i
    out    = W_2 (u ⊙ W_3 a) + x                             # gate, proj_2, shortcut

The large kernel size ``K`` picks ``(k, m, d)`` as in the official tables: 7 → (3, 3, 2), 11 → (3, 5, 2),
23 → (5, 7, 3), 35 → (5, 11, 3); 41 → (5, 13, 3) and 53 → (5, 17, 3) come from LSKA's table (the
official SDLSKA only defines the first four). The receptive field is ``k + d (m − 1) = K``. BEVANet uses
``K = 35`` in the semantic branch and ``K = 23`` in the detail branch.

Beyond 2-D the construction generalises naturally: one dilated strip per spatial axis (one branch in 1-D,
three in 3-D), and CKS selects among ``1 + spatial_dims`` branches.

Differences from the official code:

* The official CKS applies a 3×3 depthwise conv (zero padding) to the ``1 × 1`` pooled vectors, where
  only the centre tap can ever touch data; we use the equivalent depthwise ``1 × 1`` conv (a per-channel
  scale and bias), which computes the same function with 1/9 of those weights.
* The channel weights are ``σ(ReLU(·)) ∈ [0.5, 1)`` in the official code (a ReLU precedes the sigmoid).
  We keep this by default for fidelity; ``channel_gate_relu=False`` drops the ReLU so the weights span
  ``(0, 1)``.
* The BatchNorms inside CKS act on pooled ``(B, C, 1, 1)`` vectors, so training needs a batch of at least
  2 (as in the official code).
"""

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import SpatialMixer
from core.attention.registry import register_mechanism
from core.layers.nd import batch_norm_nd, conv_nd

__all__ = ["SDLSKA", "SDLSKA_KERNELS"]

SDLSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}
"""Large kernel size ``K`` → (small square kernel ``k``, strip length ``m``, strip dilation ``d``)."""


@register_mechanism(
    paper="Huang et al. 2025, BEVANet: Bilateral Efficient Visual Attention Network for Real-Time "
    "Semantic Segmentation",
    complexity="O(N K d)",
    example_kwargs={"kernel_size": 7, "hidden_channels": 4},
)
class SDLSKA(SpatialMixer):
    """BEVANet's attention module: VAN-style projections around SDLSKA with comprehensive kernel selection.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: 1, 2 or 3 spatial axes; one dilated strip branch per axis.
        kernel_size: Equivalent large kernel size ``K`` (a key of :data:`SDLSKA_KERNELS`).
        hidden_channels: Width of CKS's squeeze; default ``max(C // 16, 32)`` as in the official code.
        channel_gate_relu: Keep the official ReLU before the channel sigmoid (weights in ``[0.5, 1)``).
        shortcut: Add the input back (VAN's attention module does; the official EVAN block relies on it).
    """

    supported_dims: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        kernel_size: Literal[7, 11, 23, 35, 41, 53] = 35,
        hidden_channels: int | None = None,
        channel_gate_relu: bool = True,
        shortcut: bool = True,
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if kernel_size not in SDLSKA_KERNELS:
            raise ValueError(
                f"SDLSKA: kernel_size must be one of {sorted(SDLSKA_KERNELS)}, got {kernel_size}"
            )
        hidden = hidden_channels if hidden_channels is not None else max(channels // 16, 32)
        if hidden <= 0:
            raise ValueError(f"SDLSKA: hidden_channels must be positive, got {hidden}")
        conv, bn, d = conv_nd(spatial_dims), batch_norm_nd(spatial_dims), spatial_dims
        small, strip, dilation = SDLSKA_KERNELS[kernel_size]
        self.kernel_size = kernel_size
        self.channel_gate_relu = channel_gate_relu
        self.shortcut = shortcut
        self.proj_1 = conv(channels, channels, 1)
        self.act = nn.GELU()
        self.dw_small = conv(channels, channels, small, padding=small // 2, groups=channels)
        self.dw_strips = nn.ModuleList()
        for axis in range(d):
            k = tuple(strip if a == axis else 1 for a in range(d))
            pad = tuple(dilation * (strip - 1) // 2 if a == axis else 0 for a in range(d))
            dil = tuple(dilation if a == axis else 1 for a in range(d))
            self.dw_strips.append(conv(channels, channels, k, padding=pad, dilation=dil, groups=channels))
        branches = 1 + d
        self.reduce = nn.Sequential(
            conv(channels, hidden, 1), conv(hidden, hidden, 1, groups=hidden), bn(hidden), nn.ReLU()
        )
        self.expand = nn.ModuleList(
            nn.Sequential(
                conv(hidden, channels, 1), conv(channels, channels, 1, groups=channels), bn(channels)
            )
            for _ in range(branches)
        )
        self.squeeze = conv(2, branches, 7, padding=3)
        self.pw = conv(channels, channels, 1)
        self.proj_2 = conv(channels, channels, 1)

    def mix(self, x: Tensor) -> Tensor:
        """Gate the projected input with the CKS-weighted sum of the three receptive-field branches."""
        u = self.act(self.proj_1(x))
        small = self.dw_small(u)
        branches = [small] + [strip(small) for strip in self.dw_strips]
        attn = self.select(branches)
        out = self.proj_2(u * self.pw(attn))
        return out + x if self.shortcut else out

    def select(self, branches: list[Tensor]) -> Tensor:
        """Comprehensive kernel selection: per-channel times per-pixel weights for every branch, summed."""
        total = torch.stack(branches).sum(0)
        spatial_axes = tuple(range(2, total.ndim))
        z = self.reduce(total.mean(spatial_axes, keepdim=True))
        pooled = torch.cat([total.mean(1, keepdim=True), total.amax(1, keepdim=True)], dim=1)
        spatial = torch.sigmoid(self.squeeze(pooled))
        out = torch.zeros_like(total)
        for i, (branch, expand) in enumerate(zip(branches, self.expand, strict=True)):
            logits = expand(z)
            channel = torch.sigmoid(F.relu(logits) if self.channel_gate_relu else logits)
            out = out + branch * channel * spatial[:, i : i + 1]
        return out

    def extra_repr(self) -> str:
        """Add the large kernel size to the default representation."""
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"
