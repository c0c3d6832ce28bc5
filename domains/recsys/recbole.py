"""RecBole atomic files: ``NAME.inter`` plus optional ``NAME.item`` / ``NAME.user`` side tables.

Tab-separated, one header line of ``name:type`` fields with type ``token``, ``float``, ``token_seq`` or
``float_seq``, e.g. ``user_id:token  item_id:token  rating:float  timestamp:float``. User and item ids are
tokens (kept as strings); rating and time must be ``float`` fields. Fields are chosen by name.
"""

from pathlib import Path
from typing import Any, Optional

from domains.recsys.tables import (
    Interactions,
    RecDataError,
    RecFileNotFoundError,
    drop_blank_rows,
    existing_file,
    float_column,
    header_line,
    id_column,
    read_table,
    require_rows,
)

__all__ = ["ATOMIC_TYPES", "read_recbole"]

ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")


def _parse_atomic_header(path: Path, encoding: str) -> dict[str, str]:
    """Return ``{name: type}`` of a RecBole atomic file's header, in header order."""
    header = header_line(path, encoding)
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
    """Fail unless the header has field ``name`` of one of ``kinds`` (``option`` chooses another)."""
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
    path = existing_file(path, "RecBole side table")
    types = _parse_atomic_header(path, encoding)
    _require_field(path, types, key_field, ("token",), option)
    df = read_table(path, sep="\t", names=None, encoding=encoding)
    df, lines = drop_blank_rows(df, first_line=2)
    df.columns = list(types)
    id_column(df, key_field, lines, path, field=key_field, integer=False)
    for name, kind in types.items():
        if kind == "float":
            df[name] = float_column(df, name, lines, path, field=name)
    return df.reset_index(drop=True)


def _resolve_inter(path: Path) -> Path:
    """The ``.inter`` file of a RecBole data folder (``NAME/NAME.inter``, or its only ``.inter``)."""
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
    path = existing_file(_resolve_inter(Path(path)), "RecBole .inter file")
    types = _parse_atomic_header(path, encoding)
    _require_field(path, types, user_field, ("token",), "user_field")
    _require_field(path, types, item_field, ("token",), "item_field")
    use_rating = rating_field is not None and rating_field in types
    use_time = time_field is not None and time_field in types
    if use_rating:
        _require_field(path, types, rating_field, ("float",), "rating_field")
    if use_time:
        _require_field(path, types, time_field, ("float",), "time_field")

    df = read_table(path, sep="\t", names=None, encoding=encoding)
    df.columns = list(types)
    df, lines = drop_blank_rows(df, first_line=2)
    require_rows(path, lines, header=True)
    users = id_column(df, user_field, lines, path, field=user_field, integer=False)
    items = id_column(df, item_field, lines, path, field=item_field, integer=False)
    ratings = float_column(df, rating_field, lines, path, field=rating_field) if use_rating else None
    times = float_column(df, time_field, lines, path, field=time_field) if use_time else None

    item_table = user_table = None
    if side_tables:
        stem = path.with_suffix("")
        if stem.with_suffix(".item").is_file():
            item_table = _read_atomic_table(stem.with_suffix(".item"), item_field, "item_field", encoding)
        if stem.with_suffix(".user").is_file():
            user_table = _read_atomic_table(stem.with_suffix(".user"), user_field, "user_field", encoding)
    return Interactions(users, items, ratings, times, f"recbole:{path}", item_table, user_table)
