"""Shared fixtures: repository paths, the real-data folder, and deterministic seeds."""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Without a GPU, Triton kernels are tested in Triton's CPU interpreter. The switch is read when
# triton.language is imported, which Lightning does, so it is set here before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

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
