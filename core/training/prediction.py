"""Write ``attnlab predict`` outputs next to the run, never next to the user's data.

The callback hands what ``predict_step`` returns to the task, so each domain decides the file format (CSV
for finance, NIfTI for medical, ...) while the callback owns where files go and the safety checks. A task
implements one of two hooks:

* ``write_predictions(predictions, output_dir)``: called once per epoch with every batch of this rank
  (small outputs: one CSV or JSONL file per rank, named by ``BaseTask.prediction_path``);
* ``write_prediction_batch(prediction, output_dir)``: called after every batch, for outputs
  too large to hold for a whole epoch (one NIfTI volume per case). The CLI's ``predict`` then keeps
  nothing in memory (``return_predictions`` defaults to False).
"""

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.callbacks.prediction_writer import WriteInterval
from lightning.pytorch.utilities import rank_zero_info

from core.utils.errors import InputError

__all__ = ["PredictionWriter", "check_output_dir"]


def check_output_dir(
    output_dir: Path, input_paths: list[Path], option: str = "--prediction_writer.output_dir"
) -> None:
    """Refuse an output directory that would put files among the input data.

    Args:
        output_dir: Where a run would write.
        input_paths: The datamodule's inputs (:meth:`~core.data.BaseDataModule.input_paths`).
        option: The option that chose ``output_dir``, named in the error.

    Raises:
        InputError: If ``output_dir`` is an input file, or the folder of one, or inside one.
    """
    out = output_dir.resolve()
    for path in input_paths:
        src = Path(path).resolve()
        folder = src if src.is_dir() else src.parent
        if out == src or out == folder or folder in out.parents:
            raise InputError(
                f"{option}={output_dir} would write among the input data ({src}); choose a folder outside it"
            )


class PredictionWriter(BasePredictionWriter):
    """Save predictions through the task's ``write_predictions`` or ``write_prediction_batch`` hook.

    Args:
        output_dir: Folder for the prediction files; defaults to ``<log_dir>/predictions``. It must not
            be, or be inside, a folder that holds the input data.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self._checked: Path | None = None

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        """Write per batch when the task has ``write_prediction_batch``, else once per epoch."""
        if stage == "predict":
            per_batch = callable(getattr(pl_module, "write_prediction_batch", None))
            self.interval = WriteInterval.BATCH if per_batch else WriteInterval.EPOCH
            self._checked = None

    def resolve_output_dir(self, trainer: "pl.Trainer") -> Path:
        """The folder predictions go to for this trainer."""
        if self.output_dir:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir) / "predictions"

    def checked_output_dir(self, trainer: "pl.Trainer") -> Path:
        """The output folder, refused if it lies among the inputs, created if needed (checked once a run)."""
        if self._checked is None:
            output_dir = self.resolve_output_dir(trainer)
            inputs = getattr(trainer.datamodule, "input_paths", lambda: [])()
            check_output_dir(output_dir, [Path(p) for p in inputs])
            output_dir.mkdir(parents=True, exist_ok=True)
            self._checked = output_dir
        return self._checked

    def write_on_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Let the task write this batch's predictions."""
        output_dir = self.checked_output_dir(trainer)
        written = pl_module.write_prediction_batch(prediction, output_dir)
        rank_zero_info(f"prediction written to {written}")

    def write_on_epoch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        """Check the destination, then let the task write this rank's predictions."""
        writer = getattr(pl_module, "write_predictions", None)
        if writer is None:
            raise TypeError(
                f"{type(pl_module).__name__} implements neither write_predictions() "
                "nor write_prediction_batch()"
            )
        output_dir = self.checked_output_dir(trainer)
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        written = writer(batches, output_dir)
        rank_zero_info(f"predictions written to {written}")
