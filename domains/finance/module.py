"""LightningModule for mid-price trend classification from limit order books.

Task: given a window of T order-book snapshots, predict whether the mid-price goes up, stays or goes down
after each of several horizons (in events). Metrics follow the LOB literature (TLOB, LOBCAST): **macro-F1
is the primary metric** (``val_macro_f1``, the mean over horizons, is what checkpoints follow), with
accuracy, per-class F1 and the Matthews correlation coefficient per horizon. All metrics are torchmetrics
objects, so they are synchronised across DDP ranks before they are computed.
"""

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import ClasswiseWrapper, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

from core.attention import AttentionFactory, SpatialMixerFactory
from core.training import BaseTask
from core.training.base_task import children_except_head
from core.training.plots import close, confusion_matrix_figure
from domains.finance.models import MLPLOB, TLOB, DeepLOB, LogisticRegressionLOB

__all__ = ["CLASS_NAMES", "LOBClassifier"]

CLASS_NAMES = ("up", "stationary", "down")
ModelName = Literal["tlob", "mlplob", "deeplob", "logreg"]


class LOBClassifier(BaseTask):
    """Classify the mid-price trend (up / stationary / down) at one or several horizons.

    ``num_features``, ``num_lob_features``, ``seq_len``, ``horizons`` and ``num_classes`` come from the
    datamodule through the CLI; set them by hand only when using the task without one.

    Args:
        model: ``tlob`` (Berti & Kasneci 2025, dual attention), ``mlplob`` (the same paper's MLP-Mixer),
            ``deeplob`` (Zhang et al. 2019, CNN + inception + LSTM) or ``logreg`` (multinomial logistic
            regression on the flattened window, a baseline).
        attention: Attention factory for TLOB's temporal and feature attention (any registered
            mechanism, e.g. ``--model.attention=MultiHeadAttention --model.attention.num_heads=2``).
            Default (None): :class:`~core.attention.MultiHeadAttention` with ``num_heads`` heads.
            Only TLOB has token attention; giving it for another model is an error.
        spatial_attention: Feature-map attention (:class:`~core.attention.SpatialMixer` factory, e.g.
            ``--model.spatial_attention=CBAM``) inserted after DeepLOB's first two convolution blocks.
            Default (None): the paper's DeepLOB. For ``deeplob`` only.
        hidden_dim: Width of TLOB / MLPLOB after the input projection (honoured, unlike the official
            TLOB code, which forces it to the number of features).
        num_layers: Dual-attention pairs (TLOB, default 4) or mixer layers (MLPLOB, default 3).
        num_heads: Heads of the default attention (TLOB uses 1).
        dropout: Dropout inside TLOB / MLPLOB.
        class_weights: Optional cross-entropy weight per class (up, stationary, down).
        num_features: Features per snapshot F (linked from the data).
        num_lob_features: Order-book columns among them, 4 per level (linked; DeepLOB uses only these).
        seq_len: Window length T (linked).
        horizons: Prediction horizons in events (linked); the model predicts all of them at once.
        num_classes: Number of classes (linked; 3).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_macro_f1"
    mode = "max"
    resizable_keys = ("bin.",)

    def __init__(
        self,
        model: ModelName = "tlob",
        attention: AttentionFactory | None = None,
        spatial_attention: SpatialMixerFactory | None = None,
        hidden_dim: int = 40,
        num_layers: int | None = None,
        num_heads: int = 1,
        dropout: float = 0.0,
        class_weights: list[float] | None = None,
        num_features: int | None = None,
        num_lob_features: int | None = None,
        seq_len: int | None = None,
        horizons: list[int] | None = None,
        num_classes: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.attention = attention
        self.spatial_attention = spatial_attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the chosen network from the (linked) data sizes."""
        hp = self.hparams
        for name in ("num_features", "seq_len", "horizons"):
            if hp[name] is None:
                raise ValueError(
                    f"LOBClassifier: {name} is unknown. It is linked from the datamodule by `attnlab`; "
                    f"when building the task by hand pass {name}=..."
                )
        if self.attention is not None and hp.model != "tlob":
            raise ValueError(
                f"LOBClassifier: model={hp.model!r} has no attention; `attention` is for tlob only"
            )
        if self.spatial_attention is not None and hp.model != "deeplob":
            raise ValueError(
                f"LOBClassifier: model={hp.model!r} has no feature maps; "
                "`spatial_attention` is for deeplob only"
            )
        common = {"num_horizons": len(hp.horizons), "num_classes": self.num_classes}
        match hp.model:
            case "tlob":
                self.network: nn.Module = TLOB(
                    num_features=hp.num_features,
                    seq_len=hp.seq_len,
                    hidden_dim=hp.hidden_dim,
                    num_layers=hp.num_layers or 4,
                    num_heads=hp.num_heads,
                    dropout=hp.dropout,
                    attention=self.attention,
                    **common,
                )
            case "mlplob":
                self.network = MLPLOB(
                    num_features=hp.num_features,
                    seq_len=hp.seq_len,
                    hidden_dim=hp.hidden_dim,
                    num_layers=hp.num_layers or 3,
                    dropout=hp.dropout,
                    **common,
                )
            case "deeplob":
                lob = hp.num_lob_features or hp.num_features
                self.network = DeepLOB(
                    num_lob_features=lob,
                    seq_len=hp.seq_len,
                    spatial_attention=self.spatial_attention,
                    **common,
                )
            case "logreg":
                self.network = LogisticRegressionLOB(
                    num_features=hp.num_features, seq_len=hp.seq_len, **common
                )
            case other:
                raise ValueError(
                    f"LOBClassifier: unknown model {other!r}; expected tlob, mlplob, deeplob, logreg"
                )

    def configure_losses(self) -> None:
        """Cross-entropy on logits (no softmax in the models), averaged over horizons."""
        weights = self.hparams.class_weights
        if weights is not None and len(weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(weights)} values, expected {self.num_classes}")
        weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)

    def configure_metrics(self) -> None:
        """Per-horizon macro-F1 (primary), accuracy, per-class F1 and MCC; confusion matrices for val/test."""
        c = self.num_classes
        names = list(CLASS_NAMES[:c]) if c == len(CLASS_NAMES) else [str(i) for i in range(c)]
        self.class_names = names

        def collection(h: int) -> MetricCollection:
            return MetricCollection(
                {
                    "macro_f1": MulticlassF1Score(c, average="macro"),
                    "accuracy": MulticlassAccuracy(c, average="micro"),
                    "mcc": MulticlassMatthewsCorrCoef(c),
                    "f1": ClasswiseWrapper(MulticlassF1Score(c, average=None), labels=names, prefix="f1_"),
                },
                postfix=f"_h{h}",
            )

        for stage in ("train", "val", "test"):
            collections = [collection(h).clone(prefix=f"{stage}_") for h in self.hparams.horizons]
            setattr(self, f"{stage}_metrics", nn.ModuleList(collections))
        for stage in ("val", "test"):
            matrices = [MulticlassConfusionMatrix(c) for _ in self.hparams.horizons]
            setattr(self, f"{stage}_confusion", nn.ModuleList(matrices))

    @property
    def num_classes(self) -> int:
        """Number of trend classes (3 unless the data says otherwise)."""
        return self.hparams.num_classes or len(CLASS_NAMES)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_horizons, num_classes)`` for windows ``x`` of shape ``(B, T, F)``."""
        return self.network(x)

    def backbone_modules(self) -> list[nn.Module]:
        """The network without its classification head, in input-to-output order (for fine-tuning)."""
        return children_except_head(self.network)

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

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics."""
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics and confusion matrices."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log test metrics and confusion matrices."""
        self._log_epoch_metrics("test")

    def write_predictions(
        self, predictions: Sequence[dict[str, Tensor]], output_dir: Path, rank: int, world: int
    ) -> Path:
        """Write one CSV row per window: its time, then per horizon the three probabilities and the class.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).
            rank: Global rank of this process.
            world: Number of processes; with several, each writes ``predictions-rank<r>.csv``.

        Returns:
            The path written.
        """
        path = output_dir / ("predictions.csv" if world == 1 else f"predictions-rank{rank}.csv")
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
        loss = self.criterion(logits.flatten(0, 1), y.flatten())
        aux = self.aux_loss()
        if aux is not None and stage == "train":
            loss = loss + aux
        self.log(
            f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, sync_dist=True, batch_size=len(x)
        )
        preds = logits.detach().argmax(dim=-1)
        confusion = getattr(self, f"{stage}_confusion", None)
        for k, metrics in enumerate(getattr(self, f"{stage}_metrics")):
            valid = y[:, k] >= 0
            metrics.update(preds[valid, k], y[valid, k])
            if confusion is not None:
                confusion[k].update(preds[valid, k], y[valid, k])
        return loss

    def _log_epoch_metrics(self, stage: str) -> None:
        values: dict[str, Tensor] = {}
        for metrics in getattr(self, f"{stage}_metrics"):
            values.update(metrics.compute())
            metrics.reset()
        horizons = self.hparams.horizons
        values[f"{stage}_macro_f1"] = torch.stack([values[f"{stage}_macro_f1_h{h}"] for h in horizons]).mean()
        self.log_dict(values, sync_dist=False)
        if stage != "train":
            for h, confusion in zip(horizons, getattr(self, f"{stage}_confusion"), strict=True):
                matrix = confusion.compute()
                confusion.reset()
                self._log_confusion_image(matrix, f"{stage}_confusion_h{h}")

    def _log_confusion_image(self, matrix: Tensor, tag: str) -> None:
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                fig = confusion_matrix_figure(matrix, self.class_names, tag)
                logger.experiment.add_figure(tag, fig, global_step=self.global_step)
                close(fig)
