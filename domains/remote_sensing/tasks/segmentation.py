"""Semantic segmentation of multispectral tiles (e.g. the Landsat clear / cloud / cloud-shadow mask).

The network is injected (``--model.network=LWGANetSeg``, ``CASWiT``, ``BCAF``); it names the batch keys it
reads besides ``image`` (BCAF: ``pan``, the high-resolution parent tile; CASWiT: ``context``, the wider
tile), and CASWiT's auxiliary context loss is added in training with the network's weight. Pixels labelled
``ignore_index`` (-1, nodata) count in neither the loss nor the metrics.

Metrics (:class:`~domains.remote_sensing.metrics.ClassMetrics`): mIoU (``val_miou``, what checkpoints
follow) and per-class IoU, overall accuracy, average accuracy, kappa, macro and per-class F1, the confusion
matrix; each validation epoch also logs an RGB composite / truth / prediction figure of the first tile.
``attnlab predict`` on scenes (``{"scene": [paths]}`` batches) runs the datamodule's sliding-window
``predict_scene`` (its tile size, the training normalisation), which writes one georeferenced GeoTIFF mask
per scene; on tiles it writes the predicted masks with their ids to ``.npz`` files.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training.base_task import Stage
from domains.remote_sensing.figures import segmentation_overlay
from domains.remote_sensing.metrics import ClassMetrics
from domains.remote_sensing.models import LWGANetSeg, SegmentationNetworkFactory
from domains.remote_sensing.tasks.common import RemoteSensingTask, class_weight_tensor, network_inputs

__all__ = ["SemanticSegmentationTask", "dice_loss"]


def dice_loss(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """``1 − mean_c 2|P_c ∩ T_c| / (|P_c| + |T_c|)`` with softmax probabilities, ignored pixels left out."""
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype) * valid
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()


class SemanticSegmentationTask(RemoteSensingTask):
    """Per-pixel classes of multispectral tiles ``(B, bands, H, W)``.

    ``in_channels``, ``num_classes``, ``class_names`` (and ``band_names`` when the datamodule has them)
    come from the datamodule through the CLI.

    Args:
        network: The segmentation network, called with ``in_channels``, ``num_classes`` and ``attention``:
            ``LWGANetSeg`` (default, L0 + FPN), ``LWGANetSegL1``, ``LWGANetSegL2``, ``CASWiT`` (needs the
            context tile), ``BCAF`` (needs the pan tile). Its options are ``--model.network.*``.
        attention: Token-mixer factory given to the network. Default (None): the network's own.
        ce_weight: Weight of the cross-entropy loss.
        dice_weight: Weight of a soft Dice loss (BCAF trains with 0.5 CE + 1.5 Dice).
        class_weights: Optional cross-entropy weight per class.
        ignore_index: Label of pixels left out of loss and metrics (nodata).
        rgb_bands: Indices of the bands drawn as red, green, blue in the figures. Default: bands named
            B4, B3, B2 (Landsat 8) or red, green, blue when ``band_names`` is known, else the first three.
        log_images: Log the composite / truth / prediction figure every validation epoch.
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        class_names: Class names (linked from the data).
        band_names: Band names (linked from the data when the datamodule has them).
        pretrained: Checkpoint to initialise the weights from, e.g. a :class:`MaskedPretrainingTask` run.
    """

    monitor = "val_miou"
    mode = "max"
    metric_stages = ("val", "test")

    def __init__(
        self,
        network: SegmentationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        ce_weight: float = 1.0,
        dice_weight: float = 0.0,
        class_weights: list[float] | None = None,
        ignore_index: int = -1,
        rgb_bands: list[int] | None = None,
        log_images: bool = True,
        in_channels: int | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        band_names: list[str] | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: SegmentationNetworkFactory = network or LWGANetSeg
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_losses(self) -> None:
        """Cross-entropy (and optionally Dice), both ignoring ``ignore_index``."""
        hp = self.hparams
        weight = class_weight_tensor(hp.class_weights, hp.num_classes)
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=hp.ignore_index)

    def configure_metrics(self) -> ClassMetrics:
        """mIoU, per-class IoU and F1, OA, AA, kappa and the confusion matrix."""
        hp = self.hparams
        return ClassMetrics(hp.num_classes, self.class_names, ignore_index=hp.ignore_index, iou=True)

    def forward(self, image: Tensor, **extras: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)``."""
        return self.network(image, **extras)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step; adds the network's auxiliary loss (CASWiT's context branch)."""
        image, mask = batch["image"], batch["mask"]
        out = self.network.forward_train(image, **network_inputs(self.network, batch))
        loss = self.segmentation_loss(out["logits"], mask)
        if "aux_logits" in out:
            loss = loss + out["aux_weight"] * self.segmentation_loss(out["aux_logits"], mask)
        return self.log_loss("train", loss, len(image))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metrics; the first tile's figure."""
        logits = self._evaluate(batch, "val")
        if batch_idx == 0 and self.hparams.log_images:
            self.log_figure("val_segmentation", lambda: self._figure(batch, logits))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metrics."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Scenes are passed on to the writer (which predicts them window by window); tiles are predicted."""
        if "scene" in batch:
            return {"scene": list(batch["scene"])}
        logits = self(batch["image"], **network_inputs(self.network, batch))
        ids = batch.get("id") or [f"{batch_idx}_{i}" for i in range(len(logits))]
        return {"mask": logits.argmax(dim=1).to(torch.uint8).cpu(), "id": list(ids), "batch_idx": batch_idx}

    def write_prediction_batch(self, prediction: dict[str, Any], output_dir: Path) -> list[Path]:
        """One GeoTIFF mask per scene (georeferenced like the scene), or the tile masks of a batch (``.npz``).

        Args:
            prediction: What :meth:`predict_step` returned for one batch.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The files written.
        """
        if "scene" in prediction:
            datamodule = self.trainer.datamodule
            if not hasattr(datamodule, "predict_scene"):
                raise TypeError(
                    f"{type(datamodule).__name__} has no predict_scene(): scene predictions need a scene "
                    "datamodule (SceneSegmentationDataModule)"
                )
            return [
                datamodule.predict_scene(self.predict_logits, scene, output_dir, device=self.device)
                for scene in prediction["scene"]
            ]
        path = self.prediction_path(output_dir, f"masks_{prediction['batch_idx']:05d}", ".npz")
        np.savez_compressed(path, masks=prediction["mask"].numpy(), ids=np.array(prediction["id"]))
        return [path]

    @torch.no_grad()
    def predict_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits of a batch of (normalised) tiles; what the scene predictor calls for every window."""
        return self(batch["image"], **network_inputs(self.network, batch))

    def segmentation_loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """``ce_weight · CE + dice_weight · Dice`` (a tile of only ignored pixels contributes 0)."""
        hp = self.hparams
        valid = mask != hp.ignore_index
        loss = logits.new_zeros(())
        if hp.ce_weight:
            ce = self.criterion(logits, mask) if valid.any() else logits.sum() * 0.0
            loss = loss + hp.ce_weight * ce
        if hp.dice_weight:
            loss = loss + hp.dice_weight * dice_loss(logits, mask, hp.ignore_index)
        return loss

    def rgb_indices(self) -> list[int]:
        """Bands drawn as red, green, blue (see ``rgb_bands``)."""
        hp = self.hparams
        if hp.rgb_bands:
            return list(hp.rgb_bands)
        names = [n.lower() for n in hp.band_names or []]
        for triple in (("b4", "b3", "b2"), ("red", "green", "blue")):
            if all(t in names for t in triple):
                return [names.index(t) for t in triple]
        return [0, 1, 2] if hp.in_channels >= 3 else [0]

    def _evaluate(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        image, mask = batch["image"], batch["mask"]
        logits = self(image, **network_inputs(self.network, batch))
        self.log_loss(stage, self.segmentation_loss(logits, mask), len(image))
        self.update_metrics(stage, logits.argmax(dim=1), mask)
        return logits

    def _figure(self, batch: dict[str, Any], logits: Tensor) -> Any:
        title = str(batch["id"][0]) if "id" in batch else "first validation tile"
        return segmentation_overlay(
            batch["image"][0],
            batch["mask"][0],
            logits[0].argmax(dim=0),
            self.rgb_indices(),
            self.class_names,
            title,
        )
