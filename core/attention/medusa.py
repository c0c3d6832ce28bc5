"""MEDUSA: one encoder-decoder self-attention body with multi-scale attention heads.

Paper: Aboutalebi, Pavlova, Gunraj, Shafiee, Sabri, Alaref, Wong, "MEDUSA: Multi-Scale Encoder-Decoder
Self-Attention Deep Neural Network Architecture for Medical Image Analysis", Frontiers in Medicine 8:821120
(2022), arXiv 2110.06063.

**No official source code exists**: the authors released MEDUSA only as a trained TensorFlow graph inside
COVID-Net CXR-3 (github.com/lindawangg/COVID-Net ships the data loading for it, not the architecture).
This module is built from the paper's description, and we could not consult the paper's full text while
writing it, so the layer-level choices below (kernel sizes, pooling, activation) are ours.

What the paper describes: instead of many small, isolated self-attention modules placed at different
depths (the "attention condensers" of the same group: condense, embed, expand, then sigmoid-gate the
features), MEDUSA has a *single body*, a higher-capacity encoder-decoder network, whose output feeds
*several heads*; each head produces the selective-attention map for one scale of the network, so every
scale's attention shares the body's global context while each head keeps its own local context.

As a token mixer all heads act on the same layer, so "one head per scale" becomes "one head per channel
group, each forming its attention map at its own scale". For tokens ``X`` on an ``H × W`` grid::

    V = X W_v                                   (values, C channels, split into S groups V_1..V_S)
    E_0 = GELU(Conv3×3(X)),  E_l = GELU(Conv3×3(Pool_2(E_{l-1})))      l = 1..depth  (encoder)
    D_depth = E_depth,       D_l = GELU(Conv3×3(Up_2(D_{l+1}) + E_l))   l = depth-1..0 (decoder)
    A_s = Up_s(σ(Conv1×1_s(Pool_s(D_0))))      one head per scale s in ``scales``
    out = [V_1 ⊙ A_{s_1} | ... | V_S ⊙ A_{s_S}] W_o

``Pool_s`` averages non-overlapping ``s × s`` blocks (edge blocks average the tokens they hold) and
``Up_s`` repeats each coarse value over its block (nearest), so head ``s`` can only express attention at
the resolution ``⌈H/s⌉ × ⌈W/s⌉``. The body mixes tokens over a receptive field of about ``3 · 2^depth``
tokens; it is not global attention.

Grids: ``grid=(H, W)``; no grid (or ``grid=(N,)``) treats the tokens as a ``1 × N`` image, so the mixer
also runs on sequences (``needs_grid`` is False).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, grid_2d
from core.attention.registry import register_mechanism

__all__ = ["MedusaAttention", "block_mean_pool", "block_upsample"]


def block_mean_pool(x: Tensor, scale: int) -> Tensor:
    """Average non-overlapping ``scale × scale`` blocks of ``(B, C, H, W)`` (edge blocks: what they hold)."""
    if scale == 1:
        return x
    height, width = x.shape[-2:]
    pad = (0, (-width) % scale, 0, (-height) % scale)
    total = F.avg_pool2d(F.pad(x, pad), scale, divisor_override=1)
    count = F.avg_pool2d(F.pad(x.new_ones(1, 1, height, width), pad), scale, divisor_override=1)
    return total / count


def block_upsample(x: Tensor, scale: int, size: tuple[int, int]) -> Tensor:
    """Repeat every value of ``(B, C, h, w)`` over a ``scale × scale`` block, cropped to ``size``."""
    if scale == 1:
        return x[..., : size[0], : size[1]]
    x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return x[..., : size[0], : size[1]]


@register_mechanism(
    paper="Aboutalebi et al. 2022, MEDUSA: Multi-Scale Encoder-Decoder Self-Attention Deep Neural Network "
    "Architecture for Medical Image Analysis",
    complexity="O(N d^2)",
    example_kwargs={"scales": (1, 2), "depth": 1},
)
class MedusaAttention(TokenMixer):
    """A single encoder-decoder attention body whose heads gate channel groups at different scales.

    No mask and no causality (the body's convolutions mix neighbouring tokens). ``grid=(H, W)`` for
    images; no grid (or ``(N,)``) treats the tokens as a ``1 × N`` image.

    Args:
        dim: Channel dimension ``C``; divisible by ``len(scales)``.
        scales: Pooling factor of each head (one channel group per head), e.g. ``(1, 2, 4, 8)``.
        body_dim: Channels of the shared encoder-decoder body; defaults to ``max(C // 2, 1)``.
        depth: Number of 2× down/up-sampling levels of the body.
        qkv_bias: Whether the value projection has a bias.
        proj_drop: Dropout after the output projection.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = False
    supports_causal = False

    def __init__(
        self,
        dim: int,
        *,
        scales: Sequence[int] = (1, 2, 4, 8),
        body_dim: int | None = None,
        depth: int = 2,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        scales = tuple(int(s) for s in scales)
        if not scales or min(scales) < 1:
            raise ValueError(f"MedusaAttention: scales must be positive ints, got {scales}")
        if dim % len(scales):
            raise ValueError(f"MedusaAttention: dim={dim} must be divisible by len(scales)={len(scales)}")
        body = max(dim // 2, 1) if body_dim is None else body_dim
        if body < 1:
            raise ValueError(f"MedusaAttention: body_dim must be positive, got {body}")
        if depth < 0:
            raise ValueError(f"MedusaAttention: depth must be >= 0, got {depth}")
        self.scales = scales
        self.body_dim = body
        self.depth = depth
        self.head_dim = dim // len(scales)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.stem = nn.Conv2d(dim, body, 3, padding=1)
        self.encoder = nn.ModuleList(nn.Conv2d(body, body, 3, padding=1) for _ in range(depth))
        self.decoder = nn.ModuleList(nn.Conv2d(body, body, 3, padding=1) for _ in range(depth))
        self.heads = nn.ModuleList(nn.Conv2d(body, self.head_dim, 1) for _ in scales)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Run the body once, form one attention map per head scale, gate the value groups."""
        b, n, c = x.shape
        height, width = grid_2d(grid, n, "MedusaAttention")
        body = self.body(x.transpose(1, 2).reshape(b, c, height, width))
        maps = [
            block_upsample(torch.sigmoid(head(block_mean_pool(body, s))), s, (height, width))
            for head, s in zip(self.heads, self.scales, strict=True)
        ]
        gates = torch.cat(maps, dim=1).flatten(2).transpose(1, 2)  # (B, N, C)
        return self.proj_drop(self.proj(self.v(x) * gates))

    def body(self, fmap: Tensor) -> Tensor:
        """The shared encoder-decoder: ``(B, C, H, W) -> (B, body_dim, H, W)``."""
        skips = [F.gelu(self.stem(fmap))]
        for conv in self.encoder:
            skips.append(F.gelu(conv(block_mean_pool(skips[-1], 2))))
        out = skips.pop()
        for conv in reversed(self.decoder):
            skip = skips.pop()
            out = F.gelu(conv(block_upsample(out, 2, skip.shape[-2:]) + skip))
        return out

    def extra_repr(self) -> str:
        """Add the head scales and body size to the default representation."""
        return f"{super().extra_repr()}, scales={self.scales}, body_dim={self.body_dim}, depth={self.depth}"
