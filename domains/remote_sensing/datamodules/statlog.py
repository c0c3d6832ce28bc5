"""The UCI Statlog (Landsat Satellite) patches as a classification datamodule."""

from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from core.data import Split
from core.utils import InputError
from domains.remote_sensing.datamodules.base import CLASS_LINKS, RemoteSensingDataModule
from domains.remote_sensing.datasets import PatchDataset
from domains.remote_sensing.normalization import BandStatistics, band_statistics
from domains.remote_sensing.splits import stratified_split
from domains.remote_sensing.tables import (
    STATLOG_BANDS,
    STATLOG_CLASS_NAMES,
    STATLOG_CLASSES,
    StatlogTable,
    read_statlog,
)

__all__ = ["StatlogDataModule"]


class StatlogDataModule(RemoteSensingDataModule):
    """3×3 Landsat MSS patches of ``sat.trn`` (and ``sat.tst``) → ``{"image": (B, 4, 3, 3), "label", "id"}``.

    Training uses ``path`` minus a seeded, stratified validation share. The test split is ``test_path``
    (default: ``sat.tst`` beside ``path`` when that file exists, as UCI ships it); without a test file, a
    stratified held-out share of ``path`` is the test split instead, and :attr:`test_source` says which.
    Prediction runs on the test split; ``id`` is ``file:line``. Bands are normalised with the training
    split's statistics on the device.

    Args:
        path: The training file (``sat.trn`` layout: 36 values and a class per row, spaces or tabs, with or
            without a header row).
        test_path: The test file; default ``sat.tst`` beside ``path`` if present, else a held-out share.
        classes: Class codes of the files, in the order of the model's outputs (UCI: 1–5 and 7; 6 is empty).
        header: Whether the files start with a header row; None detects it.
        val_fraction: Stratified share of ``path`` for validation.
        test_fraction: Stratified share of ``path`` held out for test when there is no test file.
        seed: Seed of the stratified splits.
        batch_size: Patches per training batch.
        eval_batch_size: Patches per validation/test/prediction batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise each band with the training split's mean and standard deviation.
    """

    links = CLASS_LINKS
    sample_name = "patches"

    def __init__(
        self,
        path: str,
        test_path: str | None = None,
        classes: list[int] | None = None,
        header: bool | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        self.path = Path(path)
        self.classes = tuple(int(c) for c in (classes if classes is not None else STATLOG_CLASSES))
        if len(set(self.classes)) != len(self.classes):
            raise InputError(f"StatlogDataModule: classes must be distinct, got {list(self.classes)}")
        default_test = self.path.with_name("sat.tst")
        if test_path is not None:
            self.test_path: Path | None = Path(test_path)
        else:
            self.test_path = default_test if default_test.is_file() and default_test != self.path else None
        self.header = header
        self.seed = int(seed)
        table = read_statlog(self.path, self.classes, header)
        self.band_names = STATLOG_BANDS
        self.in_channels = len(STATLOG_BANDS)
        self.num_classes = len(self.classes)
        self.class_names = [STATLOG_CLASS_NAMES.get(c, str(c)) for c in self.classes]
        index = {code: i for i, code in enumerate(self.classes)}
        labels = np.asarray([index[c] for c in table.labels], dtype=np.int64)
        fractions = (val_fraction,) if self.test_path is not None else (val_fraction, test_fraction)
        parts = stratified_split(labels, fractions, self.seed)
        self._rows: dict[str, tuple[StatlogTable, np.ndarray, np.ndarray]] = {
            "train": (table, labels, parts[0]),
            "val": (table, labels, parts[1]),
        }
        if self.test_path is not None:
            test = read_statlog(self.test_path, self.classes, header)
            test_labels = np.asarray([index[c] for c in test.labels], dtype=np.int64)
            self._rows["test"] = (test, test_labels, np.arange(len(test)))
            self.test_source = f"{self.test_path}"
        else:
            self._rows["test"] = (table, labels, parts[2])
            self.test_source = f"held-out stratified {test_fraction:.0%} of {self.path.name} (no sat.tst)"
        self._rows["predict"] = self._rows["test"]

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band mean and standard deviation over the training patches."""
        table, _, rows = self._rows["train"]
        patches = table.patches[rows].transpose(1, 0, 2, 3)
        return {"image": band_statistics([patches], self.band_names, f"{self.path} (training split)")}

    def build_dataset(self, split: Split) -> PatchDataset | None:
        """The patches of ``split`` (None for an empty validation share)."""
        table, labels, rows = self._rows[split]
        if len(rows) == 0:
            return None
        ids = [f"{table.path.name}:{line}" for line in table.lines[rows]]
        return PatchDataset(table.patches[rows], labels[rows], ids)

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and say where the test split comes from."""
        super().setup(stage)
        rank_zero_info(f"  Statlog test split: {self.test_source}")

    def input_paths(self) -> list[Path]:
        """The training file and the test file (if any)."""
        return [self.path] + ([self.test_path] if self.test_path is not None else [])
