"""BCAF: bidirectional cross-attention fusion of a high-resolution and a spectral (low-resolution) image.

Paper and official code: BCAF 2026, ``jonasvilhofunk/BCAF_2026@41f90dc`` (RGB at r × the hyperspectral grid).
Here the fine ("child") stream is the high-resolution panchromatic tile ``pan`` ``(B, 1, r·H, r·W)`` and the
coarse ("parent") stream the multispectral tile ``image`` ``(B, bands, H, W)``; on Landsat 8 the 15 m band 8
against the 30 m bands is a real r = 2 pair.

* Fine backbone: DaViT stages (:class:`~domains.remote_sensing.models.davit.DaViTEncoder`).
* Coarse backbone, the "adapted" spectral transformer: bands are zero-padded to a multiple of
  ``spectral_group_size`` and cut into ``S`` groups; one shared 4×4/s4 convolution embeds every group (plus
  a learned embedding per group), giving ``S`` spectral tokens per location. Each stage runs DaViT blocks on
  every spectral slice (shared weights) and then spectral self-attention over the ``S`` tokens of each
  location (pre-norm, residual).
* Fusion after every stage (:class:`core.blocks.bcaf.BCAFBlock`): children (fine cells) and parents (the
  coarse cell's ``S`` tokens) cross-attend in both directions, FFNs, :class:`~core.attention.bcaf.SpectralSE`
  collapses ``S``, and ``LN(LN(F) + σ(α) ⊙ Up_r(LN(z)))`` fuses on the fine grid (α starts at 0).
  ``fusion_layers > 1`` chains the layers (each reads the previous layer's streams); the official wrapper
  feeds every layer the same inputs and keeps only the last output, which we do not reproduce.
* The fused maps of the four stages go to an FPN decoder; the logits are resized to the multispectral
  (label) grid.
* SimMIM pre-training (:meth:`BCAF.encode_masked`, our addition, not in the paper): a masked cell of the
  multispectral stem grid hides all ``S`` spectral tokens there (a learned token plus each group's
  embedding) and the ``r × r`` pan stem cells over the same ground (another learned token), so neither
  stream can copy the hidden pixels from the other.

Differences from the paper: DaViT stages stand in for Swin-T in both backbones (core has no Swin); the
decoder is a semantic FPN rather than the paper's [256, 128, 64] head.
"""

from functools import partial

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.mha import MultiHeadAttention
from core.blocks.bcaf import BCAFBlock
from core.layers.norm import LayerNorm2d
from domains.remote_sensing.models.base import SegmentationNetwork
from domains.remote_sensing.models.davit import DaViTEncoder, DaViTStage
from domains.remote_sensing.models.layers import FPNDecoder, check_image, upsample_to

__all__ = ["BCAF", "SpectralEncoder"]


class _SpectralAttention(nn.Module):
    """Pre-norm residual self-attention over the ``S`` spectral tokens of every location."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads=num_heads)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, S, C, H, W) -> (B, S, C, H, W)``."""
        b, s, c, h, w = x.shape
        tokens = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, s, c)
        tokens = tokens + self.attn(self.norm(tokens))
        return tokens.reshape(b, h, w, s, c).permute(0, 3, 4, 1, 2)


class SpectralEncoder(nn.Module):
    """The coarse backbone: spectral-group tokens, DaViT stages per spectral slice, spectral attention.

    Args:
        in_channels: Bands.
        group_size: Bands per spectral token.
        dims: Stage widths.
        depths: DaViT block pairs per stage.
        num_heads: Heads per stage.
        window_size: Window side.
        mlp_ratio: MLP hidden width ratio.
        attention: Factory replacing the window attention.
    """

    def __init__(
        self,
        in_channels: int,
        group_size: int,
        dims: tuple[int, ...],
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        window_size: int,
        mlp_ratio: float,
        attention: AttentionFactory | None,
    ) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"BCAF: spectral_group_size must be >= 1, got {group_size}")
        self.in_channels = in_channels
        self.group_size = group_size
        self.num_tokens = -(-in_channels // group_size)
        self.embed = nn.Conv2d(group_size, dims[0], 4, stride=4)
        self.embed_norm = LayerNorm2d(dims[0])
        self.spectral_pos = nn.Parameter(torch.zeros(1, self.num_tokens, dims[0], 1, 1))
        nn.init.trunc_normal_(self.spectral_pos, std=0.02)
        total = 2 * sum(depths)
        offsets = [2 * sum(depths[:i]) for i in range(len(depths))]
        self.stages = nn.ModuleList(
            DaViTStage(
                dims[max(i - 1, 0)],
                dims[i],
                depths[i],
                num_heads[i],
                window_size,
                mlp_ratio,
                downsample=i > 0,
                attention=attention,
                layer_offset=offsets[i],
                num_layers=total,
            )
            for i in range(len(dims))
        )
        self.spectral = nn.ModuleList(_SpectralAttention(d, h) for d, h in zip(dims, num_heads, strict=True))

    def embed_bands(self, x: Tensor) -> Tensor:
        """``(B, bands, H, W) -> (B, S, C_1, H/4, W/4)``."""
        b, c, h, w = x.shape
        pad = self.num_tokens * self.group_size - c
        if pad:
            x = torch.cat([x, x.new_zeros(b, pad, h, w)], dim=1)
        groups = x.reshape(b * self.num_tokens, self.group_size, h, w)
        tokens = self.embed_norm(self.embed(groups))
        return tokens.reshape(b, self.num_tokens, *tokens.shape[1:]) + self.spectral_pos

    def forward_stage(self, index: int, x: Tensor) -> Tensor:
        """Stage ``index`` on ``(B, S, C, H, W)`` (spatial blocks per slice, then spectral attention)."""
        b, s = x.shape[:2]
        y = self.stages[index](x.flatten(0, 1))
        return self.spectral[index](y.reshape(b, s, *y.shape[1:]))


class BCAF(SegmentationNetwork):
    """Segmentation of a multispectral tile fused with its high-resolution panchromatic parent tile.

    Args:
        in_channels: Multispectral bands of ``image`` (linked from the data).
        num_classes: Classes (linked from the data).
        pan_channels: Bands of the high-resolution ``pan`` tile.
        dims: Stage widths of both backbones.
        depths: DaViT block pairs per stage.
        num_heads: Heads per stage (backbones and cross-attention).
        window_size: Window side of the backbones.
        mlp_ratio: MLP ratio of the backbones and the fusion FFNs (BCAF: 4).
        spectral_group_size: Bands per spectral token.
        pan_scale: Resolution ratio ``r`` of ``pan`` to ``image`` that :meth:`encode_masked` (SimMIM) is
            built for; it sets :attr:`encoder_stride`. :meth:`forward` takes any integer ratio.
        fusion_layers: Chained BCAF layers per stage (BCAF: 1).
        se_reduction: Reduction of the SpectralSE collapse (BCAF: 8).
        decoder_dim: FPN width.
        dropout: Dropout before the classifier (BCAF: 0.1).
        attention: Factory replacing the backbones' window attention.
    """

    inputs = ("image", "pan")
    patch_size = 4

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pan_channels: int = 1,
        dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 1, 3, 1),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        spectral_group_size: int = 2,
        pan_scale: int = 2,
        fusion_layers: int = 1,
        se_reduction: int = 8,
        decoder_dim: int = 128,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if fusion_layers < 1:
            raise ValueError(f"BCAF: fusion_layers must be >= 1, got {fusion_layers}")
        self.in_channels = in_channels
        self.pan_channels = pan_channels
        self.fine = DaViTEncoder(pan_channels, dims, depths, num_heads, window_size, mlp_ratio, attention)
        if pan_scale < 1 or self.fine.stride % pan_scale:
            raise ValueError(
                f"BCAF: pan_scale must divide the encoder stride {self.fine.stride}, got {pan_scale}"
            )
        self.pan_scale = pan_scale
        self.coarse = SpectralEncoder(
            in_channels, spectral_group_size, dims, depths, num_heads, window_size, mlp_ratio, attention
        )
        block = partial(BCAFBlock, mlp_ratio=mlp_ratio, se_reduction=se_reduction)
        self.fusion = nn.ModuleList(
            nn.ModuleList(block(d, num_heads=h) for _ in range(fusion_layers))
            for d, h in zip(dims, num_heads, strict=True)
        )
        self.decoder = FPNDecoder(dims, decoder_dim, num_classes, dropout)
        self.stride = self.fine.stride
        self.encoder_stride = self.fine.stride // pan_scale
        self.encoder_channels = dims[-1]
        self.mask_token = nn.Parameter(torch.zeros(dims[0]))
        self.pan_mask_token = nn.Parameter(torch.zeros(dims[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pan_mask_token, std=0.02)

    def forward(self, image: Tensor, pan: Tensor | None = None, **extras: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` on the multispectral grid."""
        return upsample_to(self.decoder(self._encode(image, pan)), image.shape[-2:])

    def encode_masked(
        self, image: Tensor, mask: Tensor, pan: Tensor | None = None, **extras: Tensor
    ) -> Tensor:
        """Deepest fused map (stride :attr:`encoder_stride` on ``image``) with masked stem cells (SimMIM).

        Args:
            image: Multispectral tile ``(B, bands, H, W)``.
            mask: ``(B, H / 4, W / 4)``, True = hidden, on the multispectral stem grid.
            pan: Pan tile ``(B, pan_channels, r·H, r·W)`` with ``r = pan_scale``.
            **extras: Other batch tensors, ignored.
        """
        if pan is not None and pan.shape[-1] != self.pan_scale * image.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}: encode_masked is built for pan_scale={self.pan_scale}, got pan "
                f"{tuple(pan.shape)} for image {tuple(image.shape)}"
            )
        return self._encode(image, pan, mask)[-1]

    def _encode(self, image: Tensor, pan: Tensor | None, mask: Tensor | None = None) -> list[Tensor]:
        """The fused map of every stage, on the pan stem grid's strides."""
        self._check(image, pan)
        assert pan is not None  # checked
        fine, coarse = self.fine.stem(pan), self.coarse.embed_bands(image)
        if mask is not None:
            if mask.shape != (coarse.shape[0], *coarse.shape[-2:]):
                raise ValueError(
                    f"{type(self).__name__}: mask {tuple(mask.shape)} does not match the stem grid "
                    f"{(coarse.shape[0], *coarse.shape[-2:])}"
                )
            hidden = mask[:, None, None].to(coarse.dtype)  # (B, 1, 1, h, w)
            token = self.mask_token.view(1, 1, -1, 1, 1) + self.coarse.spectral_pos
            coarse = coarse * (1.0 - hidden) + token * hidden
            r = fine.shape[-1] // coarse.shape[-1]
            fine_hidden = hidden[:, 0].repeat_interleave(r, dim=-2).repeat_interleave(r, dim=-1)
            fine = fine * (1.0 - fine_hidden) + self.pan_mask_token.view(1, -1, 1, 1) * fine_hidden
        fused = []
        for i, layers in enumerate(self.fusion):
            fine = self.fine.stages[i](fine)
            coarse = self.coarse.forward_stage(i, coarse)
            f, z = fine.permute(0, 2, 3, 1), coarse.permute(0, 3, 4, 1, 2)
            for layer in layers[:-1]:
                f, z = layer.forward_streams(f, z)
            fused.append(layers[-1](f.permute(0, 3, 1, 2), z.permute(0, 4, 3, 1, 2)))
        return fused

    def _check(self, image: Tensor, pan: Tensor | None) -> None:
        name = type(self).__name__
        check_image(name, image, self.in_channels, multiple=self.stride)
        if pan is None:
            raise ValueError(
                f"{name} needs the high-resolution parent tile: batch key 'pan' of shape "
                f"(B, {self.pan_channels}, r·H, r·W) (enable the datamodule's pan option)"
            )
        check_image(name, pan, self.pan_channels, name="pan")
        h, w = image.shape[-2:]
        ph, pw = pan.shape[-2:]
        if pan.shape[0] != image.shape[0] or ph % h or pw % w or ph // h != pw // w:
            raise ValueError(
                f"{name}: pan {tuple(pan.shape)} must cover the image {tuple(image.shape)} at an integer "
                "ratio r (r·H, r·W) with the same batch size"
            )
