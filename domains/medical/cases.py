"""Case discovery and upfront validation of medical image folders (MSD ``dataset.json``, case folders).

Every reader returns a list of case dicts ``{"case": id, "image": [path per modality], "label": path | None}``
with absolute paths, sorted by case id. Nothing is written anywhere; only JSON files and NIfTI *headers* are
read, so discovery and :func:`check_headers` are fast even for large datasets and run before training starts:

* :func:`read_datalist` / :func:`decathlon_cases`: the Medical Segmentation Decathlon layout, a
  ``dataset.json`` in ``root`` (or a separate datalist JSON whose paths are relative to ``root``), with
  ``training`` entries ``{"image": path or [paths], "label": path}`` and ``test`` entries (a path, or
  ``{"image": ...}``).
* :func:`folder_cases`: one sub-folder per case, found by a glob relative to ``root`` (``*``, or ``*/*`` for
  BraTS ``train/`` + ``validation/``), with one file-name glob per modality and one for the label.
* :func:`image_file_cases`: every NIfTI file of a folder is one unlabelled case (prediction inputs).
* :func:`check_headers`: same spatial shape and affine for all modalities, the label and the mask of each
  case; :func:`case_channels` counts a case's channels from its headers.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.utils import InputError, InputFileNotFoundError

__all__ = [
    "AFFINE_ATOL",
    "NIFTI_SUFFIXES",
    "Case",
    "Datalist",
    "LabelMap",
    "case_channels",
    "case_id_from_file",
    "check_headers",
    "check_label_map",
    "decathlon_cases",
    "folder_cases",
    "image_file_cases",
    "label_map_num_classes",
    "read_datalist",
]

Case = dict[str, Any]
"""``{"case": str, "image": list[str], "label": str | None}``."""

AFFINE_ATOL = 1e-3
"""Absolute tolerance (mm) of the affine comparison: NIfTI stores affines as float32, so files written by
different tools for the same grid differ by ~1e-5 mm; a real mismatch (flipped axis, 1-voxel shift, other
spacing) is orders of magnitude larger."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")

LabelMap = Literal["binary"] | dict[int, int] | None
"""``binary`` (label > 0 → 1), ``{raw value: class}`` (0 → 0 implied), or None (labels used as they are)."""


def case_id_from_file(path: str | Path) -> str:
    """The file name without its NIfTI suffix (``hippocampus_001.nii.gz`` → ``hippocampus_001``)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


# --------------------------------------------------------------------------------------------- MSD layout


@dataclass
class Datalist:
    """A parsed MSD-style datalist.

    Attributes:
        path: The JSON file.
        root: Folder its relative paths are resolved against.
        labels: Class names by raw label value (``"labels"``), empty when the file has none.
        modalities: Modality names in channel order (``"modality"``), empty when the file has none.
        training: The raw ``training`` entries.
        test: The raw ``test`` entries.
    """

    path: Path
    root: Path
    labels: dict[int, str] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)
    training: list[Any] = field(default_factory=list)
    test: list[Any] = field(default_factory=list)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputFileNotFoundError(f"datalist {path} does not exist")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"datalist {path} is not valid JSON: {err}") from err
    if not isinstance(content, dict):
        raise InputError(f"datalist {path} must hold a JSON object, got {type(content).__name__}")
    return content


def read_datalist(root: str | Path, datalist: str | Path | None = None) -> Datalist:
    """Parse ``root/dataset.json`` or a separate datalist whose paths are relative to ``root``.

    Class names (``"labels"``) and modality names (``"modality"``) are taken from the datalist, or, when it
    lacks them, from ``root/dataset.json`` if that exists.

    Args:
        root: Dataset folder (paths in the datalist are relative to it).
        datalist: Datalist JSON; default ``root/dataset.json``.

    Returns:
        The parsed :class:`Datalist` (no image file is touched).

    Raises:
        FileNotFoundError: If ``root`` or the datalist is missing.
        ValueError: If the JSON is malformed (the message names the file and the field).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileNotFoundError(f"dataset root {root} is not a folder")
    path = Path(datalist) if datalist is not None else root / "dataset.json"
    content = _load_json(path)
    meta = content
    fallback = root / "dataset.json"
    if ("labels" not in content or "modality" not in content) and fallback.is_file() and fallback != path:
        meta = {**_load_json(fallback), **content}
    labels: dict[int, str] = {}
    for key, name in (meta.get("labels") or {}).items():
        try:
            labels[int(key)] = str(name)
        except ValueError as err:
            raise InputError(f'{path}: "labels" keys must be integer label values, got {key!r}') from err
    modality = meta.get("modality") or {}
    if isinstance(modality, dict):
        modalities = [str(modality[k]) for k in sorted(modality, key=int)]
    else:
        modalities = [str(m) for m in modality]
    training, test = content.get("training", []), content.get("test", [])
    if not isinstance(training, list) or not isinstance(test, list):
        raise InputError(f'{path}: "training" and "test" must be lists')
    return Datalist(path, root, labels, modalities, training, test)


def _resolve(root: Path, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected a file path string, got {value!r}")
    path = Path(value)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise InputFileNotFoundError(f"{where} points to {value!r}, but {path} does not exist")
    return str(path.resolve())


def decathlon_cases(info: Datalist, section: str = "training") -> list[Case]:
    """Cases of one section of a datalist, every path checked to exist.

    Args:
        info: A parsed datalist (:func:`read_datalist`).
        section: ``training`` (image + label required) or ``test`` (images only).

    Returns:
        Cases sorted by id; the id is the first image's file name without ``.nii.gz``.

    Raises:
        FileNotFoundError: If an entry points to a missing file (names the JSON file, entry and path).
        ValueError: If an entry lacks its image/label, two entries share an id, or ``training`` is empty.
    """
    entries = info.training if section == "training" else info.test
    if section == "training" and not entries:
        raise InputError(
            f'datalist {info.path}: its "training" list is empty; it must list the labelled cases as '
            '{"image": path, "label": path} entries relative to the dataset root'
        )
    cases: dict[str, Case] = {}
    for index, entry in enumerate(entries):
        where = f"{info.path} [{section}][{index}]"
        entry = {"image": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or "image" not in entry:
            raise InputError(f'{where}: expected {{"image": ..., "label": ...}} or a path, got {entry!r}')
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        if not images:
            raise InputError(f'{where}: "image" is an empty list')
        image = [_resolve(info.root, p, f'{where} "image"') for p in images]
        label = entry.get("label")
        if section == "training" and label is None:
            raise InputError(f'{where}: a training entry needs a "label"')
        label_path = _resolve(info.root, label, f'{where} "label"') if label is not None else None
        case = case_id_from_file(image[0])
        if case in cases:
            raise InputError(f"{where}: case id {case!r} (from {images[0]!r}) appears twice in {info.path}")
        cases[case] = {"case": case, "image": image, "label": label_path}
    return [cases[k] for k in sorted(cases)]


def image_file_cases(folder: str | Path) -> list[Case]:
    """Every ``*.nii.gz`` / ``*.nii`` file directly in ``folder`` as an unlabelled one-file case.

    Raises:
        FileNotFoundError: If ``folder`` is missing or holds no NIfTI file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileNotFoundError(f"prediction folder {folder} is not a folder")
    files = sorted({p for suffix in NIFTI_SUFFIXES for p in folder.glob(f"*{suffix}") if p.is_file()})
    if not files:
        raise InputFileNotFoundError(f"prediction folder {folder} holds no .nii.gz / .nii file")
    return [{"case": case_id_from_file(p), "image": [str(p.resolve())], "label": None} for p in files]


# ----------------------------------------------------------------------------------------- folder layout


def _match_one(folder: Path, pattern: str, what: str) -> Path:
    matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not matches:
        raise InputFileNotFoundError(f"case folder {folder}: no file matches the {what} pattern {pattern!r}")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise InputError(
            f"case folder {folder}: the {what} pattern {pattern!r} is ambiguous, it matches {len(matches)} "
            f"files ({names}); make it match exactly one"
        )
    return matches[0]


def folder_cases(
    root: str | Path,
    case_glob: str,
    modalities: list[str],
    label: str | None,
    require_label: bool = True,
    mask: str | None = None,
) -> list[Case]:
    """Cases of the one-folder-per-case layout.

    Args:
        root: Dataset folder.
        case_glob: Glob of the case folders relative to ``root`` (``*``; ``*/*`` for ``train/<case>``).
        modalities: One file-name glob per modality, inside a case folder, in channel order.
        label: File-name glob of the label map, or None (unlabelled cases).
        require_label: Whether a case without a label file is an error (else its label is None).
        mask: File-name glob of a mask every case must have (e.g. ``brainmask.nii.gz``), stored as ``mask``.

    Returns:
        Cases sorted by id; the id is the case folder's path relative to ``root`` with ``/`` → ``_``.

    Raises:
        FileNotFoundError: If no case folder matches, or a modality/label file is missing (names the case
            folder and the pattern).
        ValueError: If a pattern matches two files in one case folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileNotFoundError(f"dataset root {root} is not a folder")
    if not modalities:
        raise InputError("modalities must list at least one file-name pattern")
    folders = sorted(p for p in root.glob(case_glob) if p.is_dir())
    if not folders:
        raise InputFileNotFoundError(f"no case folder under {root} matches case_glob {case_glob!r}")
    cases = []
    for folder in folders:
        image = [str(_match_one(folder, pattern, "modality").resolve()) for pattern in modalities]
        label_path = None
        if label is not None:
            try:
                label_path = str(_match_one(folder, label, "label").resolve())
            except FileNotFoundError:
                if require_label:
                    raise
        case = {
            "case": folder.relative_to(root).as_posix().replace("/", "_"),
            "image": image,
            "label": label_path,
        }
        if mask is not None:
            case["mask"] = str(_match_one(folder, mask, "mask").resolve())
        cases.append(case)
    return cases


# ----------------------------------------------------------------------------------------- header checks


def _header(path: str) -> tuple[tuple[int, ...], np.ndarray]:
    import nibabel as nib

    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises several types for unreadable headers
        raise InputError(f"cannot read the NIfTI header of {path}: {type(err).__name__}: {err}") from err
    return tuple(int(s) for s in image.shape), np.asarray(image.affine, dtype=np.float64)


def _channels(shape: tuple[int, ...]) -> int:
    """Channels of an image file of ``shape``: C for a 4-D ``(X, Y, Z, C)`` file, else 1."""
    return shape[3] if len(shape) == 4 else 1


def case_channels(case: Case) -> int:
    """Channels of a case's image files, from their headers (a 4-D ``(X, Y, Z, C)`` file counts C).

    Raises:
        ValueError: On an unreadable header.
    """
    return sum(_channels(_header(path)[0]) for path in case["image"])


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape[:3]


def check_headers(cases: list[Case], atol: float = AFFINE_ATOL, in_channels: int | None = None) -> None:
    """Check that the modalities, label and mask of each case lie on one voxel grid (headers only).

    A 4-D image ``(X, Y, Z, C)`` counts as C channels (MSD multi-modal files). The mask (``--data.mask``) is
    checked too: it is cropped with the image, so a mask on another grid would fail mid-test or restrict the
    prediction to the wrong voxels.

    Args:
        cases: Cases from one of the readers.
        atol: Absolute tolerance of ``np.allclose`` on the 4×4 affines (mm); see :data:`AFFINE_ATOL`.
        in_channels: Expected channels per case (sum over the image files), or None to skip that check.

    Raises:
        ValueError: On a shape or affine mismatch (names both files and both shapes/affines), a
            channel-count mismatch, or an unreadable header.
    """
    for case in cases:
        extra = [("label map", case.get("label")), ("mask", case.get("mask"))]
        files = [*(("image", path) for path in case["image"]), *((kind, f) for kind, f in extra if f)]
        headers = [_header(f) for _, f in files]
        ref_file, (ref_shape, ref_affine) = files[0][1], headers[0]
        channels = 0
        for (kind, path), (shape, affine) in zip(files, headers, strict=True):
            is_map = kind != "image"
            if len(shape) < 3 or (is_map and len(_spatial(shape)) != 3) or len(shape) > 4 + is_map:
                raise InputError(f"case {case['case']}: {path} has shape {shape}, expected a 3-D {kind}")
            if not is_map:
                channels += _channels(shape)
            if _spatial(shape) != _spatial(ref_shape):
                raise InputError(
                    f"case {case['case']}: spatial shape mismatch: {ref_file} has shape {ref_shape} but "
                    f"the {kind} {path} has shape {shape}; all modalities, the label and the mask must lie "
                    "on the same voxel grid"
                )
            if not np.allclose(affine, ref_affine, rtol=0.0, atol=atol):
                raise InputError(
                    f"case {case['case']}: affine mismatch (atol {atol} mm): {ref_file} has affine\n"
                    f"{np.array2string(ref_affine, precision=4)}\nbut the {kind} {path} has affine\n"
                    f"{np.array2string(affine, precision=4)}\nresample them onto one grid first"
                )
        if in_channels is not None and channels != in_channels:
            raise InputError(
                f"case {case['case']}: its image files {case['image']} hold {channels} channels, expected "
                f"{in_channels} (one per modality)"
            )


# -------------------------------------------------------------------------------------------- label maps


def check_label_map(label_map: LabelMap) -> LabelMap:
    """Validate a ``label_map`` option and return it with integer keys/values.

    An explicit dict maps raw label values to classes; raw 0 maps to background 0 unless listed.

    Raises:
        ValueError: If it is neither ``binary``, None nor a ``{raw: class}`` dict of integers >= 0.
    """
    if label_map is None or label_map == "binary":
        return label_map
    if not isinstance(label_map, Mapping) or not label_map:
        raise InputError(
            f"label_map must be 'binary', None or a non-empty {{raw value: class}} dict, got {label_map!r}"
        )
    out: dict[int, int] = {}
    for raw, cls in label_map.items():
        try:
            raw_i, cls_i = int(raw), int(cls)
        except (TypeError, ValueError) as err:
            raise InputError(f"label_map entries must be integers, got {raw!r}: {cls!r}") from err
        if cls_i < 0:
            raise InputError(f"label_map maps {raw_i} to class {cls_i}; classes must be >= 0")
        out[raw_i] = cls_i
    out.setdefault(0, 0)
    return out


def label_map_num_classes(label_map: LabelMap) -> int | None:
    """Classes (background included) a label map produces; None when labels are used as they are."""
    if label_map is None:
        return None
    if label_map == "binary":
        return 2
    return max(check_label_map(label_map).values()) + 1  # type: ignore[union-attr]
