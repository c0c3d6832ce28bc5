"""Crop-yield regression from satellite histograms (DFYP on the You et al. 2017 layout).

Batches are ``{"image": (B, bands, bins, time), "target": (B,)}``. Loss: MSE (DFYP), optionally plus L1.
Metrics: RMSE (``val_rmse``, what checkpoints follow), MAE and R². ``attnlab predict`` writes one CSV row
per sample (id, prediction).
"""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training.base_task import Stage
from domains.remote_sensing.metrics import RegressionMetrics
from domains.remote_sensing.models import DFYP, YieldRegressorFactory
from domains.remote_sensing.tasks.common import RemoteSensingTask

__all__ = ["YieldRegressionTask"]


class YieldRegressionTask(RemoteSensingTask):
    """Predict one yield value per histogram stack.

    Args:
        network: The regressor, called with ``in_channels`` and ``attention`` (default :class:`DFYP`).
        attention: Token-mixer factory for the network's attention (DFYP: its ViT branch).
        l1_weight: Weight of an extra L1 term (DFYP's optional loss; 0 = MSE only).
        in_channels: Bands (linked from the data).
        pretrained: Checkpoint to initialise the weights from.
    """

    monitor = "val_rmse"
    mode = "min"
    linked_sizes = ("in_channels",)

    def __init__(
        self,
        network: YieldRegressorFactory | None = None,
        attention: AttentionFactory | None = None,
        l1_weight: float = 0.0,
        in_channels: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: YieldRegressorFactory = network or DFYP
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_losses(self) -> None:
        """MSE (plus ``l1_weight`` · L1)."""
        self.criterion = nn.MSELoss()

    def configure_metrics(self) -> RegressionMetrics:
        """RMSE, MAE, R²."""
        return RegressionMetrics()

    def forward(self, x: Tensor) -> Tensor:
        """Predictions ``(B,)``."""
        return self.network(x)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Predictions with each sample's id."""
        pred = self(batch["image"]).float().cpu()
        ids = batch.get("id") or [f"{batch_idx}:{i}" for i in range(len(pred))]
        return {"pred": pred, "id": list(ids)}

    def write_predictions(self, predictions: Sequence[dict[str, Any]], output_dir: Path) -> Path:
        """One CSV row per sample: ``id``, ``prediction``.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The path written.
        """
        path = self.prediction_path(output_dir, "yield", ".csv")
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "prediction"])
            for batch in predictions:
                for sample_id, value in zip(batch["id"], batch["pred"].tolist(), strict=True):
                    writer.writerow([sample_id, f"{value:.6f}"])
        return path

    def shared_step(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        """MSE (plus L1) and the regression metrics."""
        x, target = batch["image"], batch["target"].float()
        pred = self(x)
        loss = self.criterion(pred, target)
        if self.hparams.l1_weight:
            loss = loss + self.hparams.l1_weight * F.l1_loss(pred, target)
        loss = self.log_loss(stage, loss, len(x))
        self.update_metrics(stage, pred.detach(), target)
        return loss
