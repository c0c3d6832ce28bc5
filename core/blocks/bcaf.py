"""BCAF's fusion layer: parent↔child cross-attention, FFNs, spectral collapse and gated fusion.

Paper: BCAF, bidirectional cross-attention fusion of RGB and hyperspectral images (2026; official code
``jonasvilhofunk/BCAF_2026``, ``BidirectionalCrossAttentionBlock``). One layer per backbone stage, applied
to the fine (RGB) map ``F`` and the coarse (HSI) map ``Z`` with ``S`` spectral tokens per cell::

    ΔF, ΔZ = Attn(LN(F), LN(Z))                    # parent↔child cross-attention
    F = F + ΔF;                Z = Z + ΔZ
    F = F + FFN_f(LN(F));      Z = Z + FFN_z(LN(Z))      # mlp ratio 4
    z = SpectralSE(Z)                                    # (B, C, H, W): collapse S
    fused = LN(LN(F) + σ(α) ⊙ Up_r(LN(z)))               # nearest ×r, α ∈ ℝ^C initialised to 0

The block takes an attention factory (default :class:`~core.attention.bcaf.ParentChildCrossAttention`);
any module with ``forward(fine, coarse) -> (fine_update, coarse_update)`` on channels-last tensors fits.

Differences from the official code: the official wrapper with ``num_cross_attention_layers > 1`` feeds every
layer the same inputs and keeps only the last output; stack :class:`BCAFBlock` s on
:meth:`BCAFBlock.forward_streams` to chain layers instead. Shape errors are ``ValueError`` s, not asserts.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from core.attention.bcaf import Direction, ParentChildCrossAttention, SpectralSE, parent_child_ratio
from core.layers.mlp import Mlp

__all__ = ["BCAFBlock", "ParentChildAttentionFactory"]

ParentChildAttentionFactory = Callable[[int], nn.Module]
"""``attention(dim)`` -> a module with ``forward(fine, coarse) -> (fine_update, coarse_update)``."""


class BCAFBlock(nn.Module):
    """One BCAF fusion layer on channels-first feature maps, as the official fusion wrapper takes them.

    Args:
        dim: Channels ``C`` of both streams.
        num_heads: Heads of the default attention (default: Swin's ``dim // 32``).
        mlp_ratio: Hidden-width ratio of both FFNs (BCAF: 4).
        drop: Dropout inside the FFNs and on the default attention's weights (official: one ``dropout``).
        direction: Direction(s) of the default attention (``bidirectional`` in BCAF).
        se_reduction: Reduction of the :class:`~core.attention.bcaf.SpectralSE` collapse (BCAF: 8).
        gate_init: Initial value of the per-channel gate logit ``α`` (official: 0, so ``σ(α) = 0.5``).
        attention: Factory ``attention(dim)`` for the cross-attention; overrides ``num_heads``,
            ``direction`` and the attention dropout.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        direction: Direction = "bidirectional",
        se_reduction: int = 8,
        gate_init: float = 0.0,
        attention: ParentChildAttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"BCAFBlock: mlp_ratio must be positive, got {mlp_ratio}")
        if attention is None:
            attention = partial(
                ParentChildCrossAttention, num_heads=num_heads, direction=direction, attn_drop=drop
            )
        self.dim = dim
        self.norm_fine1, self.norm_coarse1 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = attention(dim)
        self.norm_fine2, self.norm_coarse2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp_fine, self.mlp_coarse = Mlp(dim, hidden, drop=drop), Mlp(dim, hidden, drop=drop)
        self.spectral_se = SpectralSE(dim, reduction=se_reduction)
        self.norm_fine_fuse, self.norm_coarse_fuse = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_fused = nn.LayerNorm(dim)
        self.alpha = nn.Parameter(torch.full((dim,), float(gate_init)))

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        """Fuse the two maps on the fine grid.

        Args:
            fine: Fine (RGB) map ``(B, C, H·r_h, W·r_w)``.
            coarse: Coarse (HSI) map ``(B, C, S, H, W)``.

        Returns:
            The fused map ``(B, C, H·r_h, W·r_w)``.
        """
        self._check(fine, coarse)
        f, z = self.forward_streams(fine.permute(0, 2, 3, 1), coarse.permute(0, 3, 4, 2, 1))
        ratio = parent_child_ratio((f.shape[1], f.shape[2]), (z.shape[1], z.shape[2]), "BCAFBlock")
        collapsed = self.spectral_se(z.permute(0, 4, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)
        up = self.norm_coarse_fuse(collapsed)
        up = up.repeat_interleave(ratio[0], dim=1).repeat_interleave(ratio[1], dim=2)
        fused = self.norm_fused(self.norm_fine_fuse(f) + torch.sigmoid(self.alpha) * up)
        return fused.permute(0, 3, 1, 2)

    def forward_streams(self, fine: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention and FFN updates of both streams, channels-last, before the fusion.

        Args:
            fine: ``(B, H·r_h, W·r_w, C)``.
            coarse: ``(B, H, W, S, C)``.

        Returns:
            The updated ``(fine, coarse)``, same shapes.
        """
        fine_update, coarse_update = self.attn(self.norm_fine1(fine), self.norm_coarse1(coarse))
        fine, coarse = fine + fine_update, coarse + coarse_update
        fine = fine + self.mlp_fine(self.norm_fine2(fine))
        return fine, coarse + self.mlp_coarse(self.norm_coarse2(coarse))

    def _check(self, fine: Tensor, coarse: Tensor) -> None:
        c = self.dim
        if fine.ndim != 4 or fine.shape[1] != c:
            raise ValueError(f"BCAFBlock: expected fine of shape (B, {c}, H_f, W_f), got {tuple(fine.shape)}")
        if coarse.ndim != 5 or coarse.shape[1] != c or coarse.shape[0] != fine.shape[0]:
            raise ValueError(
                f"BCAFBlock: expected coarse of shape ({fine.shape[0]}, {c}, S, H_c, W_c), "
                f"got {tuple(coarse.shape)}"
            )

    def extra_repr(self) -> str:
        """Width."""
        return f"dim={self.dim}"
