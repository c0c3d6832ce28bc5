"""Finance fixtures: simulated LOBSTER days, FI-2010 files in the exact on-disk layout, the real sample.

Everything is written under pytest's temporary folders; the real LOBSTER sample is only read, from
``../shared/data`` beside the repository (tests that need it skip when it is absent).
"""

import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import import_script

REPO = Path(__file__).resolve().parents[2]
SIMULATOR = REPO / "data" / "finance" / "simulate_lob.py"
LOBSTER_SAMPLE = REPO.parent / "shared" / "data" / "finance" / "lobster"
AMZN_MESSAGE = "AMZN_2012-06-21_34200000_45900000_message_1.csv"
SIM_LEVELS = 10


def load_simulator() -> ModuleType:
    """Import ``data/finance/simulate_lob.py`` (a script folder, not a package)."""
    return import_script(SIMULATOR, "attnlab_simulate_lob")


@pytest.fixture(scope="session")
def simulator() -> ModuleType:
    return load_simulator()


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory, simulator: ModuleType) -> Path:
    """Four simulated days (2,500 events, 10 levels each), written once per session."""
    out = tmp_path_factory.mktemp("sim_lobster")
    simulator.simulate_lobster_files(out, days=4, events=2500, levels=SIM_LEVELS, seed=0)
    return out


@pytest.fixture(scope="session")
def sim_files(sim_dir: Path) -> list[str]:
    """Message files of the simulated days, in date order."""
    return sorted(str(p) for p in sim_dir.glob("*_message_*.csv"))


@pytest.fixture(scope="session")
def sim_lobster(sim_files: list[str]) -> dict[str, list[str]]:
    """Explicit splits over the simulated days: two for training, one each for validation and test."""
    return {"train": sim_files[:2], "val": sim_files[2:3], "test": sim_files[3:4]}


@pytest.fixture
def sim_copy(sim_files: list[str], tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Copy a simulated day into ``tmp_path`` (to be altered) and return ``(message, orderbook)``."""

    def copy(day: int = 0, folder: str = "copy") -> tuple[Path, Path]:
        message = Path(sim_files[day])
        orderbook = message.with_name(message.name.replace("_message_", "_orderbook_"))
        dest = tmp_path / folder
        dest.mkdir(exist_ok=True)
        return Path(shutil.copy(message, dest)), Path(shutil.copy(orderbook, dest))

    return copy


@pytest.fixture
def amzn_message() -> Path:
    """The real LOBSTER AMZN sample (no redistribution: read from ``../shared/data``, never copied)."""
    path = LOBSTER_SAMPLE / AMZN_MESSAGE
    if not path.is_file():
        pytest.skip(
            f"real LOBSTER sample {path} is absent (it lives in ../shared/data beside the repository)"
        )
    return path


def write_fi2010(path: Path, samples: int, seed: int = 0, rows: int = 149) -> np.ndarray:
    """Write an FI-2010-layout file: ``rows`` whitespace-separated rows × ``samples`` columns.

    Rows 0-143 are z-score-like features, rows 144-148 labels in {1, 2, 3}. Returns what was written.
    """
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((rows, samples))
    data[144:] = rng.integers(1, 4, size=(max(rows - 144, 0), samples))
    with path.open("w") as handle:
        for row in data:
            handle.write("  " + "  ".join(f"{v:.18e}" for v in row) + "\n")
    return data


@pytest.fixture
def fi2010_writer() -> Callable[..., np.ndarray]:
    """:func:`write_fi2010`, for tests that write their own FI-2010 files."""
    return write_fi2010


@pytest.fixture
def fi2010_root(tmp_path: Path) -> Path:
    """A tiny FI-2010 folder: a 300-sample training file and three test files (days) of 100 samples."""
    root = tmp_path / "FI-2010"
    root.mkdir()
    write_fi2010(root / "Train_Dst_NoAuction_ZScore_CF_7.txt", 300, seed=1)
    for k, day in enumerate((7, 8, 9)):
        write_fi2010(root / f"Test_Dst_NoAuction_ZScore_CF_{day}.txt", 100, seed=10 + k)
    return root
