"""CASWiT cross-scale fusion: high-resolution tokens query low-resolution context, with gated injection.

Paper: Carreaud, Naha, Chansel, Lahellec, Skaloud, Gressin, "Context-Aware Semantic Segmentation via
Stage-Wise Attention" (CASWiT, arXiv 2601.11310, 2026). At every encoder stage the HR branch's tokens
``X ∈ ℝ^{N×C}`` attend the LR (context) branch's tokens ``Y ∈ ℝ^{M×C_ctx}``, and the result is injected
through a learnable gate::

    A   = MHA(Q = LN(X) W_Q,  K = LN(Y) W_K,  V = LN(Y) W_V) W_O
    out = X + γ ⊙ A            γ ∈ ℝ^C learnable, γ = gate_init (0) at initialisation

With ``residual=False`` the mixer returns ``γ ⊙ A`` only, for use inside a block that adds its own residual.
A key-padding mask ``(B, M)`` (True = may attend) hides context positions, e.g. padding outside the image.

Differences from the official code: the official code is on the Hugging Face Hub
(``heig-vd-geo/CASWiT``) and was **not read** for this implementation; the equation above is our reading
of the paper's "cross-attention and gated feature injection". Unverified choices, all constructor options:
pre-norms on both inputs (``norm=True``), a per-channel gate with no squashing, and its initial value
(``gate_init=0.0``, so a fused model starts as the pretrained single-branch HR model, like LayerScale /
Flamingo's zero-initialised gates). Check them against ``heig-vd-geo/CASWiT`` before reproducing numbers.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.attention.cross import CrossAttention
from core.attention.mha import Backend
from core.attention.registry import register_mechanism

__all__ = ["CrossScaleFusion"]


@register_mechanism(
    paper="Carreaud et al. 2026, Context-Aware Semantic Segmentation via Stage-Wise Attention (CASWiT)",
    complexity="O(N M d)",
    example_kwargs={"num_heads": 2, "gate_init": 0.5},
)
class CrossScaleFusion(CrossAttention):
    """CASWiT's fusion: HR tokens ``(B, N, C)`` cross-attend LR context ``(B, M, C_ctx)``, gated residual.

    Args:
        dim: Width ``C`` of the HR tokens; must be divisible by ``num_heads``.
        num_heads: Heads (default 8).
        context_dim: Width of the LR context tokens; defaults to ``dim``.
        qkv_bias: Whether the q and kv projections have a bias.
        norm: LayerNorm the queries and the context before projecting them.
        gate_init: Initial value of every entry of the per-channel gate ``γ``.
        residual: Return ``x + γ ⊙ A`` (the fusion module); ``False`` returns ``γ ⊙ A``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = False
    supports_context = True
    requires_context = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        context_dim: int | None = None,
        qkv_bias: bool = True,
        norm: bool = True,
        gate_init: float = 0.0,
        residual: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            context_dim=context_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        self.norm_q = nn.LayerNorm(dim) if norm else nn.Identity()
        self.norm_kv = nn.LayerNorm(self.context_dim) if norm else nn.Identity()
        self.gate = nn.Parameter(torch.full((dim,), float(gate_init)))
        self.residual = residual

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend the (normalised) HR tokens to the (normalised) context and inject the gated result."""
        assert context is not None  # guaranteed by requires_context
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"CrossScaleFusion: expected context of shape (B, M, {self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        attended = super().mix(
            self.norm_q(x), grid=grid, mask=mask, is_causal=False, context=self.norm_kv(context)
        )
        injected = self.gate * attended
        return x + injected if self.residual else injected

    def extra_repr(self) -> str:
        """Add the residual flag."""
        return f"{super().extra_repr()}, residual={self.residual}"
