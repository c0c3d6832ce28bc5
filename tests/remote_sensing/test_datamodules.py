"""Datamodules: Statlog patches and Landsat scene tiles: splits, normalisation, checkpoints, bad input."""

import itertools
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from core.utils import InputError
from domains.remote_sensing.datamodules import (
    RasterSegmentationDataModule,
    SceneSegmentationDataModule,
    StatlogDataModule,
    UnlabelledSceneDataModule,
)
from domains.remote_sensing.landsat import decode_bqa
from domains.remote_sensing.normalization import BandStatistics
from domains.remote_sensing.scenes import downsample_mean
from tests.remote_sensing.conftest import FILL, PRE_CLOUD, snapshot, write_tif


def _statlog_file(path: Path, n: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.array([1, 2, 3, 4, 5, 7])[np.arange(n) % 6]
    rows = [" ".join(str(v) for v in [*rng.integers(0, 256, 36), label]) for label in labels]
    path.write_text("\n".join(rows) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- Statlog


def test_statlog_real_splits(shared_statlog: Path) -> None:
    dm = StatlogDataModule(str(shared_statlog), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert (dm.in_channels, dm.num_classes) == (4, 6)
    assert dm.class_names[0] == "red soil" and dm.class_names[-1] == "very damp grey soil"
    assert "held-out" in dm.test_source and dm.test_path is None
    dm.setup("fit")
    dm.setup("test")
    ids = {split: set(dm.dataset(split).ids) for split in ("train", "val", "test")}  # type: ignore[attr-defined]
    assert sum(len(v) for v in ids.values()) == 4435
    for a, b in itertools.combinations(ids.values(), 2):
        assert not a & b
    val_labels = dm.dataset("val").targets.numpy()  # type: ignore[attr-defined]
    assert np.bincount(val_labels).tolist() == [214, 96, 192, 83, 94, 208]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (64, 4, 3, 3) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and isinstance(batch["id"][0], str)


def test_statlog_test_file_and_normalisation(tmp_path: Path) -> None:
    train = _statlog_file(tmp_path / "sat.trn", 120, seed=0)
    _statlog_file(tmp_path / "sat.tst", 30, seed=1)
    dm = StatlogDataModule(str(train), batch_size=8)
    assert dm.test_path == tmp_path / "sat.tst" and dm.input_paths() == [train, tmp_path / "sat.tst"]
    dm.setup(None)
    assert len(dm.dataset("test")) == 30 and dm.dataset("test").ids[0] == "sat.tst:1"  # type: ignore[attr-defined]
    assert len(dm.dataset("train")) + len(dm.dataset("val")) == 120  # type: ignore[arg-type]
    # Statistics come from the training split only, and normalise it to mean 0 / std 1 per band.
    images = torch.cat([dm.normalize_batch(b)["image"] for b in dm.dataloader("train")])
    assert images.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (images.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    raw = dm.dataset("train").images  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        dm.statistics["image"].mean, raw.double().mean(dim=(0, 2, 3)).numpy(), rtol=1e-9
    )


def test_statlog_state_dict_restores_training_statistics(tmp_path: Path) -> None:
    a = StatlogDataModule(str(_statlog_file(tmp_path / "a.trn", 60, seed=0)))
    b = StatlogDataModule(str(_statlog_file(tmp_path / "b.trn", 60, seed=5)))
    a.fit_statistics()
    b.fit_statistics()
    assert not np.allclose(a.statistics["image"].mean, b.statistics["image"].mean)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.statistics["image"].mean, a.statistics["image"].mean)
    x = {"image": torch.rand(2, 4, 3, 3) * 255}
    torch.testing.assert_close(b.normalize_batch(dict(x))["image"], a.normalize_batch(dict(x))["image"])
    wrong = a.state_dict()
    wrong["statistics"]["image"]["names"] = ["red", "green", "nir1", "nir2"]
    with pytest.raises(InputError, match=r"statistics are for bands \['red', 'green', 'nir1', 'nir2'\]"):
        b.load_state_dict(wrong)


class _PixelModel(pl.LightningModule):
    """Logistic regression on the central pixel: enough to run Lightning's hooks end to end."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 6)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: dict, index: int) -> torch.Tensor:
        self.seen.append(batch["image"].detach())
        return nn.functional.cross_entropy(self.linear(batch["image"][:, :, 1, 1]), batch["label"])

    def test_step(self, batch: dict, index: int) -> None:
        self.seen.append(batch["image"].detach())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_statlog_checkpoint_carries_statistics_through_lightning(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    train_file = _statlog_file(tmp_path / "a" / "sat.trn", 60)
    dm = StatlogDataModule(str(train_file), batch_size=16)
    model = _PixelModel()
    options = {
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
    }
    trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, **options)
    trainer.fit(model, datamodule=dm)
    # The datamodule's on_after_batch_transfer normalised the training batches.
    assert torch.cat(model.seen).mean().abs() < 0.3
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["StatlogDataModule"]
    assert saved["statistics"]["image"]["names"] == ["green", "red", "nir1", "nir2"]
    # Another training file: testing from the checkpoint uses the checkpoint's statistics.
    (tmp_path / "b").mkdir()
    other = StatlogDataModule(str(_statlog_file(tmp_path / "b" / "sat.trn", 60, seed=9)), batch_size=16)
    tester = _PixelModel()
    pl.Trainer(**options).test(tester, datamodule=other, ckpt_path=ckpt)
    np.testing.assert_array_equal(other.statistics["image"].mean, dm.statistics["image"].mean)
    raw = other.dataset("test").images  # type: ignore[attr-defined]
    expected = dm.statistics["image"].normalize(raw)
    torch.testing.assert_close(torch.cat(tester.seen), expected)


# ---------------------------------------------------------------------------------------------- scenes


def _scene_dm(scene: Path, **kwargs: object) -> SceneSegmentationDataModule:
    options: dict = {
        "tile_size": 16,
        "block_grid": (2, 2),
        "val_blocks": [1],
        "test_blocks": [2],
        "buffer": 2,
        "train_tiles": 24,
        "batch_size": 4,
    }
    options.update(kwargs)
    return SceneSegmentationDataModule(str(scene), **options)


def test_scene_batches_with_pan_and_context(landsat_scene: Path) -> None:
    before = snapshot(landsat_scene)
    dm = _scene_dm(landsat_scene, pan=True, context_scale=2)
    assert (dm.in_channels, dm.num_classes, dm.class_names) == (10, 2, ["clear", "cloud"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 10, 16, 16) and batch["mask"].shape == (4, 16, 16)
    assert batch["pan"].shape == (4, 1, 32, 32) and batch["context"].shape == (4, 10, 16, 16)
    assert batch["mask"].dtype == torch.int64
    # The mask is the decoded BQA of the tile's window.
    tile = dm.dataset("train").tiles[0]  # type: ignore[attr-defined]
    item = dm.dataset("train")[0]
    qa_path = next(landsat_scene.glob("*_BQA.TIF"))
    with rasterio.open(qa_path) as ds:
        qa = ds.read(1)[tile.row : tile.row + 16, tile.col : tile.col + 16]
    np.testing.assert_array_equal(item["mask"].numpy(), decode_bqa(qa, "pre_collection"))
    with rasterio.open(next(landsat_scene.glob("*_B4.TIF"))) as ds:
        np.testing.assert_array_equal(
            item["image"][3].numpy(), ds.read(1)[tile.row : tile.row + 16, tile.col : tile.col + 16]
        )
    # DataLoader workers reopen the files in their own process.
    dm.num_workers = 1
    worker_batch = next(iter(dm.dataloader("val")))
    assert worker_batch["image"].shape == (4, 10, 16, 16)
    dm.num_workers = 0
    torch.testing.assert_close(next(iter(dm.dataloader("val")))["image"], worker_batch["image"])
    normalised = dm.on_after_batch_transfer(batch, 0)
    assert not any(torch.isnan(normalised[k]).any() for k in ("image", "pan", "context"))
    assert set(dm.statistics) == {"image", "pan"} and dm.statistics["pan"].names == ("B8",)
    assert snapshot(landsat_scene) == before


def test_scene_splits_never_share_pixels(landsat_scene: Path) -> None:
    dm = _scene_dm(landsat_scene, context_scale=4)
    dm.setup(None)
    pixels = {}
    for split in ("train", "val", "test"):
        tiles = dm.dataset(split).tiles  # type: ignore[attr-defined]
        pixels[split] = {
            (r, c) for t in tiles for r in range(t.row, t.row + t.size) for c in range(t.col, t.col + t.size)
        }
        assert pixels[split]
    for a, b in itertools.combinations(pixels.values(), 2):
        assert not a & b
    # A context tile never shows pixels of another block: those are blanked (NaN before normalisation).
    tiles = dm.dataset("val").tiles  # type: ignore[attr-defined]
    for index, tile in enumerate(tiles):
        context = dm.dataset("val")[index]["context"]
        block = tile.block
        assert not torch.isnan(context).all()
        if block.col > 0 and tile.col - 24 < block.col:
            assert torch.isnan(context[:, :, 0]).all()
    # Evaluation scores every labelled pixel of the validation block exactly once.
    qa_path = next(landsat_scene.glob("*_BQA.TIF"))
    with rasterio.open(qa_path) as ds:
        full_mask = decode_bqa(ds.read(1), "pre_collection")
    block = dm.blocks["val"][0]
    truth = full_mask[block.row : block.row + block.height, block.col : block.col + block.width]
    masks = torch.stack([item["mask"] for item in dm.dataset("val")])  # type: ignore[attr-defined]
    assert int((masks == 1).sum()) == int((truth == 1).sum())
    assert int((masks >= 0).sum()) == int((truth >= 0).sum())
    assert dm.class_pixels["val"] == [int((truth == 0).sum()), int((truth == 1).sum())]
    # Statistics come from the training blocks only.
    stats = dm.fit_statistics()["image"]
    with rasterio.open(next(landsat_scene.glob("*_B1.TIF"))) as ds:
        b1 = ds.read(1).astype(np.float64)
    train_pixels = np.concatenate(
        [b1[b.row : b.row + b.height, b.col : b.col + b.width].ravel() for b in dm.blocks["train"]]
    )
    assert stats.mean[0] == pytest.approx(train_pixels.mean(), rel=1e-9)
    assert stats.std[0] == pytest.approx(train_pixels.std(), rel=1e-6)


def test_scene_nodata_tiles_skipped_and_counted(scene_writer) -> None:  # type: ignore[no-untyped-def]
    qa = np.full((96, 104), 20480, dtype=np.uint16)
    qa[:, 52:] = FILL  # the right half (blocks 1 and 3) is fill
    qa[60:70, 10:30] = PRE_CLOUD
    qa[5:20, 60:75] = 20480  # one patch of data in block 1
    scene = scene_writer("fill", qa=qa)
    dm = _scene_dm(scene, val_blocks=[1], test_blocks=[2])
    with pytest.warns(UserWarning, match=r"skipped \d+ nodata-only val tiles"):
        dm.setup("fit")
    assert dm.dropped["val"] > 0 and len(dm.dataset("val")) > 0  # type: ignore[arg-type]
    assert all(dm.dataset("val")[i]["mask"].ge(0).any() for i in range(len(dm.dataset("val"))))  # type: ignore[arg-type]
    qa[5:20, 60:75] = FILL
    scene = scene_writer("allfill", qa=qa)
    with pytest.raises(
        InputError, match=r"allfill/LC08_TEST_BQA\.TIF: every tile of the val split is nodata"
    ):
        _scene_dm(scene, val_blocks=[1], test_blocks=[2]).setup("fit")


def test_scene_bad_inputs_name_the_files(scene_writer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = scene_writer("nocrs")
    write_tif(scene / "LC08_TEST_B3.TIF", np.ones((96, 104), dtype=np.uint16), crs=None)
    with pytest.raises(InputError, match=r"LC08_TEST_B3\.TIF: the raster has no CRS"):
        _scene_dm(scene)
    scene = scene_writer("sizes")
    write_tif(scene / "LC08_TEST_B5.TIF", np.ones((96, 100), dtype=np.uint16))
    with pytest.raises(InputError, match=r"LC08_TEST_B5\.TIF is 96×100 .* but .*LC08_TEST_B1\.TIF is 96×104"):
        _scene_dm(scene)
    scene = scene_writer("qa")
    write_tif(scene / "LC08_TEST_BQA.TIF", np.full((90, 104), 20480, dtype=np.uint16))
    with pytest.raises(InputError, match=r"LC08_TEST_BQA\.TIF is 90×104"):
        _scene_dm(scene)
    # A checkpoint trained on other bands (count or order) is refused.
    good = _scene_dm(scene_writer("good"))
    good.fit_statistics()
    reordered = _scene_dm(
        scene_writer("good2"), bands=["B2", "B1", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"]
    )
    with pytest.raises(
        InputError, match=r"statistics are for bands \['B1', 'B2'.* data has bands \['B2', 'B1'"
    ):
        reordered.load_state_dict(good.state_dict())


def test_scene_predict_items_and_predict_scene(landsat_scene: Path, tmp_path: Path) -> None:
    dm = _scene_dm(landsat_scene)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch == {"scene": [str(landsat_scene)]}
    before = snapshot(landsat_scene)
    weight = torch.randn(2, 10)

    def predict_fn(b: dict) -> torch.Tensor:
        return torch.einsum("kc,bchw->bkhw", weight, b["image"])

    out = dm.predict_scene(predict_fn, batch["scene"][0], tmp_path / "pred")
    with rasterio.open(out) as ds, rasterio.open(next(landsat_scene.glob("*_B1.TIF"))) as ref:
        assert ds.crs == ref.crs and ds.transform == ref.transform and ds.shape == ref.shape
        mask = ds.read(1)
    assert set(np.unique(mask).tolist()) <= {0, 1}
    with pytest.raises(InputError, match="would write among the input data"):
        dm.predict_scene(predict_fn, batch["scene"][0], landsat_scene)
    assert snapshot(landsat_scene) == before


def test_shared_scene_datamodule(shared_scene: Path) -> None:
    dm = SceneSegmentationDataModule(
        str(shared_scene),
        tile_size=64,
        val_blocks=[5, 10, 3],
        test_blocks=[8, 6, 15],
        train_tiles=32,
        pan=True,
    )
    assert dm.qa_format == "pre_collection" and dm.num_classes == 2
    dm.setup("fit")
    dm.setup("test")
    for split in ("val", "test"):
        masks = torch.stack([item["mask"] for item in dm.dataset(split)])  # type: ignore[attr-defined]
        assert (masks == 1).float().mean() > 0.02
    item = dm.dataset("train")[0]
    assert item["image"].shape == (10, 64, 64) and item["pan"].shape == (1, 128, 128)


def test_statistics_state_roundtrip() -> None:
    stats = BandStatistics(("a", "b"), np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5, 6]))
    again = BandStatistics.from_state(stats.state())
    assert (
        again.names == stats.names and (again.mean == stats.mean).all() and (again.count == stats.count).all()
    )
    x = torch.tensor([[[1.0, float("nan")], [4.0, 7.0]]]).view(1, 2, 2, 1)
    y = stats.normalize(x)
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 1, 0] == 0 and y[0, 1, 1, 0] == pytest.approx(1.25)
    with pytest.raises(InputError, match="does not have the 2 bands"):
        stats.normalize(torch.zeros(1, 3, 2, 2))


# ---------------------------------------------------------------------------------------------- unlabelled


def test_unlabelled_sentinel2_folder(tmp_path: Path) -> None:
    folder = tmp_path / "s2"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for band, res in (("B02", 10.0), ("B03", 10.0), ("B05", 20.0), ("B09", 60.0)):
        size = int(960 // res)
        values = rng.integers(100, 5000, (size, size)).astype(np.uint16)
        if band == "B02":
            values[:, : size // 2] = 0  # left half is nodata in this band only
        write_tif(folder / f"s2_{band}.jp2", values, res=res, nodata=0)
    before = snapshot(folder)
    dm = UnlabelledSceneDataModule(
        str(folder), bands=["B02", "B03", "B05", "B09"], resolution=20.0, tile_size=8,
        block_grid=(2, 2), val_blocks=[3], buffer=1, train_tiles=16, batch_size=4,
    )  # fmt: skip
    assert dm.in_channels == 4 and (dm.image.height, dm.image.width) == (48, 48)
    dm.setup(None)
    assert dm.datasets["test"] is None and dm.datasets["predict"] is None
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(batch) == {"image"} and batch["image"].shape == (4, 4, 8, 8)
    assert not torch.isnan(batch["image"]).any()
    stats = dm.statistics["image"]
    # B02's nodata half is left out of its statistics; the other bands count every training pixel.
    assert stats.count[0] < stats.count[1] and stats.count[1] == stats.count[2] == stats.count[3]
    train = {(t.row, t.col) for t in dm.dataset("train").tiles}  # type: ignore[attr-defined]
    val_block = dm.blocks["val"][0]
    assert all(
        not (val_block.row <= r < val_block.row + val_block.height) or c + 8 <= val_block.col
        for r, c in train
    )
    assert snapshot(folder) == before


def test_unlabelled_pan_and_context_tiles(tmp_path: Path) -> None:
    folder = tmp_path / "s2"
    folder.mkdir()
    rng = np.random.default_rng(1)
    b03 = rng.integers(100, 5000, (96, 96)).astype(np.uint16)  # 10 m
    write_tif(folder / "s2_B03.jp2", b03, res=10.0)
    write_tif(folder / "s2_B05.jp2", rng.integers(100, 5000, (48, 48)).astype(np.uint16), res=20.0)
    before = snapshot(folder)
    dm = UnlabelledSceneDataModule(
        str(folder), bands=["B05"], tile_size=8, block_grid=(2, 2), val_blocks=[3], buffer=1,
        pan_band="B03", pan_scale=2, context_scale=2, train_tiles=4, batch_size=4, normalize=False,
    )  # fmt: skip
    dm.setup("fit")
    item = dm.dataset("train")[0]
    tile = dm.dataset("train").tiles[0]  # type: ignore[attr-defined]
    assert item["image"].shape == item["context"].shape == (1, 8, 8) and item["pan"].shape == (1, 16, 16)
    # The 20 m grid is B05's own; the pan tile is B03 over the same ground at its native 10 m.
    r, c = 2 * tile.row, 2 * tile.col
    assert np.array_equal(item["pan"][0].numpy(), b03[r : r + 16, c : c + 16].astype(np.float32))
    stats = UnlabelledSceneDataModule(
        str(folder), bands=["B05"], tile_size=8, block_grid=(2, 2), val_blocks=[3], buffer=1, pan_band="B03"
    ).compute_statistics()
    assert set(stats) == {"image", "pan"} and stats["pan"].count[0] > 0
    with pytest.raises(InputError, match="B8"):
        UnlabelledSceneDataModule(str(folder), bands=["B05"], pan_band="B8")
    assert snapshot(folder) == before


def test_unlabelled_stacked_file_and_nodata_split(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(1, 100, (3, 40, 40)).astype(np.uint16)
    data[:, 20:, 20:] = 0  # block 3 is nodata
    path = write_tif(tmp_path / "stack.tif", data, nodata=0, descriptions=["red", "green", "blue"])
    dm = UnlabelledSceneDataModule(
        str(path),
        bands=["blue", "red"],
        tile_size=8,
        block_grid=(2, 2),
        val_blocks=[0],
        buffer=1,
        train_tiles=8,
    )
    assert dm.band_names == ("blue", "red")
    dm.setup("fit")
    assert dm.dataset("train")[0]["image"].shape == (2, 8, 8)
    bad = UnlabelledSceneDataModule(
        str(path), tile_size=8, block_grid=(2, 2), val_blocks=[3], buffer=1, train_tiles=8
    )
    with pytest.raises(InputError, match=r"stack\.tif: every tile of the val split is nodata"):
        bad.setup("fit")


# ---------------------------------------------------------------------------------------------- embedded data


def test_embedded_crops_load(repo: Path) -> None:
    embedded = repo / "data" / "remote_sensing" / "embedded"
    statlog = StatlogDataModule(str(embedded / "statlog" / "sat_subset.trn"))
    assert statlog.num_classes == 6
    statlog.setup(None)
    rows = len((embedded / "statlog" / "sat_subset.trn").read_text().splitlines())
    assert sum(len(statlog.dataset(s)) for s in ("train", "val", "test")) == rows  # type: ignore[arg-type]
    scene = SceneSegmentationDataModule(
        str(embedded / "landsat8_crop"), tile_size=32, block_grid=(2, 2), val_blocks=[1], test_blocks=[2],
        buffer=2, train_tiles=16, pan=True, context_scale=2,
    )  # fmt: skip
    assert (scene.in_channels, scene.num_classes) == (10, 2)
    scene.setup(None)
    for split in ("val", "test"):
        assert any((item["mask"] == 1).any() for item in scene.dataset(split))  # type: ignore[attr-defined]
    assert scene.dataset("train")[0]["pan"].shape == (1, 64, 64)
    s2 = UnlabelledSceneDataModule(
        str(embedded / "sentinel2_crop"), tile_size=32, block_grid=(2, 2), val_blocks=[3]
    )
    assert s2.in_channels == 13 and s2.image.grid.res == (10.0, 10.0)


# ---------------------------------------------------------------------------------------------- label rasters


def test_raster_segmentation_stacked_image_and_label_raster(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (4, 64, 72)).astype(np.uint16)
    labels = np.full((64, 72), 11, dtype=np.uint8)
    labels[:, 36:] = 42
    labels[:5] = 255  # unlabelled rows
    inputs = tmp_path / "in"
    inputs.mkdir()
    img = write_tif(inputs / "scene.tif", image, descriptions=["blue", "green", "red", "nir"])
    lab = write_tif(inputs / "landcover.tif", labels, nodata=255)
    before = snapshot(inputs)
    dm = RasterSegmentationDataModule(
        str(img), str(lab), class_names=["crop", "forest"], class_values=[11, 42], bands=["nir", "red"],
        tile_size=16, block_grid=(2, 2), val_blocks=[1], test_blocks=[2], buffer=1, train_tiles=8,
        batch_size=4, context_scale=2,
    )  # fmt: skip
    assert (dm.in_channels, dm.num_classes, dm.band_names) == (2, 2, ("nir", "red"))
    dm.setup(None)
    tile = dm.dataset("val").tiles[0]  # type: ignore[attr-defined]
    item = dm.dataset("val")[0]
    expected = np.where(labels == 255, -1, np.where(labels == 11, 0, 1))[
        tile.row : tile.row + 16, tile.col : tile.col + 16
    ]
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    np.testing.assert_array_equal(
        item["image"][0].numpy(), image[3, tile.row : tile.row + 16, tile.col : tile.col + 16]
    )
    assert item["context"].shape == (2, 16, 16)
    out = dm.predict_scene(lambda b: torch.zeros(b["image"].shape[0], 2, 16, 16), str(img), tmp_path / "pred")
    assert out.name == "scene_mask.tif"
    with rasterio.open(out) as ds:
        assert ds.shape == (64, 72) and str(ds.crs) == "EPSG:32616"
    assert snapshot(inputs) == before


def test_raster_segmentation_bad_inputs(tmp_path: Path) -> None:
    image = write_tif(tmp_path / "img.tif", np.ones((3, 32, 32), dtype=np.uint16))
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[30, 30] = 7
    lab = write_tif(tmp_path / "lab.tif", labels)
    with pytest.raises(
        InputError, match=r"lab\.tif: label codes \[7\.0\] .* not among the classes' codes \[0\.0, 1\.0\]"
    ):
        RasterSegmentationDataModule(str(image), str(lab), class_names=["a", "b"], band_names=["r", "g", "b"])
    small = write_tif(tmp_path / "small.tif", np.zeros((30, 32), dtype=np.uint8))
    with pytest.raises(InputError, match=r"small\.tif is 30×32 .* but the image .*img\.tif is 32×32"):
        RasterSegmentationDataModule(str(image), str(small), class_names=["a", "b"])
    with pytest.raises(InputError, match=r"img\.tif: the configuration names 2 bands"):
        RasterSegmentationDataModule(str(image), str(lab), class_names=["a", "b"], band_names=["r", "g"])
    nocrs = write_tif(tmp_path / "nocrs.tif", np.ones((3, 32, 32), dtype=np.uint16), crs=None)
    with pytest.raises(InputError, match=r"nocrs\.tif: the raster has no CRS"):
        RasterSegmentationDataModule(str(nocrs), str(lab), class_names=["a", "b"])


def test_context_tile_is_the_averaged_wider_window(landsat_scene: Path) -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    x[0, 0, 0] = np.nan
    np.testing.assert_allclose(downsample_mean(x, 2)[0], [[(1 + 4 + 5) / 3, 4.5], [10.5, 12.5]])
    assert np.isnan(downsample_mean(np.full((1, 2, 2), np.nan, dtype=np.float32), 2)).all()
    dm = _scene_dm(landsat_scene, context_scale=2, block_grid=(1, 1), val_blocks=[], test_blocks=[])
    reader = dm.reader()
    item = reader.read(40, 40, 16)
    with rasterio.open(next(landsat_scene.glob("*_B1.TIF"))) as ds:
        wide = ds.read(1)[32:64, 32:64].astype(np.float64)
    np.testing.assert_allclose(
        item["context"][0].numpy(), wide.reshape(16, 2, 16, 2).mean(axis=(1, 3)), rtol=1e-6
    )
