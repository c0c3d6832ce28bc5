"""The scripts a GPU session runs: they must work the first time, since device time is scarce.

Each is run here at smoke size on CPU or fed synthetic input; ``gpu_session.sh`` is checked for syntax
and for naming only modules and options that exist.
"""

import importlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from benchmarks import causal_linear_goal, sdpa_backends
from benchmarks.attention import build_parser

REPO = Path(__file__).resolve().parents[2]


def _rows(causal_fwd: float, causal_fwdbwd: float) -> list[dict]:
    return [
        {
            "mechanism": "LinearAttention",
            "pattern": "noncausal_self",
            "n": 65536,
            "fwd_ms": 10.0,
            "fwdbwd_ms": 30.0,
        },
        {
            "mechanism": "LinearAttention",
            "pattern": "causal_self",
            "n": 65536,
            "fwd_ms": 15.0,
            "fwdbwd_ms": 45.0,
        },
        {
            "mechanism": "LightningAttention",
            "pattern": "causal_self",
            "n": 65536,
            "fwd_ms": causal_fwd,
            "fwdbwd_ms": causal_fwdbwd,
        },
        {"mechanism": "dense", "pattern": "causal_self", "n": 65536, "fwd_ms": 440.0, "fwdbwd_ms": 1300.0},
        {
            "mechanism": "LinearAttention",
            "pattern": "noncausal_self",
            "n": 16384,
            "fwd_ms": 3.0,
            "fwdbwd_ms": 9.0,
        },
    ]


@pytest.mark.parametrize(("fwd", "fwdbwd", "status"), [(19.0, 59.0, 0), (19.0, 61.0, 1), (25.0, 50.0, 1)])
def test_causal_linear_goal_verdict(tmp_path, capsys, fwd, fwdbwd, status) -> None:
    path = tmp_path / "attention.json"
    path.write_text(json.dumps(_rows(fwd, fwdbwd)))
    assert causal_linear_goal.main([str(path), "--n", "65536"]) == status
    out = capsys.readouterr().out
    assert "| LightningAttention causal_self | " in out and "| dense causal_self | 44.00× |" in out
    assert ("FAIL**: LightningAttention" in out) == bool(status)


def test_causal_linear_goal_needs_the_reference_row(tmp_path) -> None:
    path = tmp_path / "attention.json"
    path.write_text(json.dumps(_rows(19.0, 59.0)[1:]))
    with pytest.raises(SystemExit, match="no non-causal LinearAttention row at N=65536"):
        causal_linear_goal.main([str(path)])


def test_sdpa_backends_smoke_runs_on_cpu(capsys) -> None:
    assert sdpa_backends.main(["--smoke", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ours (MultiHeadAttention's sdpa)" in out and "pinned math" in out
    assert out.count("PASS") + out.count("FAIL") == 2  # one verdict per (shape, causal)


def test_gpu_session_script_names_real_modules_and_options() -> None:
    script = REPO / "benchmarks" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    commands = [
        shlex.split(line.split("step ", 1)[1])[1:] for line in text.splitlines() if line.startswith("step ")
    ]
    assert len(commands) >= 5
    for command in commands:
        assert command[:2] == ["python", "-m"], command
        module = importlib.import_module(command[2])
        assert hasattr(module, "main"), command[2]
        if command[2] == "benchmarks.attention":
            build_parser().parse_args(command[3:])  # every option exists
