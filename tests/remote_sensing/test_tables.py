"""The Statlog (Landsat) reader: value order, header/separator variants, errors naming file, line, field."""

from pathlib import Path

import numpy as np
import pytest

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.tables import STATLOG_FIELDS, read_statlog


def _row(values: list[int], label: int, sep: str = " ") -> str:
    return sep.join(str(v) for v in [*values, label]) + "\n"


def test_value_order_is_pixel_major_band_minor(tmp_path: Path) -> None:
    # Value k of the row is pixel k // 4 (left to right, top to bottom), band k % 4.
    values = [10 * (k // 4) + (k % 4) for k in range(36)]
    path = tmp_path / "sat.trn"
    path.write_text(_row(values, 3))
    table = read_statlog(path)
    patch = table.patches[0]
    assert patch.shape == (4, 3, 3)
    for pixel in range(9):
        r, c = divmod(pixel, 3)
        assert patch[:, r, c].tolist() == [10 * pixel + b for b in range(4)]
    # UCI: attributes 17-20 are the central pixel.
    assert patch[:, 1, 1].tolist() == values[16:20]
    assert table.labels.tolist() == [3] and table.lines.tolist() == [1]


@pytest.mark.parametrize("sep", [" ", "\t", "  "])
@pytest.mark.parametrize("header", ["", "a1 a2 label\n", "\t".join(str(i) for i in range(1, 38)) + "\n"])
def test_separators_and_headers(tmp_path: Path, sep: str, header: str) -> None:
    rows = [_row([i + k for k in range(36)], label, sep) for i, label in enumerate([1, 7, 5])]
    path = tmp_path / "t.txt"
    path.write_text(header + "\n".join(r.rstrip("\n") for r in rows) + "\n\n")
    table = read_statlog(path)
    assert table.labels.tolist() == [1, 7, 5]
    assert table.patches[1, 0, 0, 0] == 1
    first = 2 if header else 1
    assert table.lines.tolist() == [first, first + 1, first + 2]


def test_explicit_header_flag(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(_row([1] * 36, 1) + _row([2] * 36, 2))
    assert read_statlog(path, header=True).labels.tolist() == [2]
    assert read_statlog(path, header=False).labels.tolist() == [1, 2]


def test_label_outside_classes_names_file_line_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.trn"
    path.write_text(_row([1] * 36, 1) + _row([1] * 36, 6))
    with pytest.raises(InputError, match=rf"bad\.trn, line 2, field {STATLOG_FIELDS} \(class\): '6'"):
        read_statlog(path)
    assert read_statlog(path, classes=[1, 6]).labels.tolist() == [1, 6]


def test_bad_value_and_field_count(tmp_path: Path) -> None:
    path = tmp_path / "bad.trn"
    values = [str(v) for v in range(36)]
    values[5] = "x"
    path.write_text(_row([1] * 36, 1) + " ".join([*values, "1"]) + "\n")
    with pytest.raises(InputError, match=r"bad\.trn, line 2, field 6: expected a band value, got 'x'"):
        read_statlog(path)
    path.write_text(_row([1] * 35, 1))
    with pytest.raises(InputError, match=r"bad\.trn, line 1: expected 37 fields .* got 36"):
        read_statlog(path)
    path.write_text("\n\n")
    with pytest.raises(InputError, match="no Statlog rows"):
        read_statlog(path)
    with pytest.raises(InputFileNotFoundError, match=r"missing\.trn"):
        read_statlog(tmp_path / "missing.trn")


def test_real_sat_trn(shared_data: Path) -> None:
    path = shared_data / "remote_sensing" / "statlog_landsat" / "sat.trn"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    table = read_statlog(path)
    assert len(table) == 4435
    labels, counts = np.unique(table.labels, return_counts=True)
    assert labels.tolist() == [1, 2, 3, 4, 5, 7]
    assert counts.tolist() == [1072, 479, 961, 415, 470, 1038]
    assert table.patches.min() >= 0 and table.patches.max() <= 255
    # First data row of the file (line 2, after the header): fields 17-20 are 92 112 118 85.
    assert table.lines[0] == 2
    assert table.patches[0, :, 1, 1].tolist() == [92, 112, 118, 85]
    assert table.patches[0, :, 0, 0].tolist() == [92, 115, 120, 94]
