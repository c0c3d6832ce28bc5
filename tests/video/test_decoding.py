"""Decoding the real shared clips: frame counts by decoding, frame-exact seeks, audio, writing, bad files."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.utils import InputError, InputFileNotFoundError
from domains.video.decoding import (
    probe_video,
    read_audio,
    read_frames,
    read_range,
    torchcodec_available,
    write_video,
)
from tests.video.conftest import SHARED_FRAMES

pytestmark = pytest.mark.realdata


def test_tree_avi_holds_68_frames_though_it_declares_444(shared_video: Path) -> None:
    index = probe_video(shared_video / "tree.avi")
    assert index.declared_frames == 444
    assert index.num_frames == 68
    assert index.codec == "cinepak"
    # Its frames are irregularly spaced over the 29.6 s the 444 index entries span.
    assert index.times[-1] == pytest.approx(443 * 0.066667, abs=1e-3)
    assert index.fps == pytest.approx(67 / index.times[-1])


@pytest.mark.parametrize("name", sorted(SHARED_FRAMES))
def test_seeking_gives_the_frames_of_a_sequential_decode(shared_video: Path, name: str) -> None:
    """Reads that seek equal PyAV's plain in-order decode of the file, frame for frame and time for time."""
    import av

    index = probe_video(shared_video / name)
    assert index.num_frames == SHARED_FRAMES[name]
    last = index.num_frames - 1
    rng = np.random.default_rng(0)
    requests = [
        [last],
        [0, 1, 2],
        list(range(last, 0, -max(1, index.num_frames // 7))),  # backwards, across keyframes
        [5, 5, 3],  # repeats and order kept
    ]
    for _ in range(4):
        start = int(rng.integers(0, index.num_frames - 8))
        requests.append(list(range(start, min(index.num_frames, start + 16), int(rng.integers(1, 4)))))
    needed = {p for positions in requests for p in positions}
    reference, times = {}, {}
    with av.open(str(shared_video / name)) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position in needed:
                reference[position] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                times[position] = float(frame.pts * frame.time_base)
    for positions in requests:
        clip = read_frames(index, positions)
        assert clip.frames.dtype == torch.uint8
        assert torch.equal(clip.frames, torch.stack([reference[p] for p in positions])), positions
        assert clip.times.tolist() == pytest.approx([times[p] for p in positions], abs=1e-9)
        assert clip.positions.tolist() == positions
    assert np.all(np.diff(index.times) > 0)


def test_frame_times_in_seconds(shared_video: Path) -> None:
    index = probe_video(shared_video / "bikes.mp4")
    clip = read_frames(index, [0, 30, 249])
    assert clip.times.tolist() == pytest.approx([0.0, 1.2, 9.96])  # 25 fps
    assert len(index.keyframes) > 1  # the seeks above crossed GOPs
    ranged = read_range(index, 1.2, 1.4)
    assert ranged.positions.tolist() == [30, 31, 32, 33, 34]
    assert index.position_at([1.2, 1.219, 100.0]).tolist() == [30, 30, 249]


def test_short_side_scaling(shared_video: Path) -> None:
    clip = read_frames(shared_video / "bigbuckbunny.mp4", [0, 64], short_side=72)
    assert clip.frames.shape == (2, 72, 128, 3)
    full = read_frames(shared_video / "bigbuckbunny.mp4", [0, 64]).frames.float()
    area = torch.nn.functional.avg_pool2d(full.permute(0, 3, 1, 2), 10).permute(0, 2, 3, 1)
    assert (clip.frames.float() - area).abs().mean() < 3  # the same picture, scaled


def test_audio_is_ignored_by_default_and_returned_on_request(shared_video: Path) -> None:
    path = shared_video / "bigbuckbunny.mp4"
    assert read_frames(path, [10, 11, 12]).audio is None
    clip = read_frames(path, [10, 11, 12], audio=True)
    assert clip.sample_rate == 48000
    assert clip.audio is not None and clip.audio.dtype == torch.float32
    assert clip.audio.shape[1] == round(0.12 * 48000)  # three frames of 40 ms
    assert clip.audio.abs().max() > 0
    whole, _ = read_audio(path, 0.0, 1.0)
    assert torch.equal(clip.audio, whole[:, round(0.4 * 48000) : round(0.52 * 48000)])
    assert read_frames(shared_video / "bikes.mp4", [0], audio=True).audio is None  # no audio stream


def test_write_video_round_trip(shared_video: Path, tmp_path: Path) -> None:
    frames = read_frames(shared_video / "carphone_pristine.mp4", range(0, 40, 2)).frames
    path = write_video(tmp_path / "out" / "clip.mp4", frames, fps=12.5)
    assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # no temporary file left
    index = probe_video(path)
    assert (index.num_frames, index.width, index.height, index.codec) == (20, 176, 144, "h264")
    assert index.fps == pytest.approx(12.5)
    back = read_frames(index, range(20)).frames.float()
    mse = ((back - frames.float()) ** 2).mean()
    assert 10 * torch.log10(255**2 / mse) > 30  # PSNR in dB at crf 18


def test_write_video_keyframe_interval(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (12, 16, 16, 3), dtype=torch.uint8)
    keys = probe_video(write_video(tmp_path / "k4.mp4", frames, fps=5, keyframe_interval=4)).keyframes
    assert keys[0] == 0 and np.diff([*keys.tolist(), 12]).max() <= 4  # at most 4 frames apart
    every = probe_video(write_video(tmp_path / "k1.mp4", frames, fps=5, keyframe_interval=1)).keyframes
    assert every.tolist() == list(range(12))
    with pytest.raises(InputError, match="keyframe_interval must be >= 1"):
        write_video(tmp_path / "k0.mp4", frames, fps=5, keyframe_interval=0)
    assert not (tmp_path / "k0.mp4").exists()


def test_write_video_pads_odd_sides_and_refuses_bad_frames(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (3, 9, 11, 3), dtype=torch.uint8)
    index = probe_video(write_video(tmp_path / "odd.mp4", frames, fps=5))
    assert (index.width, index.height, index.num_frames) == (12, 10, 3)
    with pytest.raises(InputError, match=r"bad\.mp4.*uint8 frames \[T, H, W, 3\]"):
        write_video(tmp_path / "bad.mp4", frames.float(), fps=5)
    with pytest.raises(InputError, match="fps"):
        write_video(tmp_path / "bad.mp4", frames, fps=0)
    assert sorted(os.listdir(tmp_path)) == ["odd.mp4"]


@pytest.mark.skipif(
    not torchcodec_available(), reason="torchcodec (with its FFmpeg libraries) is not installed"
)
@pytest.mark.parametrize("name", ["bikes.mp4", "tree.avi", "vtest.avi"])
def test_torchcodec_backend_gives_the_pyav_frames(shared_video: Path, name: str) -> None:
    index = probe_video(shared_video / name)
    positions = [0, 3, index.num_frames // 2, index.num_frames - 1, 3, 1]  # any order, repeats
    pyav = read_frames(index, positions, backend="pyav")
    codec = read_frames(index, positions, backend="torchcodec")
    assert torch.equal(codec.times, pyav.times)
    # torchcodec loads the system's FFmpeg, PyAV bundles its own: msmpeg4 decodes differ by rounding in a
    # few pixels (at most 2 levels); a neighbouring frame differs far more.
    difference = (codec.frames.int() - pyav.frames.int()).abs()
    assert difference.max() <= 2 and difference.float().mean() < 0.01
    neighbour = read_frames(index, [p + 1 for p in positions[:3]]).frames.int()
    assert (neighbour - pyav.frames[:3].int()).abs().float().mean() > 10 * difference.float().mean()
    again = read_frames(index, positions[::-1], backend="torchcodec")  # the decoder kept for this file
    assert torch.equal(again.frames, codec.frames.flip(0))


# ------------------------------------------------------ bad input: the file is named, nothing written


def _unchanged(folder: Path, before: list[str]) -> None:
    assert sorted(os.listdir(folder)) == before


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match=r"nothing\.mp4"):
        probe_video(tmp_path / "nothing.mp4")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    with pytest.raises(InputError, match=r"notes\.mp4: not a readable video file"):
        probe_video(path)
    _unchanged(tmp_path, ["notes.mp4"])


def test_truncated_avi(truncated_avi: Path) -> None:
    with pytest.raises(InputError, match=r"tree_truncated\.avi: truncated or corrupt"):
        probe_video(truncated_avi)
    _unchanged(truncated_avi.parent, ["tree_truncated.avi"])


def test_truncated_mp4_without_its_index(shared_video: Path, tmp_path: Path) -> None:
    data = (shared_video / "bikes.mp4").read_bytes()  # its moov index is at the end
    path = tmp_path / "bikes_cut.mp4"
    path.write_bytes(data[: int(0.9 * len(data))])
    with pytest.raises(InputError, match=r"bikes_cut\.mp4: not a readable video file, or one truncated"):
        probe_video(path)
    _unchanged(tmp_path, ["bikes_cut.mp4"])


def test_truncated_faststart_mp4(shared_video: Path, tmp_path: Path) -> None:
    """An mp4 with its index first still declares every frame; the cut packets are found by decoding."""
    import av

    frames = read_frames(shared_video / "carphone_pristine.mp4", range(40)).frames.numpy()
    whole = tmp_path / "faststart.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    assert probe_video(whole).num_frames == 40
    cut = tmp_path / "faststart_cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(0.6 * len(data))])
    with pytest.raises(InputError, match=r"faststart_cut\.mp4: truncated or corrupt"):
        probe_video(cut)


def test_zero_frame_stream(zero_frame_avi: Path) -> None:
    with pytest.raises(InputError, match=r"empty\.avi: the video stream holds no decodable frame"):
        probe_video(zero_frame_avi)
    _unchanged(zero_frame_avi.parent, ["empty.avi"])


def test_unknown_codec(unknown_codec_avi: Path) -> None:
    with pytest.raises(InputError, match=r"tree_unknown_codec\.avi: .*no decoder for its video codec"):
        probe_video(unknown_codec_avi)
    _unchanged(unknown_codec_avi.parent, ["tree_unknown_codec.avi"])


def test_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError, match=r"tone\.wav: holds no video stream"):
        probe_video(path)


def test_positions_outside_the_video(shared_video: Path) -> None:
    index = probe_video(shared_video / "tree.avi")
    with pytest.raises(InputError, match=r"tree\.avi: frame 68 requested, but the video has 68 frames"):
        read_frames(index, [0, 68])
    with pytest.raises(InputError, match=r"tree\.avi: no frame in \[40\.000, 41\.000\)"):
        read_range(index, 40.0, 41.0)
    with pytest.raises(InputError, match="no audio stream"):
        read_audio(shared_video / "tree.avi", 0.0, 1.0)


def test_mpeg_program_stream_reads_exactly(shared_video: Path, tmp_path: Path) -> None:
    """MPEG-PS demuxers land beside the requested keyframe: reads fall back to decoding from the start."""
    import av

    frames = read_frames(shared_video / "bikes.mp4", range(60), short_side=64).frames.numpy()[:, :, :112]
    path = tmp_path / "program_stream.mpg"
    with av.open(str(path), "w", format="mpeg") as container:
        stream = container.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 112, 64, "yuv420p", 12
        for image in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
            )
        container.mux(stream.encode(None))
    index = probe_video(path)
    assert index.num_frames == 60 and index.codec == "mpeg1video"
    full = read_frames(index, range(60))
    for positions in ([0], [5], [59, 30, 31], [47]):
        assert torch.equal(read_frames(index, positions).frames, full.frames[positions])


def test_keyframes_whose_seek_decodes_differently_are_not_used(shared_video: Path) -> None:
    """A keyframe is kept for seeking only when a fresh seek to it reproduces the sequential decode."""
    import av

    from domains.video.decoding import _seekable

    path = shared_video / "bikes.mp4"
    index = probe_video(path)
    assert index.keyframes.tolist() == [0, 30, 76, 137, 187, 242]  # every flagged keyframe passed
    with av.open(str(path)) as container:
        luma = dict(enumerate(frame.to_ndarray(format="gray") for frame in container.decode(video=0)))
    assert _seekable(path, index.pts, [0, 30, 76], luma) == [30, 76]
    luma[77] = 255 - luma[77]  # as if a seek to frame 76 decoded frame 77 differently
    assert _seekable(path, index.pts, [0, 30, 76], luma) == [30]


@pytest.mark.parametrize(
    ("container_format", "suffix", "codec"),
    [
        ("webm", "webm", "libvpx-vp9"),
        ("matroska", "mkv", "mpeg4"),
        ("avi", "avi", "mpeg4"),
        ("mp4", "mp4", "mpeg4"),
        ("mov", "mov", "mjpeg"),
    ],
)
def test_containers_and_codecs_read_exactly(
    shared_video: Path, tmp_path: Path, container_format: str, suffix: str, codec: str
) -> None:
    """Real frames written in other containers and codecs (keyframe every 20 frames) read back exactly."""
    import av

    frames = read_frames(shared_video / "bikes.mp4", range(90), short_side=64).frames.numpy()[:, :, :112]
    path = tmp_path / f"clip.{suffix}"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.gop_size = 112, 64, 20
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for image in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
            )
        container.mux(stream.encode(None))
    index = probe_video(path)
    assert index.num_frames == 90 and len(index.keyframes) >= 5
    with av.open(str(path)) as container:
        reference = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    for positions in ([89], [0, 1], [45, 46, 70], [30, 10, 60]):
        assert torch.equal(
            read_frames(index, positions).frames, torch.stack([reference[p] for p in positions])
        )
