"""Start ``attnlab`` processes the way a scheduler or ``torchrun`` would, and read what they recorded.

Every process runs from the repository root (the smoke configs' data paths are relative to it), with one
thread, the repository on ``PYTHONPATH`` (for the callbacks in :mod:`tests.distributed.probe`) and an
environment cleared of any launcher's variables the test process itself may have been started with.
"""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FINANCE = REPO / "configs" / "finance" / "smoke.yaml"
TIMEOUT = 300

# Variables through which SLURM, torchrun or a previous launcher would tell a process its rank.
_LAUNCHER_VARIABLES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without launcher variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _LAUNCHER_VARIABLES and not k.startswith(("SLURM_", "PMI_", "OMPI_"))
    }
    env.pop("ATTNLAB_TRACEBACK", None)
    path = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PATH": path, **extra}


def callback(class_path: str, **init_args: object) -> str:
    """``--trainer.callbacks+=<json>`` for one callback."""
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


def probe(out_dir: Path) -> str:
    """The :class:`~tests.distributed.probe.ClusterProbe` option writing into ``out_dir``."""
    return callback("tests.distributed.probe.ClusterProbe", out_dir=str(out_dir))


def run_together(commands: Sequence[Sequence[str]], environments: Sequence[Mapping[str, str]], log_dir: Path):
    """Start every command at once (one per node or task), wait for all; returns their exit statuses.

    Each process's output goes to ``log_dir/proc<i>.log``. A process still running after
    :data:`TIMEOUT` seconds is killed with the others and the test fails with the logs' tails.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = [log_dir / f"proc{i}.log" for i in range(len(commands))]
    procs = []
    for command, env, log in zip(commands, environments, logs, strict=True):
        with log.open("w") as handle:
            procs.append(
                subprocess.Popen(
                    list(command), cwd=REPO, env=dict(env), stdout=handle, stderr=subprocess.STDOUT
                )
            )
    try:
        statuses = [proc.wait(timeout=TIMEOUT) for proc in procs]
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise AssertionError(f"timed out after {TIMEOUT} s:\n{tails(logs)}") from None
    return statuses, logs


def tails(logs: Sequence[Path], chars: int = 3000) -> str:
    """The end of every log, for an assertion message."""
    return "\n".join(f"--- {log.name}\n{log.read_text()[-chars:]}" for log in logs)


def records(out_dir: Path, world_size: int) -> list[dict]:
    """The probe's per-rank records, ordered by global rank."""
    found = sorted(out_dir.glob("rank*.json"))
    assert len(found) == world_size, f"expected {world_size} rank records in {out_dir}, found {found}"
    return sorted((json.loads(p.read_text()) for p in found), key=lambda r: r["global_rank"])
