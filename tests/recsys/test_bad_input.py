"""Bad interaction files through the `attnlab` CLI, and predictions that must never land among the inputs.

Each case alters a copy of the committed tiny RecBole file (``data/recsys/tiny/tiny.inter``) in a data
folder under ``tmp_path`` and runs the smoke config on it: ``validate`` reads and preprocesses the data and
trains nothing. An error is one line naming the file and line (exit status 2, no traceback); exact
duplicate interactions are a named warning with their count (or an error with ``duplicates=error``).
Every run must leave the data folder exactly as it was.
"""

import shutil
import warnings
from pathlib import Path

import pytest

from core.training.prediction import check_output_dir
from core.utils import InputError
from domains.recsys.datamodule import SeqRecDataModule
from domains.recsys.preprocess import DuplicateInteractionsWarning, build_sequences
from domains.recsys.readers import RecDataError, read_interactions
from domains.recsys.tables import UnknownIdError
from tests.recsys.conftest import SMOKE_CONFIG, TINY_INTER


def _data_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    shutil.copy(TINY_INTER, folder)
    return folder / TINY_INTER.name


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
    )


def _error_line(result) -> str:
    """The one error line of a refused run (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("attnlab: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _validate(inter: Path, *extra: str) -> list[str]:
    return ["validate", f"--config={SMOKE_CONFIG}", f"--data.path={inter}", *extra]


def _duplicate_rows(inter: Path, lines: list[int]) -> None:
    """Append copies of the given 1-based data lines (the header is line 1) to the file."""
    text = inter.read_text().splitlines()
    inter.write_text("\n".join([*text, *(text[n - 1] for n in lines)]) + "\n")


def test_invalid_utf8_is_reported_on_its_own_line(run_attnlab, tmp_path: Path) -> None:
    inter = _data_folder(tmp_path)
    lines = inter.read_bytes().splitlines(keepends=True)
    lines[51] = lines[51].replace(b"\t", b"\xff\t", 1)  # line 52: the user id is not UTF-8
    inter.write_bytes(b"".join(lines))
    before = _listing(inter.parent)
    error = _error_line(run_attnlab(*_validate(inter)))
    assert f"{inter}:52: cannot decode the file as utf-8-sig" in error, error
    assert _listing(inter.parent) == before


@pytest.mark.slow
def test_exact_duplicates_warn_with_their_count_or_are_refused(run_attnlab, tmp_path: Path) -> None:
    inter = _data_folder(tmp_path)
    _duplicate_rows(inter, [2, 3, 10])
    before = _listing(inter.parent)
    kept = run_attnlab(*_validate(inter))
    assert kept.returncode == 0, kept.stderr[-3000:]
    warning = [line for line in kept.stderr.splitlines() if "DuplicateInteractionsWarning" in line]
    assert len(warning) == 1 and str(inter) in warning[0], kept.stderr[-3000:]
    assert "3 exact duplicate interactions" in warning[0] and "duplicates='drop'" in warning[0]
    error = _error_line(run_attnlab(*_validate(inter, "--data.duplicates=error")))
    assert str(inter) in error and "3 exact duplicate interaction(s)" in error, error
    assert _listing(inter.parent) == before


def test_dropping_exact_duplicates_gives_the_clean_sequences(tmp_path: Path) -> None:
    clean = read_interactions(TINY_INTER)
    inter = _data_folder(tmp_path)
    _duplicate_rows(inter, [2, 3, 10, 3])
    dirty = read_interactions(inter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dropping says nothing beyond the report
        dropped, report = build_sequences(dirty, duplicates="drop")
    expected, _ = build_sequences(clean)
    assert report.exact_duplicates == 4 and report.interactions_after == len(clean)
    assert dropped.items.tolist() == expected.items.tolist() and dropped.user_ids == expected.user_ids
    with pytest.warns(DuplicateInteractionsWarning, match=r"4 exact duplicate interactions .*; 2 user\(s\)"):
        kept, _ = build_sequences(dirty)
    assert kept.num_interactions == len(clean) + 4
    # Repeats at another time are re-consumption, not duplicates; without timestamps nothing is flagged.
    later = read_interactions(inter)
    times = later.timestamps.copy()
    times[-4:] += [1.0, 2.0, 3.0, 4.0]
    shifted = type(later)(later.users, later.items, later.ratings, times, later.source)
    no_times = type(later)(later.users, later.items, later.ratings, None, later.source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_sequences(shifted)[1].exact_duplicates == 0
        assert build_sequences(no_times)[1].exact_duplicates == 0


def test_input_paths_cover_the_data_folder(tmp_path: Path) -> None:
    inter = _data_folder(tmp_path)
    for path in (inter, inter.parent):  # the .inter file or its RecBole folder
        datamodule = SeqRecDataModule(path=str(path), predict_file=str(tmp_path / "users.txt"))
        inputs = datamodule.input_paths()
        for inside in (inter.parent, inter.parent / "predictions", tmp_path):
            with pytest.raises(ValueError, match="would write among the input data"):
                check_output_dir(inside, inputs)
        check_output_dir(tmp_path.parent / "elsewhere", inputs)


def test_predict_refuses_an_output_folder_among_the_inputs(run_attnlab, tmp_path: Path) -> None:
    inter = _data_folder(tmp_path)
    before = _listing(inter.parent)
    result = run_attnlab(
        "predict",
        f"--config={SMOKE_CONFIG}",
        f"--data.path={inter}",
        f"--prediction_writer.output_dir={inter.parent / 'predictions'}",
    )
    error = _error_line(result)
    assert "--prediction_writer.output_dir" in error and "would write among the input data" in error, error
    assert _listing(inter.parent) == before
    assert not list(tmp_path.rglob("*.jsonl"))


def test_unknown_predict_ids_are_input_errors_naming_the_option_or_line(tmp_path: Path) -> None:
    datamodule = SeqRecDataModule(path=str(TINY_INTER), predict_users=["164", "nobody"])
    with pytest.raises(UnknownIdError) as caught:
        datamodule.setup("predict")
    assert isinstance(caught.value, InputError) and isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("data.predict_users: unknown user id 'nobody'")
    sequences = tmp_path / "users.txt"
    sequences.write_text("alice 65 14\nbob 65 no-such-item\n")
    datamodule = SeqRecDataModule(path=str(TINY_INTER), predict_file=str(sequences))
    with pytest.raises(UnknownIdError, match=rf"^{sequences}:2: unknown item id 'no-such-item'"):
        datamodule.setup("predict")


def test_invalid_utf8_in_a_csv_file_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item,time\n" + b"u1,i1,1\n" * 3 + b"u\xff2,i1,2\n" + b"u1,i2,3\n" * 3000)
    with pytest.raises(RecDataError, match=rf"^{path}:5: cannot decode the file as utf-8-sig"):
        read_interactions(path, user_col="user", item_col="item", rating_col=None, time_col="time")
