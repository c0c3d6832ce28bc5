"""Bad LOBSTER input through the `attnlab` CLI: one line naming the file, line and field, exit status 2.

Each case corrupts a copy of a committed tiny day (``data/finance/tiny``, 2 levels) in the exact LOBSTER
layout and runs ``attnlab validate`` on the smoke config (validation reads the training split first, for
its statistics, and trains nothing). A leak (one file in two splits) is a named warning, not an error.
Every run must leave the input folder exactly as it was.
"""

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.finance.readers import LOBFormatError, read_fi2010, read_lobster

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "data" / "finance" / "tiny"
SMOKE = REPO / "configs" / "finance" / "smoke.yaml"


def _name(day: int, kind: str = "message") -> str:
    return f"SIM_2024-01-0{day}_34200000_57600000_{kind}_2.csv"


def _copy_days(folder: Path) -> list[Path]:
    """The three tiny days (message and orderbook files) copied into ``folder``; their message files."""
    folder.mkdir()
    for path in TINY.glob("SIM_*.csv"):
        shutil.copy(path, folder)
    return [folder / _name(day) for day in (1, 2, 3)]


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
    )


def _validate(days: list[Path], *extra: str) -> list[str]:
    train, val, test = days
    return [
        "validate",
        f"--config={SMOKE}",
        f"--data.train_files=[{train}]",
        f"--data.val_files=[{val}]",
        f"--data.test_files=[{test}]",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]


def _edit_line(path: Path, line: int, edit: Callable[[list[str]], None]) -> None:
    """Apply ``edit`` to the comma-separated fields of 1-based ``line`` of ``path``."""
    lines = path.read_text().splitlines()
    fields = lines[line - 1].split(",")
    edit(fields)
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _price_1e19(folder: Path) -> None:
    _edit_line(folder / _name(1), 3, lambda f: f.__setitem__(4, "1e19"))


def _ask2_below_bid1(folder: Path) -> None:
    _edit_line(folder / _name(1, "orderbook"), 5, lambda f: f.__setitem__(4, str(int(f[2]) - 100)))


def _time_past_a_day(folder: Path) -> None:
    _edit_line(folder / _name(1), 10, lambda f: f.__setitem__(0, "90000.5"))


def _binary_junk(folder: Path) -> None:
    path = folder / _name(1)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[6] = b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x80junk\n"
    path.write_bytes(b"".join(lines))


BAD_FILES = {
    "price 1e19": (_price_1e19, _name(1), ["line 3", "field 'price'", "out of range"]),
    "level-2 ask below level-1 bid": (_ask2_below_bid1, _name(1, "orderbook"), ["line 5", "ask_price_2"]),
    "time past 24 h": (_time_past_a_day, _name(1), ["line 10", "field 'time'", "90000.5", "86400"]),
    "binary junk": (_binary_junk, _name(1), ["line 7", "not text"]),
}


def _error_line(result) -> str:
    """The one error line of a refused run (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("attnlab: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_lobster_file_is_one_line_naming_file_line_and_field(
    run_attnlab, tmp_path: Path, case: str
) -> None:
    corrupt, bad_file, expected = BAD_FILES[case]
    days = _copy_days(tmp_path / "lobster")
    corrupt(tmp_path / "lobster")
    before = _listing(tmp_path / "lobster")
    error = _error_line(run_attnlab(*_validate(days)))
    assert bad_file in error and all(text in error for text in expected), error
    assert _listing(tmp_path / "lobster") == before


def test_horizon_longer_than_the_data_says_so(run_attnlab, tmp_path: Path) -> None:
    days = _copy_days(tmp_path / "lobster")
    before = _listing(tmp_path / "lobster")
    error = _error_line(run_attnlab(*_validate(days, "--data.horizons=[5, 2000]")))
    assert "horizon 2000 exceeds the events available" in error and "data.horizons" in error, error
    assert _name(1) in error and "no finite value" not in error
    assert _listing(tmp_path / "lobster") == before


@pytest.mark.slow
def test_one_file_in_two_splits_is_a_named_warning(run_attnlab, tmp_path: Path) -> None:
    days = _copy_days(tmp_path / "lobster")
    before = _listing(tmp_path / "lobster")
    result = run_attnlab(*_validate([days[0], days[0], days[2]]))
    assert result.returncode == 0, result.stderr[-3000:]
    warning = [line for line in result.stderr.splitlines() if "SplitOverlapWarning" in line]
    assert len(warning) == 1 and str(days[0]) in warning[0], result.stderr[-3000:]
    assert "training and validation data" in warning[0] and "leak" in warning[0]
    assert _listing(tmp_path / "lobster") == before


# ------------------------------------------------------------ the level-order check, in process


def _book_row(ask: list[int], bid: list[int]) -> list[int]:
    row = []
    for a, b in zip(ask, bid, strict=True):
        row += [a, 100, b, 100]
    return row


def _write_day(folder: Path, rows: list[list[int]]) -> Path:
    levels = len(rows[0]) // 4
    message = folder / f"X_2024-01-01_34200000_57600000_message_{levels}.csv"
    message.write_text("".join(f"{34200 + i}.5,1,{i},100,1000000,1\n" for i in range(len(rows))))
    book = folder / f"X_2024-01-01_34200000_57600000_orderbook_{levels}.csv"
    book.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    return message


def test_empty_deeper_levels_pass_but_a_quoted_level_after_an_empty_one_fails(tmp_path: Path) -> None:
    ask_dummy, bid_dummy = 9_999_999_999, -9_999_999_999
    good = [
        _book_row([1000100, 1000200, 1000300], [1000000, 999900, 999800]),
        _book_row([1000100, ask_dummy, ask_dummy], [1000000, 999900, bid_dummy]),
    ]
    day = read_lobster(_write_day(tmp_path, good))
    np.testing.assert_array_equal(day.book[1, 4::4], [ask_dummy, ask_dummy])
    bad = [*good, _book_row([1000100, ask_dummy, 1000300], [1000000, 999900, 999800])]
    with pytest.raises(LOBFormatError, match=r"line 3, field 'ask_price_3': ask price 1000300 at level 3"):
        read_lobster(_write_day(tmp_path, bad))
    bad = [*good, _book_row([1000100, 1000200, 1000300], [1000000, 1000000, 999800])]
    with pytest.raises(LOBFormatError, match=r"line 3, field 'bid_price_2': bid price 1000000 at level 2"):
        read_lobster(_write_day(tmp_path, bad))


def test_binary_junk_in_an_fi2010_file_names_the_file_and_row(tmp_path: Path, fi2010_writer) -> None:
    path = tmp_path / "Train_Dst_NoAuction_ZScore_CF_7.txt"
    fi2010_writer(path, 20)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[100] = b"\xff\xfe" + lines[100]
    path.write_bytes(b"".join(lines))
    with pytest.raises(LOBFormatError, match=rf"^{path}, row 101: not text"):
        read_fi2010(path)
