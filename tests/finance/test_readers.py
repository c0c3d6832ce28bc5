"""LOBSTER and FI-2010 readers: parsing, validation errors that name file and line/field, the real sample."""

import datetime as dt
import hashlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.finance.readers import (
    FI2010_HORIZONS,
    LOBFormatError,
    LobsterFileInfo,
    halted_rows,
    parse_lobster_filename,
    read_fi2010,
    read_lobster,
)

Copy = Callable[..., tuple[Path, Path]]
Writer = Callable[..., np.ndarray]


def edit_line(path: Path, line: int, change: Callable[[list[str]], list[str]]) -> None:
    """Rewrite 1-based ``line`` of a CSV copy through ``change`` (fields in, fields out)."""
    lines = path.read_text().splitlines()
    lines[line - 1] = ",".join(change(lines[line - 1].split(",")))
    path.write_text("\n".join(lines) + "\n")


def set_field(index: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(fields: list[str]) -> list[str]:
        fields[index] = value
        return fields

    return change


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ file names


def test_parse_lobster_filename() -> None:
    info = parse_lobster_filename("/x/AMZN_2012-06-21_34200000_45900000_message_1.csv")
    assert info == LobsterFileInfo("AMZN", dt.date(2012, 6, 21), 34_200_000, 45_900_000, "message", 1)
    book = parse_lobster_filename("BRK_A_2015-01-02_34200000_57600000_orderbook_10.csv")
    assert (book.ticker, book.kind, book.levels) == ("BRK_A", "orderbook", 10)
    assert info.same_day(parse_lobster_filename("AMZN_2012-06-21_34200000_45900000_orderbook_1.csv"))


@pytest.mark.parametrize(
    "name",
    [
        "AMZN_2012-06-21_message_1.csv",
        "AMZN_2012-06-21_34200000_45900000_trades_1.csv",
        "AMZN_2012-13-21_34200000_45900000_message_1.csv",
        "AMZN_2012-06-21_45900000_34200000_message_1.csv",
        "AMZN_2012-06-21_34200000_45900000_message_0.csv",
        "AMZN_2012-06-21_34200000_45900000_message_1.txt",
    ],
)
def test_bad_lobster_filename_names_file_and_pattern(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        parse_lobster_filename(name)
    assert "TICKER_DATE_START_END_{message,orderbook}_LEVEL.csv" in str(info.value)


# ------------------------------------------------------------------------------------------ LOBSTER


def test_read_simulated_day(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    before = (digest(message), digest(orderbook))
    day = read_lobster(message)
    assert day.orderbook_path == orderbook
    n = len(message.read_text().splitlines())
    assert len(day) == n and day.book.shape == (n, 40) and day.levels == 10
    assert day.time.dtype == np.float64 and day.event_type.dtype == np.int8 and day.direction.dtype == np.int8
    assert day.price.dtype == np.int64 and day.size.dtype == np.int64 and day.order_id.dtype == np.int64
    assert set(np.unique(day.direction)) <= {-1, 1}
    assert day.info.ticker == "SIM" and day.info.kind == "message"
    assert (digest(message), digest(orderbook)) == before  # inputs are never modified


def test_seventh_message_column_is_accepted(sim_copy: Copy) -> None:
    message, _ = sim_copy()
    lines = message.read_text().splitlines()
    message.write_text("".join(f"{line},0\n" for line in lines))
    assert len(read_lobster(message)) == len(lines)


def test_missing_files_name_the_path(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    orderbook.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(orderbook))):
        read_lobster(message)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_lobster(message.parent / "nowhere" / message.name)


def test_orderbook_name_must_match(sim_copy: Copy, sim_files: list[str]) -> None:
    message, _ = sim_copy(0)
    _, other = sim_copy(1, folder="other")
    with pytest.raises(ValueError, match="does not match"):
        read_lobster(message, other)


# Each case: (file, 1-based line, edit, expected words in the message).
MALFORMED = {
    "missing_column": ("message", 7, lambda f: f[:5], ["line 7", "missing column"]),
    "extra_columns": ("message", 9, lambda f: [*f, "1", "2"], ["line 9", "extra column"]),
    "non_numeric": ("message", 5, set_field(3, "abc"), ["line 5", "field 'size'", "non-numeric", "'abc'"]),
    "nan": ("message", 6, set_field(4, "nan"), ["line 6", "field 'price'", "NaN"]),
    "empty_field": ("message", 6, set_field(4, ""), ["line 6", "field 'price'"]),
    "infinite": ("orderbook", 8, set_field(1, "inf"), ["line 8", "field 'ask_size_1'", "infinite"]),
    "non_integer": ("message", 4, set_field(4, "1000000.5"), ["line 4", "field 'price'", "integer"]),
    "event_type": ("message", 11, set_field(1, "9"), ["line 11", "field 'event_type'", "1..7"]),
    "direction": ("message", 12, set_field(5, "0"), ["line 12", "field 'direction'"]),
    "negative_size": ("orderbook", 13, set_field(3, "-5"), ["line 13", "field 'bid_size_1'", "negative"]),
    "book_missing_column": ("orderbook", 3, lambda f: f[:-1], ["line 3", "missing column"]),
    "book_extra_column": ("orderbook", 3, lambda f: [*f, "0"], ["line 3", "extra column"]),
    "first_line_short": ("orderbook", 1, lambda f: f[:-1], ["line 1", "found 39 columns, expected 40"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_name_file_and_line(case: str, sim_copy: Copy) -> None:
    kind, line, change, words = MALFORMED[case]
    message, orderbook = sim_copy()
    target = message if kind == "message" else orderbook
    edit_line(target, line, change)
    with pytest.raises(LOBFormatError) as info:
        read_lobster(message)
    text = str(info.value)
    assert str(target) in text
    for word in words:
        assert word in text, (word, text)


def test_decreasing_timestamp(sim_copy: Copy) -> None:
    message, _ = sim_copy()
    edit_line(message, 20, set_field(0, "30000.0"))
    with pytest.raises(LOBFormatError, match=r"line 20, field 'time': decreasing timestamp") as info:
        read_lobster(message)
    assert str(message) in str(info.value)


def test_row_count_mismatch_names_both_files(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    lines = orderbook.read_text().splitlines()
    orderbook.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(LOBFormatError) as info:
        read_lobster(message)
    text = str(info.value)
    assert str(message) in text and str(orderbook) in text
    assert f"{len(lines)} rows" in text and f"{len(lines) - 3} rows" in text


def test_level_in_name_must_match_columns(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    renamed_message = message.with_name(message.name.replace("_10.csv", "_9.csv"))
    renamed_book = orderbook.with_name(orderbook.name.replace("_10.csv", "_9.csv"))
    message.rename(renamed_message)
    orderbook.rename(renamed_book)
    with pytest.raises(
        LOBFormatError, match=r"line 1: extra column\(s\): found 40 columns, expected 36"
    ) as info:
        read_lobster(renamed_message)
    assert str(renamed_book) in str(info.value)


def test_empty_file(sim_copy: Copy) -> None:
    message, _ = sim_copy()
    message.write_text("")
    with pytest.raises(LOBFormatError, match="empty"):
        read_lobster(message)


def _cross(orderbook: Path, line: int) -> None:
    def change(fields: list[str]) -> list[str]:
        fields[0] = fields[2]  # best ask = best bid
        return fields

    edit_line(orderbook, line, change)


def test_crossed_book_outside_halt(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    _cross(orderbook, 30)
    with pytest.raises(LOBFormatError, match=r"line 30, field 'ask_price_1': crossed book") as info:
        read_lobster(message)
    assert str(orderbook) in str(info.value)


def _halt(message: Path, start: int, quotes: int, trading: int) -> None:
    for line, price in ((start, "-1"), (quotes, "0"), (trading, "1")):
        edit_line(message, line, lambda f, p=price: [f[0], "7", "0", "0", p, "-1"])


def test_crossed_book_inside_halt_is_allowed(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()
    _halt(message, 40, 45, 50)
    for line in (40, 43, 47, 50):
        _cross(orderbook, line)
    day = read_lobster(message)
    assert (day.event_type == 7).sum() == 3
    _cross(orderbook, 51)  # after trading resumed
    with pytest.raises(LOBFormatError, match="line 51"):
        read_lobster(message)


def test_halt_message_price_is_checked(sim_copy: Copy) -> None:
    message, _ = sim_copy()
    edit_line(message, 40, lambda f: [f[0], "7", "0", "0", "5", "-1"])
    with pytest.raises(LOBFormatError, match=r"line 40, field 'price': trading-halt message"):
        read_lobster(message)


def test_halted_rows() -> None:
    types = np.array([1, 7, 1, 7, 1, 7, 1, 7, 1])
    price = np.array([5, -1, 5, 0, 5, 1, 5, -1, 5])
    assert halted_rows(types, price).tolist() == [False, True, True, True, True, True, False, True, True]


def test_empty_side_is_not_crossed(sim_copy: Copy) -> None:
    message, orderbook = sim_copy()

    def empty_ask_side(fields: list[str]) -> list[str]:
        for level in range(10):
            fields[4 * level], fields[4 * level + 1] = "9999999999", "0"
        return fields

    def empty_bid_side(fields: list[str]) -> list[str]:
        for level in range(10):
            fields[4 * level + 2], fields[4 * level + 3] = "-9999999999", "0"
        return fields

    edit_line(orderbook, 60, empty_ask_side)
    edit_line(orderbook, 61, empty_bid_side)
    day = read_lobster(message)
    assert day.book[59, 0] == 9_999_999_999 and day.book[60, 2] == -9_999_999_999


@pytest.mark.realdata
def test_real_amzn_sample(amzn_message: Path) -> None:
    orderbook = amzn_message.with_name(amzn_message.name.replace("_message_", "_orderbook_"))
    before = (digest(amzn_message), digest(orderbook))
    day = read_lobster(amzn_message)
    assert len(day) == 29_347 and day.book.shape == (29_347, 4) and day.levels == 1
    assert day.info == LobsterFileInfo("AMZN", dt.date(2012, 6, 21), 34_200_000, 45_900_000, "message", 1)
    assert set(np.unique(day.event_type)) <= {1, 2, 3, 4, 5}
    assert 34_200 <= day.time[0] <= day.time[-1] <= 45_900
    assert (digest(amzn_message), digest(orderbook)) == before


# ------------------------------------------------------------------------------------------ FI-2010


def test_read_fi2010(tmp_path: Path, fi2010_writer: Writer) -> None:
    path = tmp_path / "Train_Dst_NoAuction_ZScore_CF_7.txt"
    written = fi2010_writer(path, 50)
    data = read_fi2010(path)
    assert data.shape == (149, 50) and data.dtype == np.float64
    np.testing.assert_allclose(data, written)
    assert FI2010_HORIZONS == (10, 20, 30, 50, 100)


def test_fi2010_wrong_row_count(tmp_path: Path, fi2010_writer: Writer) -> None:
    path = tmp_path / "short.txt"
    fi2010_writer(path, 20, rows=148)
    with pytest.raises(LOBFormatError, match=r"short\.txt: found 148 rows, expected 149"):
        read_fi2010(path)
    long = tmp_path / "long.txt"
    fi2010_writer(long, 20, rows=150)
    with pytest.raises(LOBFormatError, match=r"long\.txt, row 150: more than 149 rows"):
        read_fi2010(long)


def _replace_token(path: Path, row: int, sample: int, token: str) -> None:
    lines = path.read_text().splitlines()
    tokens = lines[row - 1].split()
    tokens[sample - 1] = token
    lines[row - 1] = " ".join(tokens)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("row", "token", "expected"),
    [
        (3, "x1", r"row 3, sample 7: non-numeric value 'x1'"),
        (10, "nan", r"row 10, sample 7: value nan; expected a finite number"),
        (146, "4", r"row 146 \(label, horizon 20\), sample 7: label 4\.0"),
    ],
)
def test_fi2010_bad_values_name_row_and_sample(
    tmp_path: Path, fi2010_writer: Writer, row: int, token: str, expected: str
) -> None:
    path = tmp_path / "bad.txt"
    fi2010_writer(path, 20)
    _replace_token(path, row, 7, token)
    with pytest.raises(LOBFormatError, match=expected) as info:
        read_fi2010(path)
    assert str(path) in str(info.value)


def test_fi2010_ragged_rows_and_missing_file(tmp_path: Path, fi2010_writer: Writer) -> None:
    path = tmp_path / "ragged.txt"
    fi2010_writer(path, 20)
    lines = path.read_text().splitlines()
    lines[4] = lines[4] + " 1.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LOBFormatError, match=r"row 5: 21 values, expected 20"):
        read_fi2010(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        read_fi2010(tmp_path / "missing.txt")


def test_missing_pandas_names_the_extra(sim_copy: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    message, _ = sim_copy()
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'attnlab\[finance\]'"):
        read_lobster(message)


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch, sim_files: list[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas looks like
    with pytest.raises(ImportError, match=r"pip install 'attnlab\[finance\]'"):
        read_lobster(sim_files[0])
