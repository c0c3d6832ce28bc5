"""Readers: real ml-100k / Amazon files, every format on small written files, and every error message."""

import re
from pathlib import Path

import numpy as np
import pytest

from domains.recsys.readers import (
    RecDataError,
    RecFileNotFoundError,
    detect_format,
    read_csv_interactions,
    read_interactions,
    read_ml1m,
    read_ml100k,
    read_recbole,
    read_sequence_file,
)


def raises(message: str) -> pytest.RaisesExc:
    """``pytest.raises(RecDataError)`` whose message must contain ``message`` verbatim."""
    return pytest.raises(RecDataError, match=re.escape(message))


RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"

# ------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_ml100k_recbole_counts(ml100k_dir: Path) -> None:
    inter = read_interactions(ml100k_dir)  # folder -> ml-100k.inter, auto-detected
    assert inter.source.startswith("recbole:") and inter.source.endswith("ml-100k.inter")
    assert len(inter) == 100_000
    assert len(np.unique(inter.users)) == 943
    assert len(np.unique(inter.items)) == 1682
    assert inter.users.dtype.kind == "U"  # RecBole ids are tokens
    assert inter.ratings is not None and set(np.unique(inter.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert inter.timestamps is not None and inter.timestamps.dtype == np.float64
    assert (inter.users[0], inter.items[0], inter.ratings[0], inter.timestamps[0]) == (
        "196",
        "242",
        3,
        881250949,
    )
    assert inter.item_table is not None and len(inter.item_table) == 1682
    assert list(inter.item_table.columns) == ["item_id", "movie_title", "release_year", "class"]
    assert inter.user_table is not None and len(inter.user_table) == 943


@pytest.mark.realdata
def test_amazon_toys_counts(toys_file: Path) -> None:
    inter = read_interactions(toys_file)  # *.txt -> sequence
    assert inter.source == f"sequence:{toys_file}"
    assert (len(inter), len(np.unique(inter.users)), len(np.unique(inter.items))) == (167_597, 19_412, 11_924)
    assert inter.users.dtype == np.int64 and inter.items.dtype == np.int64
    assert inter.ratings is None and inter.timestamps is None
    first_line = toys_file.read_text().splitlines()[0].split()
    n = len(first_line) - 1
    assert inter.users[:n].tolist() == [int(first_line[0])] * n
    assert inter.items[:n].tolist() == [int(v) for v in first_line[1:]]


# ------------------------------------------------------------------------------------------ RecBole


def test_recbole_reads_toy_file(write_recbole, toy_rows) -> None:
    path = write_recbole()
    inter = read_recbole(path)
    assert inter.users.tolist() == [r[0] for r in toy_rows]
    assert inter.items.tolist() == [r[1] for r in toy_rows]
    assert inter.ratings.tolist() == [r[2] for r in toy_rows]
    assert inter.timestamps.tolist() == [r[3] for r in toy_rows]
    assert inter.item_table is None and inter.user_table is None


def test_recbole_chooses_fields_by_name(write_recbole) -> None:
    header = "ts:float\ttags:token_seq\titem:token\tscore:float\tuid:token"
    rows = [(10, "p q", "i1", 2.5, "u1"), (11, "", "i2", 1.5, "u2")]
    path = write_recbole(rows, header=header)
    inter = read_recbole(path, user_field="uid", item_field="item", rating_field="score", time_field="ts")
    assert inter.users.tolist() == ["u1", "u2"] and inter.items.tolist() == ["i1", "i2"]
    assert inter.ratings.tolist() == [2.5, 1.5] and inter.timestamps.tolist() == [10, 11]
    # Optional fields absent from the header (or disabled) give None.
    implicit = read_recbole(path, user_field="uid", item_field="item", rating_field=None, time_field="time")
    assert implicit.ratings is None and implicit.timestamps is None


def test_recbole_side_tables(write_recbole) -> None:
    item = "item_id:token\tprice:float\tgenres:token_seq\nx\t1.5\tA B\ny\t2\tC\n"
    user = "user_id:token\tage:token\na\t20\n"
    path = write_recbole(item=item, user=user)
    inter = read_recbole(path)
    assert inter.item_table["price"].tolist() == [1.5, 2.0]
    assert inter.item_table["genres"].tolist() == ["A B", "C"]
    assert inter.user_table["age"].tolist() == ["20"]
    assert read_recbole(path, side_tables=False).item_table is None


def test_recbole_ids_are_tokens_not_numbers(write_recbole) -> None:
    inter = read_recbole(write_recbole([("007", "1e3", 1, 1)]))
    assert inter.users.tolist() == ["007"] and inter.items.tolist() == ["1e3"]


def test_recbole_skips_blank_lines_and_keeps_line_numbers(write_text) -> None:
    path = write_text("t.inter", RECBOLE_HEADER + "\na\tx\t1\t1\n\nb\ty\tbad\t2\n")
    with raises(f"{path}:4: field 'rating' = 'bad' is not a finite number"):
        read_recbole(path)
    ok = write_text("ok.inter", RECBOLE_HEADER + "\na\tx\t1\t1\n\nb\ty\t2\t2\n\n")
    assert read_recbole(ok).users.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "user_id:token\titem_id\trating:float",
            "toy.inter:1: header field 2 'item_id' is malformed: expected 'name:type'",
        ),
        (
            "user_id:token\titem_id:string",
            "toy.inter:1: field 'item_id' has unknown type 'string' (header field 2)",
        ),
        ("uid:token\titem_id:token", "toy.inter:1: header has no field 'user_id' (fields: uid, item_id)"),
        ("user_id:token\titem:token", "toy.inter:1: header has no field 'item_id'"),
        (
            "user_id:token_seq\titem_id:token",
            "toy.inter:1: field 'user_id' has type 'token_seq'; expected token",
        ),
        (
            "user_id:token\titem_id:token\trating:token",
            "toy.inter:1: field 'rating' has type 'token'; expected float",
        ),
        (
            "user_id:token\titem_id:token\tuser_id:token",
            "toy.inter:1: field 'user_id' appears twice in the header",
        ),
        (":token\titem_id:token", "toy.inter:1: header field 1 ':token' is malformed"),
    ],
)
def test_recbole_malformed_header(write_recbole, header: str, message: str) -> None:
    n_fields = header.count("\t") + 1
    path = write_recbole([("a",) * n_fields], header=header)
    with raises(message):
        read_recbole(path)


def test_recbole_blank_header(write_text) -> None:
    path = write_text("h.inter", "\na\tb\n")
    with raises(f"{path}:1: missing header line"):
        read_recbole(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("a", "x", "abc", "1"), ":3: field 'rating' = 'abc' is not a finite number"),
        (("a", "x", "1", "noon"), ":3: field 'timestamp' = 'noon' is not a finite number"),
        (("a", "x", "1", "nan"), ":3: field 'timestamp' = 'nan' is not a finite number"),
        (("a", "x", "", "1"), ":3: field 'rating': missing value"),
        (("a", "", "1", "1"), ":3: field 'item_id': missing value (an id is required)"),
        (("a", "x", "1", "1", "extra"), ":3: expected 4 fields, found 5"),
    ],
)
def test_recbole_bad_rows(write_recbole, row: tuple[str, ...], message: str) -> None:
    path = write_recbole([("a", "x", "1", "1"), row])
    with raises(f"{path}{message}"):
        read_recbole(path)


def test_recbole_bad_side_table(write_recbole) -> None:
    path = write_recbole(item="item_id:token\tprice:float\nx\tcheap\n")
    with raises("toy.item:2: field 'price' = 'cheap' is not a finite number"):
        read_recbole(path)
    path = write_recbole(name="t2", item="sku:token\nx\n")
    with raises("t2.item:1: header has no field 'item_id'"):
        read_recbole(path)


def test_recbole_empty_files(write_text) -> None:
    empty = write_text("e.inter", "")
    with raises(f"{empty}: the file is empty (0 bytes)"):
        read_recbole(empty)
    header_only = write_text("h.inter", RECBOLE_HEADER + "\n\n")
    with raises(f"{header_only}: the file has a header but no interactions"):
        read_recbole(header_only)


def test_recbole_folder_resolution(write_recbole, tmp_path: Path) -> None:
    path = write_recbole(name="shop")
    assert read_recbole(path.parent).source == f"recbole:{path}"
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(RecFileNotFoundError, match=re.escape("no RecBole .inter file in this folder")):
        read_recbole(tmp_path / "empty_dir")


# ------------------------------------------------------------------------------------------ sequence files


def test_sequence_file(write_sequences) -> None:
    path = write_sequences(["3 7 8 9", "", "1 2", "3  10\t11  "])
    inter = read_sequence_file(path)
    assert inter.users.tolist() == [3, 3, 3, 1, 3, 3]
    assert inter.items.tolist() == [7, 8, 9, 2, 10, 11]
    assert inter.ratings is None and inter.timestamps is None
    assert inter.users.dtype == np.int64


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["1 2 3", "2 4 x7 5"], ":2: field 'item 2' = 'x7' is not an integer id"),
        (["1 2 3", "", "u3 4 5"], ":3: field 'user' = 'u3' is not an integer id"),
        (["1 2 3", "2 4.0"], ":2: field 'item 1' = '4.0' is not an integer id"),
        (
            ["1 2 99999999999999999999"],
            ":1: field 'item 2' = '99999999999999999999' is out of the int64 range",
        ),
        (["1 2 3", "7"], ":2: field 'item 1': user '7' has no items"),
    ],
)
def test_sequence_errors(write_sequences, lines: list[str], message: str) -> None:
    path = write_sequences(lines)
    with raises(f"{path}{message}"):
        read_sequence_file(path)


def test_sequence_empty(write_sequences, write_text) -> None:
    blank = write_sequences(["", "  "])
    with raises(f"{blank}: the file has no interactions (only blank lines)"):
        read_sequence_file(blank)
    empty = write_text("empty.txt", "")
    with raises(f"{empty}: the file is empty (0 bytes)"):
        read_sequence_file(empty)


# ------------------------------------------------------------------------------------------ MovieLens

ML_ROWS = [(196, 242, 3, 881250949), (186, 302, 3, 891717742), (22, 377, 1, 878887116)]


@pytest.mark.parametrize("variant", ["ml100k", "ml1m"])
def test_movielens(write_movielens, variant: str) -> None:
    path = write_movielens(ML_ROWS, variant=variant)
    inter = read_interactions(path.parent)  # folder with u.data / ratings.dat, auto-detected
    assert inter.source == f"{variant}:{path}"
    assert inter.users.tolist() == [196, 186, 22] and inter.items.tolist() == [242, 302, 377]
    assert inter.users.dtype == np.int64
    assert inter.ratings.tolist() == [3, 3, 1] and inter.timestamps.tolist() == [r[3] for r in ML_ROWS]


@pytest.mark.parametrize(
    ("variant", "bad_row", "message"),
    [
        ("ml100k", ("u9", 1, 2, 3), ":2: field 'user_id' = 'u9' is not an integer id"),
        ("ml100k", (9, "1.5", 2, 3), ":2: field 'item_id' = '1.5' is not an integer id"),
        ("ml100k", (9, 1, "five", 3), ":2: field 'rating' = 'five' is not a finite number"),
        ("ml100k", (9, 1, 2, "t"), ":2: field 'timestamp' = 't' is not a finite number"),
        ("ml100k", (9, 1, 2, 3, 4), ":2: expected 4 fields, found 5"),
        ("ml100k", (9, 1, 2), ":2: field 'timestamp': missing value"),
        ("ml1m", (9, "x", 2, 3), ":2: field 'item_id' = 'x' is not an integer id"),
        ("ml1m", (9, 1, 2, 3, 4), ":2: expected 4 fields, found 5"),
    ],
)
def test_movielens_errors(write_movielens, variant: str, bad_row: tuple, message: str) -> None:
    path = write_movielens([ML_ROWS[0], bad_row], variant=variant)
    reader = read_ml100k if variant == "ml100k" else read_ml1m
    with raises(f"{path}{message}"):
        reader(path)


def test_movielens_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        RecFileNotFoundError, match=re.escape(f"{tmp_path / 'u.data'}: MovieLens u.data file not found")
    ):
        read_ml100k(tmp_path)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError (and a ValueError)
        read_ml1m(tmp_path / "nope" / "ratings.dat")


# ------------------------------------------------------------------------------------------ CSV


def test_csv_chosen_columns(write_csv) -> None:
    path = write_csv(
        ["when", "who", "what", "stars"], [(5, "u1", "i1", 4), (3, "u2", "i1", 2)], delimiter=";"
    )
    inter = read_csv_interactions(
        path, user_col="who", item_col="what", rating_col="stars", time_col="when", delimiter=";"
    )
    assert inter.users.tolist() == ["u1", "u2"] and inter.items.tolist() == ["i1", "i1"]
    assert inter.ratings.tolist() == [4, 2] and inter.timestamps.tolist() == [5, 3]
    bare = read_interactions(path, user_col="who", item_col="what", delimiter=";")  # auto: *.csv
    assert bare.ratings is None and bare.timestamps is None


def test_csv_iso_times_and_quotes(write_text) -> None:
    path = write_text(
        "log.csv", 'user,item,time\n"Smith, J",a,2020-01-01T00:00:10Z\nb,"x ""y""",1970-01-01\n'
    )
    inter = read_csv_interactions(
        path, user_col="user", item_col="item", time_col="time", time_format="iso8601"
    )
    assert inter.users.tolist() == ["Smith, J", "b"] and inter.items.tolist() == ["a", 'x "y"']
    assert inter.timestamps.tolist() == [1577836810.0, 0.0]


def test_csv_errors(write_csv) -> None:
    path = write_csv(["u", "i", "t"], [("a", "x", 1), ("b", "y", "soon")])
    with raises(f"{path}:1: header has no column 'rating' (rating_col)"):
        read_csv_interactions(path, user_col="u", item_col="i", rating_col="rating")
    with raises(f"{path}:3: field 't' = 'soon' is not a finite number"):
        read_csv_interactions(path, user_col="u", item_col="i", time_col="t")
    with raises(f"{path}:2: field 't' = '1' is not an ISO 8601 time"):
        read_csv_interactions(path, user_col="u", item_col="i", time_col="t", time_format="iso8601")
    ragged = write_csv(["u", "i"], [("a", "x"), ("b", "y", "z")], name="ragged.csv")
    with raises(f"{ragged}:3: expected 2 fields, found 3"):
        read_csv_interactions(ragged, user_col="u", item_col="i")


# ------------------------------------------------------------------------------------------ dispatch


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d/d.inter", "recbole"),
        ("u.data", "ml100k"),
        ("u1.base", "ml100k"),
        ("ratings.dat", "ml1m"),
        ("log.CSV", "csv"),
        ("Beauty.txt", "sequence"),
    ],
)
def test_detect_format(write_text, name: str, expected: str) -> None:
    assert detect_format(write_text(name, "1 2\n")) == expected


def test_detect_format_errors(write_text, tmp_path: Path) -> None:
    odd = write_text("data.parquet", "x")
    with raises(f"{odd}: cannot detect the format from the name; pass format="):
        read_interactions(odd)
    with pytest.raises(RecFileNotFoundError, match="interaction file or folder not found"):
        read_interactions(tmp_path / "missing.inter")
    with pytest.raises(ValueError, match="unknown format 'parquet'"):
        read_interactions(odd, format="parquet")  # type: ignore[arg-type]
    seq = write_text("s.dat", "1 2 3\n")
    assert read_interactions(seq, format="sequence").items.tolist() == [2, 3]
