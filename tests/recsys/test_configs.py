"""Every shipped recsys config runs: parsed by the CLI and trained for one batch (fast_dev_run).

ml-100k and Amazon configs read ../shared/data (skipped with a reason when it is absent); the demo config
reads the simulator's output. IGR-SR configs point at a SASRec run that a fresh clone does not have, so
they run here with a trainable encoder instead.
"""

from pathlib import Path

import pytest

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "recsys").glob("*.yaml"))


def test_every_model_has_configs() -> None:
    names = {p.stem for p in CONFIGS}
    for model in ("sasrec", "bert4rec", "igrsr", "gru4rec", "pop"):
        assert {f"{model}_ml100k", f"{model}_amazon"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch(config: Path, request, sim_inter: Path, tmp_path: Path) -> None:
    if config.stem.endswith("_ml100k"):
        data = [f"--data.path={request.getfixturevalue('ml100k_dir') / 'ml-100k.inter'}"]
    elif config.stem.endswith("_amazon"):
        data = [f"--data.path={request.getfixturevalue('toys_file')}"]
    else:
        data = [f"--data.path={sim_inter}"]
    extra = (
        ["--model.encoder_checkpoint=null", "--model.freeze_encoder=false"] if "igrsr" in config.stem else []
    )
    cli = main(
        [
            "fit",
            f"--config={config}",
            *data,
            *extra,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.model.hparams.model == config.stem.split("_")[0]
