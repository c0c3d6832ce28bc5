"""DaViT's two attentions: spatial window attention and channel group attention.

Paper: Ding et al., "DaViT: Dual Attention Vision Transformers", ECCV 2022 (arXiv 2204.03645), §3.

* **Spatial window attention** (Eq. 1 within each window): the ``H × W`` token grid is cut into
  non-overlapping ``w × w`` windows and multi-head attention ``softmax(Q_i K_iᵀ / √d_h) V_i`` runs inside
  each window. When ``H`` or ``W`` is not a multiple of ``w`` the grid is zero-padded. DaViT's official
  code (and timm's port) lets real tokens attend to those padded zeros; here padded positions are
  **masked out as keys**, so a token's output does not depend on how much padding its window got.
* **Channel group attention** (Eq. 3): tokens become features. Per group of ``C / G`` channels,
  ``A = softmax((K · d_h^-½)ᵀ V)`` is a ``d_h × d_h`` channel-to-channel map and the output is
  ``Q Aᵀ``, linear in the number of tokens ``N``.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, check_grid_2d
from core.attention.mha import Backend, HeadedAttention, attend
from core.attention.registry import register_mechanism

__all__ = ["ChannelGroupAttention", "WindowAttention", "window_partition", "window_reverse"]


def window_partition(x: Tensor, window: int) -> Tensor:
    """``(B, Hp, Wp, C)`` with ``Hp, Wp`` multiples of ``window`` → ``(B · nW, window², C)``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B · nW, window², C)`` → ``(B, Hp, Wp, C)``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((height // window) * (width // window))
    x = windows.view(b, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)


@register_mechanism(
    paper="Ding et al. 2022, DaViT: Dual Attention Vision Transformers",
    complexity="O(N w^2 d)",
    example_kwargs={"num_heads": 2, "window_size": 2},
)
class WindowAttention(HeadedAttention):
    """Multi-head attention inside non-overlapping ``window_size × window_size`` windows of a 2-D grid.

    Needs ``grid=(H, W)``. Accepts a key-padding ``mask`` of shape ``(B, N)`` (True = real token).

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        window_size: Side ``w`` of the square windows (DaViT: 7).
        qkv_bias: Whether the q/k/v projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = False
    needs_grid = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        window_size: int = 7,
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
        if window_size < 1:
            raise ValueError(f"WindowAttention: window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Pad the grid to whole windows, attend within windows (padding masked), crop back.

        The windows are cut once (one copy); q, k and v are strided views of the projection of the
        windows. Without padding and without a ``mask`` no key mask is built, so SDPA takes its unmasked
        path.
        """
        assert grid is not None  # guaranteed by needs_grid
        height, width = check_grid_2d(grid, x.shape[1], "WindowAttention")
        b, n, c = x.shape
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (b, n)):
            raise ValueError(
                f"WindowAttention: only a boolean key-padding mask of shape ({b}, {n}) is supported, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        w, heads = self.window_size, self.num_heads
        pad_h, pad_w = (-height) % w, (-width) % w
        tokens = x.reshape(b, height, width, c)
        if pad_h or pad_w:
            tokens = F.pad(tokens, (0, 0, 0, pad_w, 0, pad_h))
        windows = window_partition(tokens, w)  # (B·nW, w², C)
        count = windows.shape[0]
        qkv = self.qkv(windows).view(count, w * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        keys = None
        if pad_h or pad_w or mask is not None:
            valid = torch.ones(b, height, width, 1, dtype=torch.bool, device=x.device)
            if mask is not None:
                valid = mask.view(b, height, width, 1)
            valid = F.pad(valid, (0, 0, 0, pad_w, 0, pad_h), value=False)
            keys = window_partition(valid, w)[:, None, None, :, 0]  # (B·nW, 1, 1, w²)
        dropout_p = self.attn_drop if self.training else 0.0
        out = attend(*qkv.unbind(0), mask=keys, dropout_p=dropout_p, backend=self.backend)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(count, w * w, c)))
        out = window_reverse(out, w, height + pad_h, width + pad_w)
        if pad_h or pad_w:
            out = out[:, :height, :width]
        return out.reshape(b, n, c)

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Each real token attends the real tokens of its window (padding excluded)."""
        if grid is None:
            return None
        height, width = check_grid_2d(grid, queries, "WindowAttention")
        w = self.window_size
        rows = [min(w, height - i) for i in range(0, height, w)]
        cols = [min(w, width - j) for j in range(0, width, w)]
        pairs = sum((r * c) ** 2 for r in rows for c in cols)
        return 4.0 * batch * pairs * self.dim

    def extra_repr(self) -> str:
        """The window size, besides the base class's fields."""
        return f"{super().extra_repr()}, window_size={self.window_size}"


@register_mechanism(
    paper="Ding et al. 2022, DaViT: Dual Attention Vision Transformers",
    complexity="O(N d^2 / G)",
    example_kwargs={"num_groups": 2},
)
class ChannelGroupAttention(TokenMixer):
    """Channel attention in ``num_groups`` groups: tokens act as features (DaViT Eq. 3).

    No mask or causality: every token contributes to the channel-to-channel map.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_groups``.
        num_groups: Number of channel groups ``G`` (DaViT calls them heads).
        qkv_bias: Whether the q/k/v projection has a bias.
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
        num_groups: int = 8,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"ChannelGroupAttention: dim={dim} must be divisible by num_groups={num_groups}")
        self.num_groups = num_groups
        self.scale = (dim // num_groups) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
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
        """``out_g = Q_g · softmax(scale · K_gᵀ V_g)ᵀ`` per channel group ``g``."""
        b, n, c = x.shape
        groups = self.num_groups
        q, k, v = self.qkv(x).view(b, n, 3, groups, c // groups).permute(2, 0, 3, 1, 4).unbind(0)
        # The scale applied to the d × d map, not to the N × d keys: the same product, fewer multiplies.
        channel_map = ((k.transpose(-2, -1) @ v) * self.scale).softmax(dim=-1)  # (B, G, d, d)
        out = q @ channel_map.transpose(-2, -1)  # (B, G, N, d)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))

    def extra_repr(self) -> str:
        """Add the number of groups to the default representation."""
        return f"{super().extra_repr()}, num_groups={self.num_groups}"
