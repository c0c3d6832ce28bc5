"""DualToken-ViT's dual-token attention: conv-local tokens fused with position-aware global tokens.

Paper: Chu, Chen, Chen, Wang, Wu, Huang, Qian, "DualToken-ViT: Position-aware Efficient Vision Transformer
with Dual Token Fusion", SDM 2024 (arXiv 2309.12424), §3.1-3.2.

**No official code has been released** (none found on GitHub); this module is built from the paper's
description, and the operators the paper leaves unspecified are marked *[reconstruction]* below.

.. code-block:: text

    X_local = X + W_2 GELU(W_1 LN(DWConv_{7×7}(X)))             # Conv Encoder = a ConvNeXt block
    X_ds    = (MaxPool_2 ∘ DWConv_{3×3})^M (X_local)             # step-wise downsampling until ≤ P × P
    X_ga    = MHSA(X_ds)                                         # global aggregation
    S       = α X_ga + β G                                       # position-aware global tokens G (P × P)
    G_new   = S + MLP(LN(S))                                     # enrich
    X_glob  = MHA(Q = X_local, K = V = G_new)                    # global broadcast to every image token
    out     = X_local + X_glob                                   # fusion

``G`` holds ``P × P = 7 × 7`` tokens laid out like the image, so it keeps position information; the
paper passes ``G_new`` from each block to the next through all stages. When the downsampled grid is not
``P × P`` (small inputs), ``G`` is bilinearly resized to it, and ``G_new`` is resized back to ``P × P``.

Protocol decision: a :class:`TokenMixer` with ``needs_grid`` (2-D), so any model can build it from
``dim``. The global tokens travel between layers through ``context``: pass the previous layer's
``mixer.global_tokens`` (``(B, P², C)``) as ``context=``; without it, the layer starts from its own
learnable ``P × P`` tokens (the paper's initial tokens; in a plain factory-built stack every layer then
has its own position-aware tokens). ``mask`` is not supported: the conv encoder mixes neighbours
regardless of a mask, so masked tokens would leak.

*[reconstruction]* choices: the downsampling step is a shared depthwise 3×3 conv followed by a 2×2
max-pool (``ceil_mode``), repeated until both sides are ``≤ P``; the weighted sum uses two learnable
scalars ``α = β = ½`` at initialisation; the enrichment MLP is a pre-norm residual MLP with ratio 4;
global aggregation has no residual and broadcast is a plain multi-head cross-attention with output
projection.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, check_grid_2d
from core.attention.cross import CrossAttention
from core.attention.mha import MultiHeadAttention
from core.attention.registry import register_mechanism
from core.layers.mlp import Mlp

__all__ = ["DualTokenAttention"]


@register_mechanism(
    paper="Chu et al. 2024, DualToken-ViT: Position-aware Efficient Vision Transformer with Dual Token "
    "Fusion",
    complexity="O(N P^2 d + N k^2 d)",
    example_kwargs={"num_heads": 2, "num_global": 2},
)
class DualTokenAttention(TokenMixer):
    """Conv-local tokens plus global tokens aggregated on a downsampled grid, broadcast back by attention.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Heads of the aggregation and broadcast attentions.
        num_global: Side ``P`` of the position-aware global token grid (paper: 7).
        local_kernel: Depthwise kernel of the conv encoder (ConvNeXt: 7); odd.
        mlp_ratio: Hidden ratio of the conv encoder's and the enrichment MLPs.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = False
    supports_causal = False
    supports_context = True
    needs_grid = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        num_global: int = 7,
        local_kernel: int = 7,
        mlp_ratio: float = 4.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_global < 1:
            raise ValueError(f"DualTokenAttention: num_global must be positive, got {num_global}")
        if local_kernel < 1 or local_kernel % 2 == 0:
            raise ValueError(
                f"DualTokenAttention: local_kernel must be a positive odd number, got {local_kernel}"
            )
        hidden = int(dim * mlp_ratio)
        self.num_global = num_global
        self.local_dw = nn.Conv2d(dim, dim, local_kernel, padding=local_kernel // 2, groups=dim)
        self.local_norm = nn.LayerNorm(dim)
        self.local_mlp = Mlp(dim, hidden)
        self.down_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.aggregate = MultiHeadAttention(dim, num_heads=num_heads)
        self.global_init = nn.Parameter(torch.randn(1, dim, num_global, num_global) * 0.02)
        self.mix_weights = nn.Parameter(torch.full((2,), 0.5))
        self.enrich_norm = nn.LayerNorm(dim)
        self.enrich_mlp = Mlp(dim, hidden)
        self.broadcast = CrossAttention(dim, num_heads=num_heads)
        self.global_tokens: Tensor | None = None

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Local conv encoder, global aggregation on the downsampled map, broadcast and fusion.

        ``context``, when given, is the previous layer's ``global_tokens`` ``(B, P², C)``. The updated
        tokens ``G_new`` are left in ``self.global_tokens`` for the next layer.
        """
        assert grid is not None  # guaranteed by needs_grid
        h, w = check_grid_2d(grid, x.shape[1], type(self).__name__)
        b, _, c = x.shape
        p = self.num_global
        if context is not None and context.shape[1:] != (p * p, c):
            raise ValueError(
                f"DualTokenAttention: expected context (global tokens) of shape ({b}, {p * p}, {c}), "
                f"got {tuple(context.shape)}"
            )
        x_map = x.transpose(1, 2).reshape(b, c, h, w)
        local = x + self.local_mlp(self.local_norm(self.local_dw(x_map).flatten(2).transpose(1, 2)))
        ds = local.transpose(1, 2).reshape(b, c, h, w)
        while ds.shape[-2] > p or ds.shape[-1] > p:
            ds = F.max_pool2d(self.down_dw(ds), 2, ceil_mode=True)
        hd, wd = ds.shape[-2:]
        x_ga = self.aggregate(ds.flatten(2).transpose(1, 2))
        g = (
            self.global_init.expand(b, -1, -1, -1)
            if context is None
            else context.transpose(1, 2).reshape(b, c, p, p)
        )
        if (hd, wd) != (p, p):
            g = F.interpolate(g, size=(hd, wd), mode="bilinear", align_corners=False)
        s = self.mix_weights[0] * x_ga + self.mix_weights[1] * g.flatten(2).transpose(1, 2)
        g_new = s + self.enrich_mlp(self.enrich_norm(s))
        out = local + self.broadcast(local, context=g_new)
        g_map = g_new.transpose(1, 2).reshape(b, c, hd, wd)
        if (hd, wd) != (p, p):
            g_map = F.interpolate(g_map, size=(p, p), mode="bilinear", align_corners=False)
        self.global_tokens = g_map.flatten(2).transpose(1, 2)
        return out

    def extra_repr(self) -> str:
        """Add the global token grid to the default representation."""
        return f"{super().extra_repr()}, num_global={self.num_global}"
