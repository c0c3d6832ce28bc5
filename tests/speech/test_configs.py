"""Every shipped speech config runs through the CLI: parsed, and trained for one batch (fast_dev_run).

The GPU-sized networks of the model configs are swapped for the tiny preset of the same family (their sizes
are tested in ``test_models.py``); LibriMix configs run on a fixture in the exact LibriMix layout, dynamic
mixing configs on the committed speaker subset, ``smoke.yaml`` and ``demo_cpu.yaml`` exactly as they are.
"""

from pathlib import Path

import pytest
import yaml

from core.cli import main
from tests.speech.audio_fixtures import write_librimix

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "speech").glob("*.yaml"))
EMBEDDED = REPO / "data" / "speech" / "embedded"
TINY = {
    "ConvTasNet": [
        "--model.network=ConvTasNet",
        "--model.network.enc_channels=16",
        "--model.network.bottleneck_channels=8",
        "--model.network.hidden_channels=16",
        "--model.network.num_layers=2",
        "--model.network.num_stacks=1",
    ],
    "MossFormer": ["--model.network=MossFormerTiny"],
    "DualPathSeparator": ["--model.network=DualPathTiny"],
}


def test_every_model_has_its_configs() -> None:
    names = {p.stem for p in CONFIGS}
    for model in ("mossformer", "convtasnet", "dualpath"):
        assert {f"{model}_librimix", f"{model}_dynamic"} <= names
    assert {"smoke", "demo_cpu"} <= names


def test_smoke_config_reads_only_the_committed_subset() -> None:
    config = yaml.safe_load((REPO / "configs" / "speech" / "smoke.yaml").read_text())
    data = config["data"]["init_args"]
    assert data["speaker_index"].startswith("data/speech/embedded/")
    assert data["eval_root"].startswith("data/speech/embedded/")
    assert data["val_mixtures"] >= 4
    assert config["trainer"]["default_root_dir"] == "runs/speech/smoke"


@pytest.fixture(scope="module")
def librimix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("Libri2Mix") / "wav8k" / "min"
    for split in ("train-360", "dev", "test"):
        write_librimix(root, split, count=2)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch(config: Path, librimix: Path, tmp_path: Path) -> None:
    if not (EMBEDDED / "speakers.csv").is_file():
        pytest.skip("the committed speech subset data/speech/embedded/ is missing")
    spec = yaml.safe_load(config.read_text())
    args = [
        "fit",
        f"--config={config}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.fast_dev_run=1",
        "--trainer.precision=32-true",
        "--trainer.accumulate_grad_batches=1",
    ]
    network = spec["model"]["init_args"]["network"]["class_path"]
    if config.stem not in ("smoke", "demo_cpu"):
        args += TINY[network]
    data = spec["data"]["init_args"]
    if spec["data"]["class_path"] == "SeparationDataModule":
        args += [f"--data.root={librimix}", "--data.segment_seconds=0.5"]
    elif config.stem != "smoke":
        args += [
            f"--data.speaker_index={EMBEDDED / 'speakers.csv'}",
            "--data.epoch_mixtures=4",
            "--data.val_mixtures=2",
            "--data.val_fraction=0.2",
            "--data.segment_seconds=0.5",
        ]
        assert "eval_root" in data
    cli = main(args)
    assert cli.trainer.global_step == 1
    assert cli.trainer.callback_metrics["train_loss"].isfinite()
    assert "val_si_sdri" in cli.trainer.callback_metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mechanism", "causal"),
    [("LinearAttention", False), ("MossFormerAttention", False), ("GatedDeltaNet", True)],
)
def test_dualpath_takes_any_mixer_from_the_command_line(mechanism: str, causal: bool, tmp_path: Path) -> None:
    if not (EMBEDDED / "speakers.csv").is_file():
        pytest.skip("the committed speech subset data/speech/embedded/ is missing")
    cli = main(
        [
            "fit",
            f"--config={REPO / 'configs' / 'speech' / 'smoke.yaml'}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=1",
            "--model.network=DualPathTiny",
            f"--model.network.causal={str(causal).lower()}",
            f"--model.attention={mechanism}",
        ]
    )
    mixers = [m for path in cli.model.network.intra for m in path.mixers]
    assert mixers and all(type(m).__name__ == mechanism for m in mixers)
    assert cli.trainer.callback_metrics["train_loss"].isfinite()
