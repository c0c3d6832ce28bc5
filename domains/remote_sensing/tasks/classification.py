"""Scene and patch classification: land-cover class of a multispectral patch or scene.

The network is injected (``--model.network=LWGANetL0``, :mod:`domains.remote_sensing.models`). Metrics
(:class:`~domains.remote_sensing.metrics.ClassMetrics`): overall accuracy (``val_oa``, what checkpoints
follow), average accuracy, Cohen's kappa, macro and per-class F1, and the confusion matrix as a figure.
``attnlab predict`` writes one CSV row per sample: its id, the class probabilities and the class.
"""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training.base_task import Stage
from core.training.plots import confusion_matrix_figure
from domains.remote_sensing.metrics import ClassMetrics
from domains.remote_sensing.models import SceneClassifierFactory, SpectralSpatialTransformer
from domains.remote_sensing.tasks.common import RemoteSensingTask, class_weight_tensor

__all__ = ["SceneClassificationTask"]


class SceneClassificationTask(RemoteSensingTask):
    """Classify patches or scenes ``(B, bands, H, W)`` into land-cover classes.

    ``in_channels``, ``num_classes`` and ``class_names`` come from the datamodule through the CLI.

    Args:
        network: The classifier, called with ``in_channels``, ``num_classes`` and ``attention``:
            :class:`~domains.remote_sensing.models.SpectralSpatialTransformer` (default; small patches),
            ``LWGANet`` / ``LWGANetL0`` / ``LWGANetL2``, ``DaViT``. Its options are ``--model.network.*``.
        attention: Token-mixer factory given to the network (e.g. ``--model.attention=LinearAttention``).
            Default (None): the network's own.
        label_smoothing: Cross-entropy label smoothing.
        class_weights: Optional cross-entropy weight per class.
        in_channels: Bands (linked from the data).
        num_classes: Classes (linked from the data).
        class_names: Class names (linked from the data; default ``class0``, ``class1``, ...).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_oa"
    mode = "max"
    metric_stages = ("train", "val", "test")

    def __init__(
        self,
        network: SceneClassifierFactory | None = None,
        attention: AttentionFactory | None = None,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: SceneClassifierFactory = network or SpectralSpatialTransformer
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_losses(self) -> None:
        """Cross-entropy on logits, optionally weighted and smoothed."""
        hp = self.hparams
        weight = class_weight_tensor(hp.class_weights, hp.num_classes)
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)

    def configure_metrics(self) -> ClassMetrics:
        """OA, AA, kappa, F1 (macro and per class) and the confusion matrix."""
        return ClassMetrics(self.hparams.num_classes, self.class_names)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.network(x)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Class probabilities with each sample's id."""
        probs = torch.softmax(self(batch["image"]).float(), dim=-1).cpu()
        ids = batch.get("id")
        if ids is None:
            ids = [f"{batch_idx}:{i}" for i in range(len(probs))]
        return {"probs": probs, "id": list(ids)}

    def metric_figure(self, tag: str, value: Tensor) -> Figure | None:
        """The confusion matrix as an annotated heat map."""
        return confusion_matrix_figure(value, self.class_names, tag) if tag.endswith("confusion") else None

    def write_predictions(self, predictions: Sequence[dict[str, Any]], output_dir: Path) -> Path:
        """One CSV row per sample: ``id``, ``p_<class>`` for every class, and the predicted ``class``.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The path written.
        """
        path = self.prediction_path(output_dir, "classes", ".csv")
        names = self.class_names
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *(f"p_{n}" for n in names), "class"])
            for batch in predictions:
                for sample_id, p in zip(batch["id"], batch["probs"], strict=True):
                    writer.writerow([sample_id, *(f"{v:.6f}" for v in p.tolist()), names[int(p.argmax())]])
        return path

    def shared_step(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        """Cross-entropy and the metrics of the predicted classes."""
        image, label = batch["image"], batch["label"]
        logits = self(image)
        loss = self.log_loss(stage, self.criterion(logits, label), len(image))
        self.update_metrics(stage, logits.detach().argmax(dim=-1), label)
        return loss
