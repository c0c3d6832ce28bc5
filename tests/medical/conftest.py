"""Medical fixtures: the embedded hippocampus subset, the shared BraTS subset, small synthetic NIfTI datasets.

Synthetic files are written with nibabel under pytest's temporary folders only; ``data/`` and ``../shared``
are only read.
"""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")

REPO = Path(__file__).resolve().parents[2]
HIPPOCAMPUS = REPO / "data" / "medical" / "hippocampus"
HIPPOCAMPUS_FULL = REPO / "data" / "medical" / "hippocampus_full.json"
SHARED_MEDICAL = REPO.parent / "shared" / "data" / "medical"
BRATS = SHARED_MEDICAL / "brats2015_deepmedic"
BRATS_MODALITIES = ["Flair*.nii.gz", "T1c*.nii.gz"]
BRATS_LABEL = "OTMultiClass.nii.gz"

# Small and fast: tiny patches, no workers, no augmentation randomness that could hide a shape bug.
FAST = {"patch_size": [16, 16, 16], "samples_per_volume": 2, "batch_size": 2, "num_workers": 0}


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` as a NIfTI file (``.nii.gz``) with ``affine`` (default identity)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def blob_volume(shape: tuple[int, ...], seed: int, label_values: tuple[int, ...] = (1, 2)) -> tuple:
    """An image with a zero border and noisy brain, and a label with a few boxes of ``label_values``."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    image[2:-2, 2:-2, 2:-2] = rng.normal(100.0, 20.0, size=tuple(s - 4 for s in shape)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for k, value in enumerate(label_values):
        lo = 3 + 2 * k
        label[lo : lo + 3, lo : lo + 3, 4:7] = value
    return image, label


def tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """``relative path -> (sha1, mtime_ns)`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def hippocampus() -> Path:
    """The embedded MSD hippocampus subset (always in the repository)."""
    assert (HIPPOCAMPUS / "dataset.json").is_file(), f"{HIPPOCAMPUS} is missing from the repository"
    return HIPPOCAMPUS


@pytest.fixture
def brats() -> Path:
    """The shared BraTS 2015 DeepMedic subset; skips when ``../shared`` is absent."""
    if not BRATS.is_dir():
        pytest.skip(f"BraTS subset {BRATS} is absent (it ships beside the repository, never in it)")
    return BRATS


@pytest.fixture
def make_msd(tmp_path: Path) -> Callable[..., Path]:
    """Factory: an MSD-layout dataset of synthetic cases under ``tmp_path/<name>``."""

    def make(
        name: str = "msd",
        num_cases: int = 6,
        shape: tuple[int, ...] = (20, 20, 12),
        label_values: tuple[int, ...] = (1, 2),
        affine: np.ndarray | None = None,
    ) -> Path:
        root = tmp_path / name
        entries = []
        for i in range(num_cases):
            image, label = blob_volume(shape, seed=i, label_values=label_values)
            write_nifti(root / "imagesTr" / f"case_{i:03d}.nii.gz", image, affine)
            write_nifti(root / "labelsTr" / f"case_{i:03d}.nii.gz", label, affine)
            entries.append(
                {"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"}
            )
        labels = {"0": "background", **{str(v): f"structure{v}" for v in label_values}}
        description = {
            "name": name,
            "modality": {"0": "MRI"},
            "labels": labels,
            "training": entries,
            "test": [],
        }
        (root / "dataset.json").write_text(json.dumps(description))
        return root

    return make


@pytest.fixture
def make_folders(tmp_path: Path) -> Callable[..., Path]:
    """Factory: one folder per case, two modalities and a 0/1/4 label, under ``tmp_path/<name>``."""

    def make(name: str = "folders", num_cases: int = 4, shape: tuple[int, ...] = (20, 20, 12)) -> Path:
        root = tmp_path / name
        for i in range(num_cases):
            image, label = blob_volume(shape, seed=i, label_values=(1, 4))
            case = root / f"pat{i:02d}"
            write_nifti(case / "Flair_norm.nii.gz", image)
            write_nifti(case / "T1c_norm.nii.gz", image * 0.5)
            write_nifti(case / "seg.nii.gz", label)
        return root

    return make


BRATS_LAYOUT_CASES = (
    "train/brats_2013_pat0005_1",
    "train/brats_2013_pat0006_1",
    "validation/brats_2013_pat0003_1",
    "validation/brats_2013_pat0004_1",
)
"""Case folders of the shared BraTS subset (``case_glob: "*/*"``), relative to its root."""


@pytest.fixture
def make_brats_layout(tmp_path: Path) -> Callable[..., Path]:
    """Factory: the shared BraTS subset's exact layout with synthetic voxels, under ``tmp_path/<name>``.

    Each case folder holds ``Flair_subtrMeanDivStd.nii.gz``, ``T1c_subtrMeanDivStd.nii.gz`` (float32),
    ``OTMultiClass.nii.gz`` (float32 labels 0/1/4) and ``brainmask.nii.gz`` (int32), on the LPS-flipped
    affine ``diag(-1, -1, 1, 1)`` of the real files.
    """

    def make(name: str = "brats", shape: tuple[int, int, int] = (24, 24, 16)) -> Path:
        root = tmp_path / name
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        for i, case in enumerate(BRATS_LAYOUT_CASES):
            image, label = blob_volume(shape, seed=i, label_values=(1, 4))
            folder = root / case
            write_nifti(folder / "Flair_subtrMeanDivStd.nii.gz", image, affine)
            write_nifti(folder / "T1c_subtrMeanDivStd.nii.gz", image * 0.5, affine)
            write_nifti(folder / "OTMultiClass.nii.gz", label.astype(np.float32), affine)
            write_nifti(folder / "brainmask.nii.gz", (image != 0).astype(np.int32), affine)
        return root

    return make
