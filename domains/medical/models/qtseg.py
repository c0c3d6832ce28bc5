"""QTSeg (2-D): a small FPN encoder, a multi-level feature bridge, a query-token dual-mix attention decoder.

Paper: Tran et al., "QTSeg: A Query Token-Based Dual-Mix Attention Framework with Multi-Level Feature
Distribution for Medical Image Segmentation", arXiv 2412.17241. Official code ``tpnam0901/QTSeg@e585983``
(``src/networks``: ``encoder/models.py FPNEncoder``, ``modules.py MLFD``, ``decoder/models.py MaskDecoder``,
``decoder/modules.py DualMixAttentionBlock``). Written from the paper and the notes on that code.

* **Encoder** (``FPNEncoder``, a YOLOv8-nano-shaped backbone + PAN neck, base width ``n``): strided
  ``Conv3×3 → BN → SiLU`` stages with C2f (CSP) blocks down to /32, SPPF, a top-down and a bottom-up path;
  outputs ``(4n, /8)``, ``(8n, /16)``, ``(16n, /32)``.
* **Bridge** (MLFD, faithful): every output level is the concatenation of all three encoder levels brought
  to its resolution (strided convs down, transposed convs up), widths ``4n``, ``8n``, ``16n``.
* **Mask decoder**: one learnable query token per class, run from the deepest level to the shallowest.
  Per level ``s`` (width ``C_s``, random-Fourier positional encoding ``PE``), ``depth_s`` DMA blocks:

  - :class:`DualMixAttention`: ``f = x + PE``; spatial branch ``SAM(f) = f·σ(conv7([mean_c f; max_c f])) + f``
    (:class:`~core.attention.channel_gates.SpatialGate` with ``residual=True``), channel branch
    ``CAB(f)`` = DANet's CAM with max-subtraction and ``γ = 0``
    (:class:`~core.attention.danet.ChannelAttention`, ``variant="danet"``); in each branch the tokens
    cross-attend to the flattened branch output; ``tokens' = LN(t_spatial + t_channel + tokens)``,
    ``features' = SAM(f) + CAB(f)``.
  - :class:`DMABlock`: ``tokens ← LN(MLP(tokens')) + tokens``; the features cross-attend to ``tokens'``
    (queries ``features' + PE``) and the result is added to the block's input features.
  - after the blocks, the tokens attend once more to the features (``q = tokens + tokens_in``,
    keys/values ``features + PE``) with a residual and LayerNorm.
  - ``ConvTranspose(2, stride 2) → LayerNorm2d → GELU`` up-samples the features to the next level (twice,
    ``/8 → /2``, at the last level) and they are added to the next bridge level; a per-class 3-layer MLP
    maps each token to the next level's width.

  Masks: ``tokens @ features`` (MaskFormer-style) at /2, bilinearly resized to the input: logits
  ``(B, num_classes, H, W)``.

Differences from the official code:

* **No pre-trained encoder**: the official ``fpn-nano.pth`` weights are not available offline; the
  encoder starts from random initialisation.
* The token/feature cross-attentions are injected (``attention``, any token mixer with ``context``
  support; default :class:`~core.attention.cross.CrossAttention`). The official ``Attention`` projects
  q/k/v from ``C`` to ``C / downsample_rate`` inside itself; here a ``Linear(C, C/r)`` on the queries and
  one on the context feed a mixer of width ``C/r`` and a ``Linear(C/r, C)`` maps back, so any mechanism
  fits (the extra linear maps compose with the mixer's projections; same function class, a few more
  parameters). Mixers see one context tensor, so keys = values: in the final token→feature attention
  the official values are the features *without* PE (keys with PE); here both carry the PE.
* Heads: 8 as the official code, reduced to the largest power of two that divides every attention width
  (``C_s / r``) when the widths are small.
* Input sizes that are not multiples of 32 are zero-padded at the bottom/right and the logits cropped
  back (the official code assumes 512×512 inputs).
* Defaults are CPU-sized: ``base_channels=8`` (widths 32/64/128; official 16 → 64/128/256) and
  ``mlp_dim=256`` (official 2048). Depths ``(1, 2, 3)`` and the downsample rate 2 are the official ones.
* The official forward also returns the mask embeddings; this one returns the logits only.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer
from core.attention.channel_gates import SpatialGate
from core.attention.cross import CrossAttention
from core.attention.danet import ChannelAttention
from core.attention.mha import default_heads_factory
from core.layers import LayerNorm2d
from domains.medical.models.base import SegmentationNetwork

__all__ = ["DMABlock", "DualMixAttention", "FPNEncoder", "MLFDBridge", "QTSeg", "TokenCrossAttention"]

_STRIDE = 32


class ConvBNAct(nn.Sequential):
    """``Conv(k, stride, padding k//2, no bias) → BN → SiLU`` (the YOLO ``Conv``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
        )


class UpConvBNAct(nn.Sequential):
    """``ConvTranspose(k, stride k, no bias) → BN → SiLU`` (the YOLO ``ConvTranspose``)."""

    def __init__(self, c_in: int, c_out: int, factor: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(c_in, c_out, factor, factor, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
        )


class _Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(c, c, 3), ConvBNAct(c, c, 3))
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """CSP block: split a 1×1 projection, chain ``n`` bottlenecks on one half, concat all, 1×1."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBNAct(c_in, 2 * self.hidden)
        self.cv2 = ConvBNAct((2 + n) * self.hidden, c_out)
        self.blocks = nn.ModuleList(_Bottleneck(self.hidden, shortcut) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): 1×1, three chained 5×5 max-pools, concat, 1×1."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_in // 2)
        self.cv2 = ConvBNAct(c_in // 2 * 4, c_out)
        self.pool = nn.MaxPool2d(kernel, 1, kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], dim=1))


class FPNEncoder(nn.Module):
    """YOLOv8-nano-shaped backbone + PAN neck; ``(B, C_in, H, W)`` (H, W multiples of 32) → 3 levels.

    Returns ``(4n, H/8)``, ``(8n, H/16)``, ``(16n, H/32)`` feature maps.
    """

    def __init__(self, in_channels: int, n: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, n, 3, 2), ConvBNAct(n, 2 * n, 3, 2), C2f(2 * n, 2 * n, 1, True)
        )
        self.down3 = nn.Sequential(ConvBNAct(2 * n, 4 * n, 3, 2), C2f(4 * n, 4 * n, 2, True))
        self.down4 = nn.Sequential(ConvBNAct(4 * n, 8 * n, 3, 2), C2f(8 * n, 8 * n, 2, True))
        self.down5 = nn.Sequential(
            ConvBNAct(8 * n, 16 * n, 3, 2), C2f(16 * n, 16 * n, 1, True), SPPF(16 * n, 16 * n)
        )
        self.top4 = C2f(24 * n, 8 * n)
        self.top3 = C2f(12 * n, 4 * n)
        self.bottom4_down = ConvBNAct(4 * n, 4 * n, 3, 2)
        self.bottom4 = C2f(12 * n, 8 * n)
        self.bottom5_down = ConvBNAct(8 * n, 8 * n, 3, 2)
        self.bottom5 = C2f(24 * n, 16 * n)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone, then top-down and bottom-up fusion."""
        p3 = self.down3(self.stem(x))
        p4 = self.down4(p3)
        p5 = self.down5(p4)
        t4 = self.top4(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4], dim=1))
        o3 = self.top3(torch.cat([F.interpolate(t4, scale_factor=2.0, mode="nearest"), p3], dim=1))
        o4 = self.bottom4(torch.cat([self.bottom4_down(o3), t4], dim=1))
        o5 = self.bottom5(torch.cat([self.bottom5_down(o4), p5], dim=1))
        return o3, o4, o5


class MLFDBridge(nn.Module):
    """Multi-level feature distribution: each level = concat of all three levels resampled to it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.to3 = nn.ModuleList(
            [ConvBNAct(4 * n, 2 * n), UpConvBNAct(8 * n, n, 2), UpConvBNAct(16 * n, n, 4)]
        )
        self.to4 = nn.ModuleList(
            [ConvBNAct(4 * n, 2 * n, 3, 2), ConvBNAct(8 * n, 4 * n), UpConvBNAct(16 * n, 2 * n, 2)]
        )
        self.to5 = nn.ModuleList(
            [ConvBNAct(4 * n, 4 * n, 3, 4), ConvBNAct(8 * n, 4 * n, 3, 2), ConvBNAct(16 * n, 8 * n)]
        )

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(o3, o4, o5) -> (4n /8, 8n /16, 16n /32)``."""
        return tuple(  # type: ignore[return-value]
            torch.cat([m(f) for m, f in zip(mods, feats, strict=True)], dim=1)
            for mods in (self.to3, self.to4, self.to5)
        )


class RandomFourierPositions(nn.Module):
    """SAM's random-Fourier positional encoding of an ``(H, W)`` grid: ``[sin(2π c G); cos(2π c G)]``.

    ``c`` are the cell centres scaled to ``[-1, 1]`` and ``G ~ N(0, 1)^{2 × dim/2}`` is a fixed buffer
    (saved with the weights).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"RandomFourierPositions: dim must be even, got {dim}")
        self.register_buffer("gaussian", torch.randn(2, dim // 2))

    def forward(self, size: Sequence[int]) -> Tensor:
        """``(dim, H, W)`` encoding."""
        h, w = size
        dev = self.gaussian.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
        proj = 2 * torch.pi * ((2 * coords - 1) @ self.gaussian)
        return torch.cat([proj.sin(), proj.cos()], dim=-1).permute(2, 0, 1)


class TokenCrossAttention(nn.Module):
    """Queries ``(B, N, C)`` attend to a context ``(B, M, C)`` through an injected mixer of width ``C / r``.

    ``r > 1`` adds ``Linear(C, C/r)`` maps on queries and context and ``Linear(C/r, C)`` after the mixer
    (QTSeg's ``downsample_rate``); ``r = 1`` calls the mixer at width ``C`` directly.

    Args:
        dim: Width ``C`` of queries, context and output.
        attention: Token-mixer factory with ``context`` support.
        downsample_rate: ``r``; must divide ``dim``.
        layer_idx: Passed to the factory.
        num_layers: Passed to the factory.
    """

    def __init__(
        self,
        dim: int,
        attention: AttentionFactory,
        downsample_rate: int,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if downsample_rate < 1 or dim % downsample_rate:
            raise ValueError(f"QTSeg: downsample_rate={downsample_rate} must be >= 1 and divide width {dim}")
        inner = dim // downsample_rate
        self.mixer: TokenMixer = attention(inner, layer_idx=layer_idx, num_layers=num_layers)
        if not getattr(self.mixer, "supports_context", False):
            raise ValueError(
                f"QTSeg: the attention {type(self.mixer).__name__} does not take `context`; the token/feature"
                " cross-attention needs a mechanism with context support (e.g. CrossAttention)"
            )
        resize = downsample_rate > 1
        self.q_in = nn.Linear(dim, inner) if resize else nn.Identity()
        self.ctx_in = nn.Linear(dim, inner) if resize else nn.Identity()
        self.out = nn.Linear(inner, dim) if resize else nn.Identity()

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        """``(B, N, C), (B, M, C) -> (B, N, C)``."""
        return self.out(self.mixer(self.q_in(queries), context=self.ctx_in(context)))


class DualMixAttention(nn.Module):
    """Spatial (SAM) and channel (CAB) branches on ``features + PE``; tokens cross-attend to each branch.

    Returns ``(LN(t_spatial + t_channel + tokens), SAM + CAB as (B, H·W, C))``.
    """

    def __init__(
        self, dim: int, attention: AttentionFactory, downsample_rate: int, layer_idx: int, num_layers: int
    ) -> None:
        super().__init__()
        self.spatial = SpatialGate(dim, spatial_dims=2, kernel_size=7, residual=True)
        self.channel = ChannelAttention(dim, spatial_dims=2, variant="danet")
        self.spatial_mix = TokenCrossAttention(dim, attention, downsample_rate, layer_idx, num_layers)
        self.channel_mix = TokenCrossAttention(dim, attention, downsample_rate, layer_idx, num_layers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, features: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens (B, K, C)``, ``features (B, C, H, W)``, ``pe (1, C, H, W)``."""
        f = features + pe
        s = self.spatial(f).flatten(2).transpose(1, 2)
        c = self.channel(f).flatten(2).transpose(1, 2)
        mixed = self.spatial_mix(tokens, s) + self.channel_mix(tokens, c) + tokens
        return self.norm(mixed), s + c


class DMABlock(nn.Module):
    """Dual-mix attention, token MLP (LayerNorm, residual), feature→token cross-attention (residual)."""

    def __init__(
        self,
        dim: int,
        attention: AttentionFactory,
        mlp_dim: int,
        downsample_rate: int,
        layer_idx: int,
        num_layers: int,
    ) -> None:
        super().__init__()
        self.dual_mix = DualMixAttention(dim, attention, downsample_rate, layer_idx, num_layers)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.feature_mix = TokenCrossAttention(dim, attention, downsample_rate, layer_idx, num_layers)

    def forward(self, tokens: Tensor, features: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
        """Update tokens ``(B, K, C)`` and features ``(B, C, H, W)``."""
        att_tokens, att_features = self.dual_mix(tokens, features, pe)
        tokens = self.norm(self.mlp(att_tokens)) + tokens
        pe_tokens = pe.flatten(2).transpose(1, 2)
        mixed = self.feature_mix(att_features + pe_tokens, att_tokens)
        return tokens, mixed.transpose(1, 2).reshape(features.shape) + features


class _Stage(nn.Module):
    """``depth`` DMA blocks and the final token→feature attention of one decoder level."""

    def __init__(
        self, dim: int, depth: int, attention: AttentionFactory, mlp_dim: int, downsample_rate: int
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            DMABlock(dim, attention, mlp_dim, downsample_rate, i, depth) for i in range(depth)
        )
        self.final = TokenCrossAttention(dim, attention, downsample_rate, depth - 1, depth)
        self.norm = nn.LayerNorm(dim)
        self.pe = RandomFourierPositions(dim)

    def forward(self, tokens: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        pe = self.pe(features.shape[2:]).unsqueeze(0).to(features.dtype)
        queries = tokens
        for block in self.blocks:
            queries, features = block(queries, features, pe)
        keys = (features + pe).flatten(2).transpose(1, 2)
        queries = self.norm(queries + self.final(queries + tokens, keys))
        return queries, features


class _TokenMLP(nn.Module):
    """MaskFormer's 3-layer MLP (ReLU between layers)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, dim),
            nn.ReLU(inplace=True),
            nn.Linear(dim, dim),
            nn.ReLU(inplace=True),
            nn.Linear(dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _fit_heads(num_heads: int, widths: Sequence[int]) -> int:
    heads = num_heads
    while heads > 1 and any(w % heads for w in widths):
        heads //= 2
    return max(heads, 1)


class QTSeg(SegmentationNetwork):
    """QTSeg for 2-D images: ``(B, in_channels, H, W) -> logits (B, num_classes, H, W)``.

    Trained on slices (a datamodule with ``spatial_dims=2``); the task evaluates it slice by slice on whole
    volumes.

    Args:
        in_channels: Image channels (linked from the data).
        num_classes: Classes including background, one query token each (linked from the data).
        spatial_dims: Must be 2 (linked from the data): QTSeg is a 2-D network.
        attention: Token-mixer factory for every token/feature cross-attention (called with ``context=``);
            default :class:`~core.attention.cross.CrossAttention` with ``num_heads`` heads.
        base_channels: Encoder base width ``n``; decoder widths ``4n, 8n, 16n`` (official ``n = 16``).
        depths: DMA blocks per decoder level, shallow to deep (official ``(1, 2, 3)``).
        num_heads: Heads of the default attention (official 8), halved until they divide every width.
        mlp_dim: Hidden width of the token MLPs (official 2048).
        downsample_rate: Width reduction inside the cross-attentions (official 2).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        *,
        attention: AttentionFactory | None = None,
        base_channels: int = 8,
        depths: Sequence[int] = (1, 2, 3),
        num_heads: int = 8,
        mlp_dim: int = 256,
        downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        depths = tuple(int(d) for d in depths)
        if spatial_dims != 2:
            raise ValueError(
                f"QTSeg is a 2-D network, got spatial_dims={spatial_dims}: train it on slices (a datamodule "
                "with spatial_dims=2; volumes are then evaluated slice by slice) or choose a U-Net for 3-D"
            )
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"QTSeg: in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}"
            )
        if base_channels < 2 or base_channels % 2:
            raise ValueError(f"QTSeg: base_channels must be an even int >= 2, got {base_channels}")
        if len(depths) != 3 or min(depths) < 1:
            raise ValueError(f"QTSeg: depths must be 3 positive ints (shallow to deep), got {depths}")
        if mlp_dim < 1:
            raise ValueError(f"QTSeg: mlp_dim must be >= 1, got {mlp_dim}")
        n = base_channels
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.widths = (4 * n, 8 * n, 16 * n)
        if any(w % downsample_rate for w in self.widths) or downsample_rate < 1:
            raise ValueError(f"QTSeg: downsample_rate={downsample_rate} must divide the widths {self.widths}")
        if attention is None:
            inner = [w // downsample_rate for w in self.widths]
            heads = _fit_heads(num_heads, inner)
            attention = default_heads_factory(
                "QTSeg", heads, {f"width_{i}": w for i, w in enumerate(inner)}, cls=CrossAttention
            )
        self.encoder = FPNEncoder(in_channels, n)
        self.bridge = MLFDBridge(n)
        self.tokens = nn.Parameter(torch.randn(num_classes, self.widths[-1]))  # nn.Embedding init
        self.stages = nn.ModuleList(
            _Stage(w, d, attention, mlp_dim, downsample_rate)
            for w, d in zip(self.widths, depths, strict=True)
        )
        self.token_mlps = nn.ModuleList(
            nn.ModuleList(_TokenMLP(w, self.widths[max(i - 1, 0)]) for _ in range(num_classes))
            for i, w in enumerate(self.widths)
        )
        w0 = self.widths[0]
        self.upsample = nn.ModuleList()
        for i, w in enumerate(self.widths):
            if i > 0:
                self.upsample.append(
                    nn.Sequential(
                        nn.ConvTranspose2d(w, self.widths[i - 1], 2, 2),
                        LayerNorm2d(self.widths[i - 1], eps=1e-6),
                        nn.GELU(),
                    )
                )
            else:
                self.upsample.append(
                    nn.Sequential(
                        nn.ConvTranspose2d(w0, w0 // 2, 2, 2),
                        LayerNorm2d(w0 // 2, eps=1e-6),
                        nn.GELU(),
                        nn.ConvTranspose2d(w0 // 2, w0, 2, 2),
                        LayerNorm2d(w0, eps=1e-6),
                        nn.GELU(),
                    )
                )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` at the input resolution (any ``H, W``)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"QTSeg: expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[2:]
        pad_h, pad_w = -h % _STRIDE, -w % _STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        feats = self.bridge(self.encoder(x))
        tokens = self.tokens.unsqueeze(0).expand(x.shape[0], -1, -1)
        previous: Tensor | None = None
        features = feats[-1]
        for i in reversed(range(len(self.widths))):
            features = feats[i] if previous is None else feats[i] + previous
            att_tokens, features = self.stages[i](tokens, features)
            features = previous = self.upsample[i](features)
            tokens = torch.stack([mlp(att_tokens[:, k]) for k, mlp in enumerate(self.token_mlps[i])], dim=1)
        masks = (tokens @ features.flatten(2)).view(x.shape[0], self.num_classes, *features.shape[2:])
        masks = F.interpolate(masks, size=x.shape[2:], mode="bilinear", align_corners=False)
        return masks[:, :, :h, :w]
