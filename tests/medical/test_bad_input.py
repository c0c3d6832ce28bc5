"""Bad medical input through ``attnlab``: one line naming the file, exit status 2, the inputs untouched.

Each test copies the embedded hippocampus subset under ``tmp_path``, damages one training case
(``hippocampus_006`` trains in the fixed split of ``configs/medical/smoke.yaml``) and runs ``attnlab fit``
on it in a subprocess, as a user would. With ``cache=memory`` the cases are read by cache-filling threads
in ``setup``: threads still running when the process exits on the error would abort it (``terminate called
without an active exception``, exit status 134) after the message.
"""

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, Lambda

from core.utils import InputError
from domains.medical.caching import JoinedCacheDataset
from tests.medical.conftest import HIPPOCAMPUS, tree_state

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "medical" / "smoke.yaml"
CASE = "hippocampus_006"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A copy of the embedded hippocampus subset, to damage."""
    root = tmp_path / "hippocampus"
    shutil.copytree(HIPPOCAMPUS, root)
    return root


def test_cache_threads_have_stopped_when_a_case_fails() -> None:
    """The error reaches the caller once no case is being read any more; pending cases are dropped."""
    started, finished, lock = set(), set(), threading.Lock()

    def read(item: dict) -> dict:
        with lock:
            started.add(item["case"])
        if item["case"] == 0:
            raise InputError("case 0 is corrupt")
        time.sleep(0.5)
        with lock:
            finished.add(item["case"])
        return item

    items = [{"case": i} for i in range(16)]
    with pytest.raises(RuntimeError) as err:
        JoinedCacheDataset(items, transform=Compose([Lambda(read)]), num_workers=4, progress=False)
    assert isinstance(err.value.__cause__, InputError)
    with lock:
        assert started - {0} == finished, "a cache thread was still reading when the error was raised"
        assert len(started) < len(items), "the cases not yet started should have been cancelled"


def _fit(run_attnlab: Callable, root: Path, *extra: str):
    """``attnlab fit`` of the smoke config on ``root``; asserts that ``root`` was left as it was."""
    before = tree_state(root)
    result = run_attnlab(
        "fit",
        f"--config={SMOKE}",
        f"--data.init_args.root={root}",
        f"--trainer.default_root_dir={root.parent / 'run'}",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        *extra,
    )
    assert tree_state(root) == before, "the run wrote into the input folder"
    return result


def _assert_one_line_error(result, *expected: str) -> str:
    """Exit status 2, no traceback, no abort, and the error as one of the last two stderr lines."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "terminate called" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("attnlab: error:")]
    assert len(errors) == 1 and errors[0] in lines[-2:], result.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _rewrite(path: Path, change: Callable[[np.ndarray], np.ndarray], dtype: type) -> None:
    """Write ``change(voxels)`` back to ``path`` as ``dtype`` on the same grid."""
    image = nib.load(path)
    voxels = change(np.asarray(image.dataobj).astype(dtype))
    header = image.header.copy()
    header.set_data_dtype(dtype)
    nib.save(nib.Nifti1Image(voxels, image.affine, header), path)


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        (5, np.uint8, "holds unexpected label values [5]"),
        (-1, np.int16, "holds unexpected label values [-1]"),
        (0.5, np.float32, "holds non-integer values [0.5]"),
    ],
)
def test_label_value_outside_the_label_map(
    run_attnlab: Callable, dataset: Path, value: float, dtype: type, message: str
) -> None:
    label = dataset / "labelsTr" / f"{CASE}.nii.gz"

    def relabel(voxels: np.ndarray) -> np.ndarray:
        voxels[voxels == 2] = value
        return voxels

    _rewrite(label, relabel, dtype)
    result = _fit(run_attnlab, dataset, "--data.init_args.cache=memory")
    _assert_one_line_error(result, f"label file {label.resolve()} {message}")


@pytest.mark.parametrize("folder", ["imagesTr", "labelsTr"])
def test_truncated_file(run_attnlab: Callable, dataset: Path, folder: str) -> None:
    path = dataset / folder / f"{CASE}.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = _fit(run_attnlab, dataset, "--data.init_args.cache=memory")
    _assert_one_line_error(result, f"cannot read {path.resolve()} (case {CASE}", "truncated or corrupt")


def test_nan_and_inf_voxels_are_refused_at_load_time(run_attnlab: Callable, dataset: Path) -> None:
    image = dataset / "imagesTr" / f"{CASE}.nii.gz"

    def poison(voxels: np.ndarray) -> np.ndarray:
        voxels[10, 10, 10:13] = np.nan
        voxels[11, 11, 11] = np.inf
        return voxels

    _rewrite(image, poison, np.float32)
    # Without a cache the case is read by the training loader: the error must still name the file, not the
    # model's outputs a few steps later.
    result = _fit(run_attnlab, dataset)
    _assert_one_line_error(result, f"case {CASE}: {image.resolve()} (image) holds 4 NaN or Inf voxels")


def test_empty_training_list_names_the_datalist(run_attnlab: Callable, dataset: Path) -> None:
    datalist = dataset / "dataset.json"
    content = json.loads(datalist.read_text())
    datalist.write_text(json.dumps({**content, "training": []}))
    result = _fit(run_attnlab, dataset)
    _assert_one_line_error(result, f"datalist {datalist}", '"training" list is empty')


def test_all_zero_image_with_a_labelled_foreground_is_warned_about(
    run_attnlab: Callable, dataset: Path
) -> None:
    image = dataset / "imagesTr" / f"{CASE}.nii.gz"
    _rewrite(image, np.zeros_like, np.float32)
    result = _fit(
        run_attnlab,
        dataset,
        "--data.init_args.cache=memory",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "every voxel of" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert f"case {CASE}: every voxel of {image.resolve()} is 0" in warnings[0]
    assert str((dataset / "labelsTr" / f"{CASE}.nii.gz").resolve()) in warnings[0]


def test_brain_mask_off_the_image_grid_is_refused_before_training(
    run_attnlab: Callable, make_brats_layout: Callable
) -> None:
    """``--data.mask`` of the BraTS config: a brain mask on another grid stops ``attnlab fit`` at setup."""
    root = make_brats_layout().resolve()
    case = root / "train" / "brats_2013_pat0005_1"
    mask = case / "brainmask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((24, 24, 15), np.int32), np.diag([-1.0, -1.0, 1.0, 1.0])), mask)
    before = tree_state(root)
    result = run_attnlab(
        "fit",
        f"--config={REPO / 'configs' / 'medical' / 'agunet_brats.yaml'}",
        f"--data.init_args.root={root}",
        f"--trainer.default_root_dir={root.parent / 'run'}",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    )
    assert tree_state(root) == before, "the run wrote into the input folder"
    _assert_one_line_error(
        result,
        "case train_brats_2013_pat0005_1: spatial shape mismatch",
        f"{case / 'Flair_subtrMeanDivStd.nii.gz'} has shape (24, 24, 16)",
        f"the mask {mask} has shape (24, 24, 15)",
    )
