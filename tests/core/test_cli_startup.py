"""``attnlab --help`` and ``attnlab bench --help`` answer without the heavy imports of the commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "lightning", "jsonargparse", "numpy", "domains", "benchmarks.attention")


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"]])
def test_help_imports_no_framework_domain_or_benchmark(argv: list[str]) -> None:
    code = (
        "import json, sys; from core.cli import main; code = main(sys.argv[1:]); "
        f"print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m in {HEAVY!r})]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    code_, imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code_ == 0
    assert imported == []
