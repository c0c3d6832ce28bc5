"""UltraGen's hierarchical global–local attention for video (and image) token grids.

Paper: Hu, Zhang, Su & Yi, "UltraGen: High-Resolution Video Generation with Hierarchical Attention",
arXiv 2510.18775 (2025), §3. Official code: ``sjtuplayer/UltraGen@4f9ec33``,
``diffsynth/models/wan_video_dit.py: SelfAttention`` (built on Wan2.1).

Tokens ``z`` lie on a ``(T, H, W)`` grid (a 2-D grid ``(H, W)`` is ``T = 1``). Full attention is replaced
by three branches whose outputs are fused with gates:

* **Local** (:class:`UltraGenLocalAttention`): the spatial grid is cut into ``K × K`` non-overlapping
  windows, each spanning **all** ``T`` frames, and attention runs inside each window,
  ``z_l = Aggregate_i(Attn(Partition_i(z)))``, cost ``O((THW)² d / K²)``. ``K`` is the number of windows
  per side (paper: "K × K is the number of local windows"), alternating with depth:
  ``K = 4 + layer_idx mod 2`` (official ``down_factor + block_id % 2``), so window borders move from
  one layer to the next and information crosses windows without shifts.
* **Spatially compressed global** (:class:`UltraGenGlobalAttention`): a depthwise ``r × r`` convolution
  with stride ``r`` (``r = 4``) per frame compresses the grid to ``T × H/r × W/r`` tokens, full attention
  runs over all compressed tokens, the result is bilinearly resized back to ``H × W`` and refined by a
  depthwise ``3 × 3 × 3`` convolution: ``z_g = DWConv3d(Up_r(Attn(DWConv_r(z))))``.
* **Hierarchical cross-window local** (:class:`UltraGenHierarchicalAttention`): the same as the global
  branch with ``r = 2`` and, on the compressed grid, window attention with ``K' × K'`` windows,
  ``K' = 2 + layer_idx mod 2``. A compressed window covers ``1/K'`` of each spatial side, i.e. several
  local windows, so it carries information across the local branch's window borders, on a quarter of
  the tokens.

Fusion (:class:`UltraGenAttention`), with channel-wise gates ``g_local, g_global ∈ (0, 1)^C``::

    a   = g_local ⊙ z_l + (1 − g_local) ⊙ z_h
    a   = g_global ⊙ a + (1 − g_global) ⊙ z_g
    out = W_o a

In the paper the gates come from the diffusion timestep, ``g = σ(MLP(sin_emb(t)))`` (a separate MLP per
gate). A token mixer has no timestep, so :class:`UltraGenAttention` uses learnable static gates in
``forward`` and exposes :meth:`UltraGenAttention.gated` for callers that compute the gates;
:class:`core.blocks.ultragen.UltraGenBlock` is the timestep-gated block.

Differences from the official code:

* **Keys of the global branch.** The official ``global_attn`` computes ``k = norm_k(self.q(x) + k_lora(x))``
  (the *query* projection); here keys come from the key projection.
* **Non-divisible grids.** The official code bilinearly resizes the whole token grid to the nearest
  multiple of ``K`` before partitioning and resizes back afterwards (mixing tokens, and not invertible).
  Here window sides are ``⌈H/K⌉ × ⌈W/K⌉``; the grid is zero-padded to whole windows and the padded
  positions are **masked out as keys**, so a token's output does not depend on the padding (as
  :class:`~core.attention.davit.WindowAttention`). When ``H`` and ``W`` are multiples of ``K`` this is
  exactly the official partition; otherwise there can be fewer than ``K`` windows along an axis.
  The compressing convolutions zero-pad ``H, W`` up to a multiple of ``r`` (the official stride-``r``
  convolution silently drops the remainder rows/columns, or fails when ``H < r``), the compressed map is
  resized by exactly ``r`` and cropped, so compressed and full-resolution tokens stay aligned.
* **Projections.** The official branches share Wan's pretrained ``W_q, W_k, W_v`` and add a rank-64
  LoRA per compressed branch (the local branch uses the bare weights). Here every branch owns its
  projections (a superset of weight + LoRA); to fine-tune from a full-attention checkpoint, copy its
  ``W_q, W_k, W_v`` into every branch. As in the official code one output projection ``W_o`` follows the
  fusion: the default branches are built with ``out_proj=False``.
* **Batch.** The official hierarchical branch hard-codes batch size 1; any batch works here.
* **Gate width.** The official gate MLPs project to a hard-coded 1536 (Wan-1.3B's width); here to ``dim``.
* **Not included** (belong to the host model): Wan's RMSNorm on q/k and 3-D RoPE (the official code
  applies RoPE with window-local coordinates in every branch), and the choice of which layers keep full
  attention (official: blocks 0–2 and 27–29 of 30).
"""

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer, check_grid
from core.attention.mha import Backend, HeadedAttention, attend, merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "UltraGenAttention",
    "UltraGenGlobalAttention",
    "UltraGenHierarchicalAttention",
    "UltraGenLocalAttention",
    "video_grid",
    "window_partition_3d",
    "window_reverse_3d",
]


def video_grid(grid: Sequence[int], num_tokens: int, owner: str = "attention") -> tuple[int, int, int]:
    """Check ``grid`` against ``num_tokens`` and return it as ``(T, H, W)``; ``(H, W)`` means ``T = 1``.

    Raises:
        ValueError: If the grid is not ``(H, W)`` or ``(T, H, W)`` or does not hold ``num_tokens`` tokens.
    """
    sizes = check_grid(grid, num_tokens, owner)
    if len(sizes) == 2:
        return 1, sizes[0], sizes[1]
    if len(sizes) == 3:
        return sizes[0], sizes[1], sizes[2]
    raise ValueError(f"{owner}: grid must be (H, W) or (T, H, W), got {sizes}")


def window_partition_3d(x: Tensor, window: tuple[int, int]) -> Tensor:
    """``(B, T, Hp, Wp, C)`` → ``(B · nW, T · wh · ww, C)``: spatial ``wh × ww`` windows spanning all frames.

    ``Hp, Wp`` must be multiples of ``wh, ww``. Windows are ordered row-major over the window grid; the
    tokens of a window are ordered ``(t, i, j)`` row-major.
    """
    b, t, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, t, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, t * wh * ww, c)


def window_reverse_3d(
    windows: Tensor, window: tuple[int, int], frames: int, height: int, width: int
) -> Tensor:
    """Inverse of :func:`window_partition_3d`: ``(B · nW, T · wh · ww, C)`` → ``(B, T, Hp, Wp, C)``."""
    wh, ww = window
    nh, nw = height // wh, width // ww
    c = windows.shape[-1]
    x = windows.view(-1, nh, nw, frames, wh, ww, c)
    return x.permute(0, 3, 1, 4, 2, 5, 6).reshape(-1, frames, height, width, c)


def _window_shape(height: int, width: int, num_windows: int) -> tuple[int, int]:
    """Sides ``(⌈H/K⌉, ⌈W/K⌉)`` of the windows that cut an ``H × W`` grid into (at most) ``K × K``."""
    return math.ceil(height / num_windows), math.ceil(width / num_windows)


def _check_count(owner: str, name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1 (or None for the per-layer default), got {value}")


class _UltraGenBranch(HeadedAttention):
    """Shared plumbing of the three branches: q/k/v projection, window and full attention on a video grid."""

    supports_mask = False
    supports_causal = False
    needs_grid = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        qkv_bias: bool,
        out_proj: bool,
        attn_drop: float,
        proj_drop: float,
        backend: Backend,
        layer_idx: int,
        num_layers: int,
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
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.out_proj = out_proj
        if not out_proj:
            self.proj = nn.Identity()

    def _heads(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        return split_heads(q, self.num_heads), split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        dropout_p = self.attn_drop if self.training else 0.0
        return merge_heads(attend(q, k, v, mask=mask, dropout_p=dropout_p, backend=self.backend))

    def _window_attention(self, video: Tensor, window: tuple[int, int], valid: Tensor | None) -> Tensor:
        """Attention within ``wh × ww`` spatial windows spanning all frames of ``video (B, T, H, W, C)``.

        Padding up to whole windows and the positions where ``valid (B, T, H, W)`` is False are masked
        out as keys. Returns the un-projected ``(B, T, H, W, C)``.
        """
        b, frames, height, width, _ = video.shape
        pad_h, pad_w = (-height) % window[0], (-width) % window[1]
        tokens = F.pad(video, (0, 0, 0, pad_w, 0, pad_h))
        mask = None
        if pad_h or pad_w or valid is not None:
            if valid is None:
                valid = torch.ones(b, frames, height, width, dtype=torch.bool, device=video.device)
            valid = F.pad(valid, (0, pad_w, 0, pad_h), value=False)
            mask = window_partition_3d(valid[..., None], window)[..., 0][:, None, None, :]
        out = self._attend(*self._heads(window_partition_3d(tokens, window)), mask)
        out = window_reverse_3d(out, window, frames, height + pad_h, width + pad_w)
        return out[:, :, :height, :width]

    def _full_attention(self, video: Tensor) -> Tensor:
        """Full attention over all tokens of ``video (B, T, H, W, C)``; returns that shape, unprojected."""
        b, frames, height, width, c = video.shape
        out = self._attend(*self._heads(video.reshape(b, -1, c)), None)
        return out.view(b, frames, height, width, c)

    def extra_repr(self) -> str:
        """Add the output-projection switch to the default representation."""
        return f"{super().extra_repr()}, out_proj={self.out_proj}"


@register_mechanism(
    paper="Hu et al. 2025, UltraGen: High-Resolution Video Generation with Hierarchical Attention",
    complexity="O(N^2 d / K^2)",
    example_kwargs={"num_heads": 2},
)
class UltraGenLocalAttention(_UltraGenBranch):
    """UltraGen's local branch: attention inside ``K × K`` spatial windows that span all frames.

    Needs ``grid=(T, H, W)`` (or ``(H, W)``). Accepts a key-padding ``mask`` of shape ``(B, N)``
    (True = real token). Window sides are ``⌈H/K⌉ × ⌈W/K⌉``; padding up to whole windows is masked.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        num_windows: Windows per spatial side ``K``; ``None`` gives the paper's alternation
            ``4 + layer_idx mod 2`` (4 on even layers, 5 on odd ones).
        window_size: Fixed square window side instead of a window count (DaViT-style); exclusive with
            ``num_windows``.
        qkv_bias: Whether the q/k/v projection has a bias.
        out_proj: Whether to apply an output projection (False inside :class:`UltraGenAttention`, which
            projects after the fusion).
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer (sets the default ``K``).
        num_layers: Depth of the owning stack.
    """

    supports_mask = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        num_windows: int | None = None,
        window_size: int | None = None,
        qkv_bias: bool = True,
        out_proj: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            out_proj=out_proj,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        name = type(self).__name__
        _check_count(name, "num_windows", num_windows)
        _check_count(name, "window_size", window_size)
        if num_windows is not None and window_size is not None:
            raise ValueError(f"{name}: give num_windows or window_size, not both")
        self.window_size = window_size
        self.num_windows = None if window_size is not None else (num_windows or 4 + layer_idx % 2)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Attend within windows of ``K × K`` (or ``window_size²``) spatial positions × all frames."""
        assert grid is not None  # guaranteed by needs_grid
        name = type(self).__name__
        frames, height, width = video_grid(grid, x.shape[1], name)
        b, n, c = x.shape
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (b, n)):
            raise ValueError(
                f"{name}: only a boolean key-padding mask of shape ({b}, {n}) is supported, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        valid = None if mask is None else mask.view(b, frames, height, width)
        video = x.view(b, frames, height, width, c)
        out = self._window_attention(video, self.window_shape(height, width), valid)
        return self.proj_drop(self.proj(out.reshape(b, n, c)))

    def window_shape(self, height: int, width: int) -> tuple[int, int]:
        """Window sides for an ``H × W`` grid: ``(⌈H/K⌉, ⌈W/K⌉)``, or ``window_size`` on both axes."""
        if self.window_size is not None:
            return self.window_size, self.window_size
        assert self.num_windows is not None
        return _window_shape(height, width, self.num_windows)

    def extra_repr(self) -> str:
        """Add the window rule to the default representation."""
        rule = f"window_size={self.window_size}" if self.window_size else f"num_windows={self.num_windows}"
        return f"{super().extra_repr()}, {rule}"


class _CompressedBranch(_UltraGenBranch):
    """``DWConv3d(Up_r(attention(DWConv_r(z))))``: the shared body of the global and hierarchical branches."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        downsample: int,
        qkv_bias: bool,
        out_proj: bool,
        attn_drop: float,
        proj_drop: float,
        backend: Backend,
        layer_idx: int,
        num_layers: int,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            out_proj=out_proj,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        if downsample < 1:
            raise ValueError(f"{type(self).__name__}: downsample must be >= 1, got {downsample}")
        self.downsample = downsample
        self.down_conv = nn.Conv2d(dim, dim, downsample, stride=downsample, groups=dim)
        self.up_conv = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Compress each frame by ``r``, attend over compressed tokens, resize back, refine (3-D conv)."""
        assert grid is not None  # guaranteed by needs_grid
        frames, height, width = video_grid(grid, x.shape[1], type(self).__name__)
        b, _, c = x.shape
        r = self.downsample
        pad_h, pad_w = (-height) % r, (-width) % r
        maps = F.pad(x.view(b, frames, height, width, c), (0, 0, 0, pad_w, 0, pad_h))
        maps = maps.permute(0, 1, 4, 2, 3).reshape(b * frames, c, height + pad_h, width + pad_w)
        small = self.down_conv(maps)  # (B·T, C, h, w)
        h, w = small.shape[-2:]
        tokens = small.view(b, frames, c, h, w).permute(0, 1, 3, 4, 2)
        attended = self._attend_compressed(tokens).permute(0, 1, 4, 2, 3).reshape(b * frames, c, h, w)
        up = F.interpolate(attended, size=(h * r, w * r), mode="bilinear", align_corners=False)
        volume = up[..., :height, :width].reshape(b, frames, c, height, width).transpose(1, 2)
        out = self.up_conv(volume).flatten(2).transpose(1, 2)  # (B, T·H·W, C)
        return self.proj_drop(self.proj(out))

    def _attend_compressed(self, tokens: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        """Add the compression factor to the default representation."""
        return f"{super().extra_repr()}, downsample={self.downsample}"


@register_mechanism(
    paper="Hu et al. 2025, UltraGen: High-Resolution Video Generation with Hierarchical Attention",
    complexity="O((N / r^2)^2 d + N d)",
    example_kwargs={"num_heads": 2},
)
class UltraGenGlobalAttention(_CompressedBranch):
    """UltraGen's spatially compressed global branch: full attention over ``r × r``-compressed tokens.

    ``z_g = DWConv3d_3(Up_r(Attn(DWConv_r(z))))``; queries, keys and values all come from the compressed
    tokens. Needs ``grid``; no mask (the convolutions mix every token).

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        downsample: Spatial compression factor ``r`` (kernel and stride of the depthwise conv; paper: 4).
        qkv_bias: Whether the q/k/v projection has a bias.
        out_proj: Whether to apply an output projection (False inside :class:`UltraGenAttention`).
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        downsample: int = 4,
        qkv_bias: bool = True,
        out_proj: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            downsample=downsample,
            qkv_bias=qkv_bias,
            out_proj=out_proj,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )

    def _attend_compressed(self, tokens: Tensor) -> Tensor:
        return self._full_attention(tokens)


@register_mechanism(
    paper="Hu et al. 2025, UltraGen: High-Resolution Video Generation with Hierarchical Attention",
    complexity="O(N^2 d / (r^4 K^2) + N d)",
    example_kwargs={"num_heads": 2},
)
class UltraGenHierarchicalAttention(_CompressedBranch):
    """UltraGen's hierarchical cross-window local branch: window attention on a ``r × r``-compressed grid.

    ``z_h = DWConv3d_3(Up_r(WindowAttn_K'(DWConv_r(z))))`` with ``K' × K'`` windows (spanning all frames)
    on the compressed grid; padding up to whole windows is masked. Needs ``grid``; no mask.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Number of heads.
        downsample: Spatial compression factor ``r`` (paper: 2).
        num_windows: Windows per side ``K'`` of the compressed grid; ``None`` gives the paper's
            ``2 + layer_idx mod 2``.
        qkv_bias: Whether the q/k/v projection has a bias.
        out_proj: Whether to apply an output projection (False inside :class:`UltraGenAttention`).
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
        layer_idx: Index of the owning layer (sets the default ``K'``).
        num_layers: Depth of the owning stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        downsample: int = 2,
        num_windows: int | None = None,
        qkv_bias: bool = True,
        out_proj: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            downsample=downsample,
            qkv_bias=qkv_bias,
            out_proj=out_proj,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        _check_count(type(self).__name__, "num_windows", num_windows)
        self.num_windows = num_windows or 2 + layer_idx % 2

    def _attend_compressed(self, tokens: Tensor) -> Tensor:
        return self._window_attention(tokens, _window_shape(*tokens.shape[2:4], self.num_windows), None)

    def extra_repr(self) -> str:
        """Add the window count to the default representation."""
        return f"{super().extra_repr()}, num_windows={self.num_windows}"


@register_mechanism(
    paper="Hu et al. 2025, UltraGen: High-Resolution Video Generation with Hierarchical Attention",
    complexity="O(N^2 d / K^2 + (N / r^2)^2 d)",
    example_kwargs={"num_heads": 2},
)
class UltraGenAttention(TokenMixer):
    """UltraGen's hierarchical global–local attention: gated fusion of local, hierarchical, global branches.

    ``a = g_l ⊙ z_local + (1 − g_l) ⊙ z_hier``; ``a = g_g ⊙ a + (1 − g_g) ⊙ z_global``; ``out = W_o a``.
    Without the hierarchical branch, ``a = g_g ⊙ z_local + (1 − g_g) ⊙ z_global``.

    ``forward`` uses learnable static gates ``σ(θ)`` (θ initialised to 0, i.e. 0.5); :meth:`gated` takes
    per-sample gates, e.g. the paper's timestep gates (see :class:`core.blocks.ultragen.UltraGenBlock`).
    Needs ``grid``; no mask.

    Args:
        dim: Channel dimension ``C``; divisible by ``num_heads``.
        num_heads: Heads of the default branches.
        qkv_bias: Whether the default branches' q/k/v projections have a bias.
        attn_drop: Dropout on the attention weights of the default branches.
        proj_drop: Dropout after the output projection.
        backend: Attention backend of the default branches.
        local_attention: Factory of the local branch; default
            ``UltraGenLocalAttention(num_heads, out_proj=False)`` (``K = 4 + layer_idx mod 2``).
        global_attention: Factory of the global branch; default
            ``UltraGenGlobalAttention(num_heads, downsample=4, out_proj=False)``.
        hierarchical_attention: Factory of the hierarchical branch; default
            ``UltraGenHierarchicalAttention(num_heads, downsample=2, out_proj=False)``.
        use_hierarchical: Whether to build and fuse the hierarchical branch.
        static_gates: Whether to create the learnable gates used by ``forward``; a block that always
            supplies gates through :meth:`gated` sets False (no unused parameters).
        layer_idx: Index of the owning layer, passed to the branch factories.
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
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Backend = "auto",
        local_attention: AttentionFactory | None = None,
        global_attention: AttentionFactory | None = None,
        hierarchical_attention: AttentionFactory | None = None,
        use_hierarchical: bool = True,
        static_gates: bool = True,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        shared = {
            "num_heads": num_heads,
            "qkv_bias": qkv_bias,
            "out_proj": False,
            "attn_drop": attn_drop,
            "backend": backend,
        }
        local_attention = local_attention or partial(UltraGenLocalAttention, **shared)
        global_attention = global_attention or partial(UltraGenGlobalAttention, **shared)
        hierarchical_attention = hierarchical_attention or partial(UltraGenHierarchicalAttention, **shared)
        layer = {"layer_idx": layer_idx, "num_layers": num_layers}
        self.local_branch = local_attention(dim, **layer)
        self.global_branch = global_attention(dim, **layer)
        self.hierarchical_branch = hierarchical_attention(dim, **layer) if use_hierarchical else None
        self.use_hierarchical = use_hierarchical
        self.static_gates = static_gates
        self.gate_global_logit = nn.Parameter(torch.zeros(dim)) if static_gates else None
        self.gate_local_logit = nn.Parameter(torch.zeros(dim)) if static_gates and use_hierarchical else None
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
        """Fuse the branches with the learnable static gates."""
        if self.gate_global_logit is None:
            raise ValueError(
                "UltraGenAttention was built with static_gates=False: call .gated(x, grid=..., "
                "gate_global=..., gate_local=...) with gates of shape (B, 1, C) or (C,)"
            )
        assert grid is not None  # guaranteed by needs_grid
        gate_local = None if self.gate_local_logit is None else torch.sigmoid(self.gate_local_logit)
        return self._fuse(x, grid, torch.sigmoid(self.gate_global_logit), gate_local)

    def gated(
        self, x: Tensor, *, grid: Sequence[int], gate_global: Tensor, gate_local: Tensor | None = None
    ) -> Tensor:
        """Fuse the branches with given gates (e.g. timestep gates), after the usual input checks.

        Args:
            x: Tokens ``(B, N, C)``.
            grid: ``(H, W)`` or ``(T, H, W)`` holding the ``N`` tokens.
            gate_global: Weight of the local side against the global branch, ``(B, 1, C)``, ``(B, C)``
                or ``(C,)``, values in ``[0, 1]``.
            gate_local: Weight of the local branch against the hierarchical one (same shapes); required
                when the hierarchical branch is used, must be None otherwise.

        Returns:
            ``(B, N, C)``.
        """
        self._check_inputs(x, grid=grid, mask=None, is_causal=False, context=None)
        gate_global = self._check_gate("gate_global", gate_global, x)
        if self.use_hierarchical:
            if gate_local is None:
                raise ValueError(
                    "UltraGenAttention.gated: gate_local is required with the hierarchical branch"
                )
            gate_local = self._check_gate("gate_local", gate_local, x)
        elif gate_local is not None:
            raise ValueError("UltraGenAttention.gated: gate_local must be None when use_hierarchical=False")
        return self._fuse(x, grid, gate_global, gate_local)

    def _fuse(self, x: Tensor, grid: Sequence[int], gate_global: Tensor, gate_local: Tensor | None) -> Tensor:
        grid = tuple(grid)
        fused = self.local_branch(x, grid=grid)
        if self.hierarchical_branch is not None:
            assert gate_local is not None
            fused = torch.lerp(self.hierarchical_branch(x, grid=grid), fused, gate_local)
        fused = torch.lerp(self.global_branch(x, grid=grid), fused, gate_global)
        return self.proj_drop(self.proj(fused))

    def _check_gate(self, name: str, gate: Tensor, x: Tensor) -> Tensor:
        b, c = x.shape[0], self.dim
        if gate.ndim == 2 and gate.shape == (b, c):
            gate = gate[:, None]
        if gate.shape not in ((c,), (b, 1, c)):
            raise ValueError(
                f"UltraGenAttention.gated: expected {name} of shape ({b}, 1, {c}), ({b}, {c}) or ({c},), "
                f"got {tuple(gate.shape)}"
            )
        return gate.to(x.dtype)

    def extra_repr(self) -> str:
        """Add the branch switches to the default representation."""
        switches = f"use_hierarchical={self.use_hierarchical}, static_gates={self.static_gates}"
        return f"{super().extra_repr()}, {switches}"
