"""Audio per clip (``audio=True``): the span of the clip's frames, resampled, fixed length, missing audio."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from core.utils import InputError
from domains.video.datamodules import SelfSupervisedVideoDataModule, VideoClassificationDataModule
from domains.video.decoding import audio_span, probe_video, read_audio, resample_audio

TONE_HZ, TONE_RATE, TONE_FPS, TONE_FRAMES = 50.0, 8000, 10, 40


def tone(t: np.ndarray) -> np.ndarray:
    """The fixture's audio signal at times ``t`` (seconds)."""
    return 0.5 * np.sin(2 * np.pi * TONE_HZ * t)


@pytest.fixture
def tone_video(tmp_path: Path) -> Path:
    """4 s of 10-fps video with a 50-Hz tone as 16-bit PCM at 8 kHz (lossless), both starting at time 0."""
    path = tmp_path / "inputs" / "tone.mkv"
    path.parent.mkdir()
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=TONE_FPS)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=TONE_RATE)
        audio.layout = "mono"
        for k in range(TONE_FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 6 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, TONE_FPS)
            container.mux(video.encode(frame))
        total = TONE_FRAMES * TONE_RATE // TONE_FPS
        signal = np.round(tone(np.arange(total) / TONE_RATE) * 32767).astype(np.int16)
        for first in range(0, total, 800):
            chunk = av.AudioFrame.from_ndarray(signal[None, first : first + 800], format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = TONE_RATE, first, Fraction(1, TONE_RATE)
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def test_resample_audio_is_exact_on_the_input_grid_and_band_limited_off_it() -> None:
    samples = torch.tensor([[0.0, 1.0, -2.0, 3.0, 0.5]])
    times = torch.tensor([11.0, 12.0, 13.0]) / 10  # samples 11, 12, 13 at 10 Hz; the input starts at 10
    assert torch.allclose(resample_audio(samples, 10, 10, times, 10), torch.tensor([[1.0, -2.0, 3.0]]))
    t = np.arange(4000) / 1000.0
    slow = torch.from_numpy(np.sin(2 * np.pi * 7 * t)).float()[None]
    half = t[1000:3000] + 0.0005  # between input samples
    upsampled = resample_audio(slow, 1000, 0, torch.from_numpy(half), 2000)[0].numpy()
    assert np.abs(upsampled - np.sin(2 * np.pi * 7 * half)).max() < 1e-4


def test_audio_span_of_the_tone_matches_the_signal(tone_video: Path) -> None:
    for rate in (8000, 4000, 22050):
        sound = audio_span(tone_video, 1.2, 1.9, rate)
        assert sound.shape == (1, round(0.7 * rate))
        expected = tone(1.2 + np.arange(sound.shape[1]) / rate)
        assert np.abs(sound[0].numpy() - expected).max() < 2e-4  # 16-bit quantisation 1.5e-5
    padded = audio_span(tone_video, 1.2, 1.9, 4000, length=3000)
    assert torch.equal(padded[:, 2800:], torch.zeros(1, 200))
    assert torch.equal(audio_span(tone_video, 1.2, 1.9, 4000, length=100), padded[:, :100])


def test_clip_audio_covers_exactly_the_clip_frames_of_the_fixture(tone_video: Path) -> None:
    data = SelfSupervisedVideoDataModule(
        paths=[str(tone_video)],
        task="arrow_of_time",
        split=(0.5, 0.25, 0.25),
        gap_seconds=0.0,
        num_frames=4,
        frame_stride=2,
        image_size=32,
        audio=True,
        audio_sample_rate=4000,
    )
    data.setup("fit")
    train = data.datasets["train"]
    # Default length: the longest clip, 7 frames of 0.1 s from the first to the end of the last.
    assert data.audio_length(train.sampler) == 2800
    for item in range(4):
        train.generator = torch.Generator().manual_seed(item)
        sample = train[item]
        segment = train.segments[item]
        train.generator = torch.Generator().manual_seed(item)  # the same draw again, for the positions
        positions = train.sampler(segment.index, segment.first, segment.stop, 1, train.generator)[0]
        times = positions[0] / TONE_FPS + np.arange(2800) / 4000  # frame k is shown at k / 10 s
        got = sample["audio"][0].numpy()
        got = got[::-1] if segment.reverse else got
        assert sample["audio"].shape == (1, 2800)
        # Within 2 ms of the file's start the kernel meets the silence before it (the signal starts there).
        away = times > 0.002
        assert np.abs(got - tone(times))[away].max() < 2e-4
    batch = next(iter(data.train_dataloader()))
    assert batch["audio"].shape == (4, 1, 2800) and batch["video"].shape[0] == 4  # all 4 train clips


def test_clip_audio_of_big_buck_bunny_equals_a_direct_decode(shared_video: Path) -> None:
    path = shared_video / "bigbuckbunny.mp4"
    data = SelfSupervisedVideoDataModule(
        paths=[str(path)],
        task="playback_speed",
        speeds=[1, 2],
        split=(0.5, 0.25, 0.25),
        gap_seconds=0.2,
        num_frames=4,
        frame_stride=2,
        image_size=32,
        test_crops=3,
        audio=True,
        audio_sample_rate=48000,  # the file's rate: no interpolation, the decoded samples themselves
    )
    data.setup("test")
    test = data.datasets["test"]
    index = probe_video(path)
    whole, rate = read_audio(path, 0.0, 5.28)
    mono = whole.mean(dim=0).numpy()  # 5.1 channels averaged
    length = data.audio_length(test.sampler)
    assert rate == 48000 and length == round(13 / 25 * 48000)  # 2x: 13 frames of 40 ms
    for item, segment in enumerate(test.segments):
        sample = test[item]
        positions = test.sampler(segment.index, segment.first, segment.stop, segment.speed)[0]
        first = round(index.times[positions[0]] * rate)
        stop = round(index.times[positions[-1] + 1] * rate)
        assert stop - first == round((6 * segment.speed + 1) / 25 * rate)
        assert sample["audio"].shape == (3, 1, length)  # one per crop view
        assert torch.equal(sample["audio"][0], sample["audio"][2])
        got = sample["audio"][0, 0].numpy()
        assert np.abs(got[: stop - first] - mono[first:stop]).max() < 1e-6
        assert not got[stop - first :].any()  # zeros after the 1x clip's span
        assert np.abs(mono[first:stop]).max() > 1e-3  # not silence


def test_videos_without_audio_raise_or_give_silence(shared_video: Path, tmp_path: Path) -> None:
    bikes = str(shared_video / "bikes.mp4")
    with_audio = str(shared_video / "bigbuckbunny.mp4")
    common = dict(paths=[with_audio, bikes], num_frames=4, image_size=32, audio=True, gap_seconds=0.0)
    data = SelfSupervisedVideoDataModule(**common)
    with pytest.raises(InputError, match=r"no audio stream: .*bikes\.mp4"):
        data.setup("fit")
    data = SelfSupervisedVideoDataModule(**common, missing_audio="zeros")
    with pytest.warns(UserWarning, match=r"bikes\.mp4"):
        data.setup("fit")
    train = data.datasets["train"]
    silent = [i for i, s in enumerate(train.segments) if s.index.path.name == "bikes.mp4"]
    loud = [i for i, s in enumerate(train.segments) if s.index.path.name == "bigbuckbunny.mp4"]
    assert torch.equal(train[silent[0]]["audio"], torch.zeros(1, data.audio_length(train.sampler)))
    assert train[loud[0]]["audio"].abs().max() > 0
    assert (
        "audio"
        not in SelfSupervisedVideoDataModule(paths=[with_audio], num_frames=4).clip_dataset(
            "val", train.segments[:1], train.sampler, 1
        )[0]
    )


def test_audio_options_are_checked(class_folders: Path) -> None:
    with pytest.raises(ValueError, match="audio_sample_rate"):
        VideoClassificationDataModule(data_root=str(class_folders), audio=True, audio_sample_rate=0)
    with pytest.raises(ValueError, match="missing_audio"):
        VideoClassificationDataModule(data_root=str(class_folders), audio=True, missing_audio="ignore")
    data = VideoClassificationDataModule(data_root=str(class_folders), audio=True, audio_seconds=0.5)
    with pytest.raises(InputError, match="no audio stream"):  # the written class-folder clips are silent
        data.setup("fit")
