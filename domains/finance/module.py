"""The finance task: mid-price trend classification from limit-order-book windows.

Given a window of T order-book snapshots, predict whether the mid-price goes up, stays or goes down after
each of several horizons (in events). The network is injected (``--model.network=TLOB``,
:mod:`domains.finance.models`); the metrics are :class:`~domains.finance.metrics.HorizonMetrics`.
"""

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.plots import confusion_matrix_figure
from core.utils import InputError
from domains.finance.labels import CLASS_NAMES
from domains.finance.metrics import HorizonMetrics
from domains.finance.models import TLOB, LOBNetworkFactory

__all__ = ["LOBClassifier"]


class LOBClassifier(BaseTask):
    """Classify the mid-price trend (up / stationary / down) at one or several horizons.

    ``num_features``, ``num_lob_features``, ``seq_len``, ``horizons`` and ``num_classes`` come from the
    datamodule through the CLI; set them by hand only when using the task without one.

    Args:
        network: The classifier: :class:`~domains.finance.models.TLOB` (default; Berti & Kasneci 2025),
            :class:`~domains.finance.models.MLPLOB`, :class:`~domains.finance.models.DeepLOB` (Zhang et
            al. 2019) or :class:`~domains.finance.models.LogisticRegressionLOB` (a baseline), e.g.
            ``--model.network=DeepLOB --model.network.spatial_attention=CBAM``. Its options are its own
            (``attnlab fit --model.network.help TLOB``).
        attention: Attention factory for the network's token attention (TLOB's temporal and feature
            attention), e.g. ``--model.attention=MultiHeadAttention --model.attention.num_heads=2``.
            Default (None): the network's own. A network without attention refuses it.
        class_weights: Optional cross-entropy weight per class (up, stationary, down).
        num_features: Features per snapshot F (linked from the data).
        num_lob_features: Order-book columns among them, 4 per level (linked).
        seq_len: Window length T (linked).
        horizons: Prediction horizons in events (linked); the network predicts all of them at once.
        num_classes: Number of classes (linked; 3).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_macro_f1"
    mode = "max"
    resizable_keys = ("bin.",)

    def __init__(
        self,
        network: LOBNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        class_weights: list[float] | None = None,
        num_features: int | None = None,
        num_lob_features: int | None = None,
        seq_len: int | None = None,
        horizons: list[int] | None = None,
        num_classes: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory = network or TLOB
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the network from the (linked) data sizes."""
        hp = self.hparams
        self.require_linked("num_features", "seq_len", "horizons")
        self.network: nn.Module = self.build_network(
            self.network_factory,
            num_features=hp.num_features,
            num_lob_features=hp.num_lob_features or hp.num_features,
            seq_len=hp.seq_len,
            num_horizons=len(hp.horizons),
            num_classes=self.num_classes,
        )

    def configure_losses(self) -> None:
        """Cross-entropy on logits (no softmax in the networks), averaged over horizons."""
        weights = self.hparams.class_weights
        if weights is not None and len(weights) != self.num_classes:
            raise InputError(f"class_weights has {len(weights)} values, expected {self.num_classes}")
        weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)

    def configure_metrics(self) -> HorizonMetrics:
        """Per-horizon macro-F1 (primary), accuracy, per-class F1, MCC and confusion matrices."""
        return HorizonMetrics(self.hparams.horizons, self.class_names)

    @property
    def num_classes(self) -> int:
        """Number of trend classes (3 unless the data says otherwise)."""
        return self.hparams.num_classes or len(CLASS_NAMES)

    @property
    def class_names(self) -> list[str]:
        """``up``, ``stationary``, ``down`` for 3 classes, else the class ids."""
        c = self.num_classes
        return list(CLASS_NAMES[:c]) if c == len(CLASS_NAMES) else [str(i) for i in range(c)]

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_horizons, num_classes)`` for windows ``x`` of shape ``(B, T, F)``."""
        return self.network(x)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of windows."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate validation loss and metrics."""
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate test loss and metrics."""
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Class probabilities per horizon, with the identity and time of each window's last event."""
        probs = torch.softmax(self(batch["x"]).float(), dim=-1)
        keep = ("day", "time", "index")
        return {"probs": probs.cpu(), **{k: batch[k].cpu() for k in keep if k in batch}}

    def metric_figure(self, tag: str, value: Tensor) -> Figure | None:
        """The confusion matrix of a horizon (``val_confusion_h10``) as an annotated heat map."""
        return confusion_matrix_figure(value, self.class_names, tag) if "_confusion_h" in tag else None

    def write_predictions(self, predictions: Sequence[dict[str, Tensor]], output_dir: Path) -> Path:
        """Write one CSV row per window: its time, then per horizon the three probabilities and the class.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The path written.
        """
        path = self.prediction_path(output_dir, "predictions", ".csv")
        dates = getattr(self.trainer.datamodule, "predict_dates", None) if self._trainer else None
        header = ["day", "date", "time_s", "timestamp", "event_index"]
        for h in self.hparams.horizons:
            header += [f"p_{name}_h{h}" for name in self.class_names] + [f"pred_h{h}"]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for batch in predictions:
                writer.writerows(self._prediction_rows(batch, dates))
        return path

    def _prediction_rows(self, batch: dict[str, Tensor], dates: Sequence[dt.date] | None) -> list[list[Any]]:
        probs = batch["probs"]
        rows = []
        for i in range(probs.shape[0]):
            day = int(batch["day"][i]) if "day" in batch else 0
            seconds = float(batch["time"][i]) if "time" in batch else float("nan")
            date = dates[day] if dates else None
            stamp = (
                (dt.datetime.combine(date, dt.time()) + dt.timedelta(seconds=seconds)).isoformat()
                if date is not None
                else ""
            )
            row: list[Any] = [day, date.isoformat() if date else "", f"{seconds:.9f}", stamp]
            row.append(int(batch["index"][i]) if "index" in batch else i)
            for k in range(probs.shape[1]):
                row += [f"{p:.6f}" for p in probs[i, k].tolist()] + [
                    self.class_names[int(probs[i, k].argmax())]
                ]
            rows.append(row)
        return rows

    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        x, y = batch["x"], batch["y"]
        if y.ndim == 1:
            y = y[:, None]
        logits = self(x)
        if logits.shape[:2] != y.shape:
            raise ValueError(
                f"labels of shape {tuple(y.shape)} do not match logits {tuple(logits.shape)} "
                "(expected one label column per horizon)"
            )
        loss = self.log_loss(stage, self.criterion(logits.flatten(0, 1), y.flatten()), len(x))
        self.update_metrics(stage, logits.detach().argmax(dim=-1), y)
        return loss
