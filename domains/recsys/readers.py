"""Readers for interaction files: RecBole atomic files, S3-Rec sequence files, MovieLens and plain CSV.

Every reader returns an :class:`Interactions` table (one row per user-item interaction, in file order) and
validates what it reads. Problems raise :class:`RecDataError` (a ``ValueError``) whose message names the file,
the 1-based line and the field, e.g. ``.../ml-100k.inter:5: field 'rating' = 'abc' is not a number``. A
missing file raises :class:`RecFileNotFoundError` (both a ``RecDataError`` and a ``FileNotFoundError``).
Files are only ever opened for reading.

Formats:

* **RecBole atomic files** (``NAME.inter`` plus optional ``NAME.item`` / ``NAME.user``), typed headers
  chosen by field name: :mod:`domains.recsys.recbole`.
* **Sequence files** (S3-Rec / ICLRec, e.g. Amazon ``Toys_and_Games.txt``): one line per user,
  ``user item1 item2 ...`` separated by whitespace, items in time order. There are no timestamps (the
  order is the position); ids must be integers.
* **MovieLens** ``u.data`` (ML-100K: ``user<TAB>item<TAB>rating<TAB>timestamp``) and ``ratings.dat``
  (ML-1M: ``user::item::rating::timestamp``): no header; integer ids.
* **CSV** with a header line and chosen column names (ids are kept as strings).

:func:`read_interactions` dispatches on an explicit ``format`` or detects it from the path;
:func:`read_named_sequences` reads the sequences ``attnlab predict`` recommends for. The table, its errors
and the column parsing the readers share are in :mod:`domains.recsys.tables`.
"""

import csv
import itertools
import re
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from domains.recsys.recbole import ATOMIC_TYPES, read_recbole
from domains.recsys.tables import (
    INT_PATTERN,
    Interactions,
    RecDataError,
    RecFileNotFoundError,
    datetime_column,
    drop_blank_rows,
    existing_file,
    first_bad,
    float_column,
    header_line,
    id_column,
    read_table,
    read_text,
    require_rows,
    where,
)

__all__ = [
    "ATOMIC_TYPES",
    "FORMATS",
    "Interactions",
    "RecDataError",
    "RecFileNotFoundError",
    "column_options",
    "detect_format",
    "read_csv_interactions",
    "read_interactions",
    "read_ml1m",
    "read_ml100k",
    "read_named_sequences",
    "read_recbole",
    "read_sequence_file",
]

FORMATS = ("recbole", "sequence", "ml100k", "ml1m", "csv")
Format = Literal["recbole", "sequence", "ml100k", "ml1m", "csv", "auto"]


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
    path = existing_file(path, "sequence file")
    lines = read_text(path, encoding).splitlines()
    tokens = [line.split() for line in lines]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    if not counts.any():
        raise RecDataError(f"{path}: the file has no interactions (only blank lines)")
    if (counts == 1).any():
        i = first_bad(counts == 1)
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
    pattern = re.compile(INT_PATTERN)
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
    df = read_table(path, sep=sep, names=_ML_FIELDS, encoding=encoding)
    df, lines = drop_blank_rows(df, first_line=1)
    require_rows(path, lines, header=False)
    users = id_column(df, "user_id", lines, path, field="user_id", integer=True)
    items = id_column(df, "item_id", lines, path, field="item_id", integer=True)
    ratings = float_column(df, "rating", lines, path, field="rating")
    times = float_column(df, "timestamp", lines, path, field="timestamp")
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
    path = existing_file(_in_folder(Path(path), "u.data"), "MovieLens u.data file")
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
    path = existing_file(_in_folder(Path(path), "ratings.dat"), "MovieLens ratings.dat file")
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
    path = existing_file(path, "CSV file")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    header = next(csv.reader([header_line(path, encoding)], delimiter=delimiter), [])
    wanted = {"user_col": user_col, "item_col": item_col, "rating_col": rating_col, "time_col": time_col}
    for option, name in wanted.items():
        if name is not None and name not in header:
            raise RecDataError(
                f"{path}:1: header has no column {name!r} ({option}); columns: {', '.join(header)}"
            )
    columns = [name for name in wanted.values() if name is not None]
    df = read_table(path, sep=delimiter, names=None, encoding=encoding, quoting=csv.QUOTE_MINIMAL)
    df, lines = drop_blank_rows(df, first_line=2)
    require_rows(path, lines, header=True)
    df = df[list(dict.fromkeys(columns))]
    users = id_column(df, user_col, lines, path, field=user_col, integer=False)
    items = id_column(df, item_col, lines, path, field=item_col, integer=False)
    ratings = float_column(df, rating_col, lines, path, field=rating_col) if rating_col else None
    times = None
    if time_col is not None:
        reader = float_column if time_format == "numeric" else datetime_column
        times = reader(df, time_col, lines, path, field=time_col)
    return Interactions(users, items, ratings, times, f"csv:{path}")


def read_named_sequences(path: "str | Path", *, encoding: str = "utf-8") -> list[tuple[int, str, list[str]]]:
    """Sequences to recommend for: one line per sequence, ``name item1 item2 ...`` (raw ids, time order).

    Blank lines are skipped.

    Returns:
        ``(line number, name, raw item ids)`` of every sequence, in file order.

    Raises:
        RecFileNotFoundError: The file does not exist.
        RecDataError: A line has a name but no item, or the file holds no sequence.
    """
    path = existing_file(path, "sequence file")
    out = []
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise RecDataError(f"{where(path, number)}: expected 'name item1 item2 ...', got {line!r}")
        out.append((number, fields[0], fields[1:]))
    if not out:
        raise RecDataError(f"{path}: no sequence to recommend for (the file is empty)")
    return out


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


def column_options(
    format: str,
    *,
    user_col: str,
    item_col: str,
    rating_col: Optional[str],
    time_col: Optional[str],
    delimiter: str = ",",
) -> dict[str, Any]:
    """The options of ``format``'s reader for these column names.

    CSV takes the columns and the delimiter, RecBole the same names as header fields; the other formats
    have fixed layouts and take none.
    """
    if format == "csv":
        return {
            "user_col": user_col,
            "item_col": item_col,
            "rating_col": rating_col,
            "time_col": time_col,
            "delimiter": delimiter,
        }
    if format == "recbole":
        return {
            "user_field": user_col,
            "item_field": item_col,
            "rating_field": rating_col,
            "time_field": time_col,
        }
    return {}


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
