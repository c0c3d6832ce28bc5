"""Remote-sensing fixtures: small Landsat 8 scene folders and GeoTIFFs written in the exact layouts.

Everything is written under pytest's temporary folders; the shared real scene and Statlog table are only
read, from ``../shared/data`` beside the repository (tests that need them skip when they are absent).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[2]
SHARED_RS = REPO.parent / "shared" / "data" / "remote_sensing"
CRS = "EPSG:32616"
ORIGIN = (452475.0, 3408645.0)
L8_30M = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")
# Pre-Collection BQA values: clear (cloud and cirrus "low"), cloud "yes", fill.
PRE_CLEAR, PRE_CLOUD, FILL = 20480, 53248, 1


def write_tif(
    path: Path,
    data: np.ndarray,
    res: float = 30.0,
    origin: tuple[float, float] = ORIGIN,
    crs: str | None = CRS,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
) -> Path:
    """Write (C, H, W) or (H, W) as a GeoTIFF (striped, uncompressed) and return its path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": str(data.dtype),
        "transform": rasterio.Affine(res, 0.0, origin[0], 0.0, -res, origin[1]),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, name in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, name)
    return path


def write_landsat_scene(
    folder: Path,
    height: int = 96,
    width: int = 104,
    seed: int = 0,
    qa: np.ndarray | None = None,
    prefix: str = "LC08_TEST",
) -> Path:
    """A Landsat 8 scene folder: ``<prefix>_B1.TIF`` … ``_B11.TIF`` and ``_BQA.TIF``.

    B8 is at 15 m, its grid half a pan pixel off the 30 m grid, as USGS grids it; the BQA holds pre-Collection
    values (two cloudy rectangles by default).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, band in enumerate(L8_30M):
        values = (5000 + 1000 * k + rng.integers(0, 2000, (height, width))).astype(np.uint16)
        write_tif(folder / f"{prefix}_{band}.TIF", values)
    pan = (6000 + rng.integers(0, 3000, (2 * height + 1, 2 * width))).astype(np.uint16)
    write_tif(folder / f"{prefix}_B8.TIF", pan, res=15.0, origin=(ORIGIN[0] - 7.5, ORIGIN[1] + 7.5))
    if qa is None:
        qa = np.full((height, width), PRE_CLEAR, dtype=np.uint16)
        qa[height // 4 : height // 2, width // 8 : width // 2] = PRE_CLOUD
        qa[3 * height // 4 :, width // 2 :] = PRE_CLOUD
    write_tif(folder / f"{prefix}_BQA.TIF", qa.astype(np.uint16))
    return folder


@pytest.fixture
def landsat_scene(tmp_path: Path) -> Path:
    return write_landsat_scene(tmp_path / "scene")


@pytest.fixture
def scene_writer(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "scene", **kwargs: object) -> Path:
        return write_landsat_scene(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def shared_scene() -> Path:
    folder = SHARED_RS / "landsat8_cloudy_scene"
    if not folder.is_dir():
        pytest.skip(f"the shared Landsat scene {folder} is absent (it ships beside the repo, not in it)")
    return folder


@pytest.fixture
def shared_statlog() -> Path:
    path = SHARED_RS / "statlog_landsat" / "sat.trn"
    if not path.is_file():
        pytest.skip(f"the shared Statlog table {path} is absent (it ships beside the repo, not in it)")
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder`` (to check inputs are never written)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }
