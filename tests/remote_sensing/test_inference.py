"""Sliding-window scene inference: one-pass equality for tile-invariant models, georeferencing, safety."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.utils import InputError
from domains.remote_sensing.inference import MASK_NODATA, blend_weights, predict_scene
from domains.remote_sensing.rasters import BandStack
from domains.remote_sensing.scenes import SceneTiles
from tests.remote_sensing.conftest import snapshot, write_tif

WEIGHT = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.5, 0.2], [0.3, 0.3, -1.0], [0.0, 0.1, 0.1]])


def _per_pixel(batch: dict) -> torch.Tensor:
    """A tile-invariant model: the same linear map of the bands at every pixel."""
    return torch.einsum("kc,bchw->bkhw", WEIGHT, batch["image"])


def _scene(folder: Path, height: int, width: int, nodata_rows: int = 0) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(height * 1000 + width)
    files = {}
    for k in range(3):
        values = rng.integers(1, 100, (height, width)).astype(np.uint16)
        values[:nodata_rows] = 0
        files[f"B{k + 1}"] = write_tif(folder / f"s_B{k + 1}.tif", values, nodata=0)
    return files


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(50, 70, 16, 4), (33, 29, 16, 0), (40, 40, 16, 8), (10, 12, 16, 4)],
)
def test_equals_one_pass_prediction(tmp_path: Path, height: int, width: int, tile: int, overlap: int) -> None:
    files = _scene(tmp_path / "in", height, width)
    stack = BandStack.from_files(files, require_crs=True)
    before = snapshot(tmp_path / "in")
    out = predict_scene(
        SceneTiles(stack), _per_pixel, tmp_path / "out" / "mask.tif", tile, overlap, 4, batch_size=3
    )
    whole = torch.from_numpy(stack.read(0, 0, height, width))[None]
    expected = _per_pixel({"image": whole}).argmax(dim=1)[0].numpy()
    with rasterio.open(out) as ds, rasterio.open(files["B1"]) as ref:
        assert ds.crs == ref.crs and ds.transform == ref.transform and ds.shape == (height, width)
        assert ds.dtypes == ("uint8",) and ds.nodata == MASK_NODATA
        np.testing.assert_array_equal(ds.read(1), expected)
    assert snapshot(tmp_path / "in") == before


def test_nodata_and_normalisation_and_window_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _scene(tmp_path / "in", 40, 45, nodata_rows=5)
    stack = BandStack.from_files(files)
    windows = []
    read = BandStack.read

    def recording(self: BandStack, row: int, col: int, height: int, width: int) -> np.ndarray:
        windows.append((height, width))
        return read(self, row, col, height, width)

    monkeypatch.setattr(BandStack, "read", recording)
    seen = []

    def normalize(batch: dict) -> dict:
        seen.append(batch["image"].shape)
        return {"image": torch.nan_to_num(batch["image"] - 50.0)}

    out = predict_scene(SceneTiles(stack), _per_pixel, tmp_path / "out.tif", 16, 4, 4, normalize=normalize)
    assert windows and all(w == (16, 16) for w in windows)  # never the whole file
    assert seen and all(s[1:] == (3, 16, 16) for s in seen)
    with rasterio.open(out) as ds:
        mask = ds.read(1)
    assert (mask[:5] == MASK_NODATA).all() and (mask[5:] < 4).all()


def test_refuses_input_folder_and_missing_crs(tmp_path: Path) -> None:
    files = _scene(tmp_path / "in", 20, 20)
    stack = BandStack.from_files(files)
    with pytest.raises(InputError, match="would write among the input data"):
        predict_scene(SceneTiles(stack), _per_pixel, tmp_path / "in" / "mask.tif", 16, 4, 4)
    assert not (tmp_path / "in" / "mask.tif").exists()
    nocrs = write_tif(tmp_path / "n_B1.tif", np.ones((20, 20), dtype=np.uint16), crs=None)
    with pytest.raises(InputError, match=r"n_B1\.tif: the raster has no CRS"):
        predict_scene(
            SceneTiles(BandStack.from_files({"B1": nocrs})), _per_pixel, tmp_path / "o" / "m.tif", 16, 4, 4
        )
    with pytest.raises(ValueError, match="overlap must be in"):
        predict_scene(SceneTiles(stack), _per_pixel, tmp_path / "o" / "m.tif", 16, 16, 4)
    with pytest.raises(ValueError, match="logits of shape"):
        predict_scene(
            SceneTiles(stack), lambda b: torch.zeros(1, 4, 8, 8), tmp_path / "o" / "m.tif", 16, 4, 4
        )
    assert not (tmp_path / "o" / "m.tif").exists()


def test_blend_weights() -> None:
    w = blend_weights(8, 3)
    assert w.shape == (8, 8) and (w > 0).all() and w[4, 4] == 1 and w[0, 0] == pytest.approx(1 / 16)
    assert (blend_weights(8, 0) == 1).all()
