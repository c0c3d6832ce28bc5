"""County-year yield histograms (You et al. 2017 layout) as a regression datamodule for DFYP."""

from pathlib import Path
from typing import ClassVar

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from core.data import Split
from core.utils import InputError
from domains.remote_sensing.datamodules.base import RemoteSensingDataModule
from domains.remote_sensing.datasets import PatchDataset
from domains.remote_sensing.normalization import BandStatistics, band_statistics
from domains.remote_sensing.yields import HistogramLayout, read_yield_histograms

__all__ = ["YieldHistogramDataModule"]


class YieldHistogramDataModule(RemoteSensingDataModule):
    """Yield histograms → ``{"image": (B, bands, bins, times), "target": (B,), "id"}``, split by year.

    As You et al. evaluate, one year is the test split and the model trains on the earlier years (later
    years would leak the future); ``val_years`` (default: the year before ``test_year``) are held out of
    training for validation. Prediction runs on the test year. Histograms are densities already; band
    normalisation is off by default.

    Args:
        path: The ``.npz`` file (``histogram_all.npz`` / ``histogram_all_full.npz``).
        test_year: The test year; default: the last year of the file.
        val_years: Validation years; default: the year before ``test_year``.
        layout: ``you2017`` (N, bins, times, bands), ``pycrop`` (N, bands, times, bins) or ``auto``.
        bins: Histogram bins.
        batch_size: Samples per training batch (You et al.: 32).
        eval_batch_size: Samples per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise each band with training-year statistics.
    """

    links: ClassVar[dict[str, str]] = {"in_channels": "in_channels"}
    sample_name = "county-years"

    def __init__(
        self,
        path: str,
        test_year: int | None = None,
        val_years: list[int] | None = None,
        layout: HistogramLayout = "auto",
        bins: int = 32,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        self.path = Path(path)
        self.data = read_yield_histograms(self.path, layout, bins)
        years = sorted(set(self.data.years.tolist()))
        self.test_year = int(test_year) if test_year is not None else years[-1]
        if self.test_year not in years:
            raise InputError(f"{self.path}: test_year {self.test_year} is not among its years {years}")
        earlier = [y for y in years if y < self.test_year]
        self.val_years = [int(y) for y in val_years] if val_years is not None else earlier[-1:]
        train_years = [y for y in earlier if y not in self.val_years]
        if not train_years:
            raise InputError(f"{self.path}: no year before {self.test_year} is left for training ({years})")
        self.years = {"train": train_years, "val": self.val_years, "test": [self.test_year]}
        self.in_channels, self.num_bins, self.num_times = (int(s) for s in self.data.images.shape[1:])
        self.band_names = tuple(f"band{i + 1}" for i in range(self.in_channels))

    def _rows(self, split: Split) -> np.ndarray:
        years = self.years["test" if split == "predict" else split]
        return np.flatnonzero(np.isin(self.data.years, years))

    def build_dataset(self, split: Split) -> PatchDataset | None:
        """The county-years of the split's years (None when there are none)."""
        rows = self._rows(split)
        if len(rows) == 0:
            return None
        ids = [self.data.ids[i] for i in rows]
        return PatchDataset(self.data.images[rows], self.data.yields[rows], ids, target_key="target")

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and log the years of each."""
        super().setup(stage)
        rank_zero_info("  years: " + ", ".join(f"{s} {y}" for s, y in self.years.items()))

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over the training years."""
        images = self.data.images[self._rows("train")].transpose(1, 0, 2, 3)
        return {"image": band_statistics([images], self.band_names, f"{self.path} (training years)")}

    def input_paths(self) -> list[Path]:
        """The histogram file."""
        return [self.path]
