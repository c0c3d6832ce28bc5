"""Two ``attnlab fit`` processes as two nodes on loopback: as a scheduler starts them, and through torchrun.

Each "node" is one process with one CPU device (gloo). Both must derive the same world from their
environment, end with the same weights, and report the validation metrics one process computes on the
same checkpoint (every validation sample goes to exactly one rank: :mod:`core.data.base`).
"""

import signal
from pathlib import Path

import pytest
import torch

from core.cli import EXIT_PREEMPTED, main
from tests.distributed.probe import digest
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

NODE_ARGS = [
    "fit",
    f"--config={FINANCE}",
    "--trainer.num_nodes=2",
    "--trainer.devices=1",
    "--trainer.accelerator=cpu",
    "--trainer.strategy=ddp",
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
]


def _check_ranks(found: list[dict], environment: str) -> None:
    """Both processes: the expected environment, one rank each, one device per node, the same weights."""
    assert [r["environment"] for r in found] == [environment] * 2
    assert [r["global_rank"] for r in found] == [0, 1]
    assert [r["node_rank"] for r in found] == [0, 1], "each process is its own node"
    assert [r["local_rank"] for r in found] == [0, 0]
    assert all(r["world_size"] == 2 and r["num_nodes"] == 2 and r["backend"] == "gloo" for r in found)
    assert all(r["finished"] for r in found)
    first, second = found
    assert first["global_step"] == second["global_step"] > 0
    assert first["weights_sha1"] == second["weights_sha1"], "the ranks' weights diverged"
    assert first["val"] == second["val"] and first["val"], "the ranks logged different validation metrics"


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_two_nodes_from_scheduler_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MASTER_ADDR/MASTER_PORT/NODE_RANK/WORLD_SIZE: LightningEnvironment; metrics equal one process's."""
    root, out = tmp_path / "run", tmp_path / "probe"
    port = str(free_port())
    command = [str(BIN / "attnlab"), *NODE_ARGS, f"--trainer.default_root_dir={root}", probe(out)]
    command.append("--trainer.limit_train_batches=3")
    envs = [
        clean_environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank), WORLD_SIZE="2")
        for rank in (0, 1)
    ]
    statuses, logs = run_together([command, command], envs, tmp_path / "logs")
    assert statuses == [0, 0], tails(logs)
    found = records(out, 2)
    _check_ranks(found, "LightningEnvironment")
    assert found[0]["global_step"] == 3

    last = root / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert digest(checkpoint["state_dict"]) == found[0]["weights_sha1"], "last.ckpt is not the ranks' model"

    monkeypatch.chdir(REPO)
    args = [f"--config={FINANCE}", f"--trainer.default_root_dir={tmp_path / 'one'}"]
    args.append("--trainer.enable_progress_bar=false")
    one = main(["validate", *args, f"--ckpt_path={last}"])
    single = {k: float(v) for k, v in one.trainer.callback_metrics.items() if k.startswith("val_")}
    assert single.keys() == found[0]["val"].keys()
    for name, value in single.items():
        assert found[0]["val"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_two_nodes_through_torchrun(tmp_path: Path) -> None:
    """``torchrun --nnodes=2 --nproc-per-node=1`` with c10d rendezvous: TorchElasticEnvironment."""
    root, out = tmp_path / "run", tmp_path / "probe"
    launcher = [
        str(BIN / "torchrun"),
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=attnlab-test",
        "--max-restarts=0",
        "--no-python",
        "attnlab",
    ]
    command = [*launcher, *NODE_ARGS, f"--trainer.default_root_dir={root}", probe(out)]
    command += ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    statuses, logs = run_together([command, command], [clean_environment()] * 2, tmp_path / "logs")
    assert statuses == [0, 0], tails(logs)
    found = records(out, 2)
    # c10d rendezvous numbers the nodes in the order they join: which process is node 0 is not fixed.
    _check_ranks(found, "TorchElasticEnvironment")
    assert found[0]["global_step"] == 2


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_sigterm_to_rank_0_only_stops_both_nodes_and_the_resumed_run_is_exact(tmp_path: Path) -> None:
    """``kill -TERM`` of node 0's process alone: both stop after the same batch, save and exit 75.

    Resumed, the two nodes end with the weights of a run never stopped.
    """
    port = str(free_port())
    envs = [
        clean_environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank), WORLD_SIZE="2")
        for rank in (0, 1)
    ]

    def command(root: Path, *extra: str) -> list[str]:
        args = [str(BIN / "attnlab"), *NODE_ARGS, f"--trainer.default_root_dir={root}"]
        return [*args, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", *extra]

    straight = command(tmp_path / "straight", probe(tmp_path / "straight-probe"))
    statuses, logs = run_together([straight, straight], envs, tmp_path / "logs-straight")
    assert statuses == [0, 0], tails(logs)
    expected = records(tmp_path / "straight-probe", 2)

    root = tmp_path / "stopped"
    stop = callback("tests.distributed.probe.SignalOneRank", at_step=3, signum=int(signal.SIGTERM), rank=0)
    first = command(root, probe(tmp_path / "first"), stop)
    statuses, logs = run_together([first, first], envs, tmp_path / "logs-first")
    assert statuses == [EXIT_PREEMPTED] * 2, tails(logs)
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3

    again = command(root, probe(tmp_path / "again"), "--ckpt_path=last")
    statuses, logs = run_together([again, again], envs, tmp_path / "logs-again")
    assert statuses == [0, 0], tails(logs)
    found = records(tmp_path / "again", 2)
    assert [r["global_step"] for r in found] == [8, 8] == [r["global_step"] for r in expected]
    assert {r["weights_sha1"] for r in found} == {expected[0]["weights_sha1"]}


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_sigterm_to_rank_0_in_the_sanity_check_stops_both_nodes_after_one_batch(tmp_path: Path) -> None:
    """A signal before training (sanity check, under Lightning's handler otherwise) does not hang the pair.

    Both nodes train one batch, save ``last.ckpt`` at step 1 and exit 75.
    """
    port = str(free_port())
    envs = [
        clean_environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank), WORLD_SIZE="2")
        for rank in (0, 1)
    ]
    root = tmp_path / "stopped"
    stop = callback("tests.distributed.probe.SignalOneRankInSanityCheck", signum=int(signal.SIGTERM), rank=0)
    command = [str(BIN / "attnlab"), *NODE_ARGS, f"--trainer.default_root_dir={root}", stop]
    command += ["--trainer.limit_train_batches=4", "--trainer.num_sanity_val_steps=2"]
    statuses, logs = run_together([command, command], envs, tmp_path / "logs")
    assert statuses == [EXIT_PREEMPTED] * 2, tails(logs)
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1
