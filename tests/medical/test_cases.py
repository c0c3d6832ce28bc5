"""Case discovery and header checks: MSD datalists, case folders, bad layouts named in the errors."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.utils import InputError
from domains.medical.cases import (
    check_headers,
    check_label_map,
    decathlon_cases,
    folder_cases,
    image_file_cases,
    label_map_num_classes,
    read_datalist,
)
from tests.medical.conftest import (
    BRATS_LABEL,
    BRATS_LAYOUT_CASES,
    BRATS_MODALITIES,
    HIPPOCAMPUS_FULL,
    SHARED_MEDICAL,
    blob_volume,
    write_nifti,
)

BRATS_MASK = "brainmask.nii.gz"


def test_embedded_hippocampus_datalist(hippocampus: Path) -> None:
    info = read_datalist(hippocampus)
    assert info.labels == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert info.modalities == ["MRI"]
    cases = decathlon_cases(info)
    assert len(cases) == 12
    assert cases[0]["case"] == "hippocampus_001"
    assert all(Path(c["image"][0]).is_file() and Path(c["label"]).is_file() for c in cases)
    check_headers(cases, in_channels=1)


def test_separate_datalist_relative_to_root(hippocampus: Path, tmp_path: Path) -> None:
    entries = [{"image": "imagesTr/hippocampus_003.nii.gz", "label": "labelsTr/hippocampus_003.nii.gz"}]
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"training": entries}))
    info = read_datalist(hippocampus, datalist)
    assert info.labels[2] == "Posterior"  # names fall back to root/dataset.json
    assert [c["case"] for c in decathlon_cases(info)] == ["hippocampus_003"]


def test_full_hippocampus_datalist_on_shared_copy() -> None:
    root = SHARED_MEDICAL / "msd_hippocampus"
    if not root.is_dir():
        pytest.skip(f"{root} is absent (shared data ships beside the repository)")
    cases = decathlon_cases(read_datalist(root, HIPPOCAMPUS_FULL))
    assert len(cases) == 260


def test_missing_datalist_file_names_json_entry_and_path(make_msd, tmp_path: Path) -> None:
    root = make_msd()
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        decathlon_cases(read_datalist(root))
    message = str(err.value)
    assert "dataset.json" in message and "[training][2]" in message and "case_002.nii.gz" in message


def test_datalist_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset\.json"):
        read_datalist(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_datalist(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [{"image": "a.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match=r"\[training\]\[0\] \"image\""):
        decathlon_cases(read_datalist(tmp_path))


def test_folder_cases_and_their_errors(make_folders) -> None:
    root = make_folders()
    cases = folder_cases(root, "*", ["Flair*.nii.gz", "T1c*.nii.gz"], "seg.nii.gz")
    assert [c["case"] for c in cases] == ["pat00", "pat01", "pat02", "pat03"]
    assert [Path(p).name for p in cases[0]["image"]] == ["Flair_norm.nii.gz", "T1c_norm.nii.gz"]
    check_headers(cases, in_channels=2)
    with pytest.raises(ValueError, match="hold 2 channels, expected 3"):
        check_headers(cases, in_channels=3)

    (root / "pat01" / "T1c_norm.nii.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        folder_cases(root, "*", ["Flair*.nii.gz", "T1c*.nii.gz"], "seg.nii.gz")
    assert "pat01" in str(err.value) and "'T1c*.nii.gz'" in str(err.value)

    shutil.copy(root / "pat02" / "Flair_norm.nii.gz", root / "pat02" / "Flair_copy.nii.gz")
    with pytest.raises(ValueError, match=r"pat02.*'Flair\*\.nii\.gz' is ambiguous, it matches 2 files"):
        folder_cases(root, "*", ["Flair*.nii.gz"], "seg.nii.gz")

    with pytest.raises(FileNotFoundError, match="case_glob 'nothing/\\*'"):
        folder_cases(root, "nothing/*", ["Flair*.nii.gz"], "seg.nii.gz")


def test_unlabelled_folder_cases_and_image_files(make_folders, tmp_path: Path) -> None:
    root = make_folders()
    (root / "pat00" / "seg.nii.gz").unlink()
    cases = folder_cases(root, "*", ["Flair*.nii.gz"], "seg.nii.gz", require_label=False)
    assert cases[0]["label"] is None and cases[1]["label"] is not None
    images = tmp_path / "to_predict"
    write_nifti(images / "b.nii.gz", np.zeros((4, 4, 4), np.float32))
    write_nifti(images / "a.nii.gz", np.zeros((4, 4, 4), np.float32))
    assert [c["case"] for c in image_file_cases(images)] == ["a", "b"]


def test_header_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    image, label = blob_volume((12, 12, 8), seed=0)
    a = write_nifti(tmp_path / "c" / "img.nii.gz", image)
    b = write_nifti(tmp_path / "c" / "seg.nii.gz", label[:, :, :6])
    with pytest.raises(ValueError) as err:
        check_headers([{"case": "c", "image": [str(a)], "label": str(b)}])
    message = str(err.value)
    assert str(a) in message and str(b) in message and "(12, 12, 8)" in message and "(12, 12, 6)" in message


def test_header_affine_mismatch_and_tolerance(tmp_path: Path) -> None:
    image, label = blob_volume((12, 12, 8), seed=0)
    a = write_nifti(tmp_path / "img.nii.gz", image)
    near = np.eye(4)
    near[0, 3] = 1e-5  # float32 rounding noise: accepted
    b = write_nifti(tmp_path / "seg_ok.nii.gz", label, near)
    check_headers([{"case": "c", "image": [str(a)], "label": str(b)}])
    shifted = np.diag([2.0, 1.0, 1.0, 1.0])
    c = write_nifti(tmp_path / "seg_bad.nii.gz", label, shifted)
    with pytest.raises(ValueError) as err:
        check_headers([{"case": "c", "image": [str(a)], "label": str(c)}])
    message = str(err.value)
    assert "affine mismatch" in message and str(a) in message and str(c) in message and "2." in message


def test_brats_case_folders(brats: Path) -> None:
    cases = folder_cases(brats, "*/*", BRATS_MODALITIES, BRATS_LABEL)
    assert [c["case"] for c in cases] == [case.replace("/", "_") for case in BRATS_LAYOUT_CASES]
    check_headers(cases, in_channels=2)


def test_brats_layout_mask_on_the_image_grid_passes(make_brats_layout) -> None:
    root = make_brats_layout()
    cases = folder_cases(root, "*/*", BRATS_MODALITIES, BRATS_LABEL, mask=BRATS_MASK)
    masks = [Path(c["mask"]).relative_to(root).as_posix() for c in cases]
    assert masks == [f"{case}/{BRATS_MASK}" for case in BRATS_LAYOUT_CASES]
    check_headers(cases, in_channels=2)


def test_brats_layout_mask_of_another_shape_names_both_files(make_brats_layout) -> None:
    root = make_brats_layout().resolve()
    case = root / "validation" / "brats_2013_pat0003_1"
    write_nifti(case / BRATS_MASK, np.ones((24, 24, 15), np.int32), np.diag([-1.0, -1.0, 1.0, 1.0]))
    cases = folder_cases(root, "*/*", BRATS_MODALITIES, BRATS_LABEL, mask=BRATS_MASK)
    with pytest.raises(InputError) as err:
        check_headers(cases, in_channels=2)
    message = str(err.value)
    assert message.startswith("case validation_brats_2013_pat0003_1: spatial shape mismatch: ")
    assert f"{case / 'Flair_subtrMeanDivStd.nii.gz'} has shape (24, 24, 16)" in message
    assert f"the mask {case / BRATS_MASK} has shape (24, 24, 15)" in message
    check_headers(folder_cases(root, "*/*", BRATS_MODALITIES, BRATS_LABEL), in_channels=2)  # without the mask


def test_brats_layout_mask_with_another_affine_names_both_files(make_brats_layout) -> None:
    root = make_brats_layout().resolve()
    case = root / "train" / "brats_2013_pat0006_1"
    mask = np.asarray(nib.load(case / BRATS_MASK).dataobj)
    write_nifti(case / BRATS_MASK, mask, np.eye(4))  # same shape, RAS instead of the images' flipped grid
    cases = folder_cases(root, "*/*", BRATS_MODALITIES, BRATS_LABEL, mask=BRATS_MASK)
    with pytest.raises(InputError) as err:
        check_headers(cases, in_channels=2)
    message = str(err.value)
    assert message.startswith("case train_brats_2013_pat0006_1: affine mismatch (atol 0.001 mm): ")
    assert str(case / "Flair_subtrMeanDivStd.nii.gz") in message
    assert f"but the mask {case / BRATS_MASK} has affine" in message
    assert "[-1.  0.  0.  0.]" in message and "[1. 0. 0. 0.]" in message


def test_label_maps() -> None:
    assert label_map_num_classes("binary") == 2
    assert label_map_num_classes(None) is None
    assert check_label_map({"4": "1", 2: 1}) == {4: 1, 2: 1, 0: 0}
    assert label_map_num_classes({1: 1, 2: 2, 4: 3}) == 4
    with pytest.raises(ValueError, match="classes must be >= 0"):
        check_label_map({1: -1})
    with pytest.raises(ValueError, match="label_map must be"):
        check_label_map("multi")  # type: ignore[arg-type]
