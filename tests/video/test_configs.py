"""Every video config through ``attnlab``, the smoke config's promises, attention swaps from the CLI.

Runs take one fast step each, on low-resolution copies of real clips.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from core.cli import main
from domains.video.decoding import probe_video, read_frames, write_video

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "video").glob("*.yaml"))
CLIPS = ("carphone_pristine.avi", "tree.avi", "bikes.mp4")
FAST = [
    "--trainer.fast_dev_run=true",
    "--trainer.enable_progress_bar=false",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--data.gap_seconds=0",
    "--data.num_frames=4",
    "--data.frame_stride=1",
    "--data.batch_size=2",
]


@pytest.fixture(scope="module")
def small_clips(shared_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real clips at 48 pixels on the short side (written under pytest's temporary folder)."""
    folder = tmp_path_factory.mktemp("clips")
    for name in ("carphone_pristine.mp4", "tree.avi", "bikes.mp4"):
        index = probe_video(shared_video / name)
        frames = read_frames(index, np.arange(min(index.num_frames, 120)), short_side=48).frames
        write_video(folder / f"{Path(name).stem}.mp4", frames, index.fps)
    return folder


def _run(command: str, config: Path, root: Path, clips: Path, *extra: str):
    return main(
        [
            command,
            f"--config={config}",
            f"--trainer.default_root_dir={root}",
            f"--data.data_root={clips}",
            *FAST,
            *extra,
        ]
    )


def _options(config: Path) -> dict:
    return yaml.safe_load(config.read_text())


def test_configs_cover_the_issue() -> None:
    names = {p.stem for p in CONFIGS}
    for task in ("arrow_of_time", "playback_speed"):
        assert {f"{task}_divided", f"{task}_joint", f"{task}_space_only"} <= names
    assert {"dit", "dit_scenes", "dit_scenes_nomask", "dit_freelong", "smoke"} <= names
    types = {
        _options(REPO / "configs" / "video" / f"arrow_of_time_{s}.yaml")["model"]["init_args"]["network"][
            "init_args"
        ]["attention_type"]
        for s in ("divided", "joint", "space_only")
    }
    assert types == {"divided_space_time", "joint", "space_only"}


def test_smoke_config_is_tiny_with_enough_evaluation_clips(tmp_path: Path) -> None:
    opts = _options(REPO / "configs" / "video" / "smoke.yaml")
    assert opts["trainer"]["max_epochs"] == 2
    cli = main(
        [
            "fit",
            f"--config={REPO / 'configs' / 'video' / 'smoke.yaml'}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
        ]
    )
    data = cli.datamodule
    data.setup("test")
    assert len(data.build_dataset("val")) >= 4 and len(data.build_dataset("test")) >= 4


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.stem != "dit_freelong"], ids=lambda p: p.stem)
def test_every_config_trains_through_the_cli(config: Path, tmp_path: Path, small_clips: Path) -> None:
    extra = ["--model.sample_steps=2"] if "dit" in config.stem else []
    cli = _run("fit", config, tmp_path, small_clips, *extra)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    network = _options(config)["model"]["init_args"]["network"]
    assert type(cli.model.network).__name__ == network["class_path"]
    for key, value in network.get("init_args", {}).items():
        if key == "attention_type":
            assert cli.model.network.attention_type == value


def test_freelong_predict_writes_long_mp4s(tmp_path: Path, small_clips: Path) -> None:
    config = REPO / "configs" / "video" / "dit_freelong.yaml"
    out = tmp_path / "samples"
    args = ["--model.sample_steps=1", "--model.sample_frames=12", f"--prediction_writer.output_dir={out}"]
    _run("predict", config, tmp_path, small_clips, *args)
    files = sorted(out.glob("*.mp4"))
    assert files and probe_video(files[0]).num_frames == 12


@pytest.mark.parametrize(
    "swap",
    [
        [
            "--model.attention=NeighborhoodAttention",
            "--model.attention.kernel_size=3",
            "--model.network.pool=mean",
        ],
        ["--model.attention=UltraGenAttention", "--model.network.pool=mean"],
    ],
    ids=["neighborhood", "ultragen"],
)
def test_attention_swaps_through_the_cli(swap: list[str], tmp_path: Path, small_clips: Path) -> None:
    config = REPO / "configs" / "video" / "arrow_of_time_divided.yaml"
    cli = _run("fit", config, tmp_path, small_clips, *swap)
    name = swap[0].split("=")[1]
    assert type(cli.model.network.blocks[0].attn).__name__ == name
