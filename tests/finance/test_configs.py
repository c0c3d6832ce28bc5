"""Every shipped finance config runs: parsed by the CLI and trained for one batch (fast_dev_run).

LOBSTER configs run on the simulated days, FI-2010 configs on files written in the exact FI-2010 layout.
"""

from pathlib import Path

import pytest

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "finance").glob("*.yaml"))


@pytest.fixture(scope="module")
def fi2010_big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FI-2010 files long enough for MLPLOB's 384-event windows in every split."""
    from tests.finance.conftest import write_fi2010

    root = tmp_path_factory.mktemp("FI-2010")
    write_fi2010(root / "Train_Dst_NoAuction_ZScore_CF_7.txt", 2000, seed=1)
    for k, day in enumerate((7, 8, 9)):
        write_fi2010(root / f"Test_Dst_NoAuction_ZScore_CF_{day}.txt", 420, seed=10 + k)
    return root


def test_every_model_has_configs() -> None:
    names = {p.stem for p in CONFIGS}
    for model in ("tlob", "mlplob", "deeplob"):
        assert {f"{model}_lobster", f"{model}_fi2010"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch(config: Path, sim_lobster, fi2010_big: Path, tmp_path: Path) -> None:
    if "lobster" in config.stem:
        data = [
            f"--data.train_files={sim_lobster['train']}",
            f"--data.val_files={sim_lobster['val']}",
            f"--data.test_files={sim_lobster['test']}",
        ]
    else:
        data = [f"--data.root={fi2010_big}"]
    cli = main(
        [
            "fit",
            f"--config={config}",
            *data,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.model.hparams.model == config.stem.split("_")[0]
