"""Every shipped finance config runs: parsed by the CLI and trained for one batch (fast_dev_run).

LOBSTER configs run on the simulated days, FI-2010 configs on files written in the exact FI-2010 layout,
and ``smoke.yaml`` on the committed sample in ``data/finance/tiny/`` exactly as it is.
"""

from pathlib import Path

import pytest
import yaml

from core.cli import main
from domains.finance.models import MLPLOB, TLOB, DeepLOB, LogisticRegressionLOB

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "finance").glob("*.yaml"))
NETWORKS = {
    "tlob": TLOB,
    "mlplob": MLPLOB,
    "deeplob": DeepLOB,
    "logreg": LogisticRegressionLOB,
    "smoke": TLOB,
}


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
    assert {"logreg_lobster", "smoke"} <= names


def test_smoke_config_reads_only_the_committed_sample() -> None:
    config = yaml.safe_load((REPO / "configs" / "finance" / "smoke.yaml").read_text())
    data = config["data"]["init_args"]
    files = [f for split in ("train_files", "val_files", "test_files") for f in data[split]]
    assert len(set(files)) == 3 and all(f.startswith("data/finance/tiny/") for f in files)
    for message in files:
        assert (REPO / message).is_file()
        assert (REPO / message.replace("_message_", "_orderbook_")).is_file()
    assert config["trainer"]["default_root_dir"] == "runs/finance/smoke"


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch(
    config: Path, sim_lobster, fi2010_big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if config.stem == "smoke":
        monkeypatch.chdir(REPO)  # its data paths are relative to the repository root
        data: list[str] = []
    elif "lobster" in config.stem:
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
    network = cli.model.network
    assert type(network) is NETWORKS[config.stem.split("_")[0]]
    # The options under model.init_args.network.init_args reach the network.
    options = yaml.safe_load(config.read_text())["model"]["init_args"]["network"].get("init_args", {})
    for name, value in options.items():
        if name == "num_layers":
            layers = network.layers if isinstance(network, TLOB) else network.feature_mlps
            assert len(layers) == (2 * value if isinstance(network, TLOB) else value)
        elif name == "num_heads":
            assert {layer.attn.mixer.num_heads for layer in network.layers} == {value}
        else:
            assert getattr(network, name) == value, name
