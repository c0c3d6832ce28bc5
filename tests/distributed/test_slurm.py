"""SLURM: the CLI under a simulated 2-task allocation on this host, and the shipped sbatch script.

The two processes get the variables ``srun`` sets for 2 tasks on one node. Lightning must select its
``SLURMEnvironment`` and take the ranks from them; SIGUSR1 on every task (what ``#SBATCH --signal=USR1@90``
sends) must save ``last.ckpt`` and exit 75 on both, and the requeued run (``--ckpt_path last_if_present``)
must finish the epoch from there.
"""

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from core.cli import EXIT_PREEMPTED, main
from tests.distributed.processes import (
    BIN,
    FINANCE,
    REPO,
    callback,
    clean_environment,
    free_port,
    probe,
    records,
    run_together,
    tails,
)

SCRIPT = REPO / "docs" / "slurm" / "train.sbatch"
# As in the sbatch script: attnlab's SIGUSR1 handling instead of Lightning's auto-requeue.
SLURM_PLUGIN = {
    "class_path": "lightning.pytorch.plugins.environments.SLURMEnvironment",
    "init_args": {"auto_requeue": False},
}


def _slurm_task(rank: int, port: int) -> dict[str, str]:
    """The environment ``srun`` gives task ``rank`` of a 2-task job on one node."""
    return clean_environment(
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="attnlab-test",  # not "bash"/"interactive", which Lightning treats as no SLURM
        SLURM_NTASKS="2",
        SLURM_NTASKS_PER_NODE="2",
        SLURM_NNODES="1",
        SLURM_JOB_NUM_NODES="1",
        SLURM_NODEID="0",
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank),
        SLURM_NODELIST="127.0.0.1",
        SLURM_JOB_NODELIST="127.0.0.1",
        MASTER_PORT=str(port),  # Lightning would derive it from the job id; a free one avoids clashes
    )


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_slurm_tasks_stop_on_usr1_and_the_requeued_run_resumes(tmp_path: Path) -> None:
    root = tmp_path / "run"
    command = [
        str(BIN / "attnlab"),
        "fit",
        f"--config={FINANCE}",
        f"--trainer.default_root_dir={root}",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp",
        f"--trainer.plugins={json.dumps(SLURM_PLUGIN)}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=6",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--ckpt_path=last_if_present",
    ]
    stop_at_3 = callback("tests.distributed.probe.SignalEveryRank", at_step=3, signum=int(signal.SIGUSR1))
    first = [*command, probe(tmp_path / "first"), stop_at_3]
    port = free_port()
    envs = [_slurm_task(rank, port) for rank in (0, 1)]
    statuses, logs = run_together([first, first], envs, tmp_path / "logs-first")
    assert statuses == [EXIT_PREEMPTED] * 2, tails(logs)
    found = records(tmp_path / "first", 2)
    assert [r["environment"] for r in found] == ["SLURMEnvironment"] * 2
    assert [(r["global_rank"], r["local_rank"], r["node_rank"]) for r in found] == [(0, 0, 0), (1, 1, 0)]
    assert all(r["world_size"] == 2 and r["num_nodes"] == 1 and r["backend"] == "gloo" for r in found)
    last = root / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3

    again = [*command, probe(tmp_path / "again")]
    statuses, logs = run_together([again, again], envs, tmp_path / "logs-again")
    assert statuses == [0, 0], tails(logs)
    found = records(tmp_path / "again", 2)
    assert all(r["finished"] and r["global_step"] == 6 for r in found), found
    assert found[0]["weights_sha1"] == found[1]["weights_sha1"]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6


def _fake_slurm_commands(folder: Path) -> None:
    """``srun`` that records its arguments and exits ``$FAKE_SRUN_STATUS``; ``scontrol`` that records."""
    folder.mkdir()
    for name, status in (("srun", '"${FAKE_SRUN_STATUS}"'), ("scontrol", "0")):
        path = folder / name
        path.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > "{folder}/{name}.args"\nexit {status}\n')
        path.chmod(0o755)


def _run_script(tmp_path: Path, status: int, *extra: str) -> subprocess.CompletedProcess:
    fake = tmp_path / f"bin{status}"
    _fake_slurm_commands(fake)
    env = clean_environment(
        SLURM_JOB_ID="4242",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NTASKS_PER_NODE="4",
        SLURM_CPUS_PER_TASK="8",
        CONFIG=str(FINANCE),
        FAKE_SRUN_STATUS=str(status),
    )
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT), *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def _recorded(tmp_path: Path, status: int, name: str) -> list[str] | None:
    path = tmp_path / f"bin{status}" / f"{name}.args"
    return path.read_bytes().decode().split("\0")[:-1] if path.exists() else None


def test_sbatch_script_syntax_requeue_and_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bash -n``; requeue on 75 only; the attnlab command line it builds parses as a real config."""
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    header = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --signal=USR1@90" in header and "#SBATCH --requeue" in header

    done = _run_script(tmp_path, 0, "--trainer.max_epochs=3")
    assert done.returncode == 0, done.stderr
    assert _recorded(tmp_path, 0, "scontrol") is None, "a finished run must not be requeued"
    argv = _recorded(tmp_path, 0, "srun")
    assert argv is not None and argv[:2] == ["attnlab", "fit"]
    for option in (
        "--trainer.devices=4",
        "--trainer.num_nodes=2",
        "--data.num_workers=7",
        "--ckpt_path=last_if_present",
        "--trainer.max_epochs=3",
    ):
        assert option in argv, (option, shlex.join(argv))

    stopped = _run_script(tmp_path, EXIT_PREEMPTED)
    assert stopped.returncode == EXIT_PREEMPTED
    assert _recorded(tmp_path, EXIT_PREEMPTED, "scontrol") == ["requeue", "4242"]
    failed = _run_script(tmp_path, 1)
    assert failed.returncode == 1 and _recorded(tmp_path, 1, "scontrol") is None

    # The same command line, parsed and resolved by the CLI.
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    with pytest.raises(SystemExit) as printed:
        main([*argv[1:], "--print_config"])
    assert printed.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    trainer = config["trainer"]
    # jsonargparse keeps "4" a string (str precedes int in the Trainer's type); Lightning reads it as 4.
    assert (str(trainer["devices"]), trainer["num_nodes"], trainer["strategy"]) == ("4", 2, "ddp")
    assert trainer["plugins"]["class_path"].endswith("SLURMEnvironment")
    assert trainer["plugins"]["init_args"]["auto_requeue"] is False
    assert config["data"]["init_args"]["num_workers"] == 7 and trainer["max_epochs"] == 3
