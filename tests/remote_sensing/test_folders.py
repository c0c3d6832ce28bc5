"""Class folders of multi-band GeoTIFF (EuroSAT MS) and RGB PNG/JPEG (NWPU-RESISC45, UC Merced) images."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.datamodules import ClassFolderDataModule
from domains.remote_sensing.folders import list_class_folders
from tests.remote_sensing.conftest import snapshot, write_tif

EUROSAT_CLASSES = ("AnnualCrop", "Forest", "River")


def _eurosat_ms(root: Path, per_class: int = 10, bands: int = 13, size: int = 16) -> Path:
    """EuroSAT MS layout: ``<Class>/<Class>_<n>.tif``, 13-band uint16 GeoTIFFs."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(EUROSAT_CLASSES):
        (root / name).mkdir(parents=True)
        for n in range(1, per_class + 1):
            data = (1000 * (k + 1) + rng.integers(0, 500, (bands, size, size))).astype(np.uint16)
            write_tif(root / name / f"{name}_{n}.tif", data)
    return root


def _rgb(root: Path, suffix: str, per_class: int = 6, size: int = 24) -> Path:
    rng = np.random.default_rng(1)
    for name in ("airplane", "beach"):
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{n:03d}{suffix}")
    return root


def test_eurosat_geotiff_folders(tmp_path: Path) -> None:
    root = _eurosat_ms(tmp_path / "EuroSAT")
    before = snapshot(root)
    dm = ClassFolderDataModule(str(root), bands=[4, 3, 2], band_names=["B04", "B03", "B02"], batch_size=4)
    assert (dm.in_channels, dm.num_classes, dm.class_names) == (3, 3, list(EUROSAT_CLASSES))
    dm.setup(None)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [18, 6, 6]  # type: ignore[arg-type]
    item = dm.dataset("train")[0]
    raw = dm.dataset("train").files[0]  # type: ignore[attr-defined]
    assert item["image"].shape == (3, 16, 16) and item["id"] == str(raw.relative_to(root))
    assert item["id"].startswith("AnnualCrop/AnnualCrop_")
    with rasterio.open(raw) as ds:
        np.testing.assert_array_equal(item["image"].numpy(), ds.read([4, 3, 2]).astype(np.float32))
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].dtype == torch.int64
    assert dm.statistics["image"].names == ("B04", "B03", "B02")
    assert snapshot(root) == before


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_rgb_folders(tmp_path: Path, suffix: str) -> None:
    root = _rgb(tmp_path / "NWPU", suffix)
    dm = ClassFolderDataModule(
        str(root), band_names=["red", "green", "blue"], val_fraction=0.2, test_fraction=0.2
    )
    dm.setup("fit")
    assert dm.in_channels == 3 and dm.dataset("train")[0]["image"].shape == (3, 24, 24)
    if suffix == ".png":
        pixels = np.asarray(Image.open(dm.dataset("train").files[0]))  # type: ignore[attr-defined]
        np.testing.assert_array_equal(dm.dataset("train")[0]["image"].numpy(), pixels.transpose(2, 0, 1))


def test_bad_folders_name_the_file(tmp_path: Path) -> None:
    root = _rgb(tmp_path / "UCM", ".png")
    # A differently sized image (UC Merced has some): an error unless a resize is configured.
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(root / "beach" / "beach_100.png")
    dm = ClassFolderDataModule(str(root), val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    dataset = dm.dataset("train")
    index = dataset.files.index(root / "beach" / "beach_100.png")  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"beach_100\.png: is 20×24 pixels, the first image 24×24"):
        dataset[index]
    resized = ClassFolderDataModule(str(root), image_size=32, val_fraction=0.0, test_fraction=0.0)
    resized.setup("fit")
    assert resized.dataset("train")[index]["image"].shape == (3, 32, 32)
    # A different band count (an RGBA PNG among RGB ones).
    Image.fromarray(np.zeros((24, 24, 4), dtype=np.uint8)).save(root / "beach" / "beach_101.png")
    dm = ClassFolderDataModule(str(root), val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    index = dm.dataset("train").files.index(root / "beach" / "beach_101.png")  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"beach_101\.png: has 4 bands, the collection .* 3"):
        dm.dataset("train")[index]
    with pytest.raises(InputError, match=r"has 3 bands .* the configuration names 4"):
        ClassFolderDataModule(str(root), band_names=["r", "g", "b", "nir"])
    with pytest.raises(
        InputError, match=r"airplane_000\.png: has 3 bands, the configuration reads bands \[4\]"
    ):
        ClassFolderDataModule(str(root), bands=[4])
    (root / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no images"):
        list_class_folders(root)
    with pytest.raises(InputFileNotFoundError, match=r"missing: class folder not found"):
        list_class_folders(root, ["airplane", "missing"])
    bad = root / "airplane" / "airplane_999.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    dm = ClassFolderDataModule(str(root), classes=["airplane", "beach"], val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    index = dm.dataset("train").files.index(bad)  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"airplane_999\.png"):
        dm.dataset("train")[index]
