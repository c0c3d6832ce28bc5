"""Shared fixtures: repository paths, the real-data folder, deterministic seeds, the template domain."""

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Without a GPU, Triton kernels are tested in Triton's CPU interpreter. The switch is read when
# triton.language is imported, which Lightning does, so it is set here before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Lightning's Trainer is imported before any test module. typing caches unions by value, ignoring order:
# torchaudio creates Optional[Union[float, int]] at import, and a Trainer annotation built after it,
# Optional[Union[int, float]], is then that cached float-first object, so jsonargparse read
# `--trainer.limit_train_batches=1` as 1.0 (100 %) in any in-process run collected after a speech test.
import lightning.pytorch  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the repo, not in it)")
    return SHARED_DATA


def import_script(path: Path, name: str) -> ModuleType:
    """Import a script from ``data/`` (a folder of scripts, not a package) once, as module ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def installed_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The template domain of docs/adding-a-domain.md, installed as an outside package would be.

    ``docs/template/tabular`` is copied into a site folder with a ``.dist-info`` whose ``entry_points.txt``
    registers it under ``attnlab.domains``, and the folder is put on ``sys.path``: nothing in attnlab
    names it. Installed once per session, since a second import would leave two classes of one name.
    """
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(REPO / "docs" / "template" / "tabular", site / "tabular")
    info = site / "attnlab_tabular-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: attnlab-tabular\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[attnlab.domains]\ntabular = tabular:DOMAIN\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        yield site


@pytest.fixture
def run_attnlab(tmp_path: Path):
    """Run the ``attnlab`` console script in a subprocess, as a user does; returns the CompletedProcess.

    The exit status, stderr (one line for a user's mistake, no traceback) and what the run wrote are what
    the bad-input tests check. Runs in ``tmp_path`` unless ``cwd`` is given; one thread keeps it light.
    """

    def run(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str):
        environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
        environment.pop("ATTNLAB_TRACEBACK", None)
        return subprocess.run(
            [sys.executable, "-m", "core.cli", *args],
            cwd=cwd or tmp_path,
            env={**environment, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
