"""The interaction table every reader returns, its errors, and the column parsing the readers share.

Problems raise :class:`RecDataError` (a ``ValueError``) whose message names the file, the 1-based line and
the field, e.g. ``.../ml-100k.inter:5: field 'rating' = 'abc' is not a number``; a missing file raises
:class:`RecFileNotFoundError` (both a ``RecDataError`` and a ``FileNotFoundError``). The helpers read
delimited text with pandas as strings and convert one column at a time, so an error can name the first
bad value's line.
"""

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import numpy as np

from core.utils import InputError, require

__all__ = [
    "INT_PATTERN",
    "Interactions",
    "RecDataError",
    "RecFileNotFoundError",
    "UnknownIdError",
    "datetime_column",
    "drop_blank_rows",
    "existing_file",
    "first_bad",
    "float_column",
    "header_line",
    "id_column",
    "read_table",
    "read_text",
    "require_rows",
    "where",
]

_LINE_RE = re.compile(r"line (\d+)")
_FIELDS_RE = re.compile(r"Expected (\d+) fields? in line (\d+), saw (\d+)")
INT_PATTERN = r"[+-]?\d+"  # an integer id token


class RecDataError(InputError):
    """An interaction file is missing, empty or malformed; the message names the file, line and field."""


class RecFileNotFoundError(RecDataError, FileNotFoundError):
    """An interaction file (or the data folder holding it) does not exist."""


class UnknownIdError(RecDataError, KeyError):
    """A raw user or item id given for prediction is not in the preprocessed data (also a ``KeyError``)."""

    def __str__(self) -> str:
        return Exception.__str__(self)  # KeyError's would quote the message


@dataclass(frozen=True)
class Interactions:
    """A raw interaction table: one row per user-item interaction, in file order.

    Attributes:
        users: ``(N,)`` raw user ids: ``int64`` for sequence and MovieLens files, strings for RecBole tokens
            and CSV columns.
        items: ``(N,)`` raw item ids, same conventions as ``users``.
        ratings: ``(N,)`` float64 ratings, or ``None`` when the source has none.
        timestamps: ``(N,)`` float64 times (seconds for MovieLens/RecBole), or ``None`` when the source has
            none (sequence files: the order within a user is the time order).
        source: Where the table came from, e.g. ``"recbole:/data/ml-100k/ml-100k.inter"``.
        item_table: RecBole ``.item`` side table (one column per field, named without the ``:type``;
            ``float`` fields numeric, other fields strings), or ``None``.
        user_table: RecBole ``.user`` side table, or ``None``.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: Optional[np.ndarray]
    timestamps: Optional[np.ndarray]
    source: str
    item_table: Optional[Any] = None
    user_table: Optional[Any] = None

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "ratings", "timestamps"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"Interactions.{name} has {len(value)} rows but users has {n} ({self.source})"
                )

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return (
            f"Interactions({len(self)} rows, ratings={self.ratings is not None}, "
            f"timestamps={self.timestamps is not None}, source={self.source!r})"
        )


def _pandas() -> ModuleType:
    """pandas, or an ImportError naming the ``recsys`` extra."""
    return require("pandas", "recsys")


def where(path: Path, line: Optional[int] = None, field: Optional[str] = None) -> str:
    """``path``, ``path:line`` or ``path:line: field 'name'``: the location an error message starts with."""
    location = str(path) if line is None else f"{path}:{line}"
    return location if field is None else f"{location}: field {field!r}"


def existing_file(path: "str | Path", what: str) -> Path:
    """``path`` as a ``Path`` once it is known to be a non-empty file (else the error names it)."""
    path = Path(path)
    if not path.exists():
        raise RecFileNotFoundError(f"{path}: {what} not found")
    if not path.is_file():
        raise RecDataError(f"{path}: expected a {what}, found a directory or special file")
    if path.stat().st_size == 0:
        raise RecDataError(f"{path}: the file is empty (0 bytes)")
    return path


def read_text(path: Path, encoding: str) -> str:
    """The whole file; a decoding error names the line."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise RecDataError(f"{path}:{line}: cannot decode the file as {encoding} ({err.reason})") from err


def header_line(path: Path, encoding: str) -> str:
    """The first line of a file (the header), without its line break.

    Only that line's bytes are decoded: a text reader decodes a whole chunk, so a bad byte further down
    would be blamed on the header (the full read reports it on its own line).
    """
    with path.open("rb") as f:
        raw = f.readline()
    try:
        return raw.decode(encoding).rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise RecDataError(f"{path}:1: cannot decode the header as {encoding} ({err.reason})") from err


def read_table(
    path: Path,
    *,
    sep: str,
    names: Optional[list[str]],
    encoding: str,
    quoting: int = csv.QUOTE_NONE,
    usecols: Optional[list[str]] = None,
) -> Any:
    """Read a delimited file as strings; ``names=None`` means the first line is a header.

    Blank lines are kept as rows of empty strings (dropped later) so that row ``i`` is line
    ``i + 1 + has_header``.
    """
    pd = _pandas()
    text = read_text(path, encoding)
    if len(sep) > 1:  # '::' (ML-1M): turn into a single-character separator so the C parser can be used
        if "\t" in text:
            line = text[: text.index("\t")].count("\n") + 1
            raise RecDataError(f"{path}:{line}: unexpected tab character in a {sep!r}-separated file")
        text, sep = text.replace(sep, "\t"), "\t"
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None if names is not None else 0,
            names=names,
            usecols=usecols,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            quoting=quoting,
            engine="c",
        )
    except pd.errors.ParserError as err:
        message = str(err)
        fields = _FIELDS_RE.search(message)
        if fields:
            expected, line, seen = fields.groups()
            raise RecDataError(f"{path}:{line}: expected {expected} fields, found {seen}") from err
        line_match = _LINE_RE.search(message)
        location = where(path, int(line_match.group(1)) if line_match else None)
        raise RecDataError(f"{location}: cannot parse the file ({message})") from err
    except pd.errors.EmptyDataError as err:
        raise RecDataError(f"{path}: the file has no content") from err


def drop_blank_rows(df: Any, first_line: int) -> "tuple[Any, np.ndarray]":
    """Drop rows whose fields are all empty; return the frame and each kept row's 1-based line number."""
    blank = np.ones(len(df), dtype=bool)
    for col in df.columns:
        blank &= (df[col] == "").to_numpy()
    lines = np.arange(first_line, first_line + len(df))
    if blank.any():
        df, lines = df[~blank], lines[~blank]
    return df, lines


def first_bad(bad: np.ndarray) -> int:
    """Index of the first True of ``bad``."""
    return int(np.flatnonzero(bad)[0])


def id_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str, integer: bool) -> np.ndarray:
    """A required id column: no empty values; ``integer=True`` parses int64, else keeps string tokens."""
    pd = _pandas()
    series = df[col]
    empty = (series == "").to_numpy()
    if empty.any():
        i = first_bad(empty)
        raise RecDataError(f"{where(path, int(lines[i]), field)}: missing value (an id is required)")
    if not integer:
        return series.to_numpy(dtype=str)
    parsed = pd.to_numeric(series, errors="coerce")
    if parsed.dtype.kind in "iu" and (parsed.dtype.kind == "i" or parsed.max() <= np.iinfo(np.int64).max):
        return parsed.to_numpy(dtype=np.int64)
    ok = series.str.strip().str.fullmatch(INT_PATTERN).to_numpy(dtype=bool)
    if not ok.all():
        i = first_bad(~ok)
        value = series.iloc[i]
        raise RecDataError(f"{where(path, int(lines[i]), field)} = {value!r} is not an integer id")
    raise RecDataError(f"{where(path, None, field)}: integer ids out of the int64 range")


def float_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str) -> np.ndarray:
    """A numeric column as float64; empty, non-numeric or non-finite values are errors."""
    pd = _pandas()
    series = df[col]
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = first_bad(bad)
        value = series.iloc[i]
        what = "missing value" if value == "" else f"= {value!r} is not a finite number"
        sep = ": " if value == "" else " "
        raise RecDataError(f"{where(path, int(lines[i]), field)}{sep}{what}")
    return values


def datetime_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str) -> np.ndarray:
    """A date/time column (ISO 8601) as float64 seconds since the epoch (UTC)."""
    pd = _pandas()
    series = df[col]
    parsed = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = first_bad(bad)
        value = series.iloc[i]
        raise RecDataError(f"{where(path, int(lines[i]), field)} = {value!r} is not an ISO 8601 time")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def require_rows(path: Path, lines: np.ndarray, header: bool) -> None:
    """Fail when a file has no interaction row (``lines`` are the kept rows' line numbers)."""
    if len(lines) == 0:
        what = "has a header but no interactions" if header else "has no interactions (only blank lines)"
        raise RecDataError(f"{path}: the file {what}")
