"""The FI-2010 benchmark (Ntakaris et al. 2018) as a datamodule, with the TLOB paper's protocol."""

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.data import Split
from core.utils import InputError
from domains.finance.datamodule import LOBDataModule
from domains.finance.readers import FI2010_HORIZONS, FI2010_NUM_FEATURES, read_fi2010
from domains.finance.windows import LOBWindowDataset, segment_window_ends

__all__ = ["FI2010DataModule"]


class FI2010DataModule(LOBDataModule):
    """The FI-2010 benchmark (Ntakaris et al. 2018) with the TLOB paper's protocol.

    FI-2010 is not shipped with attnlab (no copy is in the repository). Download it from Fairdata
    (https://etsin.fairdata.fi/dataset/73eb48d7-4dbc-4a10-a52a-da745b47a649, "BenchmarkDatasets.zip",
    CC BY 4.0) or take the zips shipped in the TLOB repository (``LeonardoBerti00/TLOB``, ``data/FI_2010``),
    and unzip the ``NoAuction/1.NoAuction_Zscore`` text files into ``root``.

    Each file holds 149 whitespace-separated rows × N samples: 144 features (rows 0-39 are 10 levels × ask
    price, ask volume, bid price, bid volume), then labels for horizons 10, 20, 30, 50, 100 events, which are
    mapped from {1 up, 2 stationary, 3 down} to {0, 1, 2}. The data is already z-scored; no further
    normalisation is applied. Train = the first ``1 - val_fraction`` of ``train_file`` in time, val = the
    rest; test = ``test_files``, one day each. Windows never span two files nor the train/val boundary.

    Batches: ``x`` (B, seq_len, num_features) float32, ``y`` (B, len(horizons)) int64, ``time`` NaN
    (FI-2010 has no timestamps), ``index`` the sample column in its file, ``day`` the file index in the
    split's file list.

    Args:
        root: Folder holding the FI-2010 text files.
        train_file: Training file (train and validation splits), relative to ``root``.
        test_files: Test files (days), relative to ``root``.
        predict_files: Files to predict; default: ``test_files``.
        val_fraction: Share of ``train_file`` (its end, in time) used for validation, in (0, 1).
        features: ``all`` (144 features, TLOB/MLPLOB) or ``lob`` (the first 40: raw book, DeepLOB).
        horizons: Label horizons in events, a subset of 10, 20, 30, 50, 100.
        seq_len: Window length T (TLOB: 128, DeepLOB: 100).
        batch_size: Training batch size (TLOB: 32).
        eval_batch_size: Validation/test/prediction batch size; default ``4 * batch_size``.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str,
        train_file: str = "Train_Dst_NoAuction_ZScore_CF_7.txt",
        test_files: list[str] = [  # noqa: B006 - copied, never mutated; shown by --help
            "Test_Dst_NoAuction_ZScore_CF_7.txt",
            "Test_Dst_NoAuction_ZScore_CF_8.txt",
            "Test_Dst_NoAuction_ZScore_CF_9.txt",
        ],
        predict_files: list[str] | None = None,
        val_fraction: float = 0.2,
        features: Literal["all", "lob"] = "all",
        horizons: list[int] = [10, 20, 50, 100],  # noqa: B006
        seq_len: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(seq_len, horizons, batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters()
        unknown = [h for h in horizons if h not in FI2010_HORIZONS]
        if unknown:
            raise InputError(f"FI-2010 has labels for horizons {FI2010_HORIZONS} only; got {unknown}")
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if features not in ("all", "lob"):
            raise InputError(f"features must be 'all' or 'lob', got {features!r}")
        self.root = Path(root)
        self.train_path = self.root / train_file
        self.test_paths = [self.root / f for f in test_files]
        self.predict_paths = (
            [self.root / f for f in predict_files] if predict_files is not None else self.test_paths
        )
        self.val_fraction = val_fraction
        self.features = features
        self._label_rows = [FI2010_NUM_FEATURES + FI2010_HORIZONS.index(h) for h in self._horizons]
        self._files: dict[Path, np.ndarray] = {}

    @property
    def num_lob_features(self) -> int:
        """The 40 raw order-book columns (10 levels × 4)."""
        return 40

    @property
    def num_features(self) -> int:
        """144 (``all``) or 40 (``lob``)."""
        return FI2010_NUM_FEATURES if self.features == "all" else self.num_lob_features

    def input_paths(self) -> list[Path]:
        """The configured FI-2010 files."""
        return list(dict.fromkeys([self.train_path, *self.test_paths, *self.predict_paths]))

    def _read(self, path: Path) -> np.ndarray:
        if path not in self._files:
            self._files[path] = read_fi2010(path)
        return self._files[path]

    def _pieces(self, split: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(day, data, sample_index)`` pieces of a split; each piece is windowed separately."""
        if split in ("train", "val"):
            data = self._read(self.train_path)
            n = data.shape[1]
            cut = int(np.floor(n * (1.0 - self.val_fraction)))
            part = slice(0, cut) if split == "train" else slice(cut, n)
            return [(0, data[:, part], np.arange(n)[part])]
        paths = self.test_paths if split == "test" else self.predict_paths
        return [(d, self._read(p), np.arange(self._read(p).shape[1])) for d, p in enumerate(paths)]

    def build_dataset(self, split: Split) -> LOBWindowDataset:
        """The windows of ``split``.

        Raises:
            FileNotFoundError: If a file is missing (the message names it).
            InputError: If a split holds fewer samples than ``seq_len``.
        """
        pieces = self._pieces(split)
        total = sum(data.shape[1] for _, data, _ in pieces)
        if total < self.seq_len:
            raise InputError(
                f"the FI-2010 {split} split has {total} samples, fewer than seq_len={self.seq_len}: a window "
                "cannot be longer than the data of a split"
            )
        features, labels, days, index, ends, offset = [], [], [], [], [], 0
        for day, data, samples in pieces:
            n = data.shape[1]
            features.append(data[: self.num_features].T)
            labels.append(data[self._label_rows].T.astype(np.int64) - 1)
            days.append(np.full(n, day, dtype=np.int64))
            index.append(samples)
            ends.append(segment_window_ends(offset, n, self.seq_len, f"FI-2010 {split} file {day}"))
            offset += n
        return LOBWindowDataset(
            features=torch.from_numpy(np.concatenate(features).astype(np.float32)),
            labels=torch.from_numpy(np.concatenate(labels)),
            times=np.full(offset, np.nan),
            ends=np.concatenate(ends),
            seq_len=self.seq_len,
            days=np.concatenate(days),
            event_index=np.concatenate(index),
            name=split,
        )

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", root={str(self.root)!r}, features={self.features!r})"
