"""Reader for the UCI Statlog (Landsat Satellite) patch table.

Each row is a 3×3 neighbourhood of Landsat MSS pixels: 36 values, then the class of the central pixel.
The UCI documentation gives the value order: the four spectral values of the top-left pixel first, then
those of the top-middle pixel, the top-right pixel, and so on left to right and top to bottom (pixel-major,
band-minor), so attributes 17–20 are the central pixel. Bands are two visible (green, red) and two
near-infrared, values 0–255. Classes: 1 red soil, 2 cotton crop, 3 grey soil, 4 damp grey soil, 5 soil
with vegetation stubble, 6 mixture (absent from the data), 7 very damp grey soil.

The original files (``sat.trn``, ``sat.tst``) have no header and single spaces; copies circulate with a
header row and tabs, so both are read. Input files are only opened for reading.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.utils import InputError, InputFileNotFoundError

__all__ = [
    "STATLOG_BANDS",
    "STATLOG_CLASSES",
    "STATLOG_CLASS_NAMES",
    "STATLOG_FIELDS",
    "StatlogTable",
    "read_statlog",
]

STATLOG_BANDS = ("green", "red", "nir1", "nir2")
STATLOG_PATCH = 3
STATLOG_FIELDS = STATLOG_PATCH * STATLOG_PATCH * len(STATLOG_BANDS) + 1
STATLOG_CLASS_NAMES = {
    1: "red soil",
    2: "cotton crop",
    3: "grey soil",
    4: "damp grey soil",
    5: "soil with vegetation stubble",
    6: "mixture",
    7: "very damp grey soil",
}
STATLOG_CLASSES = (1, 2, 3, 4, 5, 7)


@dataclass(frozen=True)
class StatlogTable:
    """The patches of one Statlog file.

    Attributes:
        path: The file read.
        patches: Band values, float32 (N, 4, 3, 3): band, row, column.
        labels: Class codes as written in the file (e.g. 1–7), int64 (N,).
        lines: 1-based line number of each patch in the file, int64 (N,).
    """

    path: Path
    patches: np.ndarray
    labels: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_header(fields: list[str]) -> bool:
    """A first row is a header when a field is not a number or the row numbers its columns (1, 2, …)."""
    if not all(_is_number(f) for f in fields):
        return True
    # Some copies carry a numeric header "1 2 … 37" (one circulating copy reads "… 22 24 24 25 …").
    numbering = sum(1 for i, f in enumerate(fields, start=1) if float(f) == i)
    return len(fields) == STATLOG_FIELDS and numbering >= STATLOG_FIELDS - 3


def read_statlog(
    path: str | Path, classes: Sequence[int] = STATLOG_CLASSES, header: bool | None = None
) -> StatlogTable:
    """Read a Statlog (Landsat) table.

    Args:
        path: ``sat.trn``, ``sat.tst`` or a file of the same layout; fields separated by spaces or tabs.
        classes: The class codes allowed in the last column.
        header: Whether the first non-empty line is a header; None detects it (a non-numeric field, or a
            row numbering its columns 1 … 37).

    Returns:
        The patches, their class codes and line numbers.

    Raises:
        InputFileNotFoundError: If ``path`` does not exist.
        InputError: Naming the file, line and field, for a row without 37 fields, a value that is not a
            number, or a class code outside ``classes``; or for a file without rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: Statlog file not found")
    allowed = {int(c) for c in classes}
    values: list[list[float]] = []
    labels: list[int] = []
    lines: list[int] = []
    first = True
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if first:
                first = False
                if header is True or (header is None and _looks_like_header(fields)):
                    continue
            if len(fields) != STATLOG_FIELDS:
                raise InputError(
                    f"{path}, line {number}: expected {STATLOG_FIELDS} fields (3×3 pixels × 4 bands, then "
                    f"the class) separated by spaces or tabs, got {len(fields)}"
                )
            row = []
            for column, text in enumerate(fields[:-1], start=1):
                try:
                    value = float(text)
                except ValueError:
                    raise InputError(
                        f"{path}, line {number}, field {column}: expected a band value, got {text!r}"
                    ) from None
                if not np.isfinite(value):
                    raise InputError(
                        f"{path}, line {number}, field {column}: band value {text!r} is not finite"
                    )
                row.append(value)
            text = fields[-1]
            try:
                label = float(text)
            except ValueError:
                label = float("nan")
            if not label.is_integer() or int(label) not in allowed:
                raise InputError(
                    f"{path}, line {number}, field {STATLOG_FIELDS} (class): {text!r} is not one of the "
                    f"classes {sorted(allowed)}"
                )
            values.append(row)
            labels.append(int(label))
            lines.append(number)
    if not values:
        raise InputError(f"{path}: no Statlog rows (expected lines of {STATLOG_FIELDS} numbers)")
    flat = np.asarray(values, dtype=np.float32)
    # (N, 9 pixels, 4 bands) -> (N, 4 bands, 3 rows, 3 columns).
    patches = flat.reshape(len(flat), STATLOG_PATCH * STATLOG_PATCH, len(STATLOG_BANDS))
    patches = patches.transpose(0, 2, 1).reshape(len(flat), len(STATLOG_BANDS), STATLOG_PATCH, STATLOG_PATCH)
    return StatlogTable(
        path=path,
        patches=np.ascontiguousarray(patches),
        labels=np.asarray(labels, dtype=np.int64),
        lines=np.asarray(lines, dtype=np.int64),
    )
