"""Two DDP processes score every test case exactly once and agree with one process.

Lightning's default distributed sampler pads an evaluation set to a multiple of the world size, which
would score one of these 3 cases twice; the datamodule's unrepeated sampler and the sum-state metrics
must give the single-process numbers exactly.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "medical" / "unet3d_hippocampus.yaml"
COMMON = [
    f"--config={CONFIG}",
    "--model.channels=[4, 8, 16]",
    "--data.patch_size=[16, 16, 16]",
    "--model.roi_size=[24, 24, 24]",
    "--data.cache=none",
    "--data.val_fraction=0.1",
    "--data.test_fraction=0.25",
    "--trainer.enable_progress_bar=false",
    "--trainer.accelerator=cpu",
]


@pytest.mark.slow
def test_ddp_test_scores_each_case_once(tmp_path: Path) -> None:
    fit = main(
        [
            "fit",
            *COMMON,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_epochs=1",
            "--trainer.devices=1",
        ]
    )
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    single = main(["test", *COMMON, f"--trainer.default_root_dir={tmp_path / 'one'}", f"--ckpt_path={ckpt}"])
    expected = {k: float(v) for k, v in single.trainer.callback_metrics.items()}
    assert expected["test_cases"] == 3

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [
        "test",
        *COMMON,
        f"--trainer.default_root_dir={tmp_path / 'ddp'}",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={tmp_path / 'ddp'}",
        f"--ckpt_path={ckpt}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(next((tmp_path / "ddp").rglob("metrics.csv")).open()))
    got = {k: float(v) for k, v in rows[-1].items() if v not in ("", None) and k.startswith("test_")}
    assert got["test_cases"] == 3, "a case was scored twice (or lost) under DDP"
    for key in ("test_dice", "test_recall", "test_dice_patient"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
