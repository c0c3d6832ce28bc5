"""CASWiT (Carreaud et al., "Context-Aware Semantic Segmentation via Stage-Wise Attention", arXiv 2601.11310).

Two encoders see the same place at two scales: the high-resolution (HR) tile, and a low-resolution (LR)
context tile that covers ``context_scale`` times the tile's extent around it, resampled to the tile's size.
After every encoder stage the HR tokens query the LR tokens with :class:`core.attention.CrossScaleFusion`
(``x + γ ⊙ MHA(LN x, LN y)``, γ initialised to ``gate_init``), so context is injected stage by stage; the
fused HR maps feed an FPN decoder (UPerNet-lite). The LR branch is supervised too (auxiliary loss): an FCN
head on its stage-3 map predicts the context tile, whose centre — the HR tile's footprint — is resized to
the label grid and scored against the HR mask.

SimMIM pre-training (:meth:`CASWiT.encode_masked`): the masked HR stem tokens and the whole LR centre
region that shows the HR tile are replaced by learned mask tokens, so the HR image must be reconstructed
from its visible parts and the surrounding context, not copied from the LR view.

Differences from the paper: the encoders are DaViT stages (:class:`~domains.remote_sensing.models.davit.
DaViTEncoder`, core has no Swin) instead of Swin; the official code (Hugging Face ``heig-vd-geo/CASWiT``)
was not read, so the fusion's form (pre-norms, per-channel gate, its zero start) is our reading of the
paper, as documented in :mod:`core.attention.caswit`.
"""

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.caswit import CrossScaleFusion
from domains.remote_sensing.models.base import SegmentationNetwork
from domains.remote_sensing.models.davit import DaViTEncoder
from domains.remote_sensing.models.layers import FPNDecoder, check_image, upsample_to

__all__ = ["CASWiT", "centre_crop"]


def centre_crop(x: Tensor, scale: int) -> Tensor:
    """The central ``1 / scale`` of a map's height and width (the HR tile inside its context)."""
    h, w = x.shape[-2:]
    ch, cw = h // scale, w // scale
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def centre_mask(batch: int, height: int, width: int, scale: int, device: torch.device) -> Tensor:
    """``(B, H, W)`` True on the central ``1 / scale`` of the grid."""
    mask = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    centre_crop(mask, scale).fill_(True)
    return mask


class CASWiT(SegmentationNetwork):
    """Cross-scale segmentation of a tile (``image``) with its wider ``context`` tile.

    Args:
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        dims: Stage widths of both encoders.
        depths: [spatial, channel] block pairs per stage.
        num_heads: Heads per stage (window attention, channel groups and fusion).
        window_size: Window side of the encoders.
        mlp_ratio: MLP hidden width ratio.
        gate_init: Initial value of the fusion gates γ (0: the fused model starts as the HR model).
        context_scale: How many times wider the context tile's footprint is than the tile's (2).
        aux_weight: Weight of the LR branch's auxiliary loss (0 turns it off).
        decoder_dim: FPN width.
        dropout: Dropout before the classifiers.
        attention: Factory replacing the encoders' window attention.
    """

    inputs = ("image", "context")
    patch_size = 4

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 1, 3, 1),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        gate_init: float = 0.0,
        context_scale: int = 2,
        aux_weight: float = 0.4,
        decoder_dim: int = 128,
        dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if len(dims) < 3:
            raise ValueError(
                f"CASWiT: needs at least 3 stages (the auxiliary head reads stage 3), got {dims}"
            )
        if context_scale < 1:
            raise ValueError(f"CASWiT: context_scale must be >= 1, got {context_scale}")
        self.in_channels = in_channels
        self.hr = DaViTEncoder(in_channels, dims, depths, num_heads, window_size, mlp_ratio, attention)
        self.lr = DaViTEncoder(in_channels, dims, depths, num_heads, window_size, mlp_ratio, attention)
        self.fusion = nn.ModuleList(
            CrossScaleFusion(d, num_heads=h, gate_init=gate_init)
            for d, h in zip(dims, num_heads, strict=True)
        )
        self.context_scale = context_scale
        self.aux_weight = aux_weight
        self.encoder_stride = self.hr.stride
        self.encoder_channels = dims[-1]
        self.decoder = FPNDecoder(dims, decoder_dim, num_classes, dropout)
        self.aux_head = nn.Sequential(
            nn.Conv2d(dims[2], decoder_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_dim),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(decoder_dim, num_classes, 1),
        )
        self.mask_token = nn.Parameter(torch.zeros(dims[0]))
        self.context_mask_token = nn.Parameter(torch.zeros(dims[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.context_mask_token, std=0.02)

    def forward(self, image: Tensor, context: Tensor | None = None, **extras: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` of the tile."""
        return self.forward_train(image, context)["logits"]

    def forward_train(
        self, image: Tensor, context: Tensor | None = None, **extras: Tensor
    ) -> dict[str, Tensor]:
        """Logits of the tile, and the LR branch's logits of the tile's footprint with their loss weight."""
        hr, lr = self._encode(image, context)
        logits = upsample_to(self.decoder(hr), image.shape[-2:])
        out = {"logits": logits}
        if self.aux_weight > 0:
            aux = upsample_to(self.aux_head(lr[2]), context.shape[-2:])
            out["aux_logits"] = upsample_to(centre_crop(aux, self.context_scale), image.shape[-2:])
            out["aux_weight"] = torch.tensor(self.aux_weight, device=logits.device)
        return out

    def encode_masked(
        self, image: Tensor, mask: Tensor, context: Tensor | None = None, **extras: Tensor
    ) -> Tensor:
        """Deepest fused HR map with masked HR stem tokens and the LR centre region replaced (SimMIM)."""
        return self._encode(image, context, mask)[0][-1]

    def _encode(
        self, image: Tensor, context: Tensor | None, mask: Tensor | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        name = type(self).__name__
        check_image(name, image, self.in_channels, multiple=self.encoder_stride)
        if context is None:
            raise ValueError(
                f"{name} needs the wider context tile: batch key 'context' of shape {tuple(image.shape)} "
                "(enable the datamodule's context option)"
            )
        check_image(name, context, self.in_channels, name="context")
        if context.shape != image.shape:
            raise ValueError(
                f"{name}: context {tuple(context.shape)} must have the tile's shape {tuple(image.shape)} "
                "(the wider window resampled to the tile size)"
            )
        hr_feats, lr_feats = [], []
        hr, lr = image, context
        for i, fusion in enumerate(self.fusion):
            if i == 0:
                hr, lr = self.hr.stem(hr), self.lr.stem(lr)
                if mask is not None:
                    b, _, h, w = lr.shape
                    hr = _replace(hr, mask, self.mask_token)
                    lr = _replace(
                        lr, centre_mask(b, h, w, self.context_scale, lr.device), self.context_mask_token
                    )
            hr, lr = self.hr.stages[i](hr), self.lr.stages[i](lr)
            b, c, h, w = hr.shape
            tokens = fusion(hr.flatten(2).transpose(1, 2), context=lr.flatten(2).transpose(1, 2))
            hr = tokens.transpose(1, 2).reshape(b, c, h, w)
            hr_feats.append(hr)
            lr_feats.append(lr)
        return hr_feats, lr_feats


def _replace(x: Tensor, mask: Tensor, token: Tensor) -> Tensor:
    """``x`` with the positions where ``mask`` ``(B, H, W)`` is True set to ``token`` ``(C,)``."""
    if mask.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the stem grid {tuple(x.shape)}")
    w = mask.unsqueeze(1).to(x.dtype)
    return x * (1.0 - w) + token.view(1, -1, 1, 1).to(x.dtype) * w
