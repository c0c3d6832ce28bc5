"""Yield histograms in the You et al. (2017) and pycrop layouts, split by year (no real yield data here)."""

from pathlib import Path

import numpy as np
import pytest

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.datamodules import YieldHistogramDataModule
from domains.remote_sensing.yields import read_yield_histograms


def _histograms(n: int, bands: int = 9, bins: int = 32, times: int = 32, seed: int = 0) -> np.ndarray:
    """(N, bands, bins, times) densities summing to 1 over bins; the last 3 time steps padded with 0."""
    counts = np.random.default_rng(seed).random((n, bands, bins, times))
    hist = counts / counts.sum(axis=2, keepdims=True)
    hist[..., -3:] = 0
    return hist.astype(np.float32)


def _write(path: Path, hist: np.ndarray, layout: str, years: list[int], index: bool = True) -> Path:
    image = hist.transpose(0, 2, 3, 1) if layout == "you2017" else hist.transpose(0, 1, 3, 2)
    arrays = {
        "output_image": image,
        "output_yield": np.linspace(20, 60, len(hist)),
        "output_year": np.array(years),
        "output_locations": np.zeros((len(hist), 2)),
    }
    if index:
        arrays["output_index"] = np.stack([np.full(len(hist), 17), np.arange(len(hist))], axis=1)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("layout", ["you2017", "pycrop"])
def test_layouts_read_to_bands_bins_times(tmp_path: Path, layout: str) -> None:
    hist = _histograms(6)
    path = _write(tmp_path / "histogram_all.npz", hist, layout, [2009, 2009, 2010, 2010, 2011, 2011])
    for given in ("auto", layout):
        data = read_yield_histograms(path, given)  # type: ignore[arg-type]
        np.testing.assert_array_equal(data.images, hist)
    assert data.ids[:2] == ["2009_17_0", "2009_17_1"] and data.yields.dtype == np.float32
    other = "pycrop" if layout == "you2017" else "you2017"
    with pytest.raises(InputError, match=rf"histogram_all\.npz: in the {other} layout axis"):
        read_yield_histograms(path, other)  # type: ignore[arg-type]


def test_bad_files_name_file_and_key(tmp_path: Path) -> None:
    hist = _histograms(4)
    path = tmp_path / "h.npz"
    np.savez(path, output_image=hist, output_yield=np.ones(4))
    with pytest.raises(InputError, match=r"h\.npz: array 'output_year' is missing"):
        read_yield_histograms(path)
    np.savez(path, output_image=hist, output_yield=np.ones(3), output_year=np.ones(4))
    with pytest.raises(InputError, match=r"h\.npz: 'output_image' has 4 samples but 'output_yield' 3"):
        read_yield_histograms(path)
    bad = hist.copy()
    bad[0, 0, 0, 0] = np.nan
    np.savez(path, output_image=bad, output_yield=np.ones(4), output_year=np.ones(4))
    with pytest.raises(InputError, match="NaN, infinite or negative"):
        read_yield_histograms(path)
    np.savez(path, output_image=hist * 2, output_yield=np.ones(4), output_year=np.ones(4))
    with pytest.raises(InputError, match="no axis of 32 bins whose histograms sum to 1"):
        read_yield_histograms(path)
    with pytest.raises(InputFileNotFoundError):
        read_yield_histograms(tmp_path / "absent.npz")


def test_datamodule_splits_by_year(tmp_path: Path) -> None:
    years = [2008] * 3 + [2009] * 3 + [2010] * 2 + [2011] * 4
    path = _write(tmp_path / "histogram_all_full.npz", _histograms(len(years)), "pycrop", years, index=False)
    dm = YieldHistogramDataModule(str(path), batch_size=4)
    assert (dm.in_channels, dm.num_bins, dm.num_times) == (9, 32, 32)
    assert dm.years == {"train": [2008, 2009], "val": [2010], "test": [2011]}
    dm.setup(None)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test", "predict")] == [6, 2, 4, 4]  # type: ignore[arg-type]
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (4, 9, 32, 32) and batch["target"].dtype.is_floating_point
    dm2 = YieldHistogramDataModule(str(path), test_year=2010, val_years=[2008])
    assert dm2.years == {"train": [2009], "val": [2008], "test": [2010]}
    with pytest.raises(InputError, match="no year before 2008 is left for training"):
        YieldHistogramDataModule(str(path), test_year=2008)
    with pytest.raises(InputError, match="test_year 2020 is not among its years"):
        YieldHistogramDataModule(str(path), test_year=2020)
