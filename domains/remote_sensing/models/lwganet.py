"""LWGANet (Lu, Yang, Chen, AAAI 2026; arXiv 2501.10040): a lightweight group-attention backbone.

Official code ``AeroVILab-AHU/LWGANet@d46a47d`` (``classification/models/LWGANet.py``). Layout::

    stem:   Conv 4×4 s4 (no bias) → BN                                     stride 4, width C
    stage i (i = 0..3, width C·2^i): depth_i × LWGA block
        block: x + BN(DropPath(MLP(LWGA(x))))      MLP = 1×1 → BN → act → 1×1 (ratio 2, no biases)
        LWGA:  core.attention.LWGA with global branch ga12 (stages 1-2), dga (stage 3), ga (stage 4)
    DRFD between stages: dw3×3 (C → 2C, groups C); [dw3×3 s2 → act → BN] ∥ [MaxPool3 s2 → BN]; 1×1 → 2C
    head:   GAP → 1×1 conv (no bias) to 1280 → act → Linear

Variants (:class:`LWGANetL0` / :class:`LWGANetL1` / :class:`LWGANetL2`): stem width 32 / 64 / 96, depths
(1,2,4,2) / (1,2,4,2) / (1,4,4,2), GELU / GELU / ReLU, drop path 0 / 0.1 / 0.1; MRA kernel 11, BatchNorm
everywhere. Any number of bands: the stem is built for ``in_channels``; a checkpoint with another band count
loads through ``load_state_dict`` with timm's ``adapt_input_conv`` rule (:func:`adapt_input_conv`).

The segmentation network (:class:`LWGANetSeg`) follows the official dense-prediction variant
(``fork_feat``: a BatchNorm on each stage output) with a semantic-FPN decoder in place of UNetFormer.
Every stage needs a map of at least 3×3 (the MRA BlurPool), so inputs are at least 96×96 and multiples
of 32; :class:`LWGANet` can resize small patches first (``input_size``), as the classification recipe
resizes every image to 224.
"""

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.lwga import LWGA
from core.blocks.token_map import TokenMixerMap
from core.layers.drop import DropPath, drop_path_rates
from domains.remote_sensing.models.base import SceneClassifier, SegmentationNetwork
from domains.remote_sensing.models.layers import FPNDecoder, adapt_input_conv, check_image, upsample_to

__all__ = [
    "DRFD",
    "LWGANet",
    "LWGANetBackbone",
    "LWGANetBlock",
    "LWGANetL0",
    "LWGANetL1",
    "LWGANetL2",
    "LWGANetSeg",
    "LWGANetSegL1",
    "LWGANetSegL2",
]

Activation = Literal["gelu", "relu"]
_ACT = {"gelu": nn.GELU, "relu": nn.ReLU}
_GLOBAL = ("ga12", "ga12", "dga", "ga")


class DRFD(nn.Module):
    """Dual-branch robust feature downsampling: ``(B, C, H, W) -> (B, 2C, ⌈H/2⌉, ⌈W/2⌉)``."""

    def __init__(self, dim: int, act: Activation = "gelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, 2 * dim, 3, padding=1, groups=dim)
        self.conv_c = nn.Conv2d(2 * dim, 2 * dim, 3, stride=2, padding=1, groups=2 * dim)
        self.act_c = _ACT[act]()
        self.norm_c = nn.BatchNorm2d(2 * dim)
        self.max_m = nn.MaxPool2d(3, stride=2, padding=1)
        self.norm_m = nn.BatchNorm2d(2 * dim)
        self.fusion = nn.Conv2d(4 * dim, 2 * dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Convolutional and max-pool branches, concatenated and fused."""
        x = self.conv(x)
        conv = self.norm_c(self.act_c(self.conv_c(x)))
        return self.fusion(torch.cat([conv, self.norm_m(self.max_m(x))], dim=1))


class LWGANetBlock(nn.Module):
    """``x + BN(DropPath(MLP(mixer(x))))``; the mixer is LWGA, or an injected token mixer on the map.

    Args:
        dim: Channels.
        stage: Stage index 0..3 (picks LWGA's global branch).
        att_kernel: MRA strip length.
        mlp_ratio: MLP hidden width ratio.
        drop_path: Stochastic-depth rate of the block.
        act: Activation.
        attention: Token-mixer factory replacing LWGA (applied as a pre-norm residual on the map).
        layer_idx: Index of the block in the network (for the token mixer).
        num_layers: Blocks in the network.
    """

    def __init__(
        self,
        dim: int,
        stage: int,
        *,
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path: float = 0.0,
        act: Activation = "gelu",
        attention: AttentionFactory | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if attention is None:
            self.mixer: nn.Module = LWGA(dim, att_kernel=att_kernel, global_attention=_GLOBAL[stage], act=act)
        else:

            def factory(channels: int, **_: Any) -> nn.Module:
                return attention(channels, layer_idx=layer_idx, num_layers=num_layers)

            self.mixer = TokenMixerMap(dim, attention=factory)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            _ACT[act](),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )
        self.drop_path = DropPath(drop_path)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        """One residual block."""
        return x + self.norm(self.drop_path(self.mlp(self.mixer(x))))


class LWGANetBackbone(nn.Module):
    """Stem and the four stages; returns the four stage outputs (strides 4, 8, 16, 32).

    Args:
        in_channels: Bands.
        stem_dim: Width ``C`` of stage 1 (stages are C, 2C, 4C, 8C).
        depths: Blocks per stage.
        act: Activation.
        att_kernel: MRA strip length.
        mlp_ratio: MLP hidden width ratio.
        drop_path_rate: Largest stochastic-depth rate (linear over the blocks).
        attention: Token-mixer factory replacing LWGA in every block.
    """

    def __init__(
        self,
        in_channels: int,
        stem_dim: int,
        depths: Sequence[int],
        act: Activation,
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"LWGANet: depths must be 4 positive numbers, got {list(depths)}")
        if stem_dim % 4:
            raise ValueError(f"LWGANet: stem_dim must be divisible by 4 (LWGA's four groups), got {stem_dim}")
        if act not in _ACT:
            raise ValueError(f"LWGANet: act must be 'gelu' or 'relu', got {act!r}")
        self.in_channels = in_channels
        self.dims = [stem_dim * 2**i for i in range(4)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_dim, 4, stride=4, bias=False), nn.BatchNorm2d(stem_dim)
        )
        self.stem[0].register_load_state_dict_pre_hook(_adapt_stem_hook)
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        index = 0
        for i, depth in enumerate(depths):
            blocks = []
            for _ in range(depth):
                blocks.append(
                    LWGANetBlock(
                        self.dims[i],
                        i,
                        att_kernel=att_kernel,
                        mlp_ratio=mlp_ratio,
                        drop_path=rates[index],
                        act=act,
                        attention=attention,
                        layer_idx=index,
                        num_layers=sum(depths),
                    )
                )
                index += 1
            self.stages.append(nn.Sequential(*blocks))
            if i < 3:
                self.downsamples.append(DRFD(self.dims[i], act))

    def forward(
        self, x: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> list[Tensor]:
        """The four stage outputs; stem pixels where ``mask`` ``(B, H/4, W/4)`` is True become the token."""
        x = self.stem(x)
        if mask is not None and mask_token is not None:
            w = mask.unsqueeze(1).to(x.dtype)
            x = x * (1.0 - w) + mask_token.view(1, -1, 1, 1).to(x.dtype) * w
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features.append(x)
            if i < 3:
                x = self.downsamples[i](x)
        return features


def _adapt_stem_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Let a stem trained on another band count load (timm's ``adapt_input_conv``)."""
    key = prefix + "weight"
    if key in state_dict and state_dict[key].shape[1] != module.weight.shape[1]:
        state_dict[key] = adapt_input_conv(state_dict[key], module.weight.shape[1])


def _init_weights(module: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) for convs and linears, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class LWGANet(SceneClassifier):
    """LWGANet scene classifier (default: the L1 variant); bands ``(B, in_channels, H, W)`` → logits.

    Args:
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        stem_dim: Width of stage 1.
        depths: Blocks per stage.
        act: ``gelu`` (L0/L1) or ``relu`` (L2).
        att_kernel: MRA strip length (11).
        mlp_ratio: MLP hidden width ratio (2).
        drop_path_rate: Largest stochastic-depth rate.
        feature_dim: Width of the pre-logits 1×1 conv (1280).
        input_size: Resize inputs (nearest) to this square size first, for patches smaller than the
            96-pixel minimum (Statlog's 3×3). None: use the input as is.
        attention: Token-mixer factory replacing LWGA in every block (e.g. ``MultiHeadAttention``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 64,
        depths: tuple[int, int, int, int] = (1, 2, 4, 2),
        act: Activation = "gelu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
        feature_dim: int = 1280,
        input_size: int | None = None,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        self.backbone = LWGANetBackbone(
            in_channels, stem_dim, depths, act, att_kernel, mlp_ratio, drop_path_rate, attention
        )
        self.input_size = input_size
        self.pre_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(self.backbone.dims[-1], feature_dim, 1, bias=False),
            _ACT[act](),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        check_image(type(self).__name__, x, self.backbone.in_channels)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size,) * 2:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="nearest")
        return self.head(self.pre_head(self.backbone(x)[-1]).flatten(1))


class LWGANetL0(LWGANet):
    """LWGANet-L0: stem 32, depths (1, 2, 4, 2), GELU, no drop path."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 32,
        depths: tuple[int, int, int, int] = (1, 2, 4, 2),
        act: Activation = "gelu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        feature_dim: int = 1280,
        input_size: int | None = None,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(**_args(locals()))


class LWGANetL1(LWGANet):
    """LWGANet-L1: stem 64, depths (1, 2, 4, 2), GELU, drop path 0.1 (the class defaults of LWGANet)."""


class LWGANetL2(LWGANet):
    """LWGANet-L2: stem 96, depths (1, 4, 4, 2), ReLU, drop path 0.1."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 96,
        depths: tuple[int, int, int, int] = (1, 4, 4, 2),
        act: Activation = "relu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
        feature_dim: int = 1280,
        input_size: int | None = None,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(**_args(locals()))


def _args(local: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in local.items() if k not in ("self", "__class__")}


class LWGANetSeg(SegmentationNetwork):
    """LWGANet encoder (default L0) with a BatchNorm per stage output and a semantic-FPN decoder.

    Logits come at stride 4 and are upsampled (bilinear) to the image grid. Tiles whose sides are not
    multiples of 32 of at least 96 (the encoder's minimum) are padded at the bottom and right by edge
    replication, and the logits cropped back, so 64-pixel tiles work at the cost of a 96-pixel forward.
    The network supports SimMIM pre-training (:meth:`encode_masked`).

    Args:
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        stem_dim: Width of stage 1.
        depths: Blocks per stage.
        act: Activation.
        att_kernel: MRA strip length.
        mlp_ratio: MLP hidden width ratio.
        drop_path_rate: Largest stochastic-depth rate.
        decoder_dim: FPN width.
        dropout: Dropout before the classifier.
        attention: Token-mixer factory replacing LWGA in every block.
    """

    patch_size = 4
    encoder_stride = 32

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 32,
        depths: tuple[int, int, int, int] = (1, 2, 4, 2),
        act: Activation = "gelu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        decoder_dim: int = 128,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        self.encoder = LWGANetBackbone(
            in_channels, stem_dim, depths, act, att_kernel, mlp_ratio, drop_path_rate, attention
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(d) for d in self.encoder.dims)
        self.encoder_channels = self.encoder.dims[-1]
        self.mask_token = nn.Parameter(torch.zeros(stem_dim))
        self.decoder = FPNDecoder(self.encoder.dims, decoder_dim, num_classes, dropout)
        _init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, image: Tensor, **extras: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)``; other tile sizes are padded to a valid one (see the class)."""
        check_image(type(self).__name__, image, self.encoder.in_channels)
        h, w = image.shape[-2:]
        padded = F.pad(image, (0, _valid_size(w) - w, 0, _valid_size(h) - h), mode="replicate")
        features = [norm(f) for norm, f in zip(self.norms, self.encoder(padded), strict=True)]
        return upsample_to(self.decoder(features), padded.shape[-2:])[..., :h, :w]

    def encode_masked(self, image: Tensor, mask: Tensor, **extras: Tensor) -> Tensor:
        """Deepest features with the masked stem pixels replaced by the mask token (SimMIM).

        A tile of another size is padded like in :meth:`forward` (the padding is never masked), so the
        features cover the padded tile; the caller crops its reconstruction back.
        """
        check_image(type(self).__name__, image, self.encoder.in_channels, multiple=self.patch_size)
        h, w = image.shape[-2:]
        ph, pw = _valid_size(h) - h, _valid_size(w) - w
        image = F.pad(image, (0, pw, 0, ph), mode="replicate")
        mask = F.pad(mask, (0, pw // self.patch_size, 0, ph // self.patch_size), value=False)
        return self.norms[-1](self.encoder(image, mask, self.mask_token)[-1])


def _valid_size(side: int) -> int:
    """The smallest multiple of 32 that is at least ``side`` and at least 96."""
    return max(96, -(-side // 32) * 32)


class LWGANetSegL1(LWGANetSeg):
    """:class:`LWGANetSeg` with the L1 encoder (stem 64, GELU, drop path 0.1)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 64,
        depths: tuple[int, int, int, int] = (1, 2, 4, 2),
        act: Activation = "gelu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
        decoder_dim: int = 128,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(**_args(locals()))


class LWGANetSegL2(LWGANetSeg):
    """:class:`LWGANetSeg` with the L2 encoder (stem 96, depths (1, 4, 4, 2), ReLU, drop path 0.1)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_dim: int = 96,
        depths: tuple[int, int, int, int] = (1, 4, 4, 2),
        act: Activation = "relu",
        att_kernel: int = 11,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
        decoder_dim: int = 256,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(**_args(locals()))
