"""Every shipped recsys config runs: parsed by the CLI and trained for one batch (fast_dev_run).

ml-100k and Amazon configs read ../shared/data (skipped with a reason when it is absent); the demo config
reads the simulator's output and the smoke config the committed tiny data. IGR-SR configs point at a
SASRec run that a fresh clone does not have, so they run here with a trainable encoder instead.
"""

from pathlib import Path

import pytest

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "recsys").glob("*.yaml"))
NETWORKS = {
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "igrsr": "IGRSR",
    "gru4rec": "GRU4Rec",
    "pop": "PopularityRecommender",
    "smoke": "SASRec",
}


def test_every_network_has_configs() -> None:
    names = {p.stem for p in CONFIGS}
    for model in ("sasrec", "bert4rec", "igrsr", "gru4rec", "pop"):
        assert {f"{model}_ml100k", f"{model}_amazon"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch(config: Path, request, sim_inter: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    if config.stem.endswith("_ml100k"):
        data = [f"--data.path={request.getfixturevalue('ml100k_dir') / 'ml-100k.inter'}"]
    elif config.stem.endswith("_amazon"):
        data = [f"--data.path={request.getfixturevalue('toys_file')}"]
    elif config.stem == "smoke":
        data = []  # the committed tiny data, read relative to the repository root
    else:
        data = [f"--data.path={sim_inter}"]
    extra = []
    if "igrsr" in config.stem:
        extra = [
            "--model.network.encoder_checkpoint=",
            "--model.network.freeze_encoder=false",
        ]  # no SASRec run
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
    assert type(cli.model.network).__name__ == NETWORKS[config.stem.split("_")[0]]
