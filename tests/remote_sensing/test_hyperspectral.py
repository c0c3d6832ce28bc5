"""Hyperspectral .mat cubes (Indian Pines / Pavia layout) and spatially disjoint patch splits."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from core.utils import InputError
from domains.remote_sensing.datamodules import HyperspectralDataModule
from domains.remote_sensing.hyperspectral import read_hyperspectral
from tests.remote_sensing.conftest import snapshot


def _indian_pines_like(
    folder: Path, rows: int = 40, cols: int = 44, bands: int = 12, classes: int = 4
) -> Path:
    """Two files as Indian Pines ships them: the cube (rows, cols, bands) and the uint8 ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    gt = np.zeros((rows, cols), dtype=np.uint8)
    for k in range(1, classes + 1):
        gt[rng.random((rows, cols)) < 0.12] = k
    cube = (1000 + 100 * gt[..., None].astype(np.int64) + rng.integers(0, 50, (rows, cols, bands))).astype(
        np.uint16
    )
    scipy.io.savemat(folder / "Indian_pines_corrected.mat", {"indian_pines_corrected": cube})
    scipy.io.savemat(folder / "Indian_pines_gt.mat", {"indian_pines_gt": gt})
    return folder


def test_reader_detects_keys_and_layout(tmp_path: Path) -> None:
    folder = _indian_pines_like(tmp_path / "ip")
    scene = read_hyperspectral(folder / "Indian_pines_corrected.mat", folder / "Indian_pines_gt.mat")
    assert scene.cube.shape == (12, 40, 44) and scene.gt.shape == (40, 44) and scene.gt.dtype == np.int64
    raw = scipy.io.loadmat(folder / "Indian_pines_corrected.mat")["indian_pines_corrected"]
    np.testing.assert_array_equal(scene.cube[:, 3, 5], raw[3, 5])
    # Keys given explicitly; one file holding both arrays (Pavia copies often do).
    both = tmp_path / "PaviaU.mat"
    scipy.io.savemat(both, {"paviaU": raw, "paviaU_gt": scene.gt.astype(np.uint8)})
    same = read_hyperspectral(both, cube_key="paviaU", gt_key="paviaU_gt")
    np.testing.assert_array_equal(same.gt, scene.gt)


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    folder = _indian_pines_like(tmp_path / "ip")
    cube, gt = folder / "Indian_pines_corrected.mat", folder / "Indian_pines_gt.mat"
    with pytest.raises(InputError, match=r"Indian_pines_corrected\.mat: no array 'x' for the cube"):
        read_hyperspectral(cube, gt, cube_key="x")
    two = tmp_path / "two.mat"
    scipy.io.savemat(two, {"a": np.zeros((3, 3, 2)), "b": np.zeros((3, 3, 4))})
    with pytest.raises(InputError, match=r"two\.mat: cannot tell which array is the cube"):
        read_hyperspectral(two, gt)
    small = tmp_path / "small_gt.mat"
    scipy.io.savemat(small, {"gt": np.zeros((10, 10), dtype=np.uint8)})
    with pytest.raises(
        InputError, match=r"small_gt\.mat: the ground truth is 10×10, but the cube .* is 40×44"
    ):
        read_hyperspectral(cube, small)
    frac = tmp_path / "frac_gt.mat"
    scipy.io.savemat(frac, {"gt": np.full((40, 44), 0.5)})
    with pytest.raises(InputError, match=r"frac_gt\.mat: the ground truth must hold integer class codes"):
        read_hyperspectral(cube, frac)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"MATLAB 7.3 MAT-file" + bytes(200))
    with pytest.raises(InputError, match=r"junk\.mat"):
        read_hyperspectral(junk, gt)


def test_datamodule_patches_never_share_pixels(tmp_path: Path) -> None:
    folder = _indian_pines_like(tmp_path / "ip")
    before = snapshot(folder)
    dm = HyperspectralDataModule(
        str(folder / "Indian_pines_corrected.mat"), str(folder / "Indian_pines_gt.mat"), patch_size=5,
        block_grid=(2, 2), val_blocks=[1], test_blocks=[2], batch_size=16,
    )  # fmt: skip
    assert (dm.in_channels, dm.num_classes) == (12, 4)
    dm.setup(None)
    footprints = {}
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        footprints[split] = {
            (r + dr, c + dc)
            for r, c in zip(ds.rows, ds.cols, strict=True)  # type: ignore[attr-defined]
            for dr in range(-2, 3)
            for dc in range(-2, 3)
        }
        assert len(ds) > 20  # type: ignore[arg-type]
    for a, b in itertools.combinations(footprints.values(), 2):
        assert not a & b
    item = dm.dataset("train")[0]
    r, c = (int(x) for x in str(item["id"]).split("_"))
    assert item["image"].shape == (12, 5, 5)
    assert int(item["label"]) == dm.scene.gt[r, c] - 1
    np.testing.assert_array_equal(item["image"][:, 2, 2].numpy(), dm.scene.cube[:, r, c])
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert not torch.isnan(batch["image"]).any() and batch["label"].max() < 4
    assert len(dm.dataset("predict")) == len(dm.dataset("test"))  # type: ignore[arg-type]
    assert snapshot(folder) == before


def test_datamodule_labels_outside_classes(tmp_path: Path) -> None:
    folder = _indian_pines_like(tmp_path / "ip", classes=4)
    with pytest.raises(
        InputError, match=r"Indian_pines_gt\.mat: class code 4 is outside the 3 configured classes"
    ):
        HyperspectralDataModule(
            str(folder / "Indian_pines_corrected.mat"), str(folder / "Indian_pines_gt.mat"),
            class_names=["a", "b", "c"],
        )  # fmt: skip
