"""BiFormer's bi-level routing attention: top-k region routing, then token attention in the routed regions.

Paper: Zhu, Wang, Ke, Zhang, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023
(arXiv 2303.08810), §3.2. Official code: ``rayleizhu/BiFormer`` (``ops/bra_legacy.py``, ``ops/bra_nchw.py``).

The ``H × W`` token grid is cut into ``S × S`` regions (``S = n_win``) of ``T = HW / S²`` tokens each, and
``Q, K, V = X W_q, X W_k, X W_v`` (one fused linear). Then

1. **Region-level routing.** Region queries and keys are the per-region means, ``Q_r = mean_{t∈r} Q_t``
   and ``K_r = mean_{t∈r} K_t``; the region adjacency is ``A_r = Q_r K_rᵀ`` (``S² × S²``) and each region
   keeps the indices of its ``k`` most relevant regions, ``I_r = topk(A_r, k)``.
2. **Token-to-token attention.** Every query of region ``r`` attends, per head, to the ``k · T`` tokens of
   its routed regions: ``O_t = softmax(Q_t K_gᵀ · scale) V_g`` with ``K_g = gather(K, I_r)``,
   ``V_g = gather(V, I_r)``.
3. **Local context enhancement** (LCE, §3.2):
   ``O = O + DWConv_5×5(V)`` on the value map, then the output projection ``W_o``.

Grids and sequences. ``grid=(H, W)`` gives the 2-D form of the paper. A 1-D sequence (``grid=(N,)`` or
no grid at all) is the grid ``(1, N)``: ``n_win`` regions along the sequence, and the LCE's ``5 × 5``
kernel then acts through its middle row only (a depthwise 1-D conv of width 5). This makes the mixer
a drop-in replacement in sequence models (``--model.attention=BiLevelRoutingAttention`` in TLOB).

Region sizes. A side of length ``L`` is cut into regions of ``ceil(L / n_win)`` tokens, i.e.
``ceil(L / ceil(L / n_win))`` regions (``n_win`` whenever ``L`` is a multiple of ``n_win``, as the paper
assumes; never a region made only of padding). The grid is padded to whole regions, padded tokens are
**masked out as keys and left out of the region means**, and the output is cropped back. ``topk`` is
clamped to the number of regions.

Key padding. A boolean ``(B, N)`` mask (True = real token) is treated like padding: masked tokens
are no keys, do not enter the region means, and enter the LCE conv as zeros (the conv's own border
padding), so a masked token cannot change any other token's output. Masked tokens still get an
output (they attend the real tokens of their routed regions). Regions without a real token are never
preferred by the routing (their adjacency is the most negative float).

Differences from the official code (and what we do instead):

* **Scale.** Both official versions use ``scale = dim ** -0.5`` (the full channel count ``C``, as the
  paper's ``softmax(QKᵀ/√C)``), not ``head_dim ** -0.5``. ``qk_scale="paper"`` (default) reproduces
  this; ``qk_scale="head_dim"`` gives the usual ``(C/h) ** -0.5``; a float sets it directly. The
  routing logits use the same scale (it only matters with ``soft_routing``: top-k ignores it).
* **Routing gradients.** The official routing detaches ``Q_r, K_r`` (``diff_routing=False``,
  ``param_routing=False``). With hard routing this changes nothing (top-k indices carry no gradient);
  ``diff_routing=True`` only has an effect with ``soft_routing=True`` (the gathered keys *and* values are
  scaled by ``softmax`` of the top-k routing logits, as ``bra_legacy.KVGather(mul_weight="soft")``).
  ``param_routing`` adds the official extra linear on ``Q_r, K_r`` and, as there, needs
  ``diff_routing``. The official "hard differentiable" mode raises ``NotImplementedError``; we refuse
  ``diff_routing`` without ``soft_routing`` at construction.
* **Divisibility.** The official code asserts ``H, W`` divisible by ``n_win`` (legacy ``auto_pad`` pads
  ``x`` with zeros *before* the projection, so padded tokens carry the qkv bias into the region means
  and are attended; ``bra_nchw`` takes ``H // n_win`` as region size, so it can make more than ``n_win``
  regions, and leaves a "TODO: mask padding region"). Here padding never leaks (see above). On grids
  divisible by ``n_win`` without a mask the computation is the official ``bra_legacy`` one.
* **KV down-sampling.** ``bra_legacy`` offers ``kv_downsample_mode`` (pooling keys/values per region);
  the released BiFormer-T/S/B use ``identity``, which is the only mode here. ``qk_dim != dim`` is not
  offered either.
* The official default LCE kernel of the module is 3 (``side_dwconv=3``); every released model uses 5,
  which is our default (``lce_kernel=5``; 0 turns LCE off).
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import grid_2d
from core.attention.functional import reference_attention, sdpa
from core.attention.mha import Backend, HeadedAttention, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["BiLevelRoutingAttention", "region_layout"]

QKScale = Literal["paper", "head_dim"]


def region_layout(length: int, n_win: int) -> tuple[int, int]:
    """Cut one side of ``length`` tokens into at most ``n_win`` regions.

    Args:
        length: Side length (``H`` or ``W``).
        n_win: Requested number of regions along that side.

    Returns:
        ``(region_size, num_regions)`` with ``region_size = ceil(length / n_win)`` and
        ``num_regions = ceil(length / region_size)``; every region holds at least one real token.
    """
    size = math.ceil(length / n_win)
    return size, math.ceil(length / size)


@register_mechanism(
    paper="Zhu et al. 2023, BiFormer: Vision Transformer with Bi-Level Routing Attention",
    complexity="O(k N^2 d / S^2 + S^4 d); O(N^(4/3) d) at the best S",
    example_kwargs={"num_heads": 2, "n_win": 2, "topk": 1},
)
class BiLevelRoutingAttention(HeadedAttention):
    """Bi-level routing attention: top-k region routing, token attention in the routed regions, LCE.

    Takes ``grid=(H, W)`` for images; a 1-D sequence (``grid=(N,)`` or ``None``) is the grid ``(1, N)``.
    Accepts a key-padding ``mask`` of shape ``(B, N)`` (True = real token). Not causal.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads (BiFormer-T/S/B use ``dim / 32``).
        n_win: Regions per side ``S`` (paper: 7; a 1-D sequence gets ``n_win`` regions).
        topk: Routed regions per region ``k`` (BiFormer stages: 1, 4, 16); clamped to the number of regions.
        qk_scale: ``"paper"``: ``dim ** -0.5`` as the paper and official code; ``"head_dim"``:
            ``(dim / num_heads) ** -0.5``; or a positive float.
        lce_kernel: Kernel of the depthwise LCE conv on ``V`` (paper and released models: 5; official
            name ``side_dwconv``); odd, or 0 to turn LCE off.
        diff_routing: Let gradients flow through the region means into the routing (official default
            False: detached). Needs ``soft_routing``.
        soft_routing: Scale the gathered keys and values by the softmax of the top-k routing logits.
        param_routing: An extra linear on the region queries/keys before routing; needs ``diff_routing``.
        qkv_bias: Whether the q/k/v projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation on the gathered tokens).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = False
    needs_grid = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        n_win: int = 7,
        topk: int = 4,
        qk_scale: QKScale | float = "paper",
        lce_kernel: int = 5,
        diff_routing: bool = False,
        soft_routing: bool = False,
        param_routing: bool = False,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        name = "BiLevelRoutingAttention"
        if n_win < 1:
            raise ValueError(f"{name}: n_win must be >= 1, got {n_win}")
        if topk < 1:
            raise ValueError(f"{name}: topk must be >= 1, got {topk}")
        if lce_kernel < 0 or (lce_kernel and lce_kernel % 2 == 0):
            raise ValueError(f"{name}: lce_kernel must be 0 (off) or an odd size, got {lce_kernel}")
        if isinstance(qk_scale, str):
            if qk_scale not in ("paper", "head_dim"):
                raise ValueError(f"{name}: qk_scale must be 'paper', 'head_dim' or a float, got {qk_scale!r}")
            self.scale = dim**-0.5 if qk_scale == "paper" else (dim // num_heads) ** -0.5
        elif isinstance(qk_scale, int | float) and qk_scale > 0:
            self.scale = float(qk_scale)
        else:
            raise ValueError(
                f"{name}: qk_scale must be 'paper', 'head_dim' or a positive float, got {qk_scale!r}"
            )
        if diff_routing and not soft_routing:
            raise ValueError(
                f"{name}: diff_routing=True needs soft_routing=True (hard top-k indices carry no gradient; "
                "the official 'hard differentiable routing' is not implemented)"
            )
        if param_routing and not diff_routing:
            raise ValueError(f"{name}: param_routing=True needs diff_routing=True (as in the official code)")
        self.n_win = n_win
        self.topk = topk
        self.diff_routing = diff_routing
        self.soft_routing = soft_routing
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.router_emb = nn.Linear(dim, dim) if param_routing else None
        self.lce = (
            nn.Conv2d(dim, dim, lce_kernel, padding=lce_kernel // 2, groups=dim) if lce_kernel else None
        )

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Route regions, attend the routed regions' tokens, add LCE, project."""
        b, n, c = x.shape
        height, width = grid_2d(grid, n, "BiLevelRoutingAttention")
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (b, n)):
            raise ValueError(
                f"BiLevelRoutingAttention: only a boolean key-padding mask of shape ({b}, {n}) is "
                f"supported, got {mask.dtype} {tuple(mask.shape)}"
            )
        rh, sh = region_layout(height, self.n_win)
        rw, sw = region_layout(width, self.n_win)
        num_regions, region_tokens = sh * sw, rh * rw
        padded = sh * rh != height or sw * rw != width

        def to_regions(t: Tensor) -> Tensor:  # (B, N, D) -> (B, R, T, D), padding zeros
            t = F.pad(t.view(b, height, width, -1), (0, 0, 0, sw * rw - width, 0, sh * rh - height))
            return t.view(b, sh, rh, sw, rw, -1).transpose(2, 3).reshape(b, num_regions, region_tokens, -1)

        valid = (
            torch.ones(b, n, 1, dtype=x.dtype, device=x.device)
            if mask is None
            else mask[..., None].to(x.dtype)
        )
        keep = to_regions(valid)  # (B, R, T, 1): 1 for real, unmasked tokens
        q_tok, k_tok, v_tok = self.qkv(x).chunk(3, dim=-1)
        q, k, v = to_regions(q_tok), to_regions(k_tok), to_regions(v_tok)

        # 1. region-to-region routing on region means of the real tokens
        count = keep.sum(dim=2)  # (B, R, 1)
        q_r, k_r = ((t * keep).sum(dim=2) / count.clamp(min=1) for t in (q, k))
        if not self.diff_routing:
            q_r, k_r = q_r.detach(), k_r.detach()
        if self.router_emb is not None:
            q_r, k_r = self.router_emb(q_r), self.router_emb(k_r)
        logits = (q_r * self.scale) @ k_r.transpose(1, 2)  # (B, R, R)
        logits = logits.masked_fill(count.transpose(1, 2) == 0, torch.finfo(logits.dtype).min)
        top_logits, idx = logits.topk(min(self.topk, num_regions), dim=-1)  # (B, R, k)

        # 2. gather the routed regions' keys/values, attend token to token
        batch_idx = torch.arange(b, device=x.device)[:, None, None]
        k_sel, v_sel, keep_sel = k[batch_idx, idx], v[batch_idx, idx], keep[batch_idx, idx]  # (B, R, k, T, ·)
        if self.soft_routing:
            weight = top_logits.softmax(dim=-1)[..., None, None]
            k_sel, v_sel = k_sel * weight, v_sel * weight
        gathered = idx.shape[-1] * region_tokens
        q_h = split_heads(q.reshape(b * num_regions, region_tokens, c), self.num_heads)
        k_h, v_h = (
            split_heads(t.reshape(b * num_regions, gathered, c), self.num_heads) for t in (k_sel, v_sel)
        )
        attn_mask = None
        if padded or mask is not None:
            attn_mask = keep_sel.reshape(b * num_regions, 1, 1, gathered) > 0
        if self.backend == "reference":
            out = reference_attention(q_h, k_h, v_h, attn_mask=attn_mask, scale=self.scale)
        else:
            dropout_p = self.attn_drop if self.training else 0.0
            out = sdpa(q_h, k_h, v_h, attn_mask=attn_mask, dropout_p=dropout_p, scale=self.scale)
        out = merge_heads(out).view(b, sh, sw, rh, rw, c).transpose(2, 3).reshape(b, sh * rh, sw * rw, c)
        out = out[:, :height, :width].reshape(b, n, c)

        # 3. local context enhancement: depthwise conv on V (masked tokens enter as zeros)
        if self.lce is not None:
            v_map = (v_tok * valid).transpose(1, 2).reshape(b, c, height, width)
            out = out + self.lce(v_map).flatten(2).transpose(1, 2)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        """Add the routing configuration to the default representation."""
        lce = self.lce.kernel_size[0] if self.lce is not None else 0
        return (
            f"{super().extra_repr()}, n_win={self.n_win}, topk={self.topk}, scale={self.scale:.4g}, "
            f"lce_kernel={lce}, diff_routing={self.diff_routing}, soft_routing={self.soft_routing}"
        )
