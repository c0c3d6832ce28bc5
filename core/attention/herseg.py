"""HER-Seg's dual-gated linear attention (DLA), as a token mixer built from the paper's abstract.

Paper: Xu et al., "HER-Seg: Holistically Efficient Segmentation for High-Resolution Medical Images"
(arXiv 2504.06205, 2025). Code: https://github.com/xq141839/HER-Seg. **Neither the official code nor the
paper's method section was read**: only the abstract was available, which says DLA "performs cascaded
token filtering, selectively retaining important tokens while ignoring irrelevant ones to enhance attention
computation efficiency", inside an encoder that models long-range dependencies with linear complexity.
What follows is our construction of that idea; treat it as "DLA-style", not as a reproduction.

**What we built.** Kernelised linear attention (``φ = elu + 1``, see :mod:`core.attention.linear`) with two
gates in cascade, per head ``h``:

1. *Token gate* (filters the keys/values that form the global context). A per-token, per-head importance
   score ``s_j = w_hᵀ x_j + b_h`` and gate ``g_j = σ(s_j)``. With ``keep_ratio = r`` only the
   ``K = ⌈r N⌉`` tokens with the highest scores (padded tokens never first) are kept: they are gathered,
   so the key/value summary costs ``O(K d²)`` instead of ``O(N d²)``. Kept keys are weighted by their
   gate (which is how the score gets a gradient)::

       out_i = Σ_{j ∈ kept} g_j φ(q_i)·φ(k_j) v_j  /  ( Σ_{j ∈ kept} g_j φ(q_i)·φ(k_j) + ε · max(|kept|, 1) )

   ``keep_ratio=None`` (default) keeps every token and only re-weights them (a soft filter, fully
   differentiable). Since ``g_j`` enters numerator and denominator, it re-weights the attention
   distribution ``g_j s_ij / Σ g_j s_ij`` rather than scaling the output.
2. *Output gate* (filters what each query keeps of the context). ``o_i = W_o (A_i ⊙ σ(W_g x_i))``, channel
   by channel over the concatenated heads.

**Segments** (``segment_size``, default :data:`SEGMENT_SIZE`). The layer runs in two passes over
segments of the sequence so that every operand stays cache-sized on CPU: pass 1 projects each segment
and accumulates the gated key/value summary ``Σ g_j φ(k_j) v_jᵀ`` and ``Σ g_j φ(k_j)``; pass 2 reads the
summary with each segment's queries and applies the output gate and projection. Only the ``(B, H, N)``
scores (for the top-K ranking) and the input/output span the whole sequence. The result equals the
unsegmented form up to the order of the floating-point sums.

**Masks.** Key padding only: padded tokens get score ``-inf`` (never kept before a real token) and weight
zero. Causality is not supported: the top-K selection ranks all tokens, future ones included, and HER-Seg
is an image encoder. ``grid`` is accepted and ignored (the mixer is permutation-equivariant).

Differences from the official code: unknown — it was not read (see above). The 2-D/3-D encoder around the
mixer, any convolutional positional branch and the mask decoder (ME-Decoder) are not part of this mixer.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.linear import POSITIVE_MAPS, LinearFeatureMap, linear_feature_map
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["SEGMENT_SIZE", "DualGatedLinearAttention", "dual_gated_linear_attention"]

#: Tokens per segment of the two-pass layer. One segment's largest activation, the q/k/v projection, is
#: ``B · 3C · 4`` bytes per token: 1.5 MiB for B = 2, C = 64 (fp32), so the working set of a segment stays
#: well inside a 2 MiB L2 / 32 MiB L3 cache, while 64k tokens take only 32 Python iterations per pass.
SEGMENT_SIZE = 2048


def dual_gated_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scores: Tensor,
    *,
    keep: int | None = None,
    key_mask: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Token-gated, optionally top-K filtered, normalised linear attention on feature-mapped heads.

    Args:
        q: Query features ``φ(q)`` ``(B, H, N, D)``.
        k: Key features ``φ(k)`` ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        scores: Token-importance logits ``(B, H, M)``; the gate is ``σ(scores)``.
        keep: Number of keys kept per batch and head (highest scores); None keeps all.
        key_mask: Optional key padding ``(B, M)``, True = real token.
        eps: Relative guard of the denominator.

    Returns:
        ``(B, H, N, Dv)``.

    Raises:
        ValueError: On mismatched shapes or a ``keep`` outside ``1 … M``.
    """
    b, h, m = k.shape[:3]
    if scores.shape != (b, h, m) or v.shape[:3] != (b, h, m) or q.shape[:2] != (b, h):
        raise ValueError(
            "dual_gated_linear_attention: expected q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), "
            f"scores (B, H, M); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, "
            f"{tuple(scores.shape)}"
        )
    valid = torch.ones(b, h, m, dtype=torch.bool, device=k.device)
    if key_mask is not None:
        valid = valid & key_mask[:, None, :]
    if keep is not None:
        if not 1 <= keep <= m:
            raise ValueError(f"dual_gated_linear_attention: keep must be in 1..{m}, got {keep}")
        if keep < m:
            rank = scores.detach().masked_fill(~valid, float("-inf"))
            idx = rank.topk(keep, dim=-1).indices  # (B, H, K)
            k = k.gather(2, idx[..., None].expand(-1, -1, -1, k.shape[-1]))
            v = v.gather(2, idx[..., None].expand(-1, -1, -1, v.shape[-1]))
            scores, valid = scores.gather(2, idx), valid.gather(2, idx)
    weight = torch.sigmoid(scores) * valid.to(scores.dtype)  # (B, H, K)
    k = k * weight[..., None]
    num = q @ (k.transpose(-2, -1) @ v)
    den = q @ k.sum(dim=2).unsqueeze(-1)
    count = valid.sum(dim=-1).clamp_min(1).to(q.dtype)[..., None, None]
    return num / (den + eps * count)


@register_mechanism(
    paper="Xu et al. 2025, HER-Seg: Holistically Efficient Segmentation for High-Resolution Medical Images "
    "(DLA, built from the abstract)",
    complexity="O(N d^2)",
    example_kwargs={"num_heads": 2, "keep_ratio": 0.5},
)
class DualGatedLinearAttention(TokenMixer):
    """HER-Seg-style dual-gated linear attention: a token gate (top-K filter) and an output gate.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads; each has its own token gate.
        keep_ratio: Fraction ``r ∈ (0, 1]`` of tokens kept for the key/value summary (``⌈r N⌉``);
            None keeps all and only soft-gates them.
        feature_map: ``elu`` (``elu(x) + 1``) or ``relu``.
        qkv_bias: Bias of the q/k/v projection.
        eps: Relative guard of the denominator.
        segment_size: Tokens per segment of the two-pass evaluation (see the module doc); it changes
            speed, not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "PyTorch (CPU + GPU)"

    supports_mask = True
    supports_causal = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        keep_ratio: float | None = None,
        feature_map: LinearFeatureMap = "elu",
        qkv_bias: bool = False,
        eps: float = 1e-6,
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(
                f"DualGatedLinearAttention: dim={dim} must be divisible by num_heads={num_heads}"
            )
        if segment_size < 1:
            raise ValueError(f"DualGatedLinearAttention: segment_size must be positive, got {segment_size}")
        if keep_ratio is not None and not 0.0 < keep_ratio <= 1.0:
            raise ValueError(
                f"DualGatedLinearAttention: keep_ratio must be in (0, 1] or None, got {keep_ratio}"
            )
        if feature_map not in POSITIVE_MAPS:
            raise ValueError(
                f"DualGatedLinearAttention: feature_map must be elu or relu, got {feature_map!r}"
            )
        self.num_heads = num_heads
        self.keep_ratio = keep_ratio
        self.feature_map: LinearFeatureMap = feature_map
        self.eps = eps
        self.segment_size = segment_size
        self.phi = linear_feature_map(feature_map)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.token_gate = nn.Linear(dim, num_heads)
        self.output_gate = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Score tokens, keep the top ones, attend linearly, gate the output and project back.

        Two passes over segments (see the module doc); equal to :func:`dual_gated_linear_attention`.
        """
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, "DualGatedLinearAttention")
        scores = self.token_gate(x).transpose(1, 2)  # (B, H, N), small: ranked over the whole sequence
        kept = torch.ones_like(scores, dtype=torch.bool)
        if valid is not None:
            kept = kept & valid[:, None, :]
        if self.keep_ratio is not None:
            keep = max(1, math.ceil(self.keep_ratio * n))
            if keep < n:
                rank = scores.detach().masked_fill(~kept, float("-inf"))
                top = torch.zeros_like(kept).scatter_(-1, rank.topk(keep, dim=-1).indices, True)
                kept = kept & top
        weight = torch.sigmoid(scores) * kept.to(scores.dtype)  # g_j on kept tokens, 0 elsewhere
        count = kept.sum(dim=-1).clamp_min(1).to(x.dtype)[..., None, None]  # (B, H, 1, 1)
        # Pass 1: per-segment projections and the gated key/value summary. Split once (slicing in the
        # loop would make autograd build a full-size gradient per segment).
        queries, kvs, ksums = [], [], []
        for xs, ws in zip(
            x.split(self.segment_size, dim=1), weight.split(self.segment_size, dim=-1), strict=True
        ):
            q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(xs).chunk(3, dim=-1))
            k = self.phi(k) * ws[..., None]
            queries.append(self.phi(q))
            kvs.append(k.transpose(-2, -1) @ v)
            ksums.append(k.sum(dim=2).unsqueeze(-1))
        kv, ksum = torch.stack(kvs).sum(dim=0), torch.stack(ksums).sum(dim=0)
        # Pass 2: read the summary, gate and project per segment.
        outs = []
        for q, xs in zip(queries, x.split(self.segment_size, dim=1), strict=True):
            out = (q @ kv) / (q @ ksum + self.eps * count)
            outs.append(self.proj(merge_heads(out) * torch.sigmoid(self.output_gate(xs))))
        return torch.cat(outs, dim=1)

    def extra_repr(self) -> str:
        """Add heads, keep ratio and feature map to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, keep_ratio={self.keep_ratio}, "
            f"feature_map={self.feature_map}, segment_size={self.segment_size}"
        )
