"""The embedded clips (``data/video/embedded``): what the README says they are, and the smoke splits."""

from pathlib import Path

import pytest
import torch

from domains.video.datamodules import SelfSupervisedVideoDataModule, VideoGenerationDataModule
from domains.video.decoding import probe_video, read_frames

EMBEDDED = Path(__file__).resolve().parents[2] / "data" / "video" / "embedded"
CLIPS = {  # frames, width, height, fps
    "bigbuckbunny.mp4": (132, 170, 96, 25.0),
    "bikes.mp4": (250, 226, 96, 25.0),
    "vtest_pedestrians.mp4": (300, 128, 96, 10.0),
    "cockatoo.mp4": (280, 170, 96, 20.0),
}


def test_the_embedded_clips_are_those_the_readme_lists() -> None:
    assert sorted(p.name for p in EMBEDDED.iterdir()) == sorted(CLIPS)
    assert sum(p.stat().st_size for p in EMBEDDED.iterdir()) < 1024**2
    for name, (frames, width, height, fps) in CLIPS.items():
        index = probe_video(EMBEDDED / name)
        assert (index.num_frames, index.width, index.height, index.codec) == (frames, width, height, "h264")
        assert index.fps == pytest.approx(fps)
        full = read_frames(index, range(frames)).frames
        positions = [frames - 1, frames // 2, 1]
        assert torch.equal(read_frames(index, positions).frames, full[positions])


@pytest.mark.parametrize(
    ("task", "frames", "sizes"), [("arrow_of_time", 4, (280, 58, 58)), ("playback_speed", 4, (123, 24, 21))]
)
def test_smoke_splits_of_the_embedded_clips(task: str, frames: int, sizes: tuple[int, int, int]) -> None:
    dm = SelfSupervisedVideoDataModule(data_root=str(EMBEDDED), task=task, num_frames=frames, image_size=32)
    dm.setup(None)
    assert tuple(len(dm.dataset(s)) for s in ("train", "val", "test")) == sizes
    assert next(iter(dm.dataloader("test")))["video"].shape == (8, 1, 3, 4, 32, 32)


def test_generation_on_the_embedded_clips() -> None:
    dm = VideoGenerationDataModule(data_root=str(EMBEDDED), num_frames=8, num_scenes=2, image_size=32)
    dm.setup("fit")
    assert (len(dm.dataset("train")), len(dm.dataset("val"))) == (140, 29)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (8, 3, 8, 32, 32)
