"""Readers for limit-order-book files: LOBSTER message/orderbook CSVs and FI-2010 text files.

Both readers validate what they read and raise :class:`LOBFormatError` (a ``ValueError``) whose message
names the file, the 1-based line (or FI-2010 row) and/or the field, and what was expected. Input files are
only ever opened for reading.

LOBSTER (https://lobsterdata.com) ships one day of one ticker as two header-less CSV files::

    TICKER_DATE_START_END_message_LEVEL.csv     time, type, order id, size, price, direction [, extra]
    TICKER_DATE_START_END_orderbook_LEVEL.csv   ask p 1, ask s 1, bid p 1, bid s 1, ask p 2, ...

Row *i* of the orderbook is the book after message *i*. Prices are USD × 10000. Empty levels carry the
dummy prices 9999999999 (ask) / -9999999999 (bid) with size 0.

FI-2010 (Ntakaris et al. 2018) ships whitespace-separated text files of 149 rows × N samples: rows 0-143
are features, rows 144-148 the labels for horizons 10, 20, 30, 50 and 100 events (1 up, 2 stationary,
3 down).
"""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from core.utils import InputError, InputFileNotFoundError, require

__all__ = [
    "FI2010_HORIZONS",
    "FI2010_NUM_FEATURES",
    "FI2010_NUM_ROWS",
    "LOBSTER_DUMMY_ASK",
    "LOBSTER_DUMMY_BID",
    "MESSAGE_COLUMNS",
    "LOBFormatError",
    "LobsterDay",
    "LobsterFileInfo",
    "halted_rows",
    "orderbook_columns",
    "orderbook_file_for",
    "parse_lobster_filename",
    "read_fi2010",
    "read_lobster",
    "require_pandas",
]

FI2010_HORIZONS = (10, 20, 30, 50, 100)
FI2010_NUM_FEATURES = 144
FI2010_NUM_ROWS = FI2010_NUM_FEATURES + len(FI2010_HORIZONS)
LOBSTER_DUMMY_ASK = 9_999_999_999
LOBSTER_DUMMY_BID = -9_999_999_999
MESSAGE_COLUMNS = ("time", "event_type", "order_id", "size", "price", "direction")
HALT_EVENT = 7
HALT_START, QUOTE_RESUME, TRADE_RESUME = -1, 0, 1
SECONDS_PER_DAY = 86_400
# Integers beyond 2**53 are not exact in the float64 the CSV is parsed into, and 2**63 would wrap at the
# int64 cast; LOBSTER's largest value, the dummy price 9999999999, is far below.
MAX_INTEGER = 2**53

_FILENAME_PATTERN = "TICKER_DATE_START_END_{message,orderbook}_LEVEL.csv"
_FILENAME_RE = re.compile(
    r"^(?P<ticker>.+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
    r"_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)


class LOBFormatError(InputError):
    """A limit-order-book file does not have the expected layout or content."""


@dataclass(frozen=True)
class LobsterFileInfo:
    """What a LOBSTER file name says about its content.

    Attributes:
        ticker: Instrument symbol, e.g. ``AMZN``.
        date: Trading day.
        start_ms: Start of the time window, milliseconds after midnight.
        end_ms: End of the time window, milliseconds after midnight.
        kind: ``message`` or ``orderbook``.
        levels: Number of book levels per side.
    """

    ticker: str
    date: dt.date
    start_ms: int
    end_ms: int
    kind: Literal["message", "orderbook"]
    levels: int

    def same_day(self, other: "LobsterFileInfo") -> bool:
        """Whether ``other`` describes the same ticker, day, window and depth (any kind)."""
        return (self.ticker, self.date, self.start_ms, self.end_ms, self.levels) == (
            other.ticker,
            other.date,
            other.start_ms,
            other.end_ms,
            other.levels,
        )


@dataclass
class LobsterDay:
    """One LOBSTER day (message + orderbook file), as validated numpy arrays of N rows.

    Attributes:
        time: Seconds after midnight, float64.
        event_type: LOBSTER event type 1..7, int8.
        order_id: Order id, int64.
        size: Shares, int64.
        price: USD × 10000, int64.
        direction: +1 buy / -1 sell limit order, int8.
        book: Book after each message, int64 ``(N, 4 * levels)``: ask price 1, ask size 1, bid price 1,
            bid size 1, ask price 2, ...
        info: Parsed message file name.
        message_path: Source message file.
        orderbook_path: Source orderbook file.
    """

    time: np.ndarray
    event_type: np.ndarray
    order_id: np.ndarray
    size: np.ndarray
    price: np.ndarray
    direction: np.ndarray
    book: np.ndarray
    info: LobsterFileInfo
    message_path: Path
    orderbook_path: Path

    def __len__(self) -> int:
        return len(self.time)

    @property
    def levels(self) -> int:
        """Book levels per side."""
        return self.book.shape[1] // 4


def require_pandas() -> ModuleType:
    """Import pandas, or explain how to install it.

    Returns:
        The pandas module.

    Raises:
        ImportError: If pandas is not installed.
    """
    return require("pandas", "finance")


def orderbook_columns(levels: int) -> list[str]:
    """Names of the ``4 * levels`` orderbook columns, in file order.

    Args:
        levels: Book levels per side.

    Returns:
        ``["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1", "ask_price_2", ...]``.
    """
    names = []
    for level in range(1, levels + 1):
        names += [f"ask_price_{level}", f"ask_size_{level}", f"bid_price_{level}", f"bid_size_{level}"]
    return names


def parse_lobster_filename(path: str | Path) -> LobsterFileInfo:
    """Parse ``TICKER_DATE_START_END_{message,orderbook}_LEVEL.csv``.

    Args:
        path: A LOBSTER file path, e.g. ``AMZN_2012-06-21_34200000_45900000_message_1.csv``.

    Returns:
        The parsed :class:`LobsterFileInfo`.

    Raises:
        LOBFormatError: If the name does not follow the pattern, the date is invalid, the window is empty
            or the level is 0.
    """
    name = Path(path).name
    match = _FILENAME_RE.match(name)
    if match is None:
        raise LOBFormatError(f"{path}: not a LOBSTER file name; expected the pattern {_FILENAME_PATTERN}")
    try:
        date = dt.date.fromisoformat(match["date"])
    except ValueError as err:
        raise LOBFormatError(
            f"{path}: invalid date {match['date']!r} in the file name ({_FILENAME_PATTERN})"
        ) from err
    start, end, levels = int(match["start"]), int(match["end"]), int(match["levels"])
    if start >= end:
        raise LOBFormatError(
            f"{path}: START {start} must be before END {end} in the file name ({_FILENAME_PATTERN})"
        )
    if levels < 1:
        raise LOBFormatError(f"{path}: LEVEL must be at least 1 in the file name ({_FILENAME_PATTERN})")
    kind: Literal["message", "orderbook"] = "message" if match["kind"] == "message" else "orderbook"
    return LobsterFileInfo(match["ticker"], date, start, end, kind, levels)


def read_lobster(message_path: str | Path, orderbook_path: str | Path | None = None) -> LobsterDay:
    """Read and validate one LOBSTER day.

    Args:
        message_path: The ``..._message_LEVEL.csv`` file.
        orderbook_path: The matching orderbook file; default: ``message_path`` with ``_message_`` replaced
            by ``_orderbook_``.

    Returns:
        The validated :class:`LobsterDay`.

    Raises:
        InputFileNotFoundError: If a file is missing (the message names the path).
        LOBFormatError: If a file name is not a LOBSTER name, or the two names disagree; or
            if a file's content is malformed: a missing or extra column, a non-numeric, NaN,
            infinite or non-integer value, an integer beyond ±2**53, text that is not ASCII/UTF-8 (binary
            junk), a time outside 0..86400 s, decreasing timestamps, an event type outside 1..7, a direction
            other than ±1, a negative size, a row-count mismatch between the two files, price levels out of
            order on a side (ask prices must rise and bid prices fall with the level), or a crossed book
            outside a trading halt.
    """
    message_path = Path(message_path)
    info = parse_lobster_filename(message_path)
    if info.kind != "message":
        raise LOBFormatError(
            f"{message_path}: expected a message file (…_message_LEVEL.csv), got an orderbook file"
        )
    if orderbook_path is None:
        orderbook_path = orderbook_file_for(message_path)
    orderbook_path = Path(orderbook_path)
    book_info = parse_lobster_filename(orderbook_path)
    if book_info.kind != "orderbook" or not info.same_day(book_info):
        raise LOBFormatError(
            f"orderbook file {orderbook_path} does not match message file {message_path} "
            "(expected the same TICKER_DATE_START_END and LEVEL, kind 'orderbook')"
        )
    for path, what in ((message_path, "message"), (orderbook_path, "orderbook")):
        if not path.is_file():
            raise InputFileNotFoundError(f"LOBSTER {what} file not found: {path}")

    messages = _read_numeric_csv(message_path, MESSAGE_COLUMNS, optional_extra=1)
    book = _read_numeric_csv(orderbook_path, tuple(orderbook_columns(info.levels)), optional_extra=0)
    if len(messages) != len(book):
        raise LOBFormatError(
            f"row-count mismatch: message file {message_path} has {len(messages)} rows but orderbook file "
            f"{orderbook_path} has {len(book)} rows (expected one book row per message)"
        )
    _check_integral(messages[:, 1:6], message_path, MESSAGE_COLUMNS[1:])
    _check_integral(book, orderbook_path, orderbook_columns(info.levels))
    day = LobsterDay(
        time=messages[:, 0].astype(np.float64),
        event_type=messages[:, 1].astype(np.int8),
        order_id=messages[:, 2].astype(np.int64),
        size=messages[:, 3].astype(np.int64),
        price=messages[:, 4].astype(np.int64),
        direction=messages[:, 5].astype(np.int8),
        book=book.astype(np.int64),
        info=info,
        message_path=message_path,
        orderbook_path=orderbook_path,
    )
    _validate_messages(day)
    _validate_book(day)
    return day


def orderbook_file_for(message_path: str | Path) -> Path:
    """The orderbook file that belongs to a message file (``_message_`` → ``_orderbook_``).

    Raises:
        LOBFormatError: If the name has no ``_message_`` part.
    """
    message_path = Path(message_path)
    if "_message_" not in message_path.name:
        raise LOBFormatError(f"{message_path}: cannot derive the orderbook file name (no '_message_' in it)")
    head, _, tail = message_path.name.rpartition("_message_")
    return message_path.with_name(f"{head}_orderbook_{tail}")


def _fail(path: Path, what: str, row: int | None = None, field: str | None = None) -> LOBFormatError:
    """Build an error naming the file, the 1-based line (``row`` is 0-based) and the field."""
    where = [str(path)]
    if row is not None:
        where.append(f"line {row + 1}")
    if field is not None:
        where.append(f"field '{field}'")
    return LOBFormatError(f"{', '.join(where)}: {what}")


def _read_numeric_csv(path: Path, columns: tuple[str, ...], optional_extra: int) -> np.ndarray:
    """Read a header-less numeric CSV into float64 ``(N, len(columns))``, validating its layout.

    Args:
        path: The CSV file (opened read-only).
        columns: Expected column names, in order.
        optional_extra: How many further trailing columns are accepted and dropped.

    Returns:
        The values of the expected columns as float64.

    Raises:
        LOBFormatError: Wrong field count, empty file, non-numeric or non-finite value.
    """
    pd = require_pandas()
    expected = len(columns)
    try:
        with path.open("r", encoding="utf-8", newline="") as handle:
            frame = pd.read_csv(handle, header=None, engine="c", skip_blank_lines=False)
    except UnicodeDecodeError as err:
        line = _undecodable_line(path)
        raise _fail(
            path,
            f"not text: undecodable byte(s) ({err.reason}); expected comma-separated numbers in ASCII "
            "(is this a LOBSTER CSV file?)",
            row=line,
        ) from err
    except pd.errors.EmptyDataError as err:
        raise _fail(path, f"the file is empty; expected {expected} comma-separated columns") from err
    except pd.errors.ParserError as err:
        raise _parser_error(path, str(err), expected, optional_extra) from err
    found = frame.shape[1]
    if not expected <= found <= expected + optional_extra:
        which = "missing column(s)" if found < expected else "extra column(s)"
        allowed = f"{expected}" if optional_extra == 0 else f"{expected} to {expected + optional_extra}"
        raise _fail(path, f"{which}: found {found} columns, expected {allowed} ({', '.join(columns)})", row=0)
    frame = frame.iloc[:, :expected]
    values = np.empty(frame.shape, dtype=np.float64)
    for j in range(expected):
        values[:, j] = _numeric_column(frame.iloc[:, j], path, columns[j], pd)
    _check_finite(values, path, columns)
    return values


def _undecodable_line(path: Path) -> int | None:
    """0-based index of the first line that is not UTF-8, or None.

    Error path only: the decoder's offset is relative to the chunk pandas read, not to the file.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _raw_line(path: Path, row: int) -> str:
    """The text of 0-based ``row`` of a file (error path only)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle):
            if number == row:
                return line.rstrip("\r\n")
    return ""


def _parser_error(path: Path, message: str, expected: int, optional_extra: int) -> LOBFormatError:
    """Turn pandas' tokenizer error (``Expected 6 fields in line 5, saw 7``) into a LOBFormatError."""
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if match is None:
        return _fail(path, f"cannot parse the file as CSV: {message}")
    first, line, saw = (int(g) for g in match.groups())
    if not expected <= first <= expected + optional_extra:
        # The first line already has the wrong width; report it (the tokenizer follows the first line).
        return _fail(path, f"found {first} columns, expected {expected}", row=0)
    which = "extra column(s)" if saw > first else "missing column(s)"
    return _fail(path, f"{which}: found {saw} columns, expected {first} like line 1", row=line - 1)


def _numeric_column(column: Any, path: Path, name: str, pd: ModuleType) -> np.ndarray:
    """Column as float64; a non-numeric entry or a short (padded) row raises with its line."""
    if column.dtype.kind in "iuf":
        return column.to_numpy(dtype=np.float64)
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna().to_numpy() & column.notna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(path, f"non-numeric value {column.iloc[row]!r}; expected a number", row=row, field=name)
    return numbers.to_numpy(dtype=np.float64)


def _check_finite(values: np.ndarray, path: Path, columns: tuple[str, ...]) -> None:
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    value = values[row, col]
    if np.isnan(value):
        line = _raw_line(path, row)
        found = len(line.split(",")) if line else 0
        if found < len(columns):  # pandas pads short rows with NaN
            raise _fail(
                path,
                f"missing column(s): found {found} columns, expected {len(columns)}",
                row=row,
                field=columns[col],
            )
        raise _fail(path, "NaN value; expected a finite number", row=row, field=columns[col])
    raise _fail(path, f"infinite value {value}; expected a finite number", row=row, field=columns[col])


def _check_integral(values: np.ndarray, path: Path, columns: tuple[str, ...] | list[str]) -> None:
    """Integers that fit the int64 cast exactly; checked before the cast, which would wrap ``1e19``."""
    bad = values != np.round(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise _fail(
            path,
            f"non-integer value {float(values[row, col])!r}; expected an integer",
            row=int(row),
            field=columns[col],
        )
    huge = np.abs(values) > MAX_INTEGER
    if huge.any():
        row, col = np.argwhere(huge)[0]
        raise _fail(
            path,
            f"value {float(values[row, col])!r} is out of range; expected an integer within ±2**53 "
            f"(prices are USD × 10000, empty levels {LOBSTER_DUMMY_ASK} / {LOBSTER_DUMMY_BID})",
            row=int(row),
            field=columns[col],
        )


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True in a 1-D boolean array, or None."""
    if not mask.any():
        return None
    return int(np.argmax(mask))


def _validate_messages(day: LobsterDay) -> None:
    path = day.message_path
    if (row := _first((day.time < 0) | (day.time > SECONDS_PER_DAY))) is not None:
        raise _fail(
            path,
            f"time {float(day.time[row])!r} s is not within one day; expected seconds after midnight, "
            f"0 to {SECONDS_PER_DAY}",
            row=row,
            field="time",
        )
    if (row := _first(np.diff(day.time) < 0)) is not None:
        raise _fail(
            path,
            f"decreasing timestamp {float(day.time[row + 1])!r} after {float(day.time[row])!r}; "
            "expected non-decreasing times",
            row=row + 1,
            field="time",
        )
    if (row := _first((day.event_type < 1) | (day.event_type > HALT_EVENT))) is not None:
        raise _fail(path, f"event type {day.event_type[row]} is not in 1..7", row=row, field="event_type")
    halt = day.event_type == HALT_EVENT
    if (row := _first(~halt & (np.abs(day.direction) != 1))) is not None:
        raise _fail(
            path, f"direction {day.direction[row]}; expected 1 (buy) or -1 (sell)", row=row, field="direction"
        )
    if (row := _first(day.size < 0)) is not None:
        raise _fail(path, f"negative size {day.size[row]}; expected >= 0", row=row, field="size")
    if (row := _first(halt & ~np.isin(day.price, (HALT_START, QUOTE_RESUME, TRADE_RESUME)))) is not None:
        raise _fail(
            path,
            f"trading-halt message (type 7) with price {day.price[row]}; expected -1 (halt), 0 (quote "
            "resumption) or 1 (trading resumption)",
            row=row,
            field="price",
        )


def halted_rows(event_type: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Rows inside a trading halt: from a halt start (type 7, price -1) to the trading resumption (price 1).

    Both ends are included: the book after the halt message and after the resumption message may still be
    crossed (the re-opening auction clears it).

    Args:
        event_type: LOBSTER event types.
        price: LOBSTER prices (for type 7: -1 halt, 0 quote resumption, 1 trading resumption).

    Returns:
        Boolean mask of halted rows.
    """
    halt = event_type == HALT_EVENT
    state = np.full(len(event_type), np.nan)
    state[halt & (price == HALT_START)] = 1.0
    state[halt & (price == TRADE_RESUME)] = 0.0
    known = ~np.isnan(state)
    last = np.maximum.accumulate(np.where(known, np.arange(len(state)), -1))
    filled = np.where(last >= 0, state[np.maximum(last, 0)], 0.0)
    return (filled == 1.0) | (halt & (price == TRADE_RESUME))


def _validate_book(day: LobsterDay) -> None:
    path, book = day.orderbook_path, day.book
    names = orderbook_columns(day.levels)
    sizes = book[:, 1::2]
    if (bad := np.argwhere(sizes < 0)).size:
        row, col = bad[0]
        raise _fail(
            path, f"negative size {sizes[row, col]}; expected >= 0", row=int(row), field=names[2 * col + 1]
        )
    _check_level_order(day, names)
    ask, bid = book[:, 0], book[:, 2]
    both_sides = (ask != LOBSTER_DUMMY_ASK) & (bid != LOBSTER_DUMMY_BID)
    crossed = both_sides & (ask <= bid) & ~halted_rows(day.event_type, day.price)
    if (row := _first(crossed)) is not None:
        raise _fail(
            path,
            f"crossed book outside a trading halt: best ask {ask[row]} <= best bid {bid[row]}; expected "
            "ask_price_1 > bid_price_1",
            row=row,
            field="ask_price_1",
        )


def _check_level_order(day: LobsterDay, names: list[str]) -> None:
    """Ask prices must rise and bid prices fall with the level; empty levels only follow quoted ones.

    An empty level carries the dummy price, which lies beyond every quoted one, so a quoted level after an
    empty one fails the same test; two empty levels in a row are equal and pass.
    """
    book = day.book
    for side, offset, dummy, sign, word in (
        ("ask", 0, LOBSTER_DUMMY_ASK, 1, "above"),
        ("bid", 2, LOBSTER_DUMMY_BID, -1, "below"),
    ):
        prices = book[:, offset::4]
        step = sign * np.diff(prices, axis=1)
        bad = (step <= 0) & ~((prices[:, 1:] == dummy) & (prices[:, :-1] == dummy))
        if (found := np.argwhere(bad)).size:
            row, level = (int(i) for i in found[0])
            raise _fail(
                day.orderbook_path,
                f"{side} price {prices[row, level + 1]} at level {level + 2} is not {word} level "
                f"{level + 1}'s {prices[row, level]}; expected {side} prices "
                f"{'rising' if sign > 0 else 'falling'} with the level (unsorted or crossed levels)",
                row=row,
                field=names[4 * (level + 1) + offset],
            )


def read_fi2010(path: str | Path) -> np.ndarray:
    """Read one FI-2010 text file (149 rows × N samples) and validate it.

    Args:
        path: E.g. ``Train_Dst_NoAuction_ZScore_CF_7.txt``.

    Returns:
        float64 array of shape ``(149, N)``: rows 0-143 features, rows 144-148 labels in {1, 2, 3} for
        horizons :data:`FI2010_HORIZONS`.

    Raises:
        InputFileNotFoundError: If the file is missing.
        LOBFormatError: Wrong row count, rows of different lengths, non-numeric or non-finite values, bytes
            that are not text, or a label outside {1, 2, 3}; the message names the file, the 1-based row
            and the sample.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"FI-2010 file not found: {path}")
    rows: list[np.ndarray] = []
    try:
        with path.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(rows) >= FI2010_NUM_ROWS:
                    raise LOBFormatError(
                        f"{path}, row {number}: more than {FI2010_NUM_ROWS} rows; expected exactly 149"
                    )
                rows.append(_fi2010_row(tokens, path, number, len(rows[0]) if rows else None))
    except UnicodeDecodeError as err:
        line = _undecodable_line(path)
        raise LOBFormatError(
            f"{path}, row {'?' if line is None else line + 1}: not text: undecodable byte(s) ({err.reason}); "
            "expected whitespace-separated numbers"
        ) from err
    if len(rows) != FI2010_NUM_ROWS:
        raise LOBFormatError(
            f"{path}: found {len(rows)} rows, expected {FI2010_NUM_ROWS} (144 features + 5 label rows for "
            f"horizons {FI2010_HORIZONS}); is the file transposed or truncated?"
        )
    data = np.stack(rows)
    labels = data[FI2010_NUM_FEATURES:]
    bad = ~np.isin(labels, (1.0, 2.0, 3.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise LOBFormatError(
            f"{path}, row {FI2010_NUM_FEATURES + r + 1} (label, horizon {FI2010_HORIZONS[r]}), "
            f"sample {c + 1}: label {float(labels[r, c])!r}; expected 1 (up), 2 (stationary) or 3 (down)"
        )
    return data


def _fi2010_row(tokens: list[str], path: Path, number: int, width: int | None) -> np.ndarray:
    if width is not None and len(tokens) != width:
        raise LOBFormatError(f"{path}, row {number}: {len(tokens)} values, expected {width} like row 1")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        for sample, token in enumerate(tokens, start=1):
            try:
                float(token)
            except ValueError:
                raise LOBFormatError(
                    f"{path}, row {number}, sample {sample}: non-numeric value {token!r}; expected a number"
                ) from None
        raise
    bad = ~np.isfinite(values)
    if bad.any():
        sample = int(np.argmax(bad))
        raise LOBFormatError(
            f"{path}, row {number}, sample {sample + 1}: value {float(values[sample])!r}; "
            "expected a finite number"
        )
    return values
