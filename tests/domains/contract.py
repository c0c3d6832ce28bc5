"""The checks of the domain contract, run on one registered domain (see ``test_contract.py``).

The smoke config of a domain (:attr:`core.plugins.Domain.smoke_config`: its default model on its small
embedded data) goes through the real CLI as a user runs it, with the default progress bar and logger.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from core.cli import main
from core.plugins import Domain, domain_entry_points, missing_extra

REPO = Path(__file__).resolve().parents[2]


def load_domain(name: str) -> Domain:
    """The registered domain ``name``; the test is skipped when its extra is not installed."""
    entry_point = next(ep for ep in domain_entry_points() if ep.name == name)
    extra = missing_extra(entry_point)
    if extra is not None:
        pytest.skip(f"the {name} domain needs the {extra!r} extra, which is not installed")
    return entry_point.load()


def run(domain: Domain, root: Path, command: str, *extra: str):
    """``attnlab <command>`` on the domain's smoke config, writing under ``root``."""
    args = [
        command,
        f"--config={domain.smoke_config}",
        *domain.smoke_args,
        f"--trainer.default_root_dir={root}",
    ]
    return main([*args, *extra])


def scalars(metrics: dict, prefix: str) -> dict[str, float]:
    """The scalar metrics whose names start with ``prefix``."""
    return {
        k: float(v) for k, v in metrics.items() if k.startswith(prefix) and torch.as_tensor(v).numel() == 1
    }


def check_commands(domain: Domain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fit one batch, validate, test, predict, resume, and the ``--print_config`` round trip."""
    name = domain.name
    assert domain.smoke_config.is_file(), f"{name}: smoke config {domain.smoke_config} is missing"
    root = tmp_path / "run"

    fit = run(domain, root, "fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1")
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert list(root.rglob("events.out.tfevents.*")), "the default TensorBoard logger wrote nothing"
    assert fit.model.monitor in fit.trainer.callback_metrics, f"{name}: {fit.model.monitor} was not logged"
    assert fit.trainer.global_step == 1

    # An explicit file: Lightning then reads the task from the checkpoint's hyper-parameters.
    validate = run(domain, root, "validate", f"--ckpt_path={root / 'checkpoints' / 'last.ckpt'}")
    assert scalars(validate.trainer.callback_metrics, "val_"), f"{name}: validate logged no val_ metric"
    test = run(domain, root, "test", "--ckpt_path=best")
    assert scalars(test.trainer.callback_metrics, "test_"), f"{name}: test logged no test_ metric"

    out = tmp_path / "predictions"
    predict = run(domain, root, "predict", "--ckpt_path=last", f"--prediction_writer.output_dir={out}")
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_size > 0 for p in written), f"{name}: predict wrote nothing"
    inputs = [Path(p).resolve() for p in predict.datamodule.input_paths()]
    assert inputs, f"{name}: input_paths() names no input"
    folder = next(p if p.is_dir() else p.parent for p in inputs)
    with pytest.raises(ValueError, match="among the input data"):
        run(domain, root, "predict", "--ckpt_path=last", f"--prediction_writer.output_dir={folder}")

    resumed = run(
        domain, root, "fit", "--ckpt_path=last", "--trainer.max_epochs=2", "--trainer.limit_train_batches=1"
    )
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2, (
        f"{name}: resume restarted"
    )

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(domain, root, "fit", "--print_config")
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    config = tmp_path / "printed.yaml"
    config.write_text(printed)
    with pytest.raises(SystemExit):
        main(["fit", f"--config={config}", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(printed), (
        f"{name}: config round trip differs"
    )


def check_ddp(domain: Domain, tmp_path: Path, pythonpath: str = str(REPO)) -> None:
    """Two DDP processes train 2 epochs: no hang, no ``sync_dist`` warning, validation = one process."""
    name = domain.name
    root = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "core.cli", "fit", f"--config={domain.smoke_config}", *domain.smoke_args]
    command += [f"--trainer.default_root_dir={root}", "--trainer.max_epochs=2"]
    command += ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "sync_dist" not in output, "Lightning warned about values logged without sync_dist"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(root.rglob("events.out.tfevents.*")).parent)).Reload()
    ddp = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"] if tag.startswith("val_")}
    one = run(domain, tmp_path / "one", "validate", f"--ckpt_path={root / 'checkpoints' / 'last.ckpt'}")
    single = scalars(one.trainer.callback_metrics, "val_")
    assert single and set(single) <= set(ddp), (
        f"{name}: DDP logged {sorted(ddp)}, one process {sorted(single)}"
    )
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5, abs=1e-6), f"{name}: {key} differs under DDP"


def check_exact_resume(domain: Domain, tmp_path: Path) -> None:
    """A run stopped by SIGTERM after step 2 and resumed from ``last.ckpt`` ends as one never stopped.

    Same weights to 1e-6 on CPU: the random states, the training order (``EpochRandomSampler`` skips the
    batches already trained) and the datamodule's own random draws (``sample_reseed``) must all continue.
    """
    name = domain.name
    fit = ("fit", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3")
    signal_at = {"class_path": "tests.signals.SendSignal", "init_args": {"at_step": 2}}
    uninterrupted = run(domain, tmp_path / "a", *fit)
    with pytest.raises(SystemExit) as stop:
        run(domain, tmp_path / "b", *fit, f"--trainer.callbacks+={json.dumps(signal_at)}")
    assert type(stop.value).__name__ == "SIGTERMException", f"{name}: the signal did not stop the run"
    resumed = run(domain, tmp_path / "b", *fit, "--ckpt_path=last")
    assert resumed.trainer.global_step == uninterrupted.trainer.global_step
    expected = uninterrupted.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=f"{name}: {key} differs")
