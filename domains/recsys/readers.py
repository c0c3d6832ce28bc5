"""Readers for interaction files: RecBole atomic files, S3-Rec sequence files, MovieLens and plain CSV.

Every reader returns an :class:`Interactions` table (one row per user-item interaction, in file order) and
validates what it reads. Problems raise :class:`RecDataError` (a ``ValueError``) whose message names the file,
the 1-based line and the field, e.g. ``.../ml-100k.inter:5: field 'rating' = 'abc' is not a number``. A
missing file raises :class:`RecFileNotFoundError` (both a ``RecDataError`` and a ``FileNotFoundError``).
Files are only ever opened for reading.

Formats:

* **RecBole atomic files** (``NAME.inter`` plus optional ``NAME.item`` / ``NAME.user``): tab-separated, one
  header line of ``name:type`` fields with type ``token``, ``float``, ``token_seq`` or ``float_seq``, e.g.
  ``user_id:token  item_id:token  rating:float  timestamp:float``. User and item ids are tokens (kept as
  strings); rating and time must be ``float`` fields. Fields are chosen by name.
* **Sequence files** (S3-Rec / ICLRec, e.g. Amazon ``Toys_and_Games.txt``): one line per user,
  ``user item1 item2 ...`` separated by whitespace, items in time order. There are no timestamps (the
  order is the position); ids must be integers.
* **MovieLens** ``u.data`` (ML-100K: ``user<TAB>item<TAB>rating<TAB>timestamp``) and ``ratings.dat``
  (ML-1M: ``user::item::rating::timestamp``): no header; integer ids.
* **CSV** with a header line and chosen column names (ids are kept as strings).

:func:`read_interactions` dispatches on an explicit ``format`` or detects it from the path.
"""

import csv
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Optional

import numpy as np

from core.utils import require

__all__ = [
    "ATOMIC_TYPES",
    "FORMATS",
    "Interactions",
    "RecDataError",
    "RecFileNotFoundError",
    "detect_format",
    "read_csv_interactions",
    "read_interactions",
    "read_ml1m",
    "read_ml100k",
    "read_recbole",
    "read_sequence_file",
]

ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
FORMATS = ("recbole", "sequence", "ml100k", "ml1m", "csv")
Format = Literal["recbole", "sequence", "ml100k", "ml1m", "csv", "auto"]

_LINE_RE = re.compile(r"line (\d+)")
_FIELDS_RE = re.compile(r"Expected (\d+) fields? in line (\d+), saw (\d+)")
_INT_RE = r"[+-]?\d+"


class RecDataError(ValueError):
    """An interaction file is missing, empty or malformed; the message names the file, line and field."""


class RecFileNotFoundError(RecDataError, FileNotFoundError):
    """An interaction file (or the data folder holding it) does not exist."""


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


# --------------------------------------------------------------------------------------------- helpers


def _pandas() -> ModuleType:
    return require("pandas", "recsys")


def _where(path: Path, line: Optional[int] = None, field: Optional[str] = None) -> str:
    where = str(path) if line is None else f"{path}:{line}"
    return where if field is None else f"{where}: field {field!r}"


def _existing_file(path: "str | Path", what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise RecFileNotFoundError(f"{path}: {what} not found")
    if not path.is_file():
        raise RecDataError(f"{path}: expected a {what}, found a directory or special file")
    if path.stat().st_size == 0:
        raise RecDataError(f"{path}: the file is empty (0 bytes)")
    return path


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise RecDataError(f"{path}:{line}: cannot decode the file as {encoding} ({err.reason})") from err


def _read_table(
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
    text = _read_text(path, encoding)
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
        where = _where(path, int(line_match.group(1)) if line_match else None)
        raise RecDataError(f"{where}: cannot parse the file ({message})") from err
    except pd.errors.EmptyDataError as err:
        raise RecDataError(f"{path}: the file has no content") from err


def _drop_blank_rows(df: Any, first_line: int) -> "tuple[Any, np.ndarray]":
    """Drop rows whose fields are all empty; return the frame and each kept row's 1-based line number."""
    blank = np.ones(len(df), dtype=bool)
    for col in df.columns:
        blank &= (df[col] == "").to_numpy()
    lines = np.arange(first_line, first_line + len(df))
    if blank.any():
        df, lines = df[~blank], lines[~blank]
    return df, lines


def _first_bad(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _id_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str, integer: bool) -> np.ndarray:
    """A required id column: no empty values; ``integer=True`` parses int64, else keeps string tokens."""
    pd = _pandas()
    series = df[col]
    empty = (series == "").to_numpy()
    if empty.any():
        i = _first_bad(empty)
        raise RecDataError(f"{_where(path, int(lines[i]), field)}: missing value (an id is required)")
    if not integer:
        return series.to_numpy(dtype=str)
    parsed = pd.to_numeric(series, errors="coerce")
    if parsed.dtype.kind in "iu" and (parsed.dtype.kind == "i" or parsed.max() <= np.iinfo(np.int64).max):
        return parsed.to_numpy(dtype=np.int64)
    ok = series.str.strip().str.fullmatch(_INT_RE).to_numpy(dtype=bool)
    if not ok.all():
        i = _first_bad(~ok)
        value = series.iloc[i]
        raise RecDataError(f"{_where(path, int(lines[i]), field)} = {value!r} is not an integer id")
    raise RecDataError(f"{_where(path, None, field)}: integer ids out of the int64 range")


def _float_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str) -> np.ndarray:
    """A numeric column as float64; empty, non-numeric or non-finite values are errors."""
    pd = _pandas()
    series = df[col]
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = _first_bad(bad)
        value = series.iloc[i]
        what = "missing value" if value == "" else f"= {value!r} is not a finite number"
        sep = ": " if value == "" else " "
        raise RecDataError(f"{_where(path, int(lines[i]), field)}{sep}{what}")
    return values


def _datetime_column(df: Any, col: str, lines: np.ndarray, path: Path, *, field: str) -> np.ndarray:
    """A date/time column (ISO 8601) as float64 seconds since the epoch (UTC)."""
    pd = _pandas()
    series = df[col]
    parsed = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = _first_bad(bad)
        value = series.iloc[i]
        raise RecDataError(f"{_where(path, int(lines[i]), field)} = {value!r} is not an ISO 8601 time")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def _no_rows(path: Path, lines: np.ndarray, header: bool) -> None:
    if len(lines) == 0:
        what = "has a header but no interactions" if header else "has no interactions (only blank lines)"
        raise RecDataError(f"{path}: the file {what}")


# --------------------------------------------------------------------------------------------- RecBole


def _parse_atomic_header(path: Path, encoding: str) -> dict[str, str]:
    """Return ``{name: type}`` of a RecBole atomic file's header, in header order."""
    with path.open(encoding=encoding) as f:
        try:
            header = f.readline().rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise RecDataError(f"{path}:1: cannot decode the header as {encoding} ({err.reason})") from err
    if not header.strip():
        raise RecDataError(f"{path}:1: missing header line ('name:type' fields separated by tabs)")
    raw_fields = header.split("\t")
    types: dict[str, str] = {}
    for i, raw in enumerate(raw_fields, start=1):
        name, colon, kind = raw.partition(":")
        if not colon or not name:
            raise RecDataError(
                f"{path}:1: header field {i} {raw!r} is malformed: expected 'name:type' with type in "
                f"{', '.join(ATOMIC_TYPES)} (fields are separated by tabs)"
            )
        if kind not in ATOMIC_TYPES:
            raise RecDataError(
                f"{path}:1: field {name!r} has unknown type {kind!r} (header field {i}); expected one of "
                f"{', '.join(ATOMIC_TYPES)}"
            )
        if name in types:
            raise RecDataError(f"{path}:1: field {name!r} appears twice in the header")
        types[name] = kind
    return types


def _require_field(path: Path, types: dict[str, str], name: str, kinds: tuple[str, ...], option: str) -> None:
    if name not in types:
        raise RecDataError(
            f"{path}:1: header has no field {name!r} (fields: {', '.join(types)}); pass {option}= to choose "
            "another field"
        )
    if types[name] not in kinds:
        expected = " or ".join(kinds)
        raise RecDataError(f"{path}:1: field {name!r} has type {types[name]!r}; expected {expected}")


def _read_atomic_table(path: Path, key_field: str, option: str, encoding: str) -> Any:
    """Read a RecBole ``.item`` / ``.user`` side table into a DataFrame keyed by ``key_field``."""
    path = _existing_file(path, "RecBole side table")
    types = _parse_atomic_header(path, encoding)
    _require_field(path, types, key_field, ("token",), option)
    df = _read_table(path, sep="\t", names=None, encoding=encoding)
    df, lines = _drop_blank_rows(df, first_line=2)
    df.columns = list(types)
    _id_column(df, key_field, lines, path, field=key_field, integer=False)
    for name, kind in types.items():
        if kind == "float":
            df[name] = _float_column(df, name, lines, path, field=name)
    return df.reset_index(drop=True)


def _resolve_inter(path: Path) -> Path:
    if path.is_dir():
        named = path / f"{path.name}.inter"
        if named.is_file():
            return named
        found = sorted(path.glob("*.inter"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise RecFileNotFoundError(f"{path}: no RecBole .inter file in this folder")
        raise RecDataError(
            f"{path}: several .inter files and none named {path.name}.inter: "
            f"{', '.join(p.name for p in found)}; pass the file itself"
        )
    return path


def read_recbole(
    path: "str | Path",
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: Optional[str] = "rating",
    time_field: Optional[str] = "timestamp",
    side_tables: bool = True,
    encoding: str = "utf-8-sig",
) -> Interactions:
    """Read a RecBole atomic ``.inter`` file (and its ``.item`` / ``.user`` side tables when present).

    Args:
        path: The ``.inter`` file, or a RecBole data folder ``NAME/`` holding ``NAME.inter``.
        user_field: Header name of the user id field (type ``token``).
        item_field: Header name of the item id field (type ``token``).
        rating_field: Header name of the rating field (type ``float``); ``None``, or a name the header
            lacks, gives ``ratings=None`` (implicit feedback).
        time_field: Header name of the time field (type ``float``); ``None`` or absent gives
            ``timestamps=None`` (file order is then the time order).
        side_tables: Also read ``NAME.item`` and ``NAME.user`` beside the ``.inter`` file when they exist.
        encoding: Text encoding (``utf-8-sig`` also accepts a byte-order mark).

    Returns:
        The interactions; ids are string tokens.

    Raises:
        RecDataError: Malformed header (a field without ``:type``, an unknown type, the user or item field
            missing or not a token), wrong number of fields on a line, a missing id, a non-numeric rating or
            timestamp, or an empty file; the message names the file, line and field.
    """
    path = _existing_file(_resolve_inter(Path(path)), "RecBole .inter file")
    types = _parse_atomic_header(path, encoding)
    _require_field(path, types, user_field, ("token",), "user_field")
    _require_field(path, types, item_field, ("token",), "item_field")
    use_rating = rating_field is not None and rating_field in types
    use_time = time_field is not None and time_field in types
    if use_rating:
        _require_field(path, types, rating_field, ("float",), "rating_field")
    if use_time:
        _require_field(path, types, time_field, ("float",), "time_field")

    df = _read_table(path, sep="\t", names=None, encoding=encoding)
    df.columns = list(types)
    df, lines = _drop_blank_rows(df, first_line=2)
    _no_rows(path, lines, header=True)
    users = _id_column(df, user_field, lines, path, field=user_field, integer=False)
    items = _id_column(df, item_field, lines, path, field=item_field, integer=False)
    ratings = _float_column(df, rating_field, lines, path, field=rating_field) if use_rating else None
    times = _float_column(df, time_field, lines, path, field=time_field) if use_time else None

    item_table = user_table = None
    if side_tables:
        stem = path.with_suffix("")
        if stem.with_suffix(".item").is_file():
            item_table = _read_atomic_table(stem.with_suffix(".item"), item_field, "item_field", encoding)
        if stem.with_suffix(".user").is_file():
            user_table = _read_atomic_table(stem.with_suffix(".user"), user_field, "user_field", encoding)
    return Interactions(users, items, ratings, times, f"recbole:{path}", item_table, user_table)


# --------------------------------------------------------------------------------------------- sequences


def read_sequence_file(path: "str | Path", *, encoding: str = "utf-8") -> Interactions:
    """Read an S3-Rec / ICLRec sequence file: one line per user, ``user item1 item2 ...`` in time order.

    Tokens are separated by any whitespace; blank lines are skipped. A user may appear on several lines
    (their items are then concatenated in file order).

    Args:
        path: The ``.txt`` file.
        encoding: Text encoding.

    Returns:
        Interactions with int64 ids, ``ratings=None`` and ``timestamps=None`` (order = position).

    Raises:
        RecDataError: Empty file, a line with a user but no items, or a token that is not an integer
            (the message names the file, line and field: ``user`` or ``item k``).
    """
    path = _existing_file(path, "sequence file")
    lines = _read_text(path, encoding).splitlines()
    tokens = [line.split() for line in lines]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    if not counts.any():
        raise RecDataError(f"{path}: the file has no interactions (only blank lines)")
    if (counts == 1).any():
        i = _first_bad(counts == 1)
        raise RecDataError(f"{path}:{i + 1}: field 'item 1': user {tokens[i][0]!r} has no items")
    try:
        flat = itertools.chain.from_iterable(tokens)
        values = np.fromiter(map(int, flat), dtype=np.int64, count=int(counts.sum()))
    except (ValueError, OverflowError):
        _raise_bad_sequence_token(path, tokens)
        raise  # unreachable: the scan above always finds the bad token
    kept = np.flatnonzero(counts)
    starts = np.concatenate(([0], np.cumsum(counts[kept])[:-1]))
    is_user = np.zeros(len(values), dtype=bool)
    is_user[starts] = True
    users = np.repeat(values[starts], counts[kept] - 1)
    return Interactions(users, values[~is_user], None, None, f"sequence:{path}")


def _raise_bad_sequence_token(path: Path, tokens: list[list[str]]) -> None:
    pattern = re.compile(_INT_RE)
    for i, line in enumerate(tokens):
        for j, token in enumerate(line):
            if not pattern.fullmatch(token):
                field = "user" if j == 0 else f"item {j}"
                raise RecDataError(f"{path}:{i + 1}: field {field!r} = {token!r} is not an integer id")
            if not -(2**63) <= int(token) < 2**63:
                field = "user" if j == 0 else f"item {j}"
                raise RecDataError(f"{path}:{i + 1}: field {field!r} = {token!r} is out of the int64 range")


# --------------------------------------------------------------------------------------------- MovieLens

_ML_FIELDS = ["user_id", "item_id", "rating", "timestamp"]


def _read_movielens(path: Path, *, sep: str, kind: str, encoding: str) -> Interactions:
    df = _read_table(path, sep=sep, names=_ML_FIELDS, encoding=encoding)
    df, lines = _drop_blank_rows(df, first_line=1)
    _no_rows(path, lines, header=False)
    users = _id_column(df, "user_id", lines, path, field="user_id", integer=True)
    items = _id_column(df, "item_id", lines, path, field="item_id", integer=True)
    ratings = _float_column(df, "rating", lines, path, field="rating")
    times = _float_column(df, "timestamp", lines, path, field="timestamp")
    return Interactions(users, items, ratings, times, f"{kind}:{path}")


def _in_folder(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def read_ml100k(path: "str | Path", *, encoding: str = "latin-1") -> Interactions:
    """Read MovieLens-100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``, no header.

    Args:
        path: ``u.data`` (or any file in that layout, e.g. ``u1.base``), or the ``ml-100k`` folder.
        encoding: Text encoding (the GroupLens files are Latin-1).

    Returns:
        Interactions with int64 ids, float ratings and timestamps (seconds since 1970).

    Raises:
        RecDataError: Empty file, a line without exactly four fields, a non-integer id, or a non-numeric
            rating or timestamp; the message names the file, line and field.
    """
    path = _existing_file(_in_folder(Path(path), "u.data"), "MovieLens u.data file")
    return _read_movielens(path, sep="\t", kind="ml100k", encoding=encoding)


def read_ml1m(path: "str | Path", *, encoding: str = "latin-1") -> Interactions:
    """Read MovieLens-1M ``ratings.dat``: ``user::item::rating::timestamp``, no header.

    Args:
        path: ``ratings.dat`` or the ``ml-1m`` folder.
        encoding: Text encoding (the GroupLens files are Latin-1).

    Returns:
        Interactions with int64 ids, float ratings and timestamps (seconds since 1970).

    Raises:
        RecDataError: As :func:`read_ml100k`.
    """
    path = _existing_file(_in_folder(Path(path), "ratings.dat"), "MovieLens ratings.dat file")
    return _read_movielens(path, sep="::", kind="ml1m", encoding=encoding)


# --------------------------------------------------------------------------------------------- CSV


def read_csv_interactions(
    path: "str | Path",
    *,
    user_col: str,
    item_col: str,
    rating_col: Optional[str] = None,
    time_col: Optional[str] = None,
    delimiter: str = ",",
    time_format: Literal["numeric", "iso8601"] = "numeric",
    encoding: str = "utf-8-sig",
) -> Interactions:
    """Read a delimited file with a header line, choosing the columns by name.

    Standard CSV quoting is honoured. Line numbers in errors assume no quoted field spans several lines.

    Args:
        path: The file.
        user_col: Header name of the user id column (ids are kept as strings).
        item_col: Header name of the item id column (kept as strings).
        rating_col: Header name of the rating column, or ``None``.
        time_col: Header name of the time column, or ``None`` (file order is then the time order).
        delimiter: Field separator (one character).
        time_format: ``numeric`` (any number, e.g. Unix seconds) or ``iso8601`` (date/time text,
            converted to seconds since 1970 UTC).
        encoding: Text encoding (``utf-8-sig`` also accepts a byte-order mark).

    Returns:
        The interactions.

    Raises:
        RecDataError: Empty file, a named column missing from the header, a line with the wrong number of
            fields, a missing id, or a non-numeric rating/time; the message names the file, line and field.
    """
    path = _existing_file(path, "CSV file")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    with path.open(encoding=encoding, newline="") as f:
        header = next(csv.reader(f, delimiter=delimiter), [])
    wanted = {"user_col": user_col, "item_col": item_col, "rating_col": rating_col, "time_col": time_col}
    for option, name in wanted.items():
        if name is not None and name not in header:
            raise RecDataError(
                f"{path}:1: header has no column {name!r} ({option}); columns: {', '.join(header)}"
            )
    columns = [name for name in wanted.values() if name is not None]
    df = _read_table(path, sep=delimiter, names=None, encoding=encoding, quoting=csv.QUOTE_MINIMAL)
    df, lines = _drop_blank_rows(df, first_line=2)
    _no_rows(path, lines, header=True)
    df = df[list(dict.fromkeys(columns))]
    users = _id_column(df, user_col, lines, path, field=user_col, integer=False)
    items = _id_column(df, item_col, lines, path, field=item_col, integer=False)
    ratings = _float_column(df, rating_col, lines, path, field=rating_col) if rating_col else None
    times = None
    if time_col is not None:
        reader = _float_column if time_format == "numeric" else _datetime_column
        times = reader(df, time_col, lines, path, field=time_col)
    return Interactions(users, items, ratings, times, f"csv:{path}")


# --------------------------------------------------------------------------------------------- dispatch


def detect_format(path: "str | Path") -> str:
    """Guess the format of ``path`` from its name.

    ``*.inter`` (or a folder holding one) → ``recbole``; ``u.data`` (or a folder holding it) → ``ml100k``;
    ``ratings.dat`` (or a folder holding it) → ``ml1m``; ``*.csv`` → ``csv``; ``*.txt`` → ``sequence``.

    Raises:
        RecFileNotFoundError: The path does not exist.
        RecDataError: The name matches none of these.
    """
    path = Path(path)
    if not path.exists():
        raise RecFileNotFoundError(f"{path}: interaction file or folder not found")
    if path.is_dir():
        if (path / f"{path.name}.inter").is_file() or any(path.glob("*.inter")):
            return "recbole"
        if (path / "u.data").is_file():
            return "ml100k"
        if (path / "ratings.dat").is_file():
            return "ml1m"
        raise RecDataError(
            f"{path}: cannot detect the format of this folder (no *.inter, u.data or ratings.dat)"
        )
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "recbole"
    if path.name == "u.data" or re.fullmatch(r"u\d\.(base|test)|u[ab]\.(base|test)", path.name):
        return "ml100k"
    if path.name == "ratings.dat":
        return "ml1m"
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        return "sequence"
    raise RecDataError(
        f"{path}: cannot detect the format from the name; pass format= one of {', '.join(FORMATS)}"
    )


def read_interactions(path: "str | Path", format: Format = "auto", **options: Any) -> Interactions:
    """Read interactions in any supported format.

    Args:
        path: File (or data folder for ``recbole``, ``ml100k``, ``ml1m``).
        format: One of ``recbole``, ``sequence``, ``ml100k``, ``ml1m``, ``csv``, or ``auto`` (see
            :func:`detect_format`).
        **options: Passed to the format's reader (e.g. ``user_col=`` for ``csv``, ``rating_field=`` for
            ``recbole``).

    Returns:
        The interactions.

    Raises:
        RecDataError: See the individual readers.
        ValueError: Unknown ``format``.
    """
    readers = {
        "recbole": read_recbole,
        "sequence": read_sequence_file,
        "ml100k": read_ml100k,
        "ml1m": read_ml1m,
        "csv": read_csv_interactions,
    }
    if format == "auto":
        format = detect_format(path)  # type: ignore[assignment]
    if format not in readers:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)} or 'auto'")
    return readers[format](path, **options)
