"""TimeSformer: a video transformer with divided space-time attention.

Paper: Bertasius, Wang & Torresani, "Is Space-Time Attention All You Need for Video Understanding?",
ICML 2021 (arXiv 2102.05095). Official code: ``facebookresearch/TimeSformer@a5ef29a``,
``timesformer/models/vit.py`` (``VisionTransformer``, ``Block``).

A clip ``(B, C, T, H, W)`` is cut into ``P = (H/p)·(W/p)`` patches per frame (a ``p × p`` convolution per
frame), a CLS token is prepended, a spatial position embedding (``1 + P``) is added to every frame and a
learned time embedding ``time_embed[T]`` to the patch tokens. The blocks follow ``attention_type``:

* ``divided_space_time``: temporal attention over the ``T`` tokens at each spatial position,
  ``x_t = x + temporal_fc(TAttn(LN(x)))``; then spatial attention over the ``P`` tokens of each frame
  plus a per-frame copy of the CLS token (the CLS outputs are averaged over frames), residual onto
  ``x_t``; then the MLP. ``temporal_fc`` is zero-initialised in every block except the first, so a model
  initialised from image weights starts as the image model applied per frame (plus the first block's
  temporal mixing).
* ``joint``: one attention over all ``1 + T·P`` tokens (quadratic in ``T·P``).
* ``space_only``: each frame is a separate image with its own CLS token, no time embedding; the
  frame features are averaged before the final norm (the paper's "Space" baseline).

Head: final LayerNorm → CLS token → dropout → linear. Parameter counts (ViT-B/16, 8 × 224², tested):
121.4 M for divided and 85.9 M for joint and space-only with a 174-class head, the paper's Table 1
(whose counts fit a Something-Something-v2 head; with a 400-class Kinetics head they are 121.6 M and
86.1 M).

Attention is injected: ``attention`` builds the spatial (``divided``, ``space_only``) or the joint mixer,
``temporal_attention`` the temporal mixer of divided blocks; both default to multi-head attention with
``num_heads`` heads (the official ``Attention``, same ``qkv``/``proj`` parameter names, so timm image
weights load). A mechanism that ``needs_grid`` (neighbourhood attention, UltraGen) runs on patch tokens
only, with ``grid=(H, W)`` per frame or ``(T, H, W)`` for joint attention, so it needs ``pool="mean"``
(no CLS token). Tokens are kept in ``(t, h, w)`` order; the official ``(h, w, t)`` order gives the same
results with permutation-equivariant attention and only matters for grid-based mechanisms, which need
row-major ``(T, H, W)``.

Differences from the official code: position and time embeddings are resized with nearest
interpolation as the official forward does, but here only when the input size differs from the built
size; ``pool="mean"`` is an addition for grid-based mechanisms.
"""

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer
from core.attention.mha import default_heads_factory
from core.layers.drop import DropPath, drop_path_rates
from core.layers.mlp import Mlp
from domains.video.models.base import VideoClassificationNetwork

__all__ = [
    "AttentionType",
    "TimeSformer",
    "TimeSformerBase",
    "TimeSformerBlock",
    "TimeSformerMicro",
    "TimeSformerSmall",
    "TimeSformerTiny",
]

AttentionType = Literal["divided_space_time", "joint", "space_only"]


def _mix(mixer: TokenMixer, tokens: Tensor, grid: Sequence[int] | None) -> Tensor:
    """Call a mixer with the grid when the tokens lie on one (no CLS token), else without."""
    return mixer(tokens) if grid is None else mixer(tokens, grid=tuple(grid))


class TimeSformerBlock(nn.Module):
    """One TimeSformer block (official ``Block``) for the three attention types.

    ``forward(cls, x, grid)`` takes the CLS token ``cls`` (``(B, 1, D)``; ``(B, T, 1, D)`` for
    ``space_only``; None with mean pooling) and patch tokens ``x (B, T, P, D)`` on the per-frame grid
    ``(Hp, Wp)``, and returns both updated.

    Args:
        dim: Token width ``D``.
        attention_type: ``divided_space_time``, ``joint`` or ``space_only``.
        attention: Factory of the spatial (or joint) mixer.
        temporal_attention: Factory of the temporal mixer (divided only).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout in the MLP.
        drop_path: Stochastic-depth probability of the residual branches.
        layer_idx: Index of the block.
        num_layers: Number of blocks.
    """

    def __init__(
        self,
        dim: int,
        *,
        attention_type: AttentionType,
        attention: AttentionFactory,
        temporal_attention: AttentionFactory,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.attention_type = attention_type
        layer = {"layer_idx": layer_idx, "num_layers": num_layers}
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attention(dim, **layer)
        if attention_type == "divided_space_time":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.temporal_attn = temporal_attention(dim, **layer)
            self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, cls: Tensor | None, x: Tensor, grid: tuple[int, int]) -> tuple[Tensor | None, Tensor]:
        """Apply the block; see the class docstring for the shapes."""
        b, t, p, d = x.shape
        if self.attention_type == "space_only":
            tokens = x.reshape(b * t, p, d)
            if cls is not None:
                tokens = torch.cat([cls.reshape(b * t, 1, d), tokens], dim=1)
            tokens = tokens + self.drop_path(self._attend(self.attn, self.norm1(tokens), grid, cls))
            tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
            if cls is None:
                return None, tokens.view(b, t, p, d)
            return tokens[:, :1].reshape(b, t, 1, d), tokens[:, 1:].reshape(b, t, p, d)
        if self.attention_type == "joint":
            tokens = x.reshape(b, t * p, d)
            if cls is not None:
                tokens = torch.cat([cls, tokens], dim=1)
            tokens = tokens + self.drop_path(self._attend(self.attn, self.norm1(tokens), (t, *grid), cls))
            tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
            if cls is None:
                return None, tokens.view(b, t, p, d)
            return tokens[:, :1], tokens[:, 1:].reshape(b, t, p, d)
        return self._divided(cls, x, grid)

    def _divided(self, cls: Tensor | None, x: Tensor, grid: tuple[int, int]) -> tuple[Tensor | None, Tensor]:
        b, t, p, d = x.shape
        # temporal: the T tokens of each spatial position
        xt = x.transpose(1, 2).reshape(b * p, t, d)
        temporal_grid = (t,) if cls is None else None
        res = self.drop_path(self._mix_temporal(self.temporal_norm1(xt), temporal_grid))
        xt = x + self.temporal_fc(res.view(b, p, t, d).transpose(1, 2))
        # spatial: the P tokens of each frame, plus a per-frame copy of the CLS token
        xs = xt.reshape(b * t, p, d)
        if cls is not None:
            xs = torch.cat([cls.expand(b, t, d).reshape(b * t, 1, d), xs], dim=1)
        res_spatial = self.drop_path(self._attend(self.attn, self.norm1(xs), grid, cls))
        if cls is not None:
            cls_res = res_spatial[:, 0].view(b, t, d).mean(dim=1, keepdim=True)
            cls = cls + cls_res
            res_spatial = res_spatial[:, 1:]
        x = xt + res_spatial.reshape(b, t, p, d)
        if cls is None:
            return None, x + self.drop_path(self.mlp(self.norm2(x)))
        tokens = torch.cat([cls, x.reshape(b, t * p, d)], dim=1)  # one MLP (and drop-path draw) as official
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens[:, :1], tokens[:, 1:].reshape(b, t, p, d)

    def _mix_temporal(self, tokens: Tensor, grid: tuple[int, ...] | None) -> Tensor:
        return _mix(
            self.temporal_attn, tokens, grid if getattr(self.temporal_attn, "needs_grid", False) else None
        )

    @staticmethod
    def _attend(mixer: TokenMixer, tokens: Tensor, grid: Sequence[int], cls: Tensor | None) -> Tensor:
        return _mix(mixer, tokens, None if cls is not None else grid)


class TimeSformer(VideoClassificationNetwork):
    """TimeSformer video classifier (defaults: ViT-B/16, divided space-time attention).

    Args:
        num_classes: Output classes (linked from the data).
        num_frames: Frames ``T`` per clip (linked); sizes the time embedding.
        image_size: Crop side in pixels (linked); with ``patch_size`` sizes the position embedding.
        attention: Factory of the spatial / joint mixer (``--model.attention``); default multi-head
            attention with ``num_heads`` heads.
        temporal_attention: Factory of the temporal mixer of divided blocks; default multi-head attention.
        attention_type: ``divided_space_time`` (paper's best), ``joint`` or ``space_only``.
        in_channels: Input channels.
        patch_size: Patch side ``p`` in pixels.
        dim: Token width.
        depth: Number of blocks.
        num_heads: Heads of the default mixers.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: Whether the default mixers' q/k/v projections have a bias (ViT: True).
        drop: Dropout in the MLPs and after the embeddings.
        attn_drop: Dropout on the attention weights of the default mixers.
        drop_path: Largest stochastic-depth rate (linearly increasing over the blocks; paper: 0.1).
        head_drop: Dropout before the classifier (official K400 configs: ``MODEL.DROPOUT_RATE 0.5``).
        pool: ``cls`` (official) or ``mean`` over all patch tokens (needed by grid-based mechanisms).
        image_weights: Path of an image-ViT checkpoint in timm layout to initialise from (see
            :func:`~domains.video.models.pretrained.load_image_vit`); the time embedding and the temporal
            layers are added.
        frame_difference: Also feed each frame's difference from the previous one (zero for the first) as
            ``in_channels`` more input channels: motion made explicit for models trained from scratch on
            few clips (an addition, not in the paper; not with ``image_weights``).
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        image_size: int,
        attention: AttentionFactory | None = None,
        temporal_attention: AttentionFactory | None = None,
        attention_type: AttentionType = "divided_space_time",
        in_channels: int = 3,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.1,
        head_drop: float = 0.5,
        pool: Literal["cls", "mean"] = "cls",
        image_weights: str | None = None,
        frame_difference: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if frame_difference and image_weights:
            raise ValueError(
                f"{name}: frame_difference changes the patch embedding; image_weights cannot load"
            )
        if attention_type not in ("divided_space_time", "joint", "space_only"):
            raise ValueError(
                f"{name}: attention_type must be divided_space_time, joint or space_only, "
                f"got {attention_type!r}"
            )
        if pool not in ("cls", "mean"):
            raise ValueError(f"{name}: pool must be 'cls' or 'mean', got {pool!r}")
        for arg, value in (("num_classes", num_classes), ("num_frames", num_frames), ("depth", depth)):
            if value < 1:
                raise ValueError(f"{name}: {arg} must be >= 1, got {value}")
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ValueError(
                f"{name}: image_size={image_size} must be a positive multiple of patch_size={patch_size}"
            )
        self.attention_type: AttentionType = attention_type
        self.num_frames = num_frames
        self.image_size = image_size
        self.patch_size = patch_size
        self.pool = pool
        self.grid = (image_size // patch_size, image_size // patch_size)
        num_patches = self.grid[0] * self.grid[1]
        default = default_heads_factory(name, num_heads, {"dim": dim}, qkv_bias=qkv_bias, attn_drop=attn_drop)
        self.patch_embed = nn.Module()
        self.in_channels = in_channels
        self.frame_difference = bool(frame_difference)
        embedded = 2 * in_channels if frame_difference else in_channels
        self.patch_embed.proj = nn.Conv2d(embedded, dim, patch_size, stride=patch_size)
        prefix = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, prefix + num_patches, dim))
        self.time_embed = (
            nn.Parameter(torch.zeros(1, num_frames, dim)) if attention_type != "space_only" else None
        )
        self.pos_drop = nn.Dropout(drop)
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(
            TimeSformerBlock(
                dim,
                attention_type=attention_type,
                attention=attention or default,
                temporal_attention=temporal_attention or default,
                mlp_ratio=mlp_ratio,
                drop=drop,
                drop_path=rates[i],
                layer_idx=i,
                num_layers=depth,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head_drop = nn.Dropout(head_drop)
        self.head = nn.Linear(dim, num_classes)
        self._check_mixers()
        self._init_weights()
        if image_weights:
            from domains.video.models.pretrained import load_image_vit

            load_image_vit(self, image_weights)

    def forward(self, video: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for clips ``(B, C, T, H, W)``."""
        return self.head(self.head_drop(self.forward_features(video)))

    def forward_features(self, video: Tensor) -> Tensor:
        """The pooled, normalised clip feature ``(B, dim)``."""
        b, c, t, h, w = self._check_input(video)
        if self.frame_difference:
            video = torch.cat([video, torch.diff(video, dim=2, prepend=video[:, :, :1])], dim=1)
            c = 2 * c
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.patch_embed.proj(frames)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B·T, P, D)
        pos = self._resized_pos_embed(grid)
        cls = None
        if self.cls_token is not None:
            cls = (self.cls_token + pos[:, :1]).expand(
                b * t if self.attention_type == "space_only" else b, 1, -1
            )
            pos = pos[:, 1:]
        x = self.pos_drop(x + pos).view(b, t, grid[0] * grid[1], -1)
        if cls is not None:
            cls = self.pos_drop(cls)
            if self.attention_type == "space_only":
                cls = cls.reshape(b, t, 1, -1)
        if self.time_embed is not None:
            x = self.pos_drop(x + self._resized_time_embed(t)[:, :, None])
        for block in self.blocks:
            cls, x = block(cls, x, grid)
        if cls is None:
            return self.norm(x).mean(dim=(1, 2))
        if self.attention_type == "space_only":
            cls = cls.mean(dim=1)  # average the per-frame CLS tokens, then norm (official)
        return self.norm(cls)[:, 0]

    def _check_input(self, video: Tensor) -> tuple[int, int, int, int, int]:
        in_channels = self.in_channels
        if video.ndim != 5 or video.shape[1] != in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected video of shape (B, {in_channels}, T, H, W), "
                f"got {tuple(video.shape)}"
            )
        b, c, t, h, w = video.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"{type(self).__name__}: frame size {h}x{w} must be a multiple of "
                f"patch_size={self.patch_size}"
            )
        return b, c, t, h, w

    def _resized_pos_embed(self, grid: tuple[int, int]) -> Tensor:
        if grid == self.grid:
            return self.pos_embed
        prefix = 1 if self.cls_token is not None else 0
        head, body = self.pos_embed[:, :prefix], self.pos_embed[:, prefix:]
        d = body.shape[-1]
        body = body.transpose(1, 2).reshape(1, d, *self.grid)
        body = F.interpolate(body, size=grid, mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat([head, body], dim=1)

    def _resized_time_embed(self, frames: int) -> Tensor:
        assert self.time_embed is not None
        if frames == self.time_embed.shape[1]:
            return self.time_embed
        return F.interpolate(self.time_embed.transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)

    def _check_mixers(self) -> None:
        if self.pool == "mean":
            return
        for block in self.blocks:
            for mixer in (block.attn, getattr(block, "temporal_attn", None)):
                if getattr(mixer, "needs_grid", False):
                    raise ValueError(
                        f"{type(self).__name__}: {type(mixer).__name__} needs a token grid, which the CLS "
                        "token breaks; use pool='mean' (--model.network.pool=mean)"
                    )

    def _init_weights(self) -> None:
        """Timm ViT init (truncated normal 0.02, zero biases), then the official ``temporal_fc`` rule."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.attention_type == "divided_space_time":
            for block in list(self.blocks)[1:]:
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)


class TimeSformerBase(TimeSformer):
    """TimeSformer with a ViT-B/16 backbone (768-d, 12 blocks, 12 heads): the paper's model."""


class TimeSformerSmall(TimeSformer):
    """TimeSformer with a ViT-S/16 backbone (384-d, 12 blocks, 6 heads); the rest as :class:`TimeSformer`."""

    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        image_size: int,
        *,
        dim: int = 384,
        num_heads: int = 6,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, num_frames, image_size, dim=dim, num_heads=num_heads, **kwargs)


class TimeSformerTiny(TimeSformer):
    """TimeSformer with a ViT-Ti/16 backbone (192-d, 12 blocks, 3 heads; timm ``vit_tiny_patch16_224``)."""

    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        image_size: int,
        *,
        dim: int = 192,
        num_heads: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, num_frames, image_size, dim=dim, num_heads=num_heads, **kwargs)


class TimeSformerMicro(TimeSformer):
    """A CPU-sized TimeSformer for low-resolution clips: 8-pixel patches, 64-d, 4 blocks, 4 heads.

    Pools by the mean of the patch tokens (``pool="mean"``): trained from scratch on a few hundred clips,
    the CLS token did not learn where mean pooling did (docs/video.md); ``pool="cls"`` restores the paper's
    head.
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        image_size: int,
        *,
        patch_size: int = 8,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        drop_path: float = 0.0,
        head_drop: float = 0.0,
        pool: Literal["cls", "mean"] = "mean",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes,
            num_frames,
            image_size,
            pool=pool,
            patch_size=patch_size,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            drop_path=drop_path,
            head_drop=head_drop,
            **kwargs,
        )
