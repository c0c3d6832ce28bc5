"""Head mixing of the Dual-Stream Transformer: how much the output projection lets heads talk.

Paper: "The Dual-Stream Transformer: Channelized Architecture for Interpretable Language Modeling" (2025;
see ``papers.txt``). The residual stream is split into a token stream (written by attention) and a context
stream (written by the feed-forward networks); information flow *between attention heads* is controlled by
the structure of the attention output projection, from fully independent (most interpretable) through
Kronecker (recommended: +2.5 % loss instead of +8 %) to dense (a standard Transformer).

With ``H`` heads of width ``d = C / H``, head outputs ``o_1 … o_H ∈ R^d`` (standard SDPA heads,
``o_g = softmax(q_g k_gᵀ / √d) v_g``) and ``o = [o_1; …; o_H] ∈ R^C``, the output is ``y = W o + b`` with

* ``dense``:        ``W ∈ R^{C×C}`` unconstrained (standard multi-head attention).
* ``independent``:  ``W = blockdiag(W_1, …, W_H)``, ``W_h ∈ R^{d×d}``: channel block ``h`` of the output
  depends on head ``h`` only (``y_h = W_h o_h``). ``H d²`` weights.
* ``kronecker``:    ``W = (A ⊗ I_d) · blockdiag(W_1, …, W_H)``, ``A ∈ R^{H×H}``:
  ``y_h = Σ_g A_hg W_g o_g``. Heads exchange information only through the *scalars* ``A_hg``; channel
  ``j`` of head ``g`` (after its own map ``W_g``) can only reach channel ``j`` of block ``h``, so every
  output block keeps the within-head coordinate system of the heads it reads. ``H d² + H²`` weights.
  ``A`` starts at the identity (the independent structure) and learns the cross-head scalars; with
  ``A = I`` it is exactly ``independent``, so the three options are nested: independent ⊂ kronecker ⊂
  dense.

Note that a per-head map ``W_g`` commutes with the attention weights (``W_g o_g = softmax(…) (v_g W_gᵀ)``)
and so could be folded into the value projection; it is kept so that ``independent`` has the same
parameterisation as the paper's block-diagonal projection.

No official code is known to us; built from the paper's abstract. What the paper leaves open and we chose:
the exact Kronecker factorisation (we use ``A ⊗ I_d`` after per-head maps, which is "scalar communication
between heads while preserving within-head structure"), the identity initialisation of ``A``, and a bias on
all ``C`` outputs. The q/k/v projections are dense (every head reads every channel), as in a standard
layer; the channelised residual stream itself is a model-level choice outside this mixer.

CPU and GPU path: one fused qkv projection, ``F.scaled_dot_product_attention``, then the structured output
projection as an ``einsum`` (``independent``/``kronecker``) or a ``Linear`` (``dense``). Complexity
``O(N² C)`` for attention plus ``O(N C d)`` (independent), ``O(N (C d + H² d))`` (kronecker) or
``O(N C²)`` (dense) for the projection.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import normalize_mask
from core.attention.functional import dense_attention_flops
from core.attention.mha import Backend, HeadedAttention, attend, split_heads
from core.attention.registry import register_mechanism

__all__ = ["HeadMixingAttention", "Mixing"]

Mixing = Literal["independent", "kronecker", "dense"]


@register_mechanism(
    paper="The Dual-Stream Transformer: Channelized Architecture for Interpretable Language Modeling (2025)",
    complexity="O(N^2 d)",
    example_kwargs={"num_heads": 2, "mixing": "kronecker"},
)
class HeadMixingAttention(HeadedAttention):
    """Multi-head self-attention whose output projection is independent, Kronecker or dense across heads.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads ``H``; head width ``d = C / H``.
        mixing: ``independent`` (block-diagonal ``W``), ``kronecker`` (``(A ⊗ I_d)·blockdiag(W_h)``,
            the paper's recommendation and our default) or ``dense`` (standard).
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
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
        mixing: Mixing = "kronecker",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        if mixing not in ("independent", "kronecker", "dense"):
            raise ValueError(
                f"HeadMixingAttention: mixing must be 'independent', 'kronecker' or 'dense', got {mixing!r}"
            )
        self.mixing: Mixing = mixing
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if mixing != "dense":
            d = self.head_dim
            # Same init as a d×d nn.Linear per head (kaiming-uniform bound 1/√d).
            bound = 1.0 / d**0.5
            self.head_weight = nn.Parameter(torch.empty(num_heads, d, d).uniform_(-bound, bound))
            self.head_bias = nn.Parameter(torch.zeros(dim)) if proj_bias else None
            self.mix_weight = nn.Parameter(torch.eye(num_heads)) if mixing == "kronecker" else None
            del self.proj  # the structured projection replaces the dense one

    def output_weight(self) -> Tensor:
        """The effective ``C × C`` output matrix ``W`` (``y = W o + b``), for inspection and tests."""
        if self.mixing == "dense":
            return self.proj.weight
        blocks = torch.block_diag(*self.head_weight.unbind(0))
        if self.mixing == "independent":
            return blocks
        eye = torch.eye(self.head_dim, dtype=blocks.dtype, device=blocks.device)
        return torch.kron(self.mix_weight, eye) @ blocks

    def mix_heads(self, heads: Tensor) -> Tensor:
        """Apply the structured output projection to head outputs ``(B, N, H, d)``; returns ``(B, N, C)``."""
        b, n, h, d = heads.shape
        if self.mixing == "dense":
            return self.proj(heads.reshape(b, n, h * d))
        out = torch.einsum("bngd,ged->bnge", heads, self.head_weight)  # y_g = W_g o_g
        if self.mixing == "kronecker":
            out = torch.einsum("hg,bnge->bnhe", self.mix_weight, out)  # y_h = Σ_g A_hg (W_g o_g)
        out = out.reshape(b, n, h * d)
        return out if self.head_bias is None else out + self.head_bias

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Standard multi-head attention, then the structured head mixing."""
        b, n, _ = x.shape
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, "HeadMixingAttention")
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        dropout_p = self.attn_drop if self.training else 0.0
        heads = attend(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, backend=self.backend)
        return self.proj_drop(self.mix_heads(heads.transpose(1, 2)))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Dense attention FLOPs (the mixing only changes the output projection)."""
        return dense_attention_flops(batch, queries, keys, self.dim, is_causal)

    def extra_repr(self) -> str:
        """Add the mixing structure to the default representation."""
        return f"{super().extra_repr()}, mixing={self.mixing}"
