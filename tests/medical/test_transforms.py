"""MONAI pipelines and custom transforms: label maps, corrupt files, empty foreground, orientation/spacing."""

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from core.utils import InputError
from domains.medical.transforms import (
    ImageReadError,
    LoadImageFilesd,
    MapLabelsd,
    PipelineConfig,
    PosNegCropd,
    above_minimum,
    build_pipeline,
    voxel_volume_ml,
)
from tests.medical.conftest import blob_volume, write_nifti


def _label(values: np.ndarray, name: str = "/data/seg.nii.gz") -> MetaTensor:
    return MetaTensor(torch.as_tensor(values, dtype=torch.float32)[None], meta={"filename_or_obj": name})


def _case(tmp_path: Path, image: np.ndarray, label: np.ndarray, affine: np.ndarray | None = None) -> dict:
    return {
        "case": "c0",
        "image": [str(write_nifti(tmp_path / "img.nii.gz", image, affine))],
        "label": str(write_nifti(tmp_path / "seg.nii.gz", label, affine)),
    }


def test_label_map_binary_dict_and_identity() -> None:
    raw = np.array([[[0, 1], [2, 4]]])
    binary = MapLabelsd("label", "binary", 2)({"label": _label(raw)})["label"]
    assert binary.flatten().tolist() == [0, 1, 1, 1]
    assert isinstance(binary, MetaTensor) and binary.meta["filename_or_obj"] == "/data/seg.nii.gz"
    multi = MapLabelsd("label", {1: 1, 2: 1, 4: 2}, 3)({"label": _label(raw)})["label"]
    assert multi.flatten().tolist() == [0, 1, 1, 2]
    same = MapLabelsd("label", None, 5)({"label": _label(raw)})["label"]
    assert same.flatten().tolist() == [0, 1, 2, 4]


def test_label_map_rejects_unexpected_values_naming_the_file() -> None:
    raw = np.array([[[0, 1], [3, 7]]])
    with pytest.raises(ValueError, match=r"/data/seg\.nii\.gz holds unexpected label values \[3, 7\]"):
        MapLabelsd("label", {1: 1}, 2)({"label": _label(raw)})
    with pytest.raises(ValueError, match=r"unexpected label values \[3, 7\].*num_classes=3"):
        MapLabelsd("label", None, 3)({"label": _label(raw)})
    with pytest.raises(ValueError, match="non-integer values"):
        MapLabelsd("label", None, 3)({"label": _label(np.array([[[0.5]]]))})


def test_truncated_file_is_named(hippocampus: Path, tmp_path: Path) -> None:
    source = hippocampus / "imagesTr" / "hippocampus_001.nii.gz"
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    good = tmp_path / "good.nii.gz"
    shutil.copy(source, good)
    loader = LoadImageFilesd("image")
    assert loader({"case": "x", "image": [str(good)]})["image"].shape == (35, 51, 35)
    with pytest.raises(ImageReadError) as err:
        loader({"case": "x", "image": [str(good), str(broken)]})
    assert str(broken) in str(err.value) and "case x" in str(err.value)


def test_nonfinite_and_all_zero_modalities_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image, label = blob_volume((12, 12, 10), seed=0)
    flair = str(write_nifti(tmp_path / "flair.nii.gz", image))
    seg = str(write_nifti(tmp_path / "seg.nii.gz", label))
    blank = str(write_nifti(tmp_path / "t1c.nii.gz", np.zeros_like(image)))
    poisoned = image.copy()
    poisoned[5, 5, 5], poisoned[6, 6, 6] = np.nan, -np.inf
    bad = str(write_nifti(tmp_path / "t2.nii.gz", poisoned))
    loader = LoadImageFilesd(["image", "label"])
    with pytest.raises(
        InputError, match=r"case c0: .*t2\.nii\.gz \(image\) holds 2 NaN or Inf voxels"
    ) as err:
        loader({"case": "c0", "image": [flair, bad], "label": seg})
    assert flair not in str(err.value)
    with caplog.at_level(logging.WARNING, logger="domains.medical.transforms"):
        loaded = loader({"case": "c0", "image": [flair, blank], "label": seg})
        loader({"case": "c0", "image": [flair, blank], "label": seg})
        loader({"case": "c1", "image": [flair], "label": seg})  # a scan: no warning
        loader({"case": "c2", "image": [blank], "label": str(write_nifti(tmp_path / "bg.nii.gz", 0 * label))})
    assert loaded["image"].shape == (2, 12, 12, 10)
    warnings = [r.getMessage() for r in caplog.records if "every voxel of" in r.getMessage()]
    foreground = int((label > 0).sum())
    assert warnings == [
        f"case c0: every voxel of {blank} is 0, but its label {seg} has {foreground} foreground voxels; "
        "the image is probably a broken export (the case still trains)"
    ]


def test_empty_foreground_falls_back_to_random_crops(caplog: pytest.LogCaptureFixture) -> None:
    crop = PosNegCropd(["image", "label"], "label", [4, 4, 4], pos=1, neg=1, num_samples=3)
    crop.set_random_state(0)
    item = {"case": "empty_case", "image": torch.rand(1, 8, 8, 8), "label": torch.zeros(1, 8, 8, 8)}
    with caplog.at_level(logging.WARNING, logger="domains.medical.transforms"):
        first = crop(item)
        crop(item)
    assert len(first) == 3 and all(p["image"].shape == (1, 4, 4, 4) for p in first)
    warnings = [r for r in caplog.records if "empty_case" in r.getMessage()]
    assert len(warnings) == 1  # once per case
    item["label"][0, 2:4, 2:4, 2:4] = 1
    patches = crop(item)  # with foreground: class-balanced crops, half centred on it
    assert any(bool(p["label"].any()) for p in patches)


def test_empty_foreground_train_pipeline_does_not_crash(tmp_path: Path) -> None:
    image, _ = blob_volume((20, 20, 12), seed=0)
    case = _case(tmp_path, image, np.zeros_like(image, dtype=np.uint8))
    config = PipelineConfig(num_classes=2, patch_size=(8, 8, 8), samples_per_volume=2)
    out = build_pipeline(config, "train")(case)
    assert [p["image"].shape for p in out] == [(1, 8, 8, 8)] * 2


def test_orientation_and_spacing_applied(tmp_path: Path) -> None:
    image = np.arange(10 * 12 * 8, dtype=np.float32).reshape(10, 12, 8) + 1
    label = np.zeros_like(image, dtype=np.uint8)
    label[1:3, 1:3, 1:3] = 1
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS, 2 mm
    case = _case(tmp_path, image, label, affine)
    config = PipelineConfig(num_classes=2, normalize="none", crop_foreground=False, pixdim=(1.0, 1.0, 1.0))
    out = build_pipeline(config, "eval")(case)
    assert nib.aff2axcodes(out["image"].affine.numpy()) == ("R", "A", "S")
    assert np.allclose(np.abs(np.diag(out["image"].affine.numpy())[:3]), 1.0)
    assert out["image"].shape[1:] == out["label"].shape[1:]
    assert all(s >= 2 * o - 1 for s, o in zip(out["image"].shape[1:], image.shape, strict=True))
    assert set(out["label"].unique().tolist()) == {0.0, 1.0}  # nearest: no interpolated label values
    assert float(out["voxel_ml"]) == pytest.approx(0.001)
    keep = PipelineConfig(num_classes=2, normalize="none", crop_foreground=False)
    flipped = build_pipeline(keep, "eval")(case)["image"][0].numpy()
    assert np.array_equal(flipped, image[::-1])  # RAS flips the L axis, no resampling without pixdim


def test_normalisations_and_foreground_crop(tmp_path: Path) -> None:
    image = np.full((16, 16, 10), -3.5, np.float32)  # constant background below the brain, as in BraTS
    image[4:12, 5:11, 2:8] = np.random.default_rng(0).normal(5.0, 2.0, size=(8, 6, 6))
    label = np.zeros(image.shape, np.uint8)
    label[6:8, 6:8, 3:5] = 1
    case = _case(tmp_path, image, label)
    out = build_pipeline(PipelineConfig(num_classes=2, normalize="none"), "eval")(case)
    assert out["image"].shape == (1, 8, 6, 6)
    zscore = build_pipeline(PipelineConfig(num_classes=2, crop_foreground=False), "eval")(case)["image"]
    values = zscore[zscore != 0]
    assert float(values.mean()) == pytest.approx(0.0, abs=1e-4) and float(values.std()) == pytest.approx(
        1, abs=1e-2
    )
    ranged = PipelineConfig(num_classes=2, normalize="range", intensity_range=(0.0, 10.0))
    scaled = build_pipeline(ranged, "eval")(case)["image"]
    assert float(scaled.min()) >= 0.0 and float(scaled.max()) <= 1.0
    pct = build_pipeline(PipelineConfig(num_classes=2, normalize="percentile"), "eval")(case)["image"]
    assert float(pct.min()) == 0.0 and float(pct.max()) == 1.0
    with pytest.raises(ValueError, match="intensity_range"):
        build_pipeline(PipelineConfig(num_classes=2, normalize="range"), "eval")


def test_above_minimum_is_never_empty() -> None:
    assert bool(above_minimum(torch.zeros(1, 3, 3, 3)).all())
    x = torch.zeros(2, 3, 3, 3)
    x[1, 1, 1, 1] = 1
    assert int(above_minimum(x).sum()) == 1


def test_two_d_train_patches_and_dtypes(tmp_path: Path) -> None:
    image, label = blob_volume((20, 20, 12), seed=1)
    case = _case(tmp_path, image, label)
    config = PipelineConfig(num_classes=3, spatial_dims=2, patch_size=(8, 8), samples_per_volume=4)
    out = build_pipeline(config, "train")(case)
    assert len(out) == 4
    for patch in out:
        assert patch["image"].shape == (1, 8, 8) and patch["label"].shape == (1, 8, 8)
        assert type(patch["image"]) is torch.Tensor and patch["image"].dtype == torch.float32
        assert patch["label"].dtype == torch.float32


def test_voxel_volume_ml() -> None:
    assert voxel_volume_ml(np.diag([2.0, 1.5, 1.0, 1.0])) == pytest.approx(0.003)
    rotated = np.eye(4)
    rotated[:2, :2] = [[0.0, -2.0], [2.0, 0.0]]
    assert voxel_volume_ml(rotated) == pytest.approx(0.004)
