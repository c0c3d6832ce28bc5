"""The three video datamodules on real clips: links, batch layouts per split, splits, pad/skip, bad input."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from core.utils import InputError
from domains.video.datamodules import (
    SelfSupervisedVideoDataModule,
    VideoClassificationDataModule,
    VideoGenerationDataModule,
)
from domains.video.decoding import read_frames, torchcodec_available, write_video

pytestmark = pytest.mark.realdata

SSL_CLIPS = ["bikes.mp4", "vtest.avi", "carphone_pristine.mp4"]


def first_batch(dm, split: str) -> dict:
    return next(iter(dm.dataloader(split)))


def walk(folder: Path) -> list:
    return sorted((root, sorted(dirs), sorted(files)) for root, dirs, files in os.walk(folder))


@pytest.mark.parametrize(
    ("task", "names"), [("arrow_of_time", ["forward", "backward"]), ("playback_speed", ["1x", "2x", "4x"])]
)
def test_self_supervised_batches(shared_video: Path, task: str, names: list[str]) -> None:
    dm = SelfSupervisedVideoDataModule(
        paths=[str(shared_video / n) for n in SSL_CLIPS], task=task, num_frames=4, frame_stride=2,
        image_size=24, batch_size=4, eval_batch_size=5, test_crops=3,
    )  # fmt: skip
    assert dm.link_values() == {
        "num_classes": len(names),
        "class_names": names,
        "num_frames": 4,
        "image_size": 24,
    }
    dm.setup(None)
    train = first_batch(dm, "train")
    assert train["video"].shape == (4, 3, 4, 24, 24) and train["video"].dtype == torch.float32
    assert train["label"].dtype == torch.int64
    assert first_batch(dm, "val")["video"].shape == (5, 3, 4, 24, 24)
    test = first_batch(dm, "test")
    assert test["video"].shape == (5, 3, 3, 4, 24, 24)  # [B, V, C, T, H, W], V = 1 clip x 3 crops
    predict = first_batch(dm, "predict")
    assert predict["path"][0].endswith(SSL_CLIPS[0])
    for split in ("train", "val", "test"):
        counts = dm.dataset(split).label_counts(len(names))
        assert len(set(counts)) == 1 and counts[0] > 0, (split, counts)  # balanced
    assert "forward" in dm.describe() or "1x" in dm.describe()


def test_self_supervised_loads_in_worker_processes(shared_video: Path) -> None:
    dm = SelfSupervisedVideoDataModule(
        paths=[str(shared_video / "carphone_pristine.mp4")],
        num_frames=4,
        image_size=16,
        batch_size=8,
        num_workers=1,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == 1
    labels = torch.cat([batch["label"] for batch in loader])
    assert len(labels) == len(dm.dataset("train")) and labels.sum() == len(labels) // 2


def test_self_supervised_skips_videos_without_a_whole_clip(shared_video: Path) -> None:
    paths = [str(shared_video / n) for n in ("tree.avi", "bikes.mp4")]
    options = {"paths": paths, "task": "playback_speed", "num_frames": 10, "image_size": 16}  # 4x: 37 frames
    dm = SelfSupervisedVideoDataModule(**options)
    with pytest.warns(
        UserWarning,
        match=r"val split: the ranges of 2 videos hold no whole clip and are skipped: bikes\.mp4, tree\.avi",
    ):
        assert dm.build_dataset("val") is None
    padded = SelfSupervisedVideoDataModule(**options, short_clip="pad")
    with pytest.warns(UserWarning, match=r"padded \(last frame repeated\)"):
        dataset = padded.build_dataset("val")
    assert len(dataset) == 6  # one padded window per video and speed


def test_split_by_video(shared_video: Path) -> None:
    dm = SelfSupervisedVideoDataModule(
        data_root=str(shared_video), split_by="video", split=(0.5, 0.25, 0.25), num_frames=4, image_size=16
    )
    dm.setup(None)
    files = {s: {seg.index.path.name for seg in dm.dataset(s).segments} for s in ("train", "val", "test")}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"])
    assert not (files["val"] & files["test"])
    assert sum(len(f) for f in files.values()) == 6


def test_classification_from_class_folders(class_folders: Path) -> None:
    before = walk(class_folders)
    dm = VideoClassificationDataModule(
        data_root=str(class_folders),
        num_frames=4,
        frame_stride=2,
        image_size=32,
        batch_size=3,
        test_clips=2,
        test_crops=3,
    )
    assert dm.link_values() == {
        "num_classes": 2,
        "class_names": ["bikes", "carphone"],
        "num_frames": 4,
        "image_size": 32,
    }
    dm.setup(None)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test", "predict")] == [
        8,
        2,
        2,
        2,
    ]  # 4/1/1 per class
    train = first_batch(dm, "train")
    assert train["video"].shape == (3, 3, 4, 32, 32)
    test = first_batch(dm, "test")
    assert test["video"].shape == (3 if len(dm.dataset("test")) >= 3 else 2, 6, 3, 4, 32, 32)
    assert test["label"].tolist() == [0, 1]
    predict = first_batch(dm, "predict")
    assert [Path(p).parent.name for p in predict["path"]] == ["bikes", "carphone"]
    train_files = {s.index.path for s in dm.dataset("train").segments}
    assert not train_files & {s.index.path for s in dm.dataset("test").segments}
    assert class_folders in dm.input_paths()
    assert walk(class_folders) == before


def test_classification_uniform_sampling(class_folders: Path) -> None:
    dm = VideoClassificationDataModule(
        data_root=str(class_folders), sampling="uniform", num_frames=6, image_size=32
    )
    dm.setup("validate")
    (segment,) = dm.dataset("val").segments[:1]
    assert dm.dataset("val").sampler(segment.index, segment.first, segment.stop).tolist() == [
        [1, 3, 5, 7, 9, 11]
    ]
    assert first_batch(dm, "val")["video"].shape == (2, 3, 6, 32, 32)
    with pytest.raises(ValueError, match="test_clips=1"):
        VideoClassificationDataModule(data_root=str(class_folders), sampling="uniform", test_clips=3)


def test_classification_from_lists(class_folders: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("bikes/v_bikes_g00.mp4 0\ncarphone/v_carphone_g00.mp4 2\n")
    (lists / "val.txt").write_text("bikes/v_bikes_g01.mp4 0\n")
    (lists / "test.csv").write_text("carphone/v_carphone_g03.mp4,2,0.0,0.2\n")
    dm = VideoClassificationDataModule(
        data_root=str(class_folders), train_list=str(lists / "train.txt"), val_list=str(lists / "val.txt"),
        test_list=str(lists / "test.csv"), class_names=["ride", "walk", "talk"], num_frames=3, image_size=32,
    )  # fmt: skip
    assert dm.num_classes == 3
    dm.setup(None)
    assert first_batch(dm, "train")["label"].tolist() == [0, 2]
    (segment,) = dm.dataset("test").segments
    assert (segment.first, segment.stop, segment.label) == (0, 5, 2)  # 0.0-0.2 s at 25 fps
    names = VideoClassificationDataModule(
        data_root=str(class_folders), train_list=str(lists / "train.txt"), num_frames=3, image_size=32
    ).class_names
    assert names == ["0", "1", "2"]
    with pytest.raises(InputError, match=r"class id 2 but 2 class_names"):
        VideoClassificationDataModule(
            data_root=str(class_folders), train_list=str(lists / "train.txt"), class_names=["a", "b"]
        )


def test_too_short_videos_pad_or_skip(shared_video: Path, tmp_path: Path) -> None:
    root = tmp_path / "inputs"
    frames = read_frames(shared_video / "carphone_pristine.mp4", range(30), short_side=32).frames
    for label in ("a", "b"):
        for k in range(4):
            write_video(
                root / label / f"{label}{k}.mp4", frames[: 20 if k else 5], fps=25
            )  # a0, b0: 5 frames
    before = walk(root)
    options = {
        "data_root": str(root),
        "split": (1.0, 0.0, 0.0),
        "num_frames": 8,
        "frame_stride": 2,
        "image_size": 16,
    }
    padded = VideoClassificationDataModule(**options, short_clip="pad")
    with pytest.warns(
        UserWarning,
        match=r"2 of 8 clips are shorter than 8 frames at stride 2; their last frame is repeated.*a0\.mp4",
    ):
        padded.setup("fit")
    assert len(padded.dataset("train")) == 8
    assert padded.datasets["val"] is None  # split (1, 0, 0)
    skipped = VideoClassificationDataModule(**options, short_clip="skip")
    with pytest.warns(
        UserWarning, match=r"skipped 2 of 8 clips shorter than 8 frames at stride 2.*a0\.mp4, b0\.mp4"
    ):
        skipped.setup("fit")
    assert len(skipped.dataset("train")) == 6
    assert walk(root) == before


def test_generation_batches(shared_video: Path) -> None:
    dm = VideoGenerationDataModule(
        paths=[str(shared_video / n) for n in SSL_CLIPS],
        num_frames=8,
        num_scenes=2,
        image_size=16,
        batch_size=2,
    )
    assert dm.link_values() == {"num_frames": 8, "image_size": 16, "num_scenes": 2}
    dm.setup(None)
    for split in ("train", "val", "test"):
        batch = first_batch(dm, split)
        assert batch["video"].shape == (2, 3, 8, 16, 16)
        assert -1 <= batch["video"].min() and batch["video"].max() <= 1
        assert batch["scene_index"].tolist() == [[0] * 4 + [1] * 4] * 2
    paths = first_batch(dm, "predict")["path"][0].split("|")
    assert len(paths) == 2 and paths[0] != paths[1]
    single = VideoGenerationDataModule(paths=[str(shared_video / "bikes.mp4")], num_frames=4, image_size=16)
    single.setup("fit")
    assert first_batch(single, "train")["scene_index"].eq(0).all()
    with pytest.raises(ValueError, match="multiple of num_scenes"):
        VideoGenerationDataModule(data_root=str(shared_video), num_frames=9, num_scenes=2)


def test_bad_inputs_are_named(shared_video: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="give data_root"):
        SelfSupervisedVideoDataModule()
    with pytest.raises(InputError, match="give data_root"):
        VideoClassificationDataModule()
    with pytest.raises(InputError, match=r"video file not found: .*absent\.mp4"):
        VideoGenerationDataModule(paths=[str(tmp_path / "absent.mp4")])
    with pytest.raises(ValueError, match="split must be three"):
        SelfSupervisedVideoDataModule(data_root=str(shared_video), split=(0.5, 0.5, 0.5))
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(shared_video / "carphone_pristine.mp4", folder / "good.mp4")
    (folder / "broken.mp4").write_bytes((shared_video / "bikes.mp4").read_bytes()[:5000])
    before = walk(folder)
    dm = SelfSupervisedVideoDataModule(data_root=str(folder), num_frames=4, image_size=16)
    with pytest.raises(InputError, match=r"broken\.mp4: not a readable video file"):
        dm.setup("fit")
    assert walk(folder) == before


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("truncated_avi", r"tree_truncated\.avi: truncated or corrupt"),
        ("unknown_codec_avi", r"tree_unknown_codec\.avi: .*no decoder for its video codec"),
        ("zero_frame_avi", r"empty\.avi: the video stream holds no decodable frame"),
    ],
)
def test_a_bad_video_in_a_folder_stops_setup_naming_it(
    request: pytest.FixtureRequest, shared_video: Path, fixture: str, message: str
) -> None:
    bad: Path = request.getfixturevalue(fixture)
    shutil.copy(shared_video / "carphone_pristine.mp4", bad.parent / "good.mp4")
    before = walk(bad.parent)
    for datamodule in (SelfSupervisedVideoDataModule, VideoGenerationDataModule):
        dm = datamodule(data_root=str(bad.parent), num_frames=4, image_size=16)
        with pytest.raises(InputError, match=message):
            dm.setup("fit")
    assert walk(bad.parent) == before


@pytest.mark.skipif(
    not torchcodec_available(), reason="torchcodec (with its FFmpeg libraries) is not installed"
)
def test_torchcodec_backend_in_worker_processes(shared_video: Path) -> None:
    options = {
        "paths": [str(shared_video / "bikes.mp4")],
        "num_frames": 4,
        "image_size": 16,
        "batch_size": 64,
    }
    batches = {}
    for backend in ("pyav", "torchcodec"):
        dm = SelfSupervisedVideoDataModule(**options, backend=backend, num_workers=1)
        dm.setup("validate")
        batches[backend] = next(iter(dm.val_dataloader()))["video"]
    # The same frames, scaled by FFmpeg's area filter (PyAV) or torch's (torchcodec): rounding differs.
    levels = (batches["pyav"] - batches["torchcodec"]).abs() * 0.225 * 255
    assert levels.mean() < 2 and levels.median() < 1.01
    other_clip = (batches["pyav"][2:] - batches["pyav"][:-2]).abs() * 0.225 * 255  # the next window
    assert other_clip.mean() > 5 * levels.mean()
