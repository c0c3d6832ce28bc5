"""Hyperspectral cubes in MATLAB ``.mat`` files (the Indian Pines / Pavia layout) and their patches.

The common benchmarks ship a cube ``(rows, columns, bands)`` and a ground-truth map ``(rows, columns)`` in
two ``.mat`` files, e.g. ``Indian_pines_corrected.mat`` (key ``indian_pines_corrected``, 145 × 145 × 200) with
``Indian_pines_gt.mat`` (``indian_pines_gt``, classes 1–16, 0 unlabelled), or ``PaviaU.mat`` (``paviaU``,
610 × 340 × 103) with ``PaviaU_gt.mat`` (``paviaU_gt``, classes 1–9). The keys are detected (the one 3-D
and the one 2-D array) or given. Samples are ``patch × patch`` windows centred on labelled pixels; random
pixel splits let training and test patches overlap, so the splits here are spatial blocks whose patches
never share a pixel (:mod:`domains.remote_sensing.splits`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from core.utils import InputError, InputFileNotFoundError, require

__all__ = ["HyperspectralPatches", "HyperspectralScene", "read_hyperspectral"]


@dataclass(frozen=True)
class HyperspectralScene:
    """A cube and its ground truth.

    Attributes:
        cube: float32 (bands, rows, columns).
        gt: int64 (rows, columns); 0 is unlabelled.
        cube_path: The cube's file.
        gt_path: The ground truth's file.
    """

    cube: np.ndarray
    gt: np.ndarray
    cube_path: Path
    gt_path: Path


def _load(path: Path) -> dict[str, np.ndarray]:
    scipy_io = require("scipy.io", "remote-sensing")
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: .mat file not found")
    try:
        content = scipy_io.loadmat(path)
    except NotImplementedError:
        raise InputError(
            f"{path}: a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; re-save it with "
            "save(..., '-v7')"
        ) from None
    except (ValueError, OSError, TypeError) as err:
        raise InputError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    return {k: v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray)}


def _pick(arrays: dict[str, np.ndarray], key: str | None, ndim: int, what: str, path: Path) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise InputError(f"{path}: no array {key!r} for the {what}; it holds {sorted(arrays)}")
        value = arrays[key]
        if value.ndim != ndim:
            raise InputError(f"{path}: {key!r} has shape {value.shape}; the {what} must be {ndim}-D")
        return value
    candidates = [k for k, v in arrays.items() if v.ndim == ndim]
    if len(candidates) != 1:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise InputError(
            f"{path}: cannot tell which array is the {what} ({ndim}-D) among {shapes}; give its key"
        )
    return arrays[candidates[0]]


def read_hyperspectral(
    cube_path: str | Path,
    gt_path: str | Path | None = None,
    cube_key: str | None = None,
    gt_key: str | None = None,
) -> HyperspectralScene:
    """Read a cube ``(rows, columns, bands)`` and a ground-truth map ``(rows, columns)``.

    Args:
        cube_path: ``.mat`` file of the cube.
        gt_path: ``.mat`` file of the ground truth; default: the cube's file.
        cube_key: Variable name of the cube; default: the only 3-D array.
        gt_key: Variable name of the ground truth; default: the only 2-D array.

    Raises:
        InputError: Naming the file, for an unreadable file, an ambiguous or missing key, a non-integer or
            negative ground truth, or a ground truth of another size than the cube.
    """
    cube_path = Path(cube_path)
    gt_path = Path(gt_path) if gt_path is not None else cube_path
    cube_arrays = _load(cube_path)
    gt_arrays = cube_arrays if gt_path == cube_path else _load(gt_path)
    cube = _pick(cube_arrays, cube_key, 3, "cube", cube_path)
    gt = _pick(gt_arrays, gt_key, 2, "ground truth", gt_path)
    if cube.shape[:2] != gt.shape:
        raise InputError(
            f"{gt_path}: the ground truth is {gt.shape[0]}×{gt.shape[1]}, but the cube in {cube_path} is "
            f"{cube.shape[0]}×{cube.shape[1]} pixels"
        )
    if not np.issubdtype(gt.dtype, np.integer):
        if not np.all(np.isfinite(gt)) or not np.all(gt == np.round(gt)):
            raise InputError(
                f"{gt_path}: the ground truth must hold integer class codes, got {gt.dtype} values"
            )
    gt = gt.astype(np.int64)
    if (gt < 0).any():
        raise InputError(
            f"{gt_path}: the ground truth has negative class codes (0 is unlabelled, 1.. classes)"
        )
    cube = np.ascontiguousarray(np.moveaxis(cube.astype(np.float32), 2, 0))
    return HyperspectralScene(cube, gt, cube_path, gt_path)


class HyperspectralPatches(Dataset):
    """``patch × patch`` windows of the cube centred on given pixels: ``{"image", "label", "id"}``.

    Pixels beyond the cube's edge are NaN (nodata, 0 after normalisation).

    Args:
        cube: float32 (bands, rows, columns).
        rows: Centre rows.
        cols: Centre columns.
        labels: Class index of each centre (0-based).
        patch: Odd window side.
    """

    def __init__(
        self, cube: np.ndarray, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, patch: int
    ) -> None:
        r = patch // 2
        self.padded = torch.from_numpy(np.pad(cube, ((0, 0), (r, r), (r, r)), constant_values=np.nan))
        self.rows, self.cols = rows.astype(np.int64), cols.astype(np.int64)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.patch = patch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        r, c = int(self.rows[index]), int(self.cols[index])
        image = self.padded[:, r : r + self.patch, c : c + self.patch]
        return {"image": image, "label": self.labels[index], "id": f"{r}_{c}"}
