"""Classify table rows: the task owns the loss and the metrics; the network is injected."""

from pathlib import Path

from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from core.attention import AttentionFactory
from core.training import BaseTask
from tabular.models import MLP, TabularNetworkFactory


class TabularClassifier(BaseTask):
    """Cross-entropy classification of table rows.

    Args:
        network: The network (default :class:`~tabular.models.MLP`): ``--model.network=FeatureTransformer``.
        attention: Token mixer for networks with attention (``--model.attention=<Name>``).
        num_features: Columns of a row (linked from the data).
        num_classes: Classes (linked).
        class_names: Class names (linked).
        pretrained: Checkpoint to initialise the weights from.
    """

    monitor = "val_accuracy"
    mode = "max"

    def __init__(
        self,
        network: TabularNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        num_features: int | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory = network or MLP
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the network from the linked sizes."""
        self.require_linked("num_features", "num_classes")
        hp = self.hparams
        self.network = self.build_network(
            self.network_factory, num_features=hp.num_features, num_classes=hp.num_classes
        )

    def configure_losses(self) -> None:
        """Cross-entropy on logits."""
        self.criterion = nn.CrossEntropyLoss()

    def configure_metrics(self) -> MetricCollection:
        """Accuracy and macro-F1 (the base clones them per stage)."""
        c = self.hparams.num_classes
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(c, average="micro"),
                "macro_f1": MulticlassF1Score(c, average="macro"),
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.network(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Validation loss and metrics."""
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Test loss and metrics."""
        self._step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities of each row."""
        return self(batch[0]).softmax(dim=-1)

    def write_predictions(self, predictions: list[Tensor], output_dir: Path) -> Path:
        """One CSV row of class probabilities per table row (one file per process)."""
        path = self.prediction_path(output_dir, "predictions", ".csv")
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)]
        with path.open("w") as handle:
            handle.write(",".join(names) + "\n")
            for batch in predictions:
                handle.writelines(",".join(f"{p:.6f}" for p in row) + "\n" for row in batch.tolist())
        return path

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.log_loss(stage, self.criterion(logits, y), len(x))
        self.update_metrics(stage, logits.argmax(dim=-1), y)
        return loss
