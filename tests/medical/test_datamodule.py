"""MedicalDataModule: batch contracts, splits, caching, prediction inputs, untouched input folders."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch
from monai.transforms import Invertd

from domains.medical.layouts import CaseFolderDataModule, DecathlonDataModule
from domains.medical.splits import split_cases
from domains.medical.transforms import ImageReadError
from tests.medical.conftest import BRATS_LABEL, BRATS_MODALITIES, FAST, tree_state, write_nifti


def _first(loader) -> dict:
    return next(iter(loader))


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def test_attributes_known_after_init(hippocampus: Path) -> None:
    dm = DecathlonDataModule(root=str(hippocampus), **FAST)
    assert dm.link_values() == {
        "in_channels": 1,
        "num_classes": 3,
        "spatial_dims": 3,
        "patch_size": [16, 16, 16],
        "class_names": ["background", "Anterior", "Posterior"],
    }
    assert dm.cases is None  # nothing discovered yet
    assert DecathlonDataModule(root=str(hippocampus), spatial_dims=2).patch_size == [64, 64]


def test_resolved_arguments_stay_out_of_the_hyperparameters(hippocampus: Path) -> None:
    """The task holds the resolved values under the same names; Lightning refuses two different ones."""
    dm = DecathlonDataModule(root=str(hippocampus), num_classes=3, class_names=None, **FAST)
    assert not {"num_classes", "class_names", "patch_size"} & set(dm.hparams)
    assert dm.hparams["root"] == str(hippocampus) and dm.hparams["samples_per_volume"] == 2


def test_hippocampus_3d_batches(hippocampus: Path) -> None:
    dm = DecathlonDataModule(root=str(hippocampus), **FAST)
    dm.setup("fit")
    train = _first(dm.train_dataloader())
    assert train["image"].shape == (4, 1, 16, 16, 16) and train["image"].dtype == torch.float32
    assert train["label"].shape == (4, 1, 16, 16, 16) and train["label"].dtype == torch.float32
    assert set(train["label"].unique().tolist()) <= {0.0, 1.0, 2.0}
    val = _first(dm.val_dataloader())
    assert {"image", "label", "case", "voxel_ml"} <= set(val)
    assert (
        isinstance(val["image"], MetaTensor) and val["image"].ndim == 5 and val["image"].shape[:2] == (1, 1)
    )
    assert val["label"].shape == (1, 1, *val["image"].shape[2:])
    assert val["case"] == [dm.splits["val"][0]["case"]]
    assert val["voxel_ml"].dtype == torch.float64 and val["voxel_ml"].tolist() == pytest.approx([0.001])


def test_hippocampus_2d_batches(hippocampus: Path) -> None:
    dm = DecathlonDataModule(root=str(hippocampus), spatial_dims=2, patch_size=[16, 16], samples_per_volume=3)
    dm.setup("fit")
    train = _first(dm.train_dataloader())
    assert train["image"].shape == (6, 1, 16, 16) and train["label"].shape == (6, 1, 16, 16)
    assert _first(dm.val_dataloader())["image"].ndim == 5  # evaluation stays on 3-D volumes


def test_label_map_options_and_num_classes(hippocampus: Path) -> None:
    binary = DecathlonDataModule(root=str(hippocampus), label_map="binary", **FAST)
    assert binary.num_classes == 2 and binary.class_names == ["background", "foreground"]
    merged = DecathlonDataModule(root=str(hippocampus), label_map={1: 1, 2: 1}, **FAST)
    assert merged.class_names == ["background", "Anterior+Posterior"]
    merged.setup("validate")
    assert set(_first(merged.val_dataloader())["label"].unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="num_classes=4 disagrees"):
        DecathlonDataModule(root=str(hippocampus), num_classes=4)
    with pytest.raises(ValueError, match="patch_size must hold 3"):
        DecathlonDataModule(root=str(hippocampus), patch_size=[16, 16])


def test_undeclared_label_value_is_named(make_msd) -> None:
    root = make_msd(label_values=(1, 3))
    description = json.loads((root / "dataset.json").read_text())
    description["labels"] = {"0": "background", "1": "a"}  # 3 is undeclared → num_classes 2
    (root / "dataset.json").write_text(json.dumps(description))
    dm = DecathlonDataModule(root=str(root), val_fraction=0.2, **FAST)
    dm.setup("validate")
    with pytest.raises(RuntimeError) as err:
        _first(dm.val_dataloader())
    cause = _root_cause(err.value)
    assert isinstance(cause, ValueError) and "labelsTr/case_" in str(cause) and "[3]" in str(cause)


def test_ratio_split_sizes_and_determinism(hippocampus: Path) -> None:
    a = DecathlonDataModule(root=str(hippocampus), seed=3, **FAST)
    b = DecathlonDataModule(root=str(hippocampus), seed=3, **FAST)
    a.setup("fit")
    b.setup("fit")
    ids = {name: [c["case"] for c in cases] for name, cases in a.splits.items()}
    assert {k: len(v) for k, v in ids.items()} == {"train": 8, "val": 2, "test": 2}
    assert ids == {name: [c["case"] for c in cases] for name, cases in b.splits.items()}
    assert len(set(ids["train"]) | set(ids["val"]) | set(ids["test"])) == 12
    other = split_cases(sorted(ids["train"] + ids["val"] + ids["test"]), "ratio", seed=4)
    assert other != ids


def test_kfold_disjoint_and_covering() -> None:
    ids = [f"case{i:02d}" for i in range(12)]
    held, folds = [], [split_cases(ids, "kfold", num_folds=5, fold=k, seed=0) for k in range(5)]
    for fold, parts in enumerate(folds):
        assert parts["val"] == folds[(fold + 1) % 5]["test"]  # the next fold validates
        assert not set(parts["val"]) & set(parts["test"]) and not set(parts["test"]) & set(parts["train"])
        assert sorted(parts["val"] + parts["test"] + parts["train"]) == ids
        held += parts["test"]
    assert sorted(held) == ids  # every case is tested exactly once
    with pytest.raises(ValueError, match="fold"):
        split_cases(ids, "kfold", num_folds=5, fold=5)


def test_fixed_split(hippocampus: Path) -> None:
    parts = split_cases(["a", "b", "c", "d"], "fixed", val_cases=["b"], test_cases=["d"])
    assert parts == {"train": ["a", "c"], "val": ["b"], "test": ["d"]}
    with pytest.raises(ValueError, match=r"unknown case ids \['zzz'\]"):
        split_cases(["a", "b"], "fixed", val_cases=["zzz"])
    with pytest.raises(ValueError, match="no training case"):
        split_cases(["a"], "fixed", val_cases=["a"])
    dm = DecathlonDataModule(root=str(hippocampus), split="fixed", val_cases=["hippocampus_001"], **FAST)
    dm.setup("fit")
    assert [c["case"] for c in dm.splits["val"]] == ["hippocampus_001"] and len(dm.splits["train"]) == 11


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cache_modes_match_no_cache(hippocampus: Path, tmp_path: Path, cache: str) -> None:
    before = tree_state(hippocampus)
    plain = DecathlonDataModule(root=str(hippocampus), **FAST)
    cached = DecathlonDataModule(
        root=str(hippocampus), cache=cache, cache_dir=str(tmp_path / "cache"), **FAST
    )
    for dm in (plain, cached):
        dm.setup("validate")
    a, b = _first(plain.val_dataloader()), _first(cached.val_dataloader())
    assert a["case"] == b["case"] and torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
    cached.setup("fit")
    assert _first(cached.train_dataloader())["image"].shape == (4, 1, 16, 16, 16)
    if cache == "disk":
        assert list((tmp_path / "cache").rglob("*.pt"))  # cache files went to cache_dir only
    assert tree_state(hippocampus) == before


def test_cache_dir_inside_input_folder_is_refused(make_msd) -> None:
    root = make_msd()
    dm = DecathlonDataModule(root=str(root), cache="disk", cache_dir=str(root / "cache"), **FAST)
    with pytest.raises(ValueError, match="inside the input folder"):
        dm.setup("fit")
    assert not (root / "cache").exists()


def test_predict_batches_invert_to_original_space(hippocampus: Path) -> None:
    before = tree_state(hippocampus)
    dm = DecathlonDataModule(root=str(hippocampus), pixdim=[1.5, 1.5, 1.5], **FAST)
    dm.setup("predict")
    batch = _first(dm.predict_dataloader())
    assert set(batch) == {"image", "case"} and batch["case"] == [dm.splits["test"][0]["case"]]
    assert batch["image"].applied_operations  # orientation, spacing, crop recorded for Invertd
    item = decollate_batch({"pred": (batch["image"] > 0).float(), "image": batch["image"]})[0]
    inverted = Invertd("pred", transform=dm.predict_transform, orig_keys="image", nearest_interp=True)(item)
    original = dm.splits["test"][0]["image"][0]
    import nibabel as nib

    assert tuple(inverted["pred"].shape[1:]) == nib.load(original).shape
    assert Path(original) in dm.input_paths() and hippocampus in dm.input_paths()
    assert tree_state(hippocampus) == before


def test_predict_root_and_predict_files(hippocampus: Path, tmp_path: Path) -> None:
    images = tmp_path / "new_scans"
    source = hippocampus / "imagesTr" / "hippocampus_003.nii.gz"
    (images).mkdir()
    (images / "scan_a.nii.gz").write_bytes(source.read_bytes())
    dm = DecathlonDataModule(root=str(hippocampus), predict_root=str(images), **FAST)
    dm.setup("predict")
    assert _first(dm.predict_dataloader())["case"] == ["scan_a"]
    assert images in dm.input_paths()
    files = DecathlonDataModule(
        root=str(hippocampus), predict_files=["imagesTr/hippocampus_020.nii.gz"], **FAST
    )
    files.setup("predict")
    assert _first(files.predict_dataloader())["case"] == ["hippocampus_020"]


def test_truncated_case_is_named(make_msd) -> None:
    root = make_msd()
    path = root / "imagesTr" / "case_000.nii.gz"
    path.write_bytes(path.read_bytes()[:400])
    dm = DecathlonDataModule(root=str(root), split="fixed", val_cases=["case_000"], **FAST)
    dm.setup("validate")  # headers are intact: the damage shows when the data is decoded
    with pytest.raises(RuntimeError) as err:
        _first(dm.val_dataloader())
    assert any(isinstance(e, ImageReadError) and str(path) in str(e) for e in _chain(err.value))


def _chain(err: BaseException) -> list[BaseException]:
    out = [err]
    while out[-1].__cause__ is not None:
        out.append(out[-1].__cause__)
    return out


def test_case_without_foreground_trains(make_msd, caplog: pytest.LogCaptureFixture) -> None:
    root = make_msd(num_cases=3)
    for path in (root / "labelsTr").glob("*.nii.gz"):
        write_nifti(path, np.zeros((20, 20, 12), np.uint8))
    dm = DecathlonDataModule(
        root=str(root),
        val_fraction=0,
        test_fraction=0,
        patch_size=[8, 8, 8],
        samples_per_volume=2,
        batch_size=3,
    )
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="domains.medical.transforms"):
        batch = _first(dm.train_dataloader())
    assert batch["image"].shape == (6, 1, 8, 8, 8)
    assert sum("no foreground voxel" in r.getMessage() for r in caplog.records) == 3
    with pytest.warns(UserWarning, match="no validation data"):
        assert dm.val_dataloader() == []


def test_case_folders_with_label_mapping(make_folders) -> None:
    root = make_folders()
    dm = CaseFolderDataModule(
        root=str(root),
        case_glob="*",
        modalities=["Flair*.nii.gz", "T1c*.nii.gz"],
        label="seg.nii.gz",
        label_map={1: 1, 4: 2},
        split="fixed",
        val_cases=["pat03"],
        patch_size=[8, 8, 8],
    )
    assert (dm.in_channels, dm.num_classes) == (2, 3)
    dm.setup("fit")
    assert _first(dm.train_dataloader())["image"].shape == (4, 2, 8, 8, 8)
    assert set(_first(dm.val_dataloader())["label"].unique().tolist()) == {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="num_classes cannot be derived"):
        CaseFolderDataModule(root=str(root), case_glob="*", modalities=["Flair*"], label="seg.nii.gz")


def test_brats_subset(brats: Path) -> None:
    before = tree_state(brats)
    dm = CaseFolderDataModule(
        root=str(brats),
        case_glob="*/*",
        modalities=BRATS_MODALITIES,
        label=BRATS_LABEL,
        label_map="binary",
        normalize="none",
        split="fixed",
        val_cases=["validation_brats_2013_pat0003_1"],
        test_cases=["validation_brats_2013_pat0004_1"],
        patch_size=[16, 16, 16],
        samples_per_volume=1,
        batch_size=1,
    )
    dm.setup("fit")
    train = _first(dm.train_dataloader())
    assert train["image"].shape == (1, 2, 16, 16, 16)
    val = _first(dm.val_dataloader())
    assert val["image"].shape[:2] == (1, 2) and max(val["image"].shape[2:]) < 240  # cropped to the head
    assert set(val["label"].unique().tolist()) == {0.0, 1.0}
    assert tree_state(brats) == before
