"""Rasters: band stacks from per-band or stacked files, windowed reads, atomic georeferenced writes."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.rasters import (
    BandStack,
    GeoTiffWriter,
    ResampledBands,
    find_named_band_files,
    write_geotiff,
)
from tests.remote_sensing.conftest import CRS, write_tif


def _bands(tmp_path: Path, n: int = 3, shape: tuple[int, int] = (20, 30)) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    return {
        f"B{k}": write_tif(tmp_path / f"s_B{k}.tif", rng.integers(1, 1000, shape).astype(np.uint16))
        for k in range(1, n + 1)
    }


def test_per_band_files_windowed_read(tmp_path: Path) -> None:
    files = _bands(tmp_path)
    stack = BandStack.from_files(files, require_crs=True)
    assert stack.names == ("B1", "B2", "B3") and (stack.height, stack.width) == (20, 30)
    full = np.stack([rasterio.open(p).read(1) for p in files.values()]).astype(np.float32)
    np.testing.assert_array_equal(stack.read(5, 7, 10, 12), full[:, 5:15, 7:19])
    # A window reaching outside the raster is NaN there.
    part = stack.read(-2, 25, 4, 8)
    assert np.isnan(part[:, :2]).all() and np.isnan(part[:, :, 5:]).all()
    np.testing.assert_array_equal(part[:, 2:, :5], full[:, :2, 25:30])
    assert str(stack.grid.crs) == CRS and stack.grid.res == (30.0, 30.0)


def test_nodata_becomes_nan(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = write_tif(tmp_path / "n_B1.tif", data, nodata=5)
    values = BandStack.from_files({"B1": path}).read(0, 0, 3, 4)[0]
    assert np.isnan(values[1, 1]) and np.isnan(values).sum() == 1
    overridden = BandStack.from_files({"B1": path}, nodata=0).read(0, 0, 3, 4)[0]
    assert np.isnan(overridden[0, 0]) and np.isnan(overridden).sum() == 1


def test_mismatched_band_sizes_name_both_files(tmp_path: Path) -> None:
    files = _bands(tmp_path)
    files["B4"] = write_tif(tmp_path / "s_B4.tif", np.zeros((21, 30), dtype=np.uint16))
    with pytest.raises(InputError, match=r"s_B4\.tif is 21×30 .* but .*s_B1\.tif is 20×30"):
        BandStack.from_files(files)
    files["B4"] = write_tif(tmp_path / "s_B4.tif", np.zeros((20, 30), dtype=np.uint16), origin=(0.0, 0.0))
    with pytest.raises(InputError, match=r"s_B4\.tif .* origin \(0, 0\)"):
        BandStack.from_files(files)


def test_raster_without_crs(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "nocrs_B1.tif", np.ones((4, 4), dtype=np.uint16), crs=None)
    assert BandStack.from_files({"B1": path}).grid.crs is None
    with pytest.raises(InputError, match=r"nocrs_B1\.tif: the raster has no CRS"):
        BandStack.from_files({"B1": path}, require_crs=True)
    with pytest.raises(InputError, match=r"nocrs_B1\.tif: the raster has no CRS"):
        BandStack.from_stack(path, require_crs=True)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_tiff_names_the_file(tmp_path: Path, keep: float) -> None:
    good = write_tif(tmp_path / "t_B1.tif", np.arange(200 * 100, dtype=np.uint16).reshape(200, 100))
    blob = good.read_bytes()
    bad = tmp_path / "cut_B1.tif"
    bad.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(InputError, match=r"cut_B1\.tif: .*(truncated or corrupt)"):
        BandStack.from_files({"B1": bad})


def test_missing_and_not_a_raster(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match=r"absent\.tif: raster file not found"):
        BandStack.from_files({"B1": tmp_path / "absent.tif"})
    text = tmp_path / "text_B1.tif"
    text.write_text("not a tiff")
    with pytest.raises(InputError, match=r"text_B1\.tif: not a readable raster"):
        BandStack.from_files({"B1": text})
    stacked = write_tif(tmp_path / "two.tif", np.zeros((2, 3, 3), dtype=np.uint16))
    with pytest.raises(InputError, match=r"two\.tif: expected a single-band file for band 'B1', found 2"):
        BandStack.from_files({"B1": stacked})


def test_stacked_file_band_names_and_order(tmp_path: Path) -> None:
    data = np.stack([np.full((4, 5), v, dtype=np.uint16) for v in (10, 20, 30)])
    path = write_tif(tmp_path / "stack.tif", data, descriptions=["red", "green", "blue"])
    stack = BandStack.from_stack(path)
    assert stack.names == ("red", "green", "blue")
    # Selection and reordering by name.
    chosen = BandStack.from_stack(path, bands=["blue", "red"])
    assert chosen.names == ("blue", "red")
    assert chosen.read(0, 0, 1, 1)[:, 0, 0].tolist() == [30, 10]
    with pytest.raises(InputError, match=r"stack\.tif: bands \['nir'\] are not among its bands"):
        BandStack.from_stack(path, bands=["nir"])
    # Band order different from the configuration.
    with pytest.raises(
        InputError, match=r"stack\.tif: band order differs .* band 1 is 'red', configured 'green'"
    ):
        BandStack.from_stack(path, band_names=["green", "red", "blue"])
    # Band count different from the configuration.
    with pytest.raises(InputError, match=r"stack\.tif: the configuration names 4 bands .* the file has 3"):
        BandStack.from_stack(path, band_names=["red", "green", "blue", "nir"])
    with pytest.raises(
        InputError, match=r"stack\.tif: bands are \['red', 'green', 'blue'\], the configuration"
    ):
        stack.check_names(["red", "green"])


def test_stacked_file_without_descriptions(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "plain.tif", np.zeros((2, 3, 3), dtype=np.uint16))
    assert BandStack.from_stack(path).names == ("band1", "band2")
    assert BandStack.from_stack(path, band_names=["a", "b"], bands=["b"]).names == ("b",)
    with pytest.raises(InputError, match=r"plain\.tif: its bands have no descriptions"):
        BandStack.from_stack(path, bands=["b"])


def test_read_bounds_of_a_finer_half_pixel_shifted_band(tmp_path: Path) -> None:
    # The Landsat pan grid: 15 m pixels whose edges are 7.5 m off the 30 m grid.
    ms = write_tif(tmp_path / "ms_B4.tif", np.zeros((10, 10), dtype=np.uint16))
    pan_values = np.random.default_rng(1).integers(0, 1000, (21, 20)).astype(np.uint16)
    x0, y0 = 452475.0, 3408645.0
    pan = write_tif(tmp_path / "p_B8.tif", pan_values, res=15.0, origin=(x0 - 7.5, y0 + 7.5))
    image, pan_stack = BandStack.from_files({"B4": ms}), BandStack.from_files({"B8": pan})
    out = pan_stack.read_bounds(image.window_bounds(2, 3, 4, 4), (8, 8))[0]
    # The 15 m cell centred half a pan pixel inside: the bilinear mean of 2×2 pan pixels.
    expected = pan_values[4:6, 6:8].astype(np.float64).mean()
    assert out.shape == (8, 8)
    assert out[0, 0] == pytest.approx(expected, abs=0.5)


def test_write_geotiff_georeferenced_and_atomic(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = write_tif(tmp_path / "in" / "s_B1.tif", np.ones((6, 7), dtype=np.uint16))
    with rasterio.open(src) as ds:
        crs, transform = ds.crs, ds.transform
    data = np.arange(42, dtype=np.uint8).reshape(6, 7)
    out = write_geotiff(tmp_path / "out" / "mask.tif", data, crs, transform, nodata=255, band_names=["class"])
    with rasterio.open(out) as ds:
        assert ds.crs == crs and ds.transform == transform and ds.nodata == 255
        assert ds.descriptions == ("class",)
        np.testing.assert_array_equal(ds.read(1), data)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.tif"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    # A failure while writing leaves neither the target nor a temporary file.
    with (
        pytest.raises(RuntimeError),
        GeoTiffWriter(tmp_path / "out" / "failed.tif", 6, 7, 1, "uint8", crs, transform),
    ):
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.tif"]


def test_shared_scene_bands(shared_scene: Path) -> None:
    from domains.remote_sensing.landsat import find_band_files

    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"]
    stack = BandStack.from_files(find_band_files(shared_scene, names), require_crs=True)
    assert (stack.height, stack.width) == (603, 627) and str(stack.grid.crs) == "EPSG:32616"
    tile = stack.read(100, 200, 32, 32)
    assert tile.shape == (10, 32, 32) and not np.isnan(tile).any()
    # Band 8 is on the 15 m grid: it cannot join the 30 m stack.
    with pytest.raises(InputError, match=r"l8_B8\.tif is 1207×1254"):
        BandStack.from_files(find_band_files(shared_scene, ["B4", "B8"]))


def test_resampled_bands_on_a_common_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fine = rng.integers(0, 1000, (40, 40)).astype(np.uint16)
    coarse = rng.integers(0, 1000, (20, 20)).astype(np.uint16)
    files = {
        "B02": write_tif(tmp_path / "s2_B02.jp2", fine, res=10.0),
        "B05": write_tif(tmp_path / "s2_B05.jp2", coarse, res=20.0),
    }
    bands = ResampledBands.from_files(files, resolution=20.0)
    assert bands.names == ("B02", "B05") and (bands.height, bands.width) == (20, 20)
    out = bands.read(2, 3, 4, 5)
    np.testing.assert_array_equal(out[1], coarse[2:6, 3:8])
    # The 10 m band is averaged over each 20 m cell.
    expected = fine.astype(np.float64).reshape(20, 2, 20, 2).mean(axis=(1, 3))[2:6, 3:8]
    np.testing.assert_allclose(out[0], expected, atol=0.51)
    finest = ResampledBands.from_files(files)
    assert finest.grid.res == (10.0, 10.0) and (finest.height, finest.width) == (40, 40)
    assert find_named_band_files(tmp_path, ["B02", "B05"]) == files


def test_resampled_bands_errors(tmp_path: Path) -> None:
    a = write_tif(tmp_path / "a_B1.tif", np.zeros((4, 4), dtype=np.uint16))
    b = write_tif(tmp_path / "b_B2.tif", np.zeros((4, 4), dtype=np.uint16), crs="EPSG:4326")
    with pytest.raises(InputError, match=r"b_B2\.tif has CRS EPSG:4326, but .*a_B1\.tif has EPSG:32616"):
        ResampledBands.from_files({"B1": a, "B2": b})
    c = write_tif(tmp_path / "c_B3.tif", np.zeros((4, 4), dtype=np.uint16), origin=(0.0, 0.0))
    with pytest.raises(InputError, match="do not overlap on the map"):
        ResampledBands.from_files({"B1": a, "B3": c})
