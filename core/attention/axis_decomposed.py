"""RGA-Net's axis-decomposed attention (ADA): multi-head attention along the height axis, then the width axis.

Paper: Li, Li, Xia, Zhou, Pun, Chen, "RGA-Net: A Vision Enhancement Framework for Robotic Surgical Systems
Using Reciprocal Attention Mechanisms", 2026 (arXiv 2602.13726). ADA is the attention of RGA-Net's deeper
encoder-decoder levels; it factorises 2-D self-attention over the axes of the feature map.

**No official code could be found** (no public repository was reachable), and the paper's full text was
not available to us; this module follows the paper's abstract and the description in the task. For
tokens ``X`` on an ``H × W`` grid, each of the two stages has its own convolutional projection (a
pointwise convolution followed by a ``3 × 3`` depthwise convolution, the Restormer-style projection of
this line of restoration networks) and multi-head attention restricted to one axis::

    [Q, K, V] = DWConv3×3(Conv1×1(X))                 (height stage)
    Y[:, j] = MHA(Q[:, j], K[:, j], V[:, j])          every column j attends within itself (over i)
    [Q', K', V'] = DWConv3×3'(Conv1×1'(Y))            (width stage)
    Z[i, :] = MHA(Q'[i, :], K'[i, :], V'[i, :])       every row i attends within itself (over j)
    out = Z W_o

with ``MHA`` the per-head ``softmax(q kᵀ / √d_h) v``. After both stages every token has (indirectly)
seen the whole grid at ``O(N (H + W) d)`` cost instead of ``O(N² d)``.

One paper summary describes ADA as attention factorised along *block* and *grid* axes (MaxViT-style)
rather than height and width; we could not check this against the paper. The height/width form is
implemented here; MaxViT-style block/grid attention would be a separate mechanism.

:class:`core.attention.axis.AxisAttention` runs a whole token mixer along one axis of a ``(B, T, F, C)``
tensor; it does not fit here because ADA's depthwise projections see the 2-D neighbourhood before the
attention is split by axis, so the per-axis attention is done inline with the library's ``attend``.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from core.attention.base import check_grid_2d
from core.attention.mha import Backend, HeadedAttention, attend, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["AxisDecomposedAttention"]


def _conv_projection(dim: int, bias: bool) -> nn.Sequential:
    """Pointwise ``C -> 3C`` then depthwise ``3 × 3``: the q/k/v projection of one ADA stage."""
    return nn.Sequential(
        nn.Conv2d(dim, 3 * dim, 1, bias=bias),
        nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias),
    )


@register_mechanism(
    paper="Li et al. 2026, RGA-Net: A Vision Enhancement Framework for Robotic Surgical Systems Using "
    "Reciprocal Attention Mechanisms",
    complexity="O(N (H + W) d)",
    example_kwargs={"num_heads": 2},
)
class AxisDecomposedAttention(HeadedAttention):
    """Height-axis then width-axis multi-head attention with depthwise-convolutional projections.

    Needs ``grid=(H, W)``. No mask (the depthwise projections mix neighbouring tokens) and no causality.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads of both axis attentions.
        qkv_bias: Whether the convolutional q/k/v projections have biases.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` use ``F.scaled_dot_product_attention``; ``reference`` the literal equation.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = False
    supports_causal = False
    needs_grid = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
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
        self.qkv_height = _conv_projection(dim, qkv_bias)
        self.qkv_width = _conv_projection(dim, qkv_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend within every column, then within every row, then project."""
        assert grid is not None  # guaranteed by needs_grid
        height, width = check_grid_2d(grid, x.shape[1], "AxisDecomposedAttention")
        b, n, c = x.shape
        fmap = x.transpose(1, 2).reshape(b, c, height, width)
        # height stage: sequences are columns, (B, C, H, W) -> (B·W, H, C)
        cols = self.qkv_height(fmap).permute(0, 3, 2, 1).reshape(b * width, height, 3 * c)
        out = self._attend_axis(cols).view(b, width, height, c)
        fmap = out.permute(0, 3, 2, 1)
        # width stage: sequences are rows, (B, C, H, W) -> (B·H, W, C)
        rows = self.qkv_width(fmap).permute(0, 2, 3, 1).reshape(b * height, width, 3 * c)
        out = self._attend_axis(rows).reshape(b, n, c)
        return self.proj_drop(self.proj(out))

    def _attend_axis(self, qkv: Tensor) -> Tensor:
        """Multi-head attention within each sequence of ``qkv (S, L, 3C)``; returns ``(S, L, C)``."""
        q, k, v = (split_heads(t, self.num_heads) for t in qkv.chunk(3, dim=-1))
        dropout_p = self.attn_drop if self.training else 0.0
        return merge_heads(attend(q, k, v, dropout_p=dropout_p, backend=self.backend))
