"""Clip samplers: which frame positions of a video (or of a range of its frames) make up each clip.

A clip is ``num_frames`` frames, ``frame_stride`` frames apart, or ``1 / target_fps`` seconds apart (the
frame shown at each time, so variable-rate files such as ``tree.avi`` are sampled by time, not by frame
count). ``speed`` multiplies the spacing (the playback-speed task's 2× and 4× clips).

* :class:`RandomClipSampler` -- one clip at a random start (training);
* :class:`UniformClipSampler` -- ``num_frames`` frames spread evenly over the whole range (TSN's segments;
  a random frame per segment in training, the segment centres otherwise);
* :class:`MultiClipSampler` -- ``num_clips`` clips with evenly spaced starts (test-time views; one clip is
  the centre clip).

A range shorter than a clip is padded by repeating its last frame; datasets that would rather skip such
ranges ask :meth:`ClipSampler.fits` first.
"""

import numpy as np
import torch

from domains.video.decoding import VideoIndex

__all__ = ["ClipSampler", "MultiClipSampler", "RandomClipSampler", "UniformClipSampler"]


class ClipSampler:
    """Base: the spacing of a clip's frames, its span, and the clip starting at a position.

    Args:
        num_frames: Frames per clip T.
        frame_stride: Frames between consecutive clip frames (ignored when ``target_fps`` is set).
        target_fps: Sample frames ``1 / target_fps`` seconds apart instead, by their timestamps.
    """

    num_clips = 1

    def __init__(self, num_frames: int, frame_stride: int = 1, target_fps: float | None = None) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        if target_fps is not None and not target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        self.num_frames = int(num_frames)
        self.frame_stride = int(frame_stride)
        self.target_fps = None if target_fps is None else float(target_fps)

    def __repr__(self) -> str:
        spacing = f"target_fps={self.target_fps}" if self.target_fps else f"frame_stride={self.frame_stride}"
        return f"{type(self).__name__}(num_frames={self.num_frames}, {spacing})"

    def seconds(self, speed: int = 1) -> float:
        """Seconds from a clip's first to its last frame (``target_fps`` mode)."""
        assert self.target_fps is not None
        return (self.num_frames - 1) * speed / self.target_fps

    def span(self, index: VideoIndex, speed: int = 1) -> int:
        """Frames from a clip's first to its last inclusive (in ``target_fps`` mode: at the video's rate)."""
        if self.target_fps is None:
            return (self.num_frames - 1) * self.frame_stride * speed + 1
        return int(np.ceil(self.seconds(speed) * index.fps - 1e-6)) + 1

    def last_start(self, index: VideoIndex, first: int, stop: int, speed: int = 1) -> int:
        """The last position in ``[first, stop)`` where a whole clip starts; below ``first`` if none does."""
        if self.target_fps is None:
            return stop - self.span(index, speed)
        times = index.times
        latest = times[stop - 1] - self.seconds(speed) + 1e-9
        return int(np.searchsorted(times[first:stop], latest, side="right")) - 1 + first

    def fits(self, index: VideoIndex, first: int, stop: int, speed: int = 1) -> bool:
        """Whether a whole clip fits in frames ``[first, stop)`` without padding."""
        return self.last_start(index, first, stop, speed) >= first

    def clip_at(self, index: VideoIndex, start: int, stop: int, speed: int = 1) -> np.ndarray:
        """Positions of the clip starting at ``start``; frames past ``stop - 1`` repeat the last one."""
        if self.target_fps is None:
            positions = start + np.arange(self.num_frames) * self.frame_stride * speed
        else:
            times = index.times[start] + np.arange(self.num_frames) * speed / self.target_fps
            positions = index.position_at(times)
        return np.minimum(positions, stop - 1).astype(np.int64)

    def __call__(
        self,
        index: VideoIndex,
        first: int,
        stop: int,
        speed: int = 1,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """``int64[num_clips, num_frames]`` positions of the clips of frames ``[first, stop)``."""
        raise NotImplementedError


class RandomClipSampler(ClipSampler):
    """One clip with a start drawn uniformly from those where it fits (the first frame when none does)."""

    def __call__(
        self,
        index: VideoIndex,
        first: int,
        stop: int,
        speed: int = 1,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """One clip at a random start."""
        last = max(self.last_start(index, first, stop, speed), first)
        start = first + int(torch.randint(last - first + 1, (1,), generator=generator))
        return self.clip_at(index, start, stop, speed)[None]


class MultiClipSampler(ClipSampler):
    """``num_clips`` clips whose starts are evenly spaced over the range (the first and last fit exactly).

    One clip is the centre clip. Deterministic: the views of validation and test.

    Args:
        num_clips: Clips per range.
        num_frames: Frames per clip.
        frame_stride: Frames between consecutive clip frames.
        target_fps: Sample by time instead (see :class:`ClipSampler`).
    """

    def __init__(
        self, num_clips: int, num_frames: int, frame_stride: int = 1, target_fps: float | None = None
    ) -> None:
        super().__init__(num_frames, frame_stride, target_fps)
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_clips = int(num_clips)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", num_clips={self.num_clips})"

    def __call__(
        self,
        index: VideoIndex,
        first: int,
        stop: int,
        speed: int = 1,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """The evenly spaced clips (``generator`` is unused)."""
        last = max(self.last_start(index, first, stop, speed), first)
        if self.num_clips == 1:
            starts = np.array([(first + last) // 2])
        else:
            starts = np.round(np.linspace(first, last, self.num_clips)).astype(np.int64)
        return np.stack([self.clip_at(index, int(s), stop, speed) for s in starts])


class UniformClipSampler(ClipSampler):
    """``num_frames`` frames spread over the whole range: one per equal segment (TSN, Wang et al. 2016).

    Args:
        num_frames: Frames per clip (= segments).
        random: A random frame of each segment (training); otherwise each segment's centre frame.
    """

    def __init__(self, num_frames: int, random: bool = False) -> None:
        super().__init__(num_frames)
        self.random = bool(random)

    def fits(self, index: VideoIndex, first: int, stop: int, speed: int = 1) -> bool:
        """Whether the range has a frame for each segment."""
        return stop - first >= self.num_frames

    def __call__(
        self,
        index: VideoIndex,
        first: int,
        stop: int,
        speed: int = 1,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """One frame per segment of ``[first, stop)`` (``speed`` is unused: the range sets the spacing)."""
        edges = np.linspace(first, stop, self.num_frames + 1)
        if self.random:
            offsets = torch.rand(self.num_frames, generator=generator, dtype=torch.float64).numpy()
            positions = np.floor(edges[:-1] + offsets * (edges[1:] - edges[:-1]))
        else:
            positions = np.floor((edges[:-1] + edges[1:]) / 2)
        return np.clip(positions, first, stop - 1).astype(np.int64)[None]
