"""Write ``attnlab predict`` outputs next to the run, never next to the user's data.

The callback collects what ``predict_step`` returns and hands it to the task's ``write_predictions``
hook, so each domain decides the file format (CSV for finance, NIfTI for medical, ...) while the
callback owns where files go and the safety checks.
"""

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["PredictionWriter", "check_output_dir"]


def check_output_dir(output_dir: Path, input_paths: list[Path]) -> None:
    """Refuse an output directory that would put files among the input data.

    Raises:
        ValueError: If ``output_dir`` is an input file, or the folder of one, or inside one.
    """
    out = output_dir.resolve()
    for path in input_paths:
        src = Path(path).resolve()
        folder = src if src.is_dir() else src.parent
        if out == src or out == folder or folder in out.parents:
            raise ValueError(
                f"prediction output folder {output_dir} would write among the input data ({src}); "
                "choose another --prediction_writer.output_dir"
            )


class PredictionWriter(BasePredictionWriter):
    """Save predictions through the task's ``write_predictions(predictions, output_dir, rank)`` hook.

    Args:
        output_dir: Folder for the prediction files; defaults to ``<log_dir>/predictions``. It must not
            be, or be inside, a folder that holds the input data.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir

    def resolve_output_dir(self, trainer: "pl.Trainer") -> Path:
        """The folder predictions go to for this trainer."""
        if self.output_dir:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir) / "predictions"

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
            raise TypeError(f"{type(pl_module).__name__} does not implement write_predictions()")
        output_dir = self.resolve_output_dir(trainer)
        inputs = getattr(trainer.datamodule, "input_paths", lambda: [])()
        check_output_dir(output_dir, [Path(p) for p in inputs])
        output_dir.mkdir(parents=True, exist_ok=True)
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        written = writer(batches, output_dir, trainer.global_rank, trainer.world_size)
        rank_zero_info(f"predictions written to {written}")
