"""Exact resume (core.training.resume, core.data.sampling) and the exit codes of interrupted runs."""

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from core.cli import EXIT_PREEMPTED, EXIT_USER_ERROR, main
from core.data.sampling import EpochRandomSampler
from core.training.checkpoint import atomic_torch_save

REPO = Path(__file__).resolve().parents[2]
FINANCE = REPO / "configs" / "finance" / "smoke.yaml"
PLATEAU = {
    "class_path": "lightning.pytorch.cli.ReduceLROnPlateau",
    "init_args": {"monitor": "val_loss", "patience": 0, "factor": 0.5},
}


def test_sampler_order_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochRandomSampler(50, seed=3), EpochRandomSampler(50, seed=3)
    first = list(a)
    torch.manual_seed(123)  # the global state plays no part
    assert list(b) == first and sorted(first) == list(range(50))
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    b.skip(20)
    assert list(b) == list(a)[20:]
    assert len(list(b)) == 50  # a skip lasts one iteration
    with pytest.raises(ValueError, match="cannot skip 51"):
        b.skip(51)


def test_processes_share_the_epoch_order_and_skip_their_own_part() -> None:
    """Under DDP rank r takes indices r, r+W, ... of the epoch's order, padded by its head (11 -> 12)."""
    order = list(EpochRandomSampler(11, seed=5))
    ranks = [EpochRandomSampler(11, seed=5, num_replicas=3, rank=r) for r in range(3)]
    padded = order + order[:1]
    assert [list(s) for s in ranks] == [padded[r::3] for r in range(3)]
    assert [len(s) for s in ranks] == [4, 4, 4]
    ranks[1].skip(3)  # 3 batches of 1 trained on this rank before the stop
    assert list(ranks[1]) == padded[1::3][3:]
    with pytest.raises(ValueError, match="cannot skip 5 of 4"):
        ranks[0].skip(5)


def _fit(root: Path, config: Path, *extra: str, monitor: str = "val_loss") -> Any:
    plateau = {**PLATEAU, "init_args": {**PLATEAU["init_args"], "monitor": monitor}}
    return main(
        [
            "fit",
            f"--config={config}",
            f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false",
            f"--lr_scheduler={json.dumps(plateau)}",
            *extra,
        ]
    )


def _signal_at(step: int, signum: int = int(signal.SIGTERM)) -> str:
    callback = {"class_path": "tests.signals.SendSignal", "init_args": {"at_step": step, "signum": signum}}
    return f"--trainer.callbacks+={json.dumps(callback)}"


def _assert_same_run(a: Path, b: Path) -> None:
    first = torch.load(a / "checkpoints" / "last.ckpt", weights_only=False)
    second = torch.load(b / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == second["global_step"]
    for name, value in first["state_dict"].items():
        torch.testing.assert_close(second["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    assert first["lr_schedulers"] == second["lr_schedulers"]


# Each domain's smoke config (its flagship network, small): stopped at a step in the middle of an epoch
# (with at most 6 training batches per epoch, below).
DOMAINS = {
    "finance": (FINANCE, "val_loss", 8),
    "recsys": (REPO / "configs" / "recsys" / "smoke.yaml", "val_mrr", 3),
    "medical": (REPO / "configs" / "medical" / "smoke.yaml", "val_loss", 3),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("domain", "signum"),
    [
        ("finance", signal.SIGTERM),
        ("finance", signal.SIGUSR1),
        ("recsys", signal.SIGTERM),
        ("medical", signal.SIGTERM),
    ],
)
def test_stopped_mid_epoch_and_resumed_equals_uninterrupted(tmp_path: Path, domain: str, signum: int) -> None:
    """Weights, step and plateau schedule after resuming equal those of a run never stopped."""
    config, monitor, step = DOMAINS[domain]
    budget = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=6", "--trainer.limit_val_batches=2"]
    batches = _fit(tmp_path / "a", config, *budget, monitor=monitor).trainer.num_training_batches
    assert 0 < step % batches and step < 3 * batches, (
        f"step {step} is not inside an epoch of {batches} batches"
    )
    with pytest.raises(SystemExit) as stop:
        _fit(tmp_path / "b", config, *budget, _signal_at(step, int(signum)), monitor=monitor)
    assert type(stop.value).__name__ == "SIGTERMException"
    assert torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=False)["global_step"] == step
    _fit(tmp_path / "b", config, *budget, "--ckpt_path=last", monitor=monitor)
    _assert_same_run(tmp_path / "a", tmp_path / "b")


@pytest.mark.slow
def test_resumed_from_an_epoch_end_keeps_the_plateau_schedule(tmp_path: Path) -> None:
    """The epoch-end checkpoint holds the scheduler after its step (Lightning saves it before)."""
    _fit(tmp_path / "a", FINANCE, "--trainer.max_epochs=3")
    _fit(tmp_path / "b", FINANCE, "--trainer.max_epochs=1")
    _fit(tmp_path / "b", FINANCE, "--trainer.max_epochs=3", "--ckpt_path=last")
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("attnlab:")]
    assert lines, stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


@pytest.mark.slow
def test_signal_exit_status_and_checkpoint_errors(run_attnlab, tmp_path: Path) -> None:
    """SIGTERM: status 75 and last.ckpt; then the checkpoint errors a user meets, one line each."""
    root = tmp_path / "run"
    args = [f"--config={FINANCE}", f"--trainer.default_root_dir={root}", "--trainer.max_epochs=2"]
    stale = root / "checkpoints" / ".last.ckpt.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    stopped = run_attnlab("fit", *args, _signal_at(5), cwd=REPO)
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stderr
    assert "--ckpt_path last" in _last_line(stopped.stderr)
    last = root / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5
    assert not stale.exists()

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    bad = run_attnlab("test", *args, f"--ckpt_path={text}", cwd=REPO)
    assert bad.returncode == EXIT_USER_ERROR
    assert str(text) in _last_line(bad.stderr) and "weights_only" not in bad.stderr

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:1000])
    cut = run_attnlab("test", *args, f"--ckpt_path={truncated}", cwd=REPO)
    assert cut.returncode == EXIT_USER_ERROR and str(truncated) in _last_line(cut.stderr)

    foreign = tmp_path / "recsys.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["attnlab_task"] = "domains.recsys.task.SeqRecTask"
    atomic_torch_save(checkpoint, foreign)
    other = run_attnlab("test", *args, f"--ckpt_path={foreign}", cwd=REPO)
    assert other.returncode == EXIT_USER_ERROR
    assert "domain 'recsys'" in _last_line(other.stderr)


def test_resume_if_present_starts_anew_without_a_checkpoint(tmp_path: Path) -> None:
    args = [f"--config={FINANCE}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1"]
    cli = main(["fit", *args, "--ckpt_path=last_if_present", "--trainer.limit_train_batches=2"])
    assert cli.trainer.global_step == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ckpt_path=last"], r"--ckpt_path last: there is no .*last\.ckpt to resume from"),
        (["--trainer.default_root_dir=data/finance/tiny/run"], r"default_root_dir=.* among the input data"),
        (["--model.attention=LinearAtention"], r"closest: LinearAttention"),
        (["--data.seq_len=0"], r"seq_len must be >= 1, got 0"),
        (["--data.no_such_option=1"], r"Parser key \"data\": Option 'no_such_option' is not accepted"),
    ],
    ids=["resume-without-checkpoint", "run-folder-among-inputs", "unknown-attention", "bad-value", "typo"],
)
def test_user_mistakes_are_one_line_with_status_2(
    run_attnlab, tmp_path: Path, options: list[str], message: str
) -> None:
    """Through the console script: status 2, the last line names the option or file, no traceback."""
    inputs = REPO / "data" / "finance" / "tiny"
    before = sorted(p.name for p in inputs.rglob("*"))
    root = [] if any("default_root_dir" in o for o in options) else [f"--trainer.default_root_dir={tmp_path}"]
    result = run_attnlab("fit", f"--config={FINANCE}", *root, *options, cwd=REPO)
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert re.search(message, _last_line(result.stderr)), result.stderr[-2000:]
    assert sorted(p.name for p in inputs.rglob("*")) == before
