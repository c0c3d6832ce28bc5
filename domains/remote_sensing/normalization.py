"""Per-band normalisation: statistics from the training split, applied on the device.

Statistics are accumulated in float64 over every valid pixel of the training samples (nodata pixels, which
the datasets fill with NaN, are left out), so they are exact and do not depend on the batch size. Images are
normalised on the device after the batch transfer (the datamodule's ``on_after_batch_transfer``): the
DataLoader moves the raw band values, which keeps workers cheap. NaN (nodata) becomes 0 after
normalisation, i.e. the band mean, so networks never see NaN.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.utils import InputError

__all__ = ["BandStatistics", "RunningBandStatistics", "band_statistics", "normalize_bands"]

_MIN_STD = 1e-6


@dataclass(frozen=True)
class BandStatistics:
    """Mean and standard deviation of each band, with the band names they belong to.

    Attributes:
        names: Band names in channel order.
        mean: Per-band mean, shape (C,).
        std: Per-band standard deviation, shape (C,); a constant band gets 1 so it maps to 0.
        count: Valid pixels per band the statistics were computed from.
    """

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    def state(self) -> dict[str, Any]:
        """Plain lists, for a checkpoint's datamodule state."""
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "BandStatistics":
        """Inverse of :meth:`state`."""
        return cls(
            names=tuple(state["names"]),
            mean=np.asarray(state["mean"], dtype=np.float64),
            std=np.asarray(state["std"], dtype=np.float64),
            count=np.asarray(state["count"], dtype=np.int64),
        )

    def check_names(self, names: Iterable[str], where: str) -> None:
        """Raise when ``names`` differ from the bands these statistics were computed on."""
        names = tuple(names)
        if names != self.names:
            raise InputError(
                f"{where}: the normalisation statistics are for bands {list(self.names)}, but the data has "
                f"bands {list(names)}; use the band names and order of the training run"
            )

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` per band on dimension 1 of ``x`` (B, C, ...); NaN (nodata) becomes 0."""
        return normalize_bands(x, self.mean, self.std)


def normalize_bands(x: Tensor, mean: np.ndarray, std: np.ndarray) -> Tensor:
    """Normalise the bands (dimension 1) of ``x`` on its device; NaN (nodata) becomes 0.

    Raises:
        InputError: If ``x`` has another number of bands than ``mean``.
    """
    if x.ndim < 2 or x.shape[1] != len(mean):
        raise InputError(
            f"a batch tensor of shape {tuple(x.shape)} does not have the {len(mean)} bands its normalisation "
            "statistics were computed on (dimension 1)"
        )
    shape = (1, len(mean)) + (1,) * (x.ndim - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return torch.nan_to_num((x - m) / s, nan=0.0)


class RunningBandStatistics:
    """Exact per-band mean and standard deviation accumulated over arrays of shape (C, ...).

    Args:
        names: Band names in channel order.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        c = len(self.names)
        self._sum = np.zeros(c, dtype=np.float64)
        self._sum_sq = np.zeros(c, dtype=np.float64)
        self._count = np.zeros(c, dtype=np.int64)
        self._shift: np.ndarray | None = None

    def update(self, values: np.ndarray) -> None:
        """Add the valid (non-NaN) values of ``values`` (C, ...) band by band."""
        values = np.asarray(values, dtype=np.float64).reshape(len(self.names), -1)
        valid = ~np.isnan(values)
        if self._shift is None:
            # Sums of squares about a first value per band keep the variance exact for large offsets.
            first = np.where(valid.any(axis=1), np.nanmax(np.where(valid, values, -np.inf), axis=1), 0.0)
            self._shift = np.where(np.isfinite(first), first, 0.0)
        centred = np.where(valid, values - self._shift[:, None], 0.0)
        self._sum += centred.sum(axis=1)
        self._sum_sq += (centred**2).sum(axis=1)
        self._count += valid.sum(axis=1)

    def result(self, where: str) -> BandStatistics:
        """The statistics so far.

        Args:
            where: What the statistics were computed on, for the error message.

        Raises:
            InputError: If a band has no valid pixel.
        """
        empty = [n for n, c in zip(self.names, self._count, strict=True) if c == 0]
        if empty:
            raise InputError(f"{where}: bands {empty} have no valid (non-nodata) pixel to compute statistics")
        count = self._count.astype(np.float64)
        mean_c = self._sum / count
        var = np.maximum(self._sum_sq / count - mean_c**2, 0.0)
        std = np.sqrt(var)
        std = np.where(std < _MIN_STD, 1.0, std)
        shift = self._shift if self._shift is not None else 0.0
        return BandStatistics(self.names, mean_c + shift, std, self._count.copy())


def band_statistics(samples: Iterable[np.ndarray], names: Iterable[str], where: str) -> BandStatistics:
    """Per-band statistics over ``samples``, each an array (C, ...) with NaN at nodata pixels."""
    running = RunningBandStatistics(names)
    for sample in samples:
        running.update(sample)
    return running.result(where)
