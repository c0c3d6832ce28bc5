"""Metrics of the remote-sensing tasks, on torchmetrics (all synchronise across DDP processes).

* :class:`ClassMetrics`: overall accuracy (``oa``), average accuracy (``aa``, the mean per-class recall),
  Cohen's kappa, macro F1 and one F1 per class (``f1_<class>``), and the confusion matrix (drawn as a
  figure); for segmentation also the IoU per class (``iou_<class>``) and their mean (``miou``).
* :class:`RegressionMetrics`: RMSE, MAE and R².

What torchmetrics lacks and is done here: per-class values as named scalars (TensorBoard curves instead of
one vector), and an mIoU that leaves out classes absent from both the truth and the prediction (torchmetrics'
``JaccardIndex`` scores them 0, which would punish a validation set for lacking a class). IoU comes from the
same confusion matrix that is logged, so the two always agree.
"""

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

__all__ = ["ClassMetrics", "RegressionMetrics", "iou_from_confusion", "metric_name"]


def metric_name(name: str) -> str:
    """A class name made safe for a metric tag (``"cloud shadow"`` → ``"cloud_shadow"``)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower() or "class"


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """IoU per class ``tp / (tp + fp + fn)`` from a ``(C, C)`` confusion matrix; NaN where the union is 0."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


class ClassMetrics(nn.Module):
    """Accuracy, kappa, F1 (and IoU) of class predictions; ``update(preds, target)`` with class indices.

    Args:
        num_classes: Number of classes.
        class_names: Their names (for the per-class metric tags).
        ignore_index: Target value that is not scored (segmentation: -1 = nodata).
        iou: Whether to add per-class IoU and mIoU (segmentation).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str],
        ignore_index: int | None = None,
        iou: bool = False,
    ) -> None:
        super().__init__()
        if len(class_names) != num_classes:
            raise ValueError(f"ClassMetrics: {len(class_names)} class names for {num_classes} classes")
        self.names = [metric_name(n) for n in class_names]
        self.iou = iou
        kw = {"num_classes": num_classes, "ignore_index": ignore_index}
        self.metrics = MetricCollection(
            {
                "oa": MulticlassAccuracy(average="micro", **kw),
                "aa": MulticlassAccuracy(average="macro", **kw),
                "kappa": MulticlassCohenKappa(**kw),
                "f1": MulticlassF1Score(average="none", **kw),
                "confusion": MulticlassConfusionMatrix(**kw),
            }
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add predicted class indices and targets of any matching shape."""
        self.metrics.update(preds.reshape(-1), target.reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        """The scalars, the per-class scalars and the confusion matrix."""
        values = self.metrics.compute()
        f1 = values.pop("f1")
        out = dict(values)
        out["macro_f1"] = f1.mean()
        out.update({f"f1_{name}": f1[i] for i, name in enumerate(self.names)})
        if self.iou:
            iou = iou_from_confusion(values["confusion"])
            out["miou"] = iou.nanmean().float()
            out.update({f"iou_{name}": iou[i].float() for i, name in enumerate(self.names)})
        return out

    def reset(self) -> None:
        """Clear the accumulated state."""
        self.metrics.reset()


class RegressionMetrics(MetricCollection):
    """RMSE, MAE and R² of ``update(preds (B,), target (B,))``."""

    def __init__(self) -> None:
        super().__init__(
            {"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(), "r2": R2Score()}
        )
