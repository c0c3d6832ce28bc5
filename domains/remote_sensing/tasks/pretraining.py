"""SimMIM masked-image pre-training (Xie et al., CVPR 2022) of a segmentation network's encoder.

Random square cells of ``mask_patch_size`` pixels (``mask_ratio`` of them, exactly, per image) are hidden:
the encoder's stem tokens there are replaced by a learned mask token (CASWiT also hides its context
tile's centre, see :class:`~domains.remote_sensing.models.CASWiT`, and BCAF its pan tile over the same
ground, see :class:`~domains.remote_sensing.models.BCAF`). A one-layer head — a 1×1 convolution to
``stride² · bands`` channels and a pixel shuffle — reconstructs the raw (normalised) bands from the deepest
features, and the loss is the L1 error on the masked pixels only::

    loss = Σ |x̂ − x| ⊙ M / (Σ M · bands)

The task's ``network`` is the segmentation network to fine-tune later, so its weights keep their names:
``attnlab fit --config <segmentation>.yaml --model.pretrained=<this run>/checkpoints/last.ckpt`` loads the
encoder (and reports the decoder, head and reconstruction layer as skipped or kept at initialisation; a
stem trained on another band count is reported as skipped). The decoder and the class head of the network
take no part here; under DDP use ``--trainer.strategy=ddp_find_unused_parameters_true``.
"""

from typing import Any

import torch
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.base_task import Stage
from domains.remote_sensing.models import LWGANetSeg, SegmentationNetworkFactory
from domains.remote_sensing.tasks.common import network_inputs

__all__ = ["MaskedPretrainingTask", "random_cell_mask"]


def random_cell_mask(
    batch: int, height: int, width: int, cell: int, ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """``(B, H / cell, W / cell)`` boolean masks with exactly ``round(ratio · cells)`` True cells each."""
    rows, cols = height // cell, width // cell
    count = rows * cols
    hidden = round(ratio * count)
    scores = torch.rand(batch, count, generator=generator)
    order = scores.argsort(dim=1)
    mask = torch.zeros(batch, count, dtype=torch.bool)
    mask.scatter_(1, order[:, :hidden], True)
    return mask.view(batch, rows, cols)


class MaskedPretrainingTask(BaseTask):
    """Pre-train a segmentation network's encoder by reconstructing masked pixels (SimMIM).

    Args:
        network: The segmentation network whose encoder is trained (``LWGANetSeg`` default, ``CASWiT``,
            ``BCAF``); it must have ``encode_masked``.
        attention: Token-mixer factory given to the network.
        mask_ratio: Fraction of the cells hidden (SimMIM 0.6; CASWiT 0.75).
        mask_patch_size: Side of the hidden cells in pixels; a multiple of the network's stem stride that
            divides the tile size.
        in_channels: Bands (linked from the data).
        num_classes: Classes of the network's head, which pre-training does not train (default 1).
        pretrained: Checkpoint to initialise the weights from.
    """

    monitor = "val_loss"
    mode = "min"
    metric_stages = ()

    def __init__(
        self,
        network: SegmentationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        mask_ratio: float = 0.75,
        mask_patch_size: int = 32,
        in_channels: int | None = None,
        num_classes: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: SegmentationNetworkFactory = network or LWGANetSeg
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """The network and the reconstruction head on its deepest features."""
        self.require_linked("in_channels")
        hp = self.hparams
        if not 0.0 < hp.mask_ratio < 1.0:
            raise ValueError(f"MaskedPretrainingTask: mask_ratio must be in (0, 1), got {hp.mask_ratio}")
        self.network: nn.Module = self.build_network(
            self.network_factory, in_channels=hp.in_channels, num_classes=hp.num_classes or 1
        )
        if not hasattr(self.network, "encode_masked"):
            raise ValueError(
                f"MaskedPretrainingTask: {type(self.network).__name__} has no encode_masked(); "
                "use LWGANetSeg (or its L1/L2 presets), CASWiT or BCAF"
            )
        patch = self.network.patch_size
        if hp.mask_patch_size % patch:
            raise ValueError(
                f"MaskedPretrainingTask: mask_patch_size {hp.mask_patch_size} must be a multiple of the "
                f"network's stem stride {patch}"
            )
        stride = self.network.encoder_stride
        self.reconstruction = nn.Sequential(
            nn.Conv2d(self.network.encoder_channels, stride * stride * hp.in_channels, 1),
            nn.PixelShuffle(stride),
        )

    def configure_losses(self) -> None:
        """L1 on the masked pixels (computed in :meth:`masked_l1`)."""

    def configure_metrics(self) -> None:
        """No metric besides the loss."""
        return None

    def forward(self, image: Tensor, mask: Tensor, **extras: Tensor) -> Tensor:
        """The reconstructed image ``(B, bands, H, W)`` from the partly masked input (cropped to the tile)."""
        out = self.reconstruction(self.network.encode_masked(image, mask, **extras))
        return out[..., : image.shape[-2], : image.shape[-1]]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step on freshly masked tiles."""
        return self._shared_step(batch, "train", None)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The loss on masks that are the same every epoch (seeded by the batch index)."""
        self._shared_step(batch, "val", torch.Generator().manual_seed(batch_idx))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The loss on seeded masks."""
        self._shared_step(batch, "test", torch.Generator().manual_seed(batch_idx))

    def masked_l1(self, image: Tensor, reconstruction: Tensor, mask: Tensor) -> Tensor:
        """Mean absolute error over the masked pixels and all bands."""
        patch = self.network.patch_size
        pixels = mask.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2).unsqueeze(1)
        pixels = pixels.to(image.dtype)
        error = (reconstruction - image).abs() * pixels
        return error.sum() / (pixels.sum() + 1e-5) / image.shape[1]

    def _shared_step(self, batch: dict[str, Any], stage: Stage, generator: torch.Generator | None) -> Tensor:
        image = batch["image"]
        b, _, h, w = image.shape
        cell, patch = self.hparams.mask_patch_size, self.network.patch_size
        if h % cell or w % cell:
            raise ValueError(
                f"MaskedPretrainingTask: tiles of {h}×{w} are not a whole number of {cell}-pixel mask cells; "
                "choose mask_patch_size dividing the tile size"
            )
        cells = random_cell_mask(b, h, w, cell, self.hparams.mask_ratio, generator).to(image.device)
        scale = cell // patch
        mask = cells.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
        reconstruction = self(image, mask, **network_inputs(self.network, batch))
        return self.log_loss(stage, self.masked_l1(image, reconstruction, mask), b)
