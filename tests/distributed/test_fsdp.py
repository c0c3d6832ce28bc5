"""Sharded training (``--trainer.strategy=fsdp2``) on CPU with gloo: it must train exactly as DDP does.

Two processes started by Lightning (``--trainer.devices=2``), as a user runs them. FSDP2 splits every
parameter across the ranks and reduce-scatters the gradients; DDP keeps whole copies and all-reduces them.
Both average the same gradients, so after the same steps the weights agree to float rounding. The sharded
checkpoint (a folder of ``.distcp`` files) must resume under FSDP2, be read back on one process by
``validate``/``test``/``predict`` and ``--model.pretrained``, and be refused by a DDP ``fit``.
"""

import subprocess
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.training.pretrained import read_state_dict
from core.training.sharding import consolidate_checkpoint, is_sharded_checkpoint
from tests.distributed.processes import BIN, REPO, TIMEOUT, clean_environment

RECSYS = REPO / "configs" / "recsys" / "smoke.yaml"
COMMON = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
]


def _fit(root: Path, config: Path, strategy: str, *extra: str) -> subprocess.CompletedProcess:
    command = [str(BIN / "attnlab"), "fit", f"--config={config}", f"--trainer.default_root_dir={root}"]
    command += [*COMMON, f"--trainer.strategy={strategy}", *extra]
    done = subprocess.run(
        command, cwd=REPO, env=clean_environment(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _weights(path: Path) -> dict[str, torch.Tensor]:
    if is_sharded_checkpoint(path):
        return consolidate_checkpoint(path)["state_dict"]
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_weights(got: dict, want: dict, atol: float) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.fixture(scope="module")
def recsys_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Two epochs of the recsys smoke run under DDP and under FSDP2 (shared by this module's tests)."""
    root = tmp_path_factory.mktemp("recsys")
    epochs = "--trainer.max_epochs=2"
    _fit(root / "ddp", RECSYS, "ddp", epochs)
    done = _fit(root / "fsdp", RECSYS, "fsdp2", epochs)
    return root / "ddp", root / "fsdp", done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_fsdp2_trains_resumes_and_consolidates_like_ddp(
    recsys_runs: tuple[Path, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recsys SASRec (its task reads the item table outside forward): DDP = FSDP2 = FSDP2 + recomputation."""
    ddp, fsdp, output = recsys_runs
    recompute = tmp_path / "fsdp_ac"
    epochs = "--trainer.max_epochs=2"
    assert "sharded SASRec over 2 processes in 1 units (SASRecBlock)" in output
    _fit(
        recompute,
        RECSYS,
        "core.training.FSDP2Strategy",
        epochs,
        "--trainer.strategy.activation_checkpointing=true",
    )

    last = fsdp / "checkpoints" / "last.ckpt"
    assert is_sharded_checkpoint(last)
    assert sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not list(last.parent.glob(".*")), "a temporary folder of the atomic save was left behind"
    reference = _weights(ddp / "checkpoints" / "last.ckpt")
    _assert_same_weights(_weights(last), reference, atol=1e-5)
    _assert_same_weights(_weights(recompute / "checkpoints" / "last.ckpt"), _weights(last), atol=1e-6)

    # Resume the sharded checkpoint of epoch 1 under FSDP2: the same weights as two epochs straight.
    resumed = tmp_path / "resumed"
    _fit(resumed, RECSYS, "fsdp2", "--trainer.max_epochs=1")
    _fit(resumed, RECSYS, "fsdp2", epochs, "--ckpt_path=last")
    _assert_same_weights(_weights(resumed / "checkpoints" / "last.ckpt"), _weights(last), atol=1e-6)

    # One process reads the sharded checkpoint: validate equals validating DDP's checkpoint.
    monkeypatch.chdir(REPO)
    args = [f"--config={RECSYS}", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=2"]
    one = main(["validate", *args, f"--trainer.default_root_dir={tmp_path / 'v1'}", f"--ckpt_path={last}"])
    two = main(["validate", *args, f"--trainer.default_root_dir={fsdp}", "--ckpt_path=last"])
    assert float(two.trainer.callback_metrics["val_ndcg@10"]) == float(
        one.trainer.callback_metrics["val_ndcg@10"]
    )
    plain = main(
        [
            "validate",
            *args,
            f"--trainer.default_root_dir={tmp_path / 'v3'}",
            f"--ckpt_path={ddp}/checkpoints/last.ckpt",
        ]
    )
    for key, value in plain.trainer.callback_metrics.items():
        assert float(one.trainer.callback_metrics[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), (
            key
        )

    # --model.pretrained reads the folder as one state dict.
    _assert_same_weights(read_state_dict(last), _weights(last), atol=0)


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_ddp_refuses_to_resume_a_sharded_checkpoint(
    recsys_runs: tuple[Path, Path, str], tmp_path: Path, run_attnlab
) -> None:
    """Its optimizer state is keyed by parameter name: DDP cannot resume it, and says what to do instead."""
    last = recsys_runs[1] / "checkpoints" / "last.ckpt"
    done = run_attnlab(
        "fit", f"--config={RECSYS}", f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={last}", cwd=REPO
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{last} is a sharded checkpoint" in done.stderr
    assert "--model.pretrained" in done.stderr
    assert "Traceback" not in done.stderr


DOMAINS = ["finance", "medical", "speech", "remote_sensing", "video"]


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("domain", DOMAINS)
def test_fsdp2_equals_ddp_for_each_domain(domain: str, tmp_path: Path) -> None:
    """Every domain's smoke flagship, block-wise sharded, takes the steps DDP takes (buffers included)."""
    config = REPO / "configs" / domain / "smoke.yaml"
    steps = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    # Plain SGD: Adam divides by the gradient's size, so where a gradient is ~0 (weights before a
    # BatchNorm) float rounding of reduce-scatter against all-reduce flips whole lr-sized steps.
    steps += ["--optimizer=torch.optim.SGD", "--optimizer.lr=0.05"]
    _fit(tmp_path / "ddp", config, "ddp", *steps)
    done = _fit(tmp_path / "fsdp", config, "fsdp2", *steps)
    assert "FSDP2Strategy: sharded" in done.stdout + done.stderr
    want = _weights(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    _assert_same_weights(_weights(tmp_path / "fsdp" / "checkpoints" / "last.ckpt"), want, atol=1e-5)
