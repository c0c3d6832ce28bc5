"""Clip samplers (positions, spacing by frames or by time, padding) and the spatial transforms."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.video.decoding import VideoIndex
from domains.video.sampling import MultiClipSampler, RandomClipSampler, UniformClipSampler
from domains.video.transforms import (
    ClipTransform,
    center_crop,
    horizontal_flip,
    normalize,
    resize_short_side,
    three_crops,
)


def make_index(pts: list[int] | np.ndarray, time_base: Fraction = Fraction(1, 25)) -> VideoIndex:
    return VideoIndex(
        path=Path("clip.mp4"),
        codec="h264",
        width=64,
        height=48,
        time_base=time_base,
        pts=np.asarray(pts, dtype=np.int64),
        keyframes=np.array([0]),
        declared_frames=0,
        audio_rate=0,
    )


INDEX = make_index(np.arange(100))  # 100 frames at 25 fps


def test_random_clips_fit_the_range_and_cover_every_start() -> None:
    sampler = RandomClipSampler(num_frames=4, frame_stride=3)
    assert sampler.span(INDEX) == 10
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(400):
        (clip,) = sampler(INDEX, 20, 40, generator=generator)
        assert np.all(np.diff(clip) == 3)
        assert 20 <= clip[0] and clip[-1] < 40
        starts.add(int(clip[0]))
    assert starts == set(range(20, 31))  # every start where a clip fits, and no other
    again = sampler(INDEX, 20, 40, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(again, sampler(INDEX, 20, 40, generator=torch.Generator().manual_seed(5)))


def test_speed_multiplies_the_spacing() -> None:
    sampler = MultiClipSampler(1, num_frames=5, frame_stride=2)
    for speed in (1, 2, 4):
        (clip,) = sampler(INDEX, 0, 100, speed=speed)
        assert np.all(np.diff(clip) == 2 * speed)
        assert sampler.span(INDEX, speed) == 8 * speed + 1


def test_short_range_is_padded_with_its_last_frame() -> None:
    sampler = RandomClipSampler(num_frames=6, frame_stride=2)
    assert not sampler.fits(INDEX, 90, 98)
    assert sampler.fits(INDEX, 88, 99)
    (clip,) = sampler(INDEX, 90, 98)
    assert clip.tolist() == [90, 92, 94, 96, 97, 97]


def test_multi_clip_starts_are_evenly_spaced() -> None:
    clips = MultiClipSampler(3, num_frames=4, frame_stride=2)(INDEX, 10, 60)
    assert clips[:, 0].tolist() == [10, 32, 53]  # first start, middle (31.5 rounded), last (53 + 6 = 59)
    assert clips[-1, -1] == 59
    (centre,) = MultiClipSampler(1, num_frames=4, frame_stride=2)(INDEX, 10, 60)
    assert centre.tolist() == [31, 33, 35, 37]


def test_target_fps_samples_by_time() -> None:
    sampler = MultiClipSampler(1, num_frames=4, target_fps=12.5)
    (clip,) = sampler(INDEX, 0, 100)
    assert np.all(np.diff(clip) == 2)  # 25 fps video at 12.5 fps
    # Irregular timestamps (as tree.avi): the frame shown at each sampled time.
    irregular = make_index([0, 1, 5, 6, 7, 20, 21, 40], time_base=Fraction(1, 10))
    (clip,) = MultiClipSampler(1, num_frames=4, target_fps=5.0)(irregular, 0, 5)
    # The clip spans 0.6 s: it starts at position 0 (t=0.0 s), shown at 0.0, 0.2, 0.4, 0.6 s.
    assert clip.tolist() == [0, 1, 1, 3]
    # Frames 5-7 show 2.0-4.0 s: a 0.6 s clip fits (the 2.1 s frame is shown from 2.2 to 2.6 s), 3 s do not.
    (clip,) = MultiClipSampler(1, num_frames=4, target_fps=5.0)(irregular, 5, 6)
    assert clip.tolist() == [5, 5, 5, 5]  # padded: the range ends at 2.0 s
    assert RandomClipSampler(4, target_fps=5.0).fits(irregular, 5, 8)
    (clip,) = RandomClipSampler(4, target_fps=5.0)(
        irregular, 5, 8, generator=torch.Generator().manual_seed(0)
    )
    assert clip.tolist() == [5, 6, 6, 6]
    assert not RandomClipSampler(4, target_fps=1.0).fits(irregular, 5, 8)


def test_uniform_sampler_takes_one_frame_per_segment() -> None:
    (centres,) = UniformClipSampler(4)(INDEX, 0, 100)
    assert centres.tolist() == [12, 37, 62, 87]
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        (clip,) = UniformClipSampler(4, random=True)(INDEX, 0, 100, generator=generator)
        assert [c // 25 for c in clip] == [0, 1, 2, 3]
    assert not UniformClipSampler(8).fits(INDEX, 0, 7)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RandomClipSampler(0), "num_frames"),
        (lambda: RandomClipSampler(4, frame_stride=0), "frame_stride"),
        (lambda: RandomClipSampler(4, target_fps=0.0), "target_fps"),
        (lambda: MultiClipSampler(0, 4), "num_clips"),
    ],
)
def test_sampler_options_are_checked(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# ------------------------------------------------------------------------------------------ transforms

FRAMES = torch.randint(0, 256, (5, 40, 60, 3), dtype=torch.uint8)


def test_resize_short_side_keeps_the_aspect_and_uint8() -> None:
    resized = resize_short_side(FRAMES, 20)
    assert resized.shape == (5, 20, 30, 3) and resized.dtype == torch.uint8
    assert resize_short_side(FRAMES, 40) is FRAMES
    flat = torch.full((2, 40, 60, 3), 77, dtype=torch.uint8)
    assert torch.all(resize_short_side(flat, 17) == 77)


def test_crops_cut_the_same_window_of_every_frame() -> None:
    assert torch.equal(center_crop(FRAMES, 20), FRAMES[:, 10:30, 20:40])
    left, middle, right = three_crops(FRAMES, 40)
    assert torch.equal(left, FRAMES[:, :, :40]) and torch.equal(right, FRAMES[:, :, 20:])
    assert torch.equal(middle, FRAMES[:, :, 10:50])
    tall = FRAMES.transpose(1, 2)
    assert torch.equal(three_crops(tall, 40)[2], tall[:, 20:, :])
    assert torch.equal(horizontal_flip(FRAMES)[:, :, 0], FRAMES[:, :, -1])
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(FRAMES, 41)


def test_normalize_gives_channels_first_floats() -> None:
    video = normalize(FRAMES, (0.5, 0.4, 0.3), (0.5, 0.2, 0.1))
    assert video.shape == (3, 5, 40, 60) and video.dtype == torch.float32
    expected = (FRAMES[2, 7, 9, 1].float() / 255 - 0.4) / 0.2
    assert video[1, 2, 7, 9] == pytest.approx(float(expected), abs=1e-6)


def test_clip_transform_train_and_eval() -> None:
    train = ClipTransform(24, short_side=(30, 36), crop="random", flip=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    views = train(FRAMES, torch.Generator().manual_seed(0))
    assert views.shape == (1, 3, 5, 24, 24)
    assert views.min() >= -1 and views.max() <= 1
    different = train(FRAMES, torch.Generator().manual_seed(1))
    assert not torch.equal(views, different)
    evaluation = ClipTransform(24, short_side=24, crop="three")
    assert evaluation.num_crops == 3
    three = evaluation(FRAMES)
    assert three.shape == (3, 3, 5, 24, 24)
    assert torch.equal(three[0], evaluation(FRAMES)[0])  # deterministic
    centre = ClipTransform(24, crop="center")(FRAMES)
    assert torch.equal(centre[0], three[1])
    flipped = ClipTransform(24, crop="center", flip=1.0)(FRAMES)
    assert torch.equal(flipped, centre.flip(-1))
    with pytest.raises(ValueError, match="crop_size <= short_side"):
        ClipTransform(24, short_side=20)
    with pytest.raises(ValueError, match="uint8 frames"):
        ClipTransform(24)(FRAMES.float())
