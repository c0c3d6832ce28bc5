"""Recsys fixtures: the real data folder and small writers of every interaction-file format.

Real data (ml-100k RecBole files, Amazon sequence files) is only read, from ``../shared/data/recsys`` beside
the repository; tests that need it skip with a reason when it is absent (ml-100k is not redistributable).
The committed tiny simulated data set (``data/recsys/tiny/``) and the smoke config that trains on it are
read in place. Everything else is written under pytest's ``tmp_path``.
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch

from tests.conftest import import_script

REPO = Path(__file__).resolve().parents[2]
SHARED_RECSYS = REPO.parent / "shared" / "data" / "recsys"
TINY_INTER = REPO / "data" / "recsys" / "tiny" / "tiny.inter"  # 300 users, 100 items (see its README)
SMOKE_CONFIG = REPO / "configs" / "recsys" / "smoke.yaml"  # SASRec on TINY_INTER

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"

# A tiny interaction log (user, item, rating, timestamp) in file order: user "b" has a timestamp tie
# (items "x" then "z" at t=5, kept in file order) and user "c" only two interactions.
TOY_ROWS: tuple[tuple[str, str, float, float], ...] = (
    ("a", "x", 5, 3),
    ("b", "x", 4, 5),
    ("a", "y", 3, 1),
    ("b", "z", 1, 5),
    ("a", "z", 4, 2),
    ("c", "y", 2, 1),
    ("b", "y", 5, 4),
    ("c", "x", 5, 2),
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is several times faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_recsys() -> Path:
    """``../shared/data/recsys``; skips with a reason when it is absent."""
    if not SHARED_RECSYS.is_dir():
        pytest.skip(f"real recsys data {SHARED_RECSYS} is absent (it ships beside the repo, not in it)")
    return SHARED_RECSYS


def _shared_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.exists():
        pytest.skip(f"real recsys file {path} is absent")
    return path


@pytest.fixture(scope="session")
def ml100k_dir(shared_recsys: Path) -> Path:
    """The RecBole ml-100k folder (``ml-100k.inter`` / ``.item`` / ``.user``)."""
    return _shared_file(shared_recsys, "ml-100k")


@pytest.fixture(scope="session")
def toys_file(shared_recsys: Path) -> Path:
    """Amazon Toys_and_Games sequence file (one line per user)."""
    return _shared_file(shared_recsys, "amazon/Toys_and_Games.txt")


@pytest.fixture(scope="session")
def sports_file(shared_recsys: Path) -> Path:
    """Amazon Sports_and_Outdoors sequence file (one line per user)."""
    return _shared_file(shared_recsys, "amazon/Sports_and_Outdoors.txt")


@pytest.fixture
def toy_rows() -> tuple[tuple[str, str, float, float], ...]:
    """:data:`TOY_ROWS`, the rows :func:`write_recbole` writes by default."""
    return TOY_ROWS


@pytest.fixture
def write_text(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write_text(name, text) -> path``: write a file verbatim under ``tmp_path``."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _lines(rows: Sequence[Sequence[object]], sep: str) -> str:
    return "".join(sep.join(_fmt(v) for v in row) + "\n" for row in rows)


@pytest.fixture
def write_recbole(write_text: Callable[[str, str], Path]) -> Callable[..., Path]:
    """``write_recbole(rows=TOY_ROWS, header=RECBOLE_HEADER, name="toy", item=None, user=None) -> path``.

    Writes ``name/name.inter`` (the returned path) and, when given as text (header line included),
    ``name/name.item`` / ``name/name.user``.
    """

    def write(
        rows: Sequence[Sequence[object]] = TOY_ROWS,
        header: str = RECBOLE_HEADER,
        name: str = "toy",
        item: str | None = None,
        user: str | None = None,
    ) -> Path:
        inter = write_text(f"{name}/{name}.inter", header + "\n" + _lines(rows, "\t"))
        if item is not None:
            write_text(f"{name}/{name}.item", item)
        if user is not None:
            write_text(f"{name}/{name}.user", user)
        return inter

    return write


@pytest.fixture
def write_sequences(write_text: Callable[[str, str], Path]) -> Callable[..., Path]:
    """``write_sequences({user: [items]} or [lines], name="seq.txt") -> path`` (S3-Rec one-line-per-user)."""

    def write(content: "dict[int, Sequence[int]] | Sequence[str]", name: str = "seq.txt") -> Path:
        if isinstance(content, dict):
            lines = [" ".join(str(v) for v in (user, *items)) for user, items in content.items()]
        else:
            lines = list(content)
        return write_text(name, "".join(line + "\n" for line in lines))

    return write


@pytest.fixture
def write_movielens(write_text: Callable[[str, str], Path]) -> Callable[..., Path]:
    """``write_movielens(rows, variant="ml100k"|"ml1m") -> path`` (``u.data`` or ``ratings.dat``)."""

    def write(rows: Sequence[Sequence[object]], variant: str = "ml100k") -> Path:
        if variant == "ml100k":
            return write_text("ml-100k/u.data", _lines(rows, "\t"))
        return write_text("ml-1m/ratings.dat", _lines(rows, "::"))

    return write


@pytest.fixture
def write_csv(write_text: Callable[[str, str], Path]) -> Callable[..., Path]:
    """``write_csv(header, rows, delimiter=",", name="log.csv") -> path`` (header: list of column names)."""

    def write(
        header: Sequence[str], rows: Sequence[Sequence[object]], delimiter: str = ",", name: str = "log.csv"
    ) -> Path:
        return write_text(name, delimiter.join(header) + "\n" + _lines(rows, delimiter))

    return write


# ---------------------------------------------------------------- simulated data

SEQUENCE_SIMULATOR = REPO / "data" / "recsys" / "simulate_sequences.py"


def load_sequence_simulator():
    """Import ``data/recsys/simulate_sequences.py`` (a script folder, not a package)."""
    return import_script(SEQUENCE_SIMULATOR, "attnlab_simulate_sequences")


@pytest.fixture(scope="session")
def sequence_simulator():
    """The embedded demo-data simulator module."""
    return load_sequence_simulator()


@pytest.fixture(scope="session")
def sim_inter(tmp_path_factory: pytest.TempPathFactory, sequence_simulator) -> Path:
    """A small simulated RecBole ``.inter`` file (200 users, 150 items, ~20 items each), written once."""
    params = sequence_simulator.SequenceSimParams(mean_len=20.0, num_clusters=10)
    out = tmp_path_factory.mktemp("sim_recsys")
    return sequence_simulator.simulate_inter_file(
        out, "sim", num_users=200, num_items=150, seed=0, params=params
    )
