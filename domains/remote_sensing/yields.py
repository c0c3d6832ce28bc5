"""Crop-yield histograms in the layout of You et al. (AAAI 2017), the input of DFYP.

You et al. turn each county-year of MODIS images (7 surface-reflectance bands + 2 land-surface-temperature
bands, 8-day composites) into a 32-bin histogram of every band at each of 32 time steps, and save all of them
in one ``.npz`` file with the arrays ``output_image`` (N, bins, times, bands), ``output_yield`` (N,),
``output_year`` (N,), and optionally ``output_locations`` (N, 2: longitude, latitude) and ``output_index``
(N, 2: state and county FIPS codes). The PyTorch re-implementation (``gabrieltseng/pycrop-yield-prediction``,
``histogram_all_full.npz``) keeps the keys but stores the images channels-first, (N, bands, times, bins).
Every histogram is normalised to sum 1 (0 for time steps padded with zeros).

No real yield data is available to this project; the reader is tested on files written in these exact
layouts.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from core.utils import InputError, InputFileNotFoundError

__all__ = ["HistogramLayout", "YieldHistograms", "read_yield_histograms"]

HistogramLayout = Literal["auto", "you2017", "pycrop"]


@dataclass(frozen=True)
class YieldHistograms:
    """The county-year samples of one histogram file.

    Attributes:
        path: The file read.
        images: float32 (N, bands, bins, times).
        yields: float32 (N,).
        years: int64 (N,).
        ids: ``year_state_county`` (or ``year_row``) per sample.
    """

    path: Path
    images: np.ndarray
    yields: np.ndarray
    years: np.ndarray
    ids: list[str]


def read_yield_histograms(
    path: str | Path, layout: HistogramLayout = "auto", bins: int = 32
) -> YieldHistograms:
    """Read a You et al. histogram ``.npz`` into (N, bands, bins, times).

    Args:
        path: The ``.npz`` file.
        layout: ``you2017`` (N, bins, times, bands), ``pycrop`` (N, bands, times, bins) or ``auto``: the
            axis of length ``bins`` whose histograms sum to 1 (or 0) decides.
        bins: Histogram bins.

    Raises:
        InputFileNotFoundError: If the file is missing.
        InputError: Naming the file and the key, for a missing array, mismatched lengths, NaN or negative
            values, or histograms that do not sum to 1 along the bins axis of the layout.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: yield histogram file not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npz file ({err})") from None
    with archive:
        for key in ("output_image", "output_yield", "output_year"):
            if key not in archive.files:
                raise InputError(f"{path}: array {key!r} is missing; it has {archive.files}")
        images = np.asarray(archive["output_image"], dtype=np.float32)
        yields = np.asarray(archive["output_yield"], dtype=np.float32).reshape(-1)
        years = np.asarray(archive["output_year"]).astype(np.int64).reshape(-1)
        index = np.asarray(archive["output_index"]) if "output_index" in archive.files else None
    if images.ndim != 4:
        raise InputError(
            f"{path}: 'output_image' must be 4-D (N, bins, times, bands), got shape {images.shape}"
        )
    n = len(images)
    if len(yields) != n or len(years) != n or (index is not None and len(index) != n):
        raise InputError(
            f"{path}: 'output_image' has {n} samples but 'output_yield' {len(yields)}, 'output_year' "
            f"{len(years)}" + (f", 'output_index' {len(index)}" if index is not None else "")
        )
    if not np.isfinite(images).all() or (images < 0).any():
        raise InputError(
            f"{path}: 'output_image' holds NaN, infinite or negative values; expected histograms"
        )
    if not np.isfinite(yields).all():
        raise InputError(f"{path}: 'output_yield' holds NaN or infinite values")

    def sums_ok(axis: int) -> bool:
        if images.shape[axis] != bins:
            return False
        sums = images.sum(axis=axis)
        return bool((np.isclose(sums, 1.0, atol=1e-3) | np.isclose(sums, 0.0, atol=1e-6)).all())

    if layout == "auto":
        layout = "you2017" if sums_ok(1) else "pycrop" if sums_ok(3) else "auto"
        if layout == "auto":
            raise InputError(
                f"{path}: 'output_image' {images.shape} has no axis of {bins} bins whose histograms sum to 1 "
                "(axis 1 in the you2017 layout, axis 3 in the pycrop layout)"
            )
    elif not sums_ok(1 if layout == "you2017" else 3):
        axis = 1 if layout == "you2017" else 3
        raise InputError(
            f"{path}: in the {layout} layout axis {axis} of 'output_image' {images.shape} holds the "
            f"{bins} bins, but its histograms do not sum to 1"
        )
    # -> (N, bands, bins, times)
    images = images.transpose(0, 3, 1, 2) if layout == "you2017" else images.transpose(0, 1, 3, 2)
    if index is not None:
        ids = [f"{y}_{int(s)}_{int(c)}" for y, (s, c) in zip(years, index.reshape(n, -1)[:, :2], strict=True)]
    else:
        ids = [f"{y}_{i}" for i, y in enumerate(years)]
    return YieldHistograms(path, np.ascontiguousarray(images), yields, years, ids)
