"""Frame-exact video decoding through PyAV (FFmpeg), with torchcodec as an optional backend.

A container's header is not trusted: OpenCV's ``tree.avi`` declares 444 frames and holds 68 (the others are
empty AVI index entries), and a truncated file still declares the frames it lost. :func:`probe_video`
therefore decodes the whole video stream once and records the presentation timestamp of every frame it
actually yields, and which keyframes a fresh seek really decodes from (each is tried once: a keyframe flag
is not a promise). Reading then addresses frames by their position in that index: :func:`read_frames`
seeks to the keyframe at or before the first requested frame, decodes forward and keeps exactly the
requested frames, matched by timestamp, so a seek gives the frames of a full sequential decode. Frames
come back as ``uint8[T, H, W, 3]`` RGB with their times in seconds.

torchcodec (``backend="torchcodec"``, or ``"auto"`` when it imports with its FFmpeg libraries) fetches the
same frames by their timestamps from the PyAV index, so both backends agree frame for frame.
"""

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch
import torch.nn.functional as F

from core.utils import InputError, InputFileNotFoundError

__all__ = [
    "Backend",
    "Clip",
    "VideoIndex",
    "audio_span",
    "probe_video",
    "read_audio",
    "read_audio_window",
    "read_frames",
    "read_range",
    "resample_audio",
    "torchcodec_available",
    "write_video",
]

Backend = Literal["auto", "pyav", "torchcodec"]
AUDIO_PREROLL = 0.25
"""Seconds of audio decoded before a requested start after a seek."""


@dataclass(frozen=True, eq=False)
class VideoIndex:
    """What decoding the video stream of one file found: every frame's timestamp and the keyframes.

    Attributes:
        path: The file.
        codec: FFmpeg's name of the video codec.
        width: Frame width in pixels.
        height: Frame height in pixels.
        time_base: Seconds per timestamp unit of the stream.
        pts: Presentation timestamp of each decoded frame, ascending, in ``time_base`` units.
        keyframes: Positions (0-based frame numbers) of the keyframes, ascending; position 0 is one.
        declared_frames: The frame count the container declares (0 when it declares none); never used.
        audio_rate: Sample rate of the first audio stream, 0 when the file has no audio.
    """

    path: Path
    codec: str
    width: int
    height: int
    time_base: Fraction
    pts: np.ndarray
    keyframes: np.ndarray
    declared_frames: int
    audio_rate: int

    @property
    def num_frames(self) -> int:
        """Frames the video stream actually decodes to."""
        return len(self.pts)

    @property
    def times(self) -> np.ndarray:
        """Presentation time of each frame in seconds (float64), relative to the stream's time origin."""
        return self.pts.astype(np.float64) * float(self.time_base)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (one mean frame interval after it)."""
        return float(self.times[-1] - self.times[0]) + 1.0 / self.fps

    @property
    def fps(self) -> float:
        """Mean decoded frame rate; for variable-rate files (``tree.avi``) lower than the declared one."""
        times = self.times
        if len(times) < 2 or times[-1] <= times[0]:
            return 1.0
        return (len(times) - 1) / float(times[-1] - times[0])

    def keyframe_before(self, position: int) -> int:
        """Position of the last keyframe at or before ``position``."""
        return int(self.keyframes[np.searchsorted(self.keyframes, position, side="right") - 1])

    def position_at(self, seconds: np.ndarray | Sequence[float]) -> np.ndarray:
        """Position of the frame shown at each time: the last frame whose time is at or before it."""
        found = np.searchsorted(self.times, np.asarray(seconds, dtype=np.float64) + 1e-9, side="right") - 1
        return np.clip(found, 0, self.num_frames - 1)


@dataclass(frozen=True, eq=False)
class Clip:
    """Decoded frames of one file.

    Attributes:
        frames: ``uint8[T, H, W, 3]`` RGB frames in the order requested.
        times: ``float64[T]`` presentation time of each frame in seconds.
        positions: ``int64[T]`` frame numbers in the file.
        audio: ``float32[channels, samples]`` audio from the first frame's time to one frame after the
            last, when requested and present; else None.
        sample_rate: Audio samples per second (0 without audio).
    """

    frames: torch.Tensor
    times: torch.Tensor
    positions: torch.Tensor
    audio: torch.Tensor | None = None
    sample_rate: int = 0


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"video file not found: {path}")
    return path


def _open(path: Path) -> Any:
    """An open PyAV input container, or an :class:`InputError` naming the file."""
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise InputError(
            f"{path}: not a readable video file, or one truncated before its index ({err})"
        ) from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise InputError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise InputError(
            f"{path}: the FFmpeg bundled with PyAV has no decoder for its video codec; re-encode the file "
            "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
        )
    return stream


def probe_video(path: str | os.PathLike) -> VideoIndex:
    """Decode the video stream of ``path`` once and index its frames.

    Args:
        path: A video file any FFmpeg demuxer reads (mp4, avi, mkv, webm, ...).

    Returns:
        The frame index: timestamps, the keyframes a seek decodes exactly from, size and codec.

    Raises:
        InputFileNotFoundError: If the file does not exist.
        InputError: Naming the file, when it is not a video FFmpeg reads, has no decoder for its codec, is
            truncated or corrupt (a packet cut short, or fewer frames than coded packets), holds no frame,
            or has frames without timestamps or with repeated ones.
    """
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        pts: list[int] = []
        keyframes: list[int] = []
        fingerprints: dict[int, np.ndarray] = {}  # each keyframe and the frame after it
        coded = 0
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    raise InputError(
                        f"{path}: truncated or corrupt (video packet {coded} is cut short or damaged)"
                    )
                coded += packet.size > 0
                for frame in packet.decode():
                    stamp = frame.pts if frame.pts is not None else frame.dts
                    if stamp is None:
                        raise InputError(f"{path}: frame {len(pts)} has no timestamp; remux the file")
                    if frame.key_frame:
                        keyframes.append(len(pts))
                    if keyframes and len(pts) - keyframes[-1] <= 1:
                        fingerprints[len(pts)] = _fingerprint(frame)
                    pts.append(int(stamp))
        except av.FFmpegError as err:
            raise InputError(f"{path}: decoding failed after {len(pts)} frames ({err})") from None
        codec_context = stream.codec_context
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        declared = int(stream.frames or 0)
        audio_rate = int(container.streams.audio[0].rate or 0) if container.streams.audio else 0
    if not pts:
        raise InputError(f"{path}: the video stream holds no decodable frame")
    if len(pts) < coded:
        raise InputError(
            f"{path}: truncated or corrupt ({coded} coded video packets, {len(pts)} frames decode)"
        )
    stamps = np.asarray(pts, dtype=np.int64)
    if np.any(np.diff(stamps) <= 0):
        raise InputError(
            f"{path}: frame timestamps repeat or go backwards; remux the file (ffmpeg -i IN -c copy OUT)"
        )
    return VideoIndex(
        path=path,
        codec=codec_context.name,
        width=int(codec_context.width),
        height=int(codec_context.height),
        time_base=time_base,
        pts=stamps,
        # Decoding from the start of the file reaches the first frame, keyframe or not.
        keyframes=np.asarray([0, *_seekable(path, stamps, keyframes, fingerprints)], dtype=np.int64),
        declared_frames=declared,
        audio_rate=audio_rate,
    )


def _fingerprint(frame: Any) -> np.ndarray:
    """The luma plane of a decoded frame, to compare decodes of the same frame."""
    return frame.to_ndarray(format="gray")


def _seekable(
    path: Path, pts: np.ndarray, keyframes: list[int], fingerprints: dict[int, np.ndarray]
) -> list[int]:
    """The keyframes after the first from which a freshly opened decoder reproduces the sequential decode.

    A keyframe flag is not a promise: in some h264 files a fresh decoder that seeks to a flagged frame
    yields garbage (``cockatoo.mp4`` of imageio, yuv444p), and a demuxer may land elsewhere. Each keyframe
    is therefore tried as :func:`read_frames` would use it, and its frame and the next one compared with
    the sequential decode.
    """
    position_of = {int(p): i for i, p in enumerate(pts)}
    good = []
    for key in keyframes:
        if key == 0:
            continue
        last = min(key + 1, len(pts) - 1)
        with _open(path) as container:
            stream = container.streams.video[0]
            try:
                container.seek(int(pts[key]), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    position = position_of.get(int(frame.pts)) if frame.pts is not None else None
                    if position is None or position < key:
                        continue
                    if position > last or not np.array_equal(_fingerprint(frame), fingerprints[position]):
                        break
                    if position == last:
                        good.append(key)
                        break
            except av.FFmpegError:
                pass
    return good


def torchcodec_available() -> bool:
    """Whether torchcodec imports together with the FFmpeg libraries it needs."""
    return _torchcodec() is not None


@cache
def _torchcodec() -> Any:
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # torchcodec raises RuntimeError or OSError when FFmpeg's libraries are absent
        return None
    return VideoDecoder


def _positions(index: VideoIndex, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if positions.size == 0:
        raise InputError(f"{index.path}: no frame requested")
    bad = positions[(positions < 0) | (positions >= index.num_frames)]
    if bad.size:
        raise InputError(
            f"{index.path}: frame {int(bad[0])} requested, but the video has {index.num_frames} frames"
        )
    return positions


def read_frames(
    source: VideoIndex | str | os.PathLike,
    positions: Sequence[int] | np.ndarray,
    *,
    backend: Backend = "pyav",
    short_side: int | None = None,
    audio: bool = False,
) -> Clip:
    """Decode exactly the frames at ``positions`` (any order, repeats allowed).

    Args:
        source: A :class:`VideoIndex` (probed once, reused per clip) or a file path (probed here).
        positions: Frame numbers in ``[0, num_frames)``.
        backend: ``pyav``, ``torchcodec``, or ``auto`` (torchcodec when it is available, else PyAV).
        short_side: Scale frames so their shorter side has this many pixels (FFmpeg's area scaler, faster
            than resizing full-size tensors); None keeps the decoded size.
        audio: Also return the audio of the clip's time span (see :func:`read_audio`).

    Returns:
        The frames, their times and positions.

    Raises:
        InputError: Naming the file, for a position outside the video or a file that stops decoding.
    """
    index = source if isinstance(source, VideoIndex) else probe_video(source)
    positions = _positions(index, positions)
    if backend == "auto":
        backend = "torchcodec" if torchcodec_available() else "pyav"
    if backend == "torchcodec":
        frames = _read_torchcodec(index, positions, short_side)
    elif backend == "pyav":
        frames = _read_pyav(index, positions, short_side)
    else:
        raise InputError(f"backend must be 'auto', 'pyav' or 'torchcodec', got {backend!r}")
    times = index.times[positions]
    clip_audio, rate = None, 0
    if audio and index.audio_rate:
        end = float(times.max()) + 1.0 / index.fps
        clip_audio, rate = read_audio(index.path, float(times.min()), end)
    return Clip(
        frames=frames,
        times=torch.from_numpy(times),
        positions=torch.from_numpy(positions),
        audio=clip_audio,
        sample_rate=rate,
    )


def read_range(
    source: VideoIndex | str | os.PathLike,
    start: float,
    end: float,
    *,
    backend: Backend = "pyav",
    short_side: int | None = None,
    audio: bool = False,
) -> Clip:
    """Every frame whose presentation time lies in ``[start, end)`` seconds.

    Raises:
        InputError: Naming the file, when no frame lies in the range.
    """
    index = source if isinstance(source, VideoIndex) else probe_video(source)
    times = index.times
    positions = np.flatnonzero((times >= start - 1e-9) & (times < end - 1e-9))
    if positions.size == 0:
        raise InputError(
            f"{index.path}: no frame in [{start:.3f}, {end:.3f}) s; its frames span "
            f"{times[0]:.3f}-{times[-1]:.3f} s"
        )
    return read_frames(index, positions, backend=backend, short_side=short_side, audio=audio)


def _scaled_size(index: VideoIndex, short_side: int | None) -> tuple[int, int] | None:
    if short_side is None:
        return None
    if short_side < 1:
        raise InputError(f"short_side must be >= 1, got {short_side}")
    scale = short_side / min(index.width, index.height)
    return max(1, round(index.width * scale)), max(1, round(index.height * scale))


def _read_pyav(index: VideoIndex, positions: np.ndarray, short_side: int | None) -> torch.Tensor:
    """Seek to the keyframe before each run of wanted frames and decode forward, matching by timestamp.

    Some demuxers (MPEG program streams) cannot seek exactly, not even to the first frame; such a file's
    frames are then decoded from the start of a freshly opened file, and this process stops seeking in it.
    """
    size = _scaled_size(index, short_side)
    wanted = np.unique(positions)
    position_of = {int(p): i for i, p in enumerate(index.pts)}
    decoded: dict[int, np.ndarray] = {}
    cursor = 0  # index into `wanted` of the next frame still missing
    if index.path not in _UNSEEKABLE:
        with _open(index.path) as container:
            stream = _video_stream(container, index.path)
            fresh = True  # nothing decoded yet: the first frame needs no seek
            while cursor < len(wanted):
                key = index.keyframe_before(int(wanted[cursor]))
                # A demuxer may land after the requested keyframe (its own index differs from the decoded
                # one); then seek again from earlier keyframes, and the first frame.
                for start in _seek_candidates(index, key):
                    if not (fresh and start == 0):
                        container.seek(int(index.pts[start]), stream=stream, backward=True, any_frame=False)
                    fresh = False
                    cursor, landed = _decode_forward(
                        container, stream, index, wanted, cursor, position_of, decoded, size
                    )
                    if landed:
                        break
                else:
                    _UNSEEKABLE.add(index.path)
                    break
    if cursor < len(wanted):
        with _open(index.path) as container:
            stream = _video_stream(container, index.path)
            cursor, _ = _decode_forward(
                container, stream, index, wanted, cursor, position_of, decoded, size, reseek=False
            )
    return torch.from_numpy(np.stack([decoded[int(p)] for p in positions]))


_UNSEEKABLE: set[Path] = set()
"""Files of this process whose demuxer did not land at or before a requested keyframe."""


def _seek_candidates(index: VideoIndex, key: int) -> list[int]:
    """The keyframe ``key`` and the two before it, then the first frame."""
    candidates = [int(k) for k in index.keyframes if k <= key][::-1][:3]
    return candidates if candidates[-1] == 0 else [*candidates, 0]


def _decode_forward(
    container: Any,
    stream: Any,
    index: VideoIndex,
    wanted: np.ndarray,
    cursor: int,
    position_of: dict[int, int],
    decoded: dict[int, np.ndarray],
    size: tuple[int, int] | None,
    reseek: bool = True,
) -> tuple[int, bool]:
    """Decode from the current seek point; returns the new cursor and whether the seek landed early enough.

    Decoding stops when every wanted frame is in hand, or (``reseek``) when the next missing frame lies
    beyond a later keyframe (seeking there is cheaper than decoding the frames between).
    """
    target = int(wanted[cursor])
    first = True
    try:
        for frame in container.decode(stream):
            stamp = frame.pts if frame.pts is not None else frame.dts
            position = position_of.get(int(stamp)) if stamp is not None else None
            if position is None:
                continue
            if first:
                first = False
                if position > target:
                    return cursor, False
            if position == int(wanted[cursor]):
                if size is None:
                    decoded[position] = frame.to_ndarray(format="rgb24")
                else:
                    decoded[position] = frame.reformat(
                        width=size[0], height=size[1], format="rgb24", interpolation="AREA"
                    ).to_ndarray()
                cursor += 1
                if cursor == len(wanted):
                    return cursor, True
                next_key = index.keyframe_before(int(wanted[cursor]))
                if reseek and next_key > position + 1:
                    return cursor, True
            elif position > int(wanted[cursor]):
                raise InputError(
                    f"{index.path}: frame {int(wanted[cursor])} was not decoded where it was indexed"
                )
    except av.FFmpegError as err:
        raise InputError(f"{index.path}: decoding failed near frame {int(wanted[cursor])} ({err})") from None
    if first:
        return cursor, False
    raise InputError(
        f"{index.path}: the stream ended before frame {int(wanted[cursor])}; the file changed or is truncated"
    )


def _read_torchcodec(index: VideoIndex, positions: np.ndarray, short_side: int | None) -> torch.Tensor:
    """The frames shown at the indexed times, by torchcodec.

    Scaling is torch's area interpolation of the decoded frames, which stays within about 2 levels of
    PyAV's FFmpeg area scaler; torchcodec's own decoder resize (bilinear) differs by about 5.
    """
    if _torchcodec() is None:
        raise InputError("backend='torchcodec' needs torchcodec and its FFmpeg libraries; use backend='pyav'")
    decoder = _torchcodec_decoder(index.path)
    frames = decoder.get_frames_played_at(seconds=index.times[positions].tolist()).data
    size = _scaled_size(index, short_side)
    if size is not None:
        resized = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(size[1], size[0]), mode="area")
        frames = resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return frames.contiguous()


_DECODERS: dict[tuple[int, Path], Any] = {}
_DECODER_CACHE = 8


def _torchcodec_decoder(path: Path) -> Any:
    """A torchcodec decoder of ``path``, kept for the next clips of this process (exact mode scans the file).

    Keyed by process id: a DataLoader worker never uses a decoder (and file offset) forked from its parent.
    """
    key = (os.getpid(), path)
    if key not in _DECODERS:
        if len(_DECODERS) >= _DECODER_CACHE:
            _DECODERS.pop(next(iter(_DECODERS)))
        _DECODERS[key] = _torchcodec()(str(path), seek_mode="exact", dimension_order="NHWC")
    return _DECODERS[key]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _decode_audio(path: Path, start: float, end: float) -> tuple[np.ndarray, int, int]:
    """The first audio stream decoded from at most ``start`` to past ``end`` seconds, at its own rate.

    Returns:
        ``float32[channels, samples]``, the number of the first sample (at ``rate``, from time 0), and the
        rate.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path}: holds no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        last = round(end * rate)
        chunks: list[np.ndarray] = []
        chunk_start: int | None = None
        try:
            if start > AUDIO_PREROLL:
                # Lapped transforms (AAC, Opus, Vorbis) rebuild a frame from the one before it: decode from
                # a little earlier so the requested samples equal those of a decode from the start.
                at = int((start - AUDIO_PREROLL) / stream.time_base)
                container.seek(at, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                at = round(float(frame.pts * stream.time_base) * rate) if frame.pts is not None else None
                for out in resampler.resample(frame):
                    if chunk_start is None:
                        chunk_start = at if at is not None else 0
                    chunks.append(out.to_ndarray())
                if at is not None and at > last:
                    break
        except av.FFmpegError as err:
            raise InputError(f"{path}: audio decoding failed ({err})") from None
    if not chunks or chunk_start is None:
        raise InputError(f"{path}: no audio samples in [{start:.3f}, {end:.3f}) s")
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), chunk_start, rate


def read_audio(path: str | os.PathLike, start: float, end: float) -> tuple[torch.Tensor, int]:
    """The first audio stream's samples from ``start`` to ``end`` seconds, as ``float32[channels, samples]``.

    Returns:
        The samples and the sample rate.

    Raises:
        InputError: Naming the file, when it has no audio stream or its audio does not decode.
    """
    path = _check_file(path)
    samples, chunk_start, rate = _decode_audio(path, start, end)
    first, last = round(start * rate), round(end * rate)
    lo = max(first - chunk_start, 0)
    return torch.from_numpy(np.ascontiguousarray(samples[:, lo : lo + (last - first)])), rate


def _audio_rate(path: Path) -> int:
    """Sample rate of the first audio stream of ``path``."""
    with _open(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path}: holds no audio stream")
        return int(container.streams.audio[0].rate)


def read_audio_window(path: str | os.PathLike, first: int, stop: int) -> tuple[torch.Tensor, int]:
    """Samples ``[first, stop)`` (numbered at the stream's rate from time 0), zeros where there is no audio.

    Unlike :func:`read_audio`, sample ``k`` of the result is always sample ``first + k`` of the stream, also
    before its first or after its last decoded sample (the zeros a clip at a file's edges needs).

    Returns:
        ``float32[channels, stop - first]`` and the sample rate.

    Raises:
        InputError: Naming the file, when it has no audio stream or its audio does not decode.
    """
    path = _check_file(path)
    rate = _audio_rate(path)
    samples, chunk_start, _ = _decode_audio(path, max(first, 0) / rate, stop / rate)
    out = np.zeros((samples.shape[0], stop - first), dtype=np.float32)
    lo, hi = max(first, chunk_start), min(stop, chunk_start + samples.shape[1])
    if hi > lo:
        out[:, lo - first : hi - first] = samples[:, lo - chunk_start : hi - chunk_start]
    return torch.from_numpy(out), rate


RESAMPLE_ZEROS = 16
"""Zero crossings of the resampling kernel on each side (of the lower of the two rates)."""
RESAMPLE_BETA = 8.6
"""Kaiser window parameter of the resampling kernel (about 90 dB stop-band)."""


def resample_audio(
    samples: torch.Tensor, rate: int, first: int, times: torch.Tensor, new_rate: int
) -> torch.Tensor:
    """Band-limited interpolation of ``samples`` at ``times`` seconds (Kaiser-windowed sinc).

    Args:
        samples: ``float32[channels, N]``; sample ``i`` is at time ``(first + i) / rate``, zero outside.
        rate: Their sample rate.
        first: Number of the first sample, from time 0.
        times: ``float64[M]`` output times in seconds.
        new_rate: The output's sample rate: below ``rate`` the kernel cuts at 0.99 of its Nyquist frequency
            (anti-aliasing); at or above it the kernel is the plain sinc, so output times on the input grid
            give back the input samples exactly.

    Returns:
        ``float32[channels, M]``.
    """
    scale = 1.0 if new_rate >= rate else 0.99 * new_rate / rate
    half = int(np.ceil(RESAMPLE_ZEROS / scale))
    position = times.to(torch.float64) * rate - first  # fractional input index of each output
    base = torch.floor(position).to(torch.int64)
    taps = base[:, None] + torch.arange(-half + 1, half + 1)  # [M, 2 half]
    offset = position[:, None] - taps
    window = torch.special.i0(RESAMPLE_BETA * torch.sqrt((1 - (offset / half) ** 2).clamp(min=0)))
    kernel = (
        scale * torch.sinc(scale * offset) * window / float(torch.special.i0(torch.tensor(RESAMPLE_BETA)))
    )
    kernel = torch.where(offset.abs() < half, kernel, 0.0)
    inside = (taps >= 0) & (taps < samples.shape[1])
    values = samples.to(torch.float64)[:, taps.clamp(0, samples.shape[1] - 1)] * inside  # [C, M, 2 half]
    return (values * kernel).sum(-1).to(torch.float32)


def audio_span(
    path: str | os.PathLike, start: float, end: float, rate: int, length: int | None = None
) -> torch.Tensor:
    """Mono audio of ``[start, end)`` seconds at ``rate``, zero-padded or cut to ``length`` samples.

    Sample ``j`` is the stream's audio at time ``start + j / rate`` (channels averaged), interpolated by
    :func:`resample_audio` from the samples around it, so clips of any file share one rate and one length
    and batch together.

    Args:
        path: A file with an audio stream.
        start: Time of the first sample (seconds, the video's presentation times).
        end: Time the span ends; ``round((end - start) * rate)`` samples are audio.
        rate: Output sample rate.
        length: Output samples; default the span's. Samples past the span are zeros.

    Returns:
        ``float32[1, length]``.

    Raises:
        InputError: Naming the file, when it has no audio stream or its audio does not decode.
    """
    native = _audio_rate(_check_file(path))
    count = max(round((end - start) * rate), 0)
    length = count if length is None else int(length)
    out = torch.zeros(1, length)
    keep = min(count, length)
    if keep == 0:
        return out
    times = start + torch.arange(keep, dtype=torch.float64) / rate
    margin = int(np.ceil(RESAMPLE_ZEROS * max(native / rate, 1.0))) + 2
    first = int(np.floor(float(times[0]) * native)) - margin
    stop = int(np.ceil(float(times[-1]) * native)) + margin + 1
    samples, _ = read_audio_window(path, first, stop)
    out[:, :keep] = resample_audio(samples.mean(dim=0, keepdim=True), native, first, times, rate)
    return out


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 18,
    keyframe_interval: int | None = None,
) -> Path:
    """Write ``uint8[T, H, W, 3]`` RGB frames as an mp4 (h264, yuv420p), atomically.

    The file is written under a temporary name in the same folder and renamed when complete, so a reader
    never sees half a video. h264 in yuv420p needs even sides: an odd height or width is padded by
    repeating the last row or column.

    Args:
        path: The ``.mp4`` file to write (its folder is created).
        frames: ``uint8[T, H, W, 3]`` RGB, T >= 1.
        fps: Frames per second (> 0).
        codec: An FFmpeg encoder PyAV bundles (``libx264``, ``mpeg4``).
        crf: x264 constant rate factor (0 lossless, 18 visually lossless, 23 FFmpeg's default).
        keyframe_interval: At most this many frames from one keyframe to the next (1: every frame is
            one); None: the encoder's default (x264: 250). Short intervals make clip reads cheap, as a
            read decodes forward from the keyframe before its first frame.

    Returns:
        The written path.
    """
    path = Path(path)
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1 or array.dtype != np.uint8:
        raise InputError(
            f"{path}: write_video expects uint8 frames [T, H, W, 3] with T >= 1, got {array.dtype} "
            f"{list(array.shape)}"
        )
    if not fps > 0:
        raise InputError(f"{path}: fps must be > 0, got {fps}")
    pad_h, pad_w = array.shape[1] % 2, array.shape[2] % 2
    if pad_h or pad_w:
        array = np.pad(array, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(handle)
    try:
        with av.open(temporary, mode="w", format="mp4") as container:
            rate = Fraction(fps).limit_denominator(1001 * 1000)
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = array.shape[2], array.shape[1]
            stream.pix_fmt = "yuv420p"
            if keyframe_interval is not None:
                if keyframe_interval < 1:
                    raise InputError(f"{path}: keyframe_interval must be >= 1, got {keyframe_interval}")
                stream.codec_context.gop_size = int(keyframe_interval)
            if codec == "libx264":
                stream.options = {"crf": str(crf)}
                if keyframe_interval is not None:
                    stream.options = {**stream.options, "keyint": str(keyframe_interval)}
            stream.codec_context.time_base = 1 / rate
            for number, image in enumerate(array):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts, frame.time_base = number, 1 / rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; the video is not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
