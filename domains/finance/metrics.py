"""Trend-classification metrics per prediction horizon, as the LOB literature reports them.

Macro-F1 is the primary metric (TLOB, LOBCAST); ``macro_f1``, the mean over horizons, is what checkpoints
follow. Accuracy, per-class F1 and the Matthews correlation coefficient are reported per horizon, and a
confusion matrix per horizon becomes a TensorBoard figure. Every value is a torchmetrics state summed over
processes, so DDP gives the numbers of one process.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import ClasswiseWrapper, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

__all__ = ["HorizonMetrics"]


class HorizonMetrics(nn.Module):
    """Metrics of one stage for several horizons at once.

    Args:
        horizons: Prediction horizons (one label column each); they name the metrics (``macro_f1_h10``).
        class_names: Names of the classes, in class-id order.
    """

    def __init__(self, horizons: Sequence[int], class_names: Sequence[str]) -> None:
        super().__init__()
        self.horizons = [int(h) for h in horizons]
        c = len(class_names)
        names = list(class_names)
        self.per_horizon = nn.ModuleList(
            MetricCollection(
                {
                    "macro_f1": MulticlassF1Score(c, average="macro"),
                    "accuracy": MulticlassAccuracy(c, average="micro"),
                    "mcc": MulticlassMatthewsCorrCoef(c),
                    "f1": ClasswiseWrapper(MulticlassF1Score(c, average=None), labels=names, prefix="f1_"),
                },
                postfix=f"_h{h}",
            )
            for h in self.horizons
        )
        self.confusion = nn.ModuleList(MulticlassConfusionMatrix(c) for _ in self.horizons)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: class ids ``(B, H)`` predicted and true; labels ``-1`` (undefined) are skipped."""
        for k, (metrics, confusion) in enumerate(zip(self.per_horizon, self.confusion, strict=True)):
            valid = target[:, k] >= 0
            metrics.update(preds[valid, k], target[valid, k])
            confusion.update(preds[valid, k], target[valid, k])

    def compute(self) -> dict[str, Tensor]:
        """Per-horizon metrics, their mean ``macro_f1``, and a ``confusion_h<h>`` matrix per horizon."""
        values: dict[str, Tensor] = {}
        for metrics in self.per_horizon:
            values.update(metrics.compute())
        values["macro_f1"] = torch.stack([values[f"macro_f1_h{h}"] for h in self.horizons]).mean()
        for h, confusion in zip(self.horizons, self.confusion, strict=True):
            values[f"confusion_h{h}"] = confusion.compute()
        return values

    def reset(self) -> None:
        """Forget the accumulated batches."""
        for metrics, confusion in zip(self.per_horizon, self.confusion, strict=True):
            metrics.reset()
            confusion.reset()
