"""Video sources (class folders, annotation lists, folders), split ranges, and the clip datasets."""

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.utils import InputError, InputFileNotFoundError
from domains.video.datasets import (
    ClipDataset,
    SceneDataset,
    Segment,
    drop_short,
    find_videos,
    probe_all,
    read_annotations,
    read_class_folders,
    self_supervised_segments,
    split_ranges,
    task_classes,
    time_ranges,
    window_segments,
)
from domains.video.decoding import probe_video, read_frames
from domains.video.sampling import MultiClipSampler, RandomClipSampler
from domains.video.transforms import ClipTransform

pytestmark = pytest.mark.realdata


def test_class_folders(class_folders: Path) -> None:
    videos, names = read_class_folders(class_folders)
    assert names == ["bikes", "carphone"]
    assert len(videos) == 12
    assert {v.label for v in videos if v.path.parent.name == "bikes"} == {"bikes"}
    (class_folders / "loose.mp4").write_bytes(b"")
    try:
        with pytest.raises(InputError, match=r"class folders expected .* loose\.mp4 lies at the top"):
            read_class_folders(class_folders)
    finally:
        (class_folders / "loose.mp4").unlink()
    with pytest.raises(InputFileNotFoundError, match="video folder not found"):
        find_videos(class_folders / "absent")


def test_mmaction2_list(class_folders: Path, tmp_path: Path) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text(
        "bikes/v_bikes_g00.mp4 0\ncarphone/v_carphone_g01.mp4 1\n\ncarphone/v_carphone_g02.mp4\n"
    )
    items = read_annotations(listing, class_folders)
    assert [(a.path.name, a.label) for a in items] == [
        ("v_bikes_g00.mp4", "0"),
        ("v_carphone_g01.mp4", "1"),
        ("v_carphone_g02.mp4", "carphone"),  # UCF101 test lists: the folder names the class
    ]
    listing.write_text("bikes/v_bikes_g00.mp4 0 extra\n")
    with pytest.raises(InputError, match=r"train\.txt, line 1: expected 'path label'"):
        read_annotations(listing, class_folders)
    listing.write_text("bikes/absent.mp4 0\n")
    with pytest.raises(InputFileNotFoundError, match=r"train\.txt, line 1: video not found: .*absent\.mp4"):
        read_annotations(listing, class_folders)


def test_kinetics_csv(class_folders: Path, tmp_path: Path) -> None:
    listing = tmp_path / "val.csv"
    listing.write_text(
        "path,label,start,end\nbikes/v_bikes_g00.mp4,riding,0.1,0.3\ncarphone/v_carphone_g00.mp4,talking\n"
    )
    items = read_annotations(listing, class_folders)
    assert [(a.label, a.start, a.end) for a in items] == [("riding", 0.1, 0.3), ("talking", None, None)]
    listing.write_text("bikes/v_bikes_g00.mp4,riding,0.5,0.2\n")
    with pytest.raises(InputError, match=r"val\.csv, line 1: need 0 <= start < end"):
        read_annotations(listing, class_folders)
    listing.write_text("bikes/v_bikes_g00.mp4,riding,a,b\n")
    with pytest.raises(InputError, match=r"val\.csv, line 1: start and end must be seconds"):
        read_annotations(listing, class_folders)


def test_time_ranges_leave_gaps() -> None:
    ranges = time_ranges(100, (0.7, 0.15, 0.15), gap=5)
    assert ranges == [(0, 63), (68, 81), (86, 100)]
    for (_, stop), (first, _) in itertools.pairwise(ranges):
        assert first - stop == 5
    assert time_ranges(10, (0.7, 0.15, 0.15), gap=8) == [(0, 0), (8, 8), (16, 16)]
    assert window_segments(0, 20, 8, 8) == [(0, 8), (8, 16)]
    assert window_segments(0, 20, 8, 8, extend=7) == [(0, 15), (8, 20)]


def test_self_supervised_splits_share_no_frame(shared_video: Path) -> None:
    """Every frame any clip of a split can use lies in that split's range, ``gap`` frames from the others."""
    indexes = list(probe_all([shared_video / "bikes.mp4", shared_video / "vtest.avi"]).values())
    sampler = RandomClipSampler(4, frame_stride=2)  # 4x: 25 frames
    used: dict[int, list[set[int]]] = {}
    for split in (0, 1, 2):
        ranges = split_ranges(indexes, split, (0.6, 0.2, 0.2), "time", gap_seconds=1.0, seed=0)
        segments, short = self_supervised_segments(
            ranges, "playback_speed", [1, 2, 4], sampler, None, split == 0
        )
        assert not short and segments
        assert np.bincount([s.label for s in segments]).tolist() == [len(segments) // 3] * 3
        for video, index in enumerate(indexes):
            frames = {f for s in segments if s.index is index for f in range(s.first, s.stop)}
            used.setdefault(video, []).append(frames)
    for video, index in enumerate(indexes):
        gap = int(np.ceil(index.fps))  # one second of frames
        train, val, test = used[video]
        assert min(val) - max(train) > gap and min(test) - max(val) > gap


def test_split_by_video_deals_whole_videos(shared_video: Path) -> None:
    names = ["bikes.mp4", "carphone_pristine.mp4", "tree.avi", "vtest.avi", "bigbuckbunny.mp4"]
    indexes = list(probe_all([shared_video / n for n in names]).values())
    parts = [split_ranges(indexes, s, (0.6, 0.2, 0.2), "video", 0.0, seed=3) for s in (0, 1, 2)]
    assert [len(p) for p in parts] == [3, 1, 1]
    seen = [index.path for part in parts for index, _, _ in part]
    assert sorted(seen) == sorted(i.path for i in indexes)
    assert all(first == 0 and stop == index.num_frames for part in parts for index, first, stop in part)


def test_arrow_of_time_items_are_the_same_frames_reversed(shared_video: Path) -> None:
    index = probe_video(shared_video / "bikes.mp4")
    segments, _ = self_supervised_segments(
        [(index, 100, 140)], "arrow_of_time", [1], MultiClipSampler(1, 6), None, False
    )
    assert [s.label for s in segments[:2]] == [0, 1]
    dataset = ClipDataset(segments, MultiClipSampler(1, 6, frame_stride=3), ClipTransform(32, crop="center"))
    forward, backward = dataset[0], dataset[1]
    assert task_classes("arrow_of_time", [1]) == ["forward", "backward"]
    assert forward["video"].shape == (3, 6, 32, 32)
    assert (int(forward["label"]), int(backward["label"])) == (0, 1)
    assert torch.equal(backward["video"], forward["video"].flip(1))
    assert not torch.equal(backward["video"], forward["video"])


def test_playback_speed_items_decode_the_right_frames(shared_video: Path) -> None:
    index = probe_video(shared_video / "bikes.mp4")
    sampler = MultiClipSampler(1, 4, frame_stride=2)
    segments = [Segment(index, 0, 100, label=k, speed=s) for k, s in enumerate((1, 2, 4))]
    dataset = ClipDataset(segments, sampler, ClipTransform(64, crop="center", mean=(0,) * 3, std=(1,) * 3))
    full = read_frames(index, range(100), short_side=64).frames
    for k, speed in enumerate((1, 2, 4)):
        item = dataset[k]
        (positions,) = sampler(index, 0, 100, speed)
        assert np.all(np.diff(positions) == 2 * speed)
        # Frames of 151 x 64 pixels: the centre crop is columns 43-106.
        expected = full[torch.from_numpy(positions)][:, :, 43:107].permute(3, 0, 1, 2).float() / 255
        assert torch.allclose(item["video"], expected, atol=1e-6)
        assert int(item["label"]) == k


def test_multi_view_items(shared_video: Path) -> None:
    index = probe_video(shared_video / "vtest.avi")
    dataset = ClipDataset(
        [Segment(index, 0, 200, label=1)],
        MultiClipSampler(2, 4, frame_stride=5),
        ClipTransform(24, short_side=28, crop="three"),
        multi_view=True,
        with_path=True,
    )
    item = dataset[0]
    assert item["video"].shape == (6, 3, 4, 24, 24)
    assert item["path"] == str(shared_video / "vtest.avi")
    with pytest.raises(ValueError, match="6 views per item need multi_view=True"):
        ClipDataset(dataset.segments, dataset.sampler, dataset.transform)


def test_scenes_come_from_different_videos(shared_video: Path) -> None:
    indexes = list(probe_all([shared_video / "bikes.mp4", shared_video / "vtest.avi"]).values())
    segments = [Segment(index, w, w + 20) for index in indexes for w in (0, 40, 80)]
    transform = ClipTransform(16, crop="center", mean=(0.5,) * 3, std=(0.5,) * 3)
    dataset = SceneDataset(segments, MultiClipSampler(1, 4), transform, num_scenes=3, with_path=True)
    assert len(dataset) == 6
    item = dataset[0]
    assert item["video"].shape == (3, 12, 16, 16)
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["scene_index"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    files = [Path(p).name for p in item["path"].split("|")]
    assert files == ["bikes.mp4", "vtest.avi", "bikes.mp4"]  # a second video first, then another range
    assert dataset.scenes[0] == [0, 3, 1]
    with pytest.raises(InputError, match="num_scenes=7 needs as many clips, but only 6"):
        SceneDataset(segments, MultiClipSampler(1, 4), transform, num_scenes=7)


def test_short_segments_pad_or_skip(shared_video: Path, recwarn: pytest.WarningsRecorder) -> None:
    index = probe_video(shared_video / "tree.avi")
    segments = [Segment(index, 0, 68), Segment(index, 60, 68)]
    sampler = MultiClipSampler(1, 8, frame_stride=2)
    kept = drop_short(segments, sampler, "pad", "test split")
    assert kept == segments
    assert "1 of 2 clips are shorter than 8 frames at stride 2; their last frame is repeated" in str(
        recwarn[-1].message
    )
    assert "tree.avi" in str(recwarn[-1].message)
    item = ClipDataset(kept, sampler, ClipTransform(32, crop="center"))[1]["video"]
    assert torch.equal(item[:, 4], item[:, 7])  # frames 60, 62, 64, 66, 67, 67, 67, 67
    skipped = drop_short(segments, sampler, "skip", "test split")
    assert skipped == segments[:1]
    assert "skipped 1 of 2 clips shorter than 8 frames" in str(recwarn[-1].message)


def test_datasets_write_nothing_next_to_inputs(class_folders: Path) -> None:
    before = sorted(os.walk(class_folders))
    videos, _ = read_class_folders(class_folders)
    indexes = probe_all([v.path for v in videos])
    dataset = ClipDataset(
        [Segment(i, 0, i.num_frames) for i in indexes.values()],
        RandomClipSampler(4),
        ClipTransform(32, crop="random"),
    )
    assert all(dataset[k]["video"].shape == (3, 4, 32, 32) for k in range(len(dataset)))
    assert sorted(os.walk(class_folders)) == before


def test_probing_in_threads_gives_the_serial_indexes(shared_video: Path) -> None:
    paths = [shared_video / n for n in ("vtest.avi", "bikes.mp4", "tree.avi", "bikes.mp4")]
    serial = probe_all(paths)
    threaded = probe_all(paths, threads=3)
    assert list(threaded) == list(serial) == paths[:3]
    for path in serial:
        assert np.array_equal(threaded[path].pts, serial[path].pts)
        assert np.array_equal(threaded[path].keyframes, serial[path].keyframes)
    with pytest.raises(InputFileNotFoundError, match=r"absent\.mp4"):
        probe_all([*paths, shared_video / "absent.mp4"], threads=2)
