"""Video datasets: where the videos and labels come from, which frame ranges make a split, one clip per item.

Sources users have:

* class folders ``<root>/<label>/<video>`` (UCF101, HMDB51): :func:`read_class_folders`;
* annotation lists (:func:`read_annotations`): mmaction2's ``path label`` lines (a line without a label takes
  its folder's name, as UCF101's ``testlist01.txt``), or Kinetics-style CSV ``path,label[,start,end]``
  (optional header; ``start``/``end`` in seconds);
* any folder of videos (:func:`find_videos`), labelled by the self-supervised tasks or unlabelled for
  generation.

Every video is probed once (:func:`~domains.video.decoding.probe_video`: frame count and timestamps by
decoding) when a split is built. A split is a list of segments (:class:`Segment`: a frame range of one
video with its label, playback speed and direction), and :class:`ClipDataset` decodes one clip of one
segment per item, in the DataLoader's workers. :class:`SceneDataset` concatenates clips of several segments
(multi-scene generation).

Self-supervised splits (:func:`time_ranges`, :func:`window_segments`): each video's frames are cut in time
order into train, validation and test ranges by fractions, with ``gap`` frames between consecutive ranges
belonging to none, so no frame, and no frame within the gap of another split's frame, appears in two
splits. Each range is tiled into windows the length of the longest clip; every window gives one item per
class (forward and reversed, or each speed), so the classes are balanced within every split.
"""

import csv
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from core.utils import InputError, InputFileNotFoundError
from domains.video.decoding import Backend, VideoIndex, audio_span, probe_video, read_frames
from domains.video.sampling import ClipSampler
from domains.video.transforms import ClipTransform

__all__ = [
    "VIDEO_EXTENSIONS",
    "Annotation",
    "AudioOptions",
    "ClipDataset",
    "SceneDataset",
    "Segment",
    "SelfSupervisedTask",
    "ShortClip",
    "SplitBy",
    "drop_short",
    "find_videos",
    "probe_all",
    "read_annotations",
    "read_class_folders",
    "reseed_clips",
    "self_supervised_segments",
    "split_ranges",
    "task_classes",
    "time_ranges",
    "window_segments",
]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp"}
)
ShortClip = Literal["pad", "skip"]
MissingAudio = Literal["error", "zeros"]
SplitBy = Literal["time", "video"]
SelfSupervisedTask = Literal["arrow_of_time", "playback_speed"]


@dataclass(frozen=True)
class Annotation:
    """One labelled video (or part of one) from a class folder or an annotation list.

    Attributes:
        path: The video file.
        label: Class name (class folders, CSV) or class id as text (mmaction2 lists).
        start: First second of the labelled part (Kinetics ``time_start``); None: the start.
        end: Second the labelled part ends; None: the end.
    """

    path: Path
    label: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True, eq=False)
class Segment:
    """Frames ``[first, stop)`` of one video, and what an item made from them is.

    Attributes:
        index: The video's frame index.
        first: First frame of the range.
        stop: One past its last frame.
        label: Class id (0 for unlabelled data).
        speed: Multiplier of the sampler's frame spacing (playback speed).
        reverse: Play the clip backwards (arrow of time).
    """

    index: VideoIndex
    first: int
    stop: int
    label: int = 0
    speed: int = 1
    reverse: bool = False


@dataclass(frozen=True)
class AudioOptions:
    """The audio each clip carries (:func:`~domains.video.decoding.audio_span`).

    Attributes:
        sample_rate: Samples per second of every clip's audio (resampled).
        length: Samples per clip: the clip's span, then zeros (or cut), so that clips batch together.
        missing: A video without an audio stream: ``error`` (an :class:`InputError` naming it when the
            dataset is built) or ``zeros`` (silence, with a warning naming the videos).
    """

    sample_rate: int
    length: int
    missing: MissingAudio = "error"

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.length < 1:
            raise ValueError(
                f"audio needs sample_rate and length >= 1, got {self.sample_rate}, {self.length}"
            )
        if self.missing not in ("error", "zeros"):
            raise ValueError(f"missing audio must be 'error' or 'zeros', got {self.missing!r}")


def clip_time_span(index: VideoIndex, positions: np.ndarray) -> tuple[float, float]:
    """Seconds from the first frame of a clip to the end of its last (when the next frame is shown)."""
    first, last = int(positions.min()), int(positions.max())
    end = index.times[last + 1] if last + 1 < index.num_frames else index.times[last] + 1.0 / index.fps
    return float(index.times[first]), float(end)


def check_audio(segments: Sequence[Segment], missing: MissingAudio, what: str) -> None:
    """Raise (``missing="error"``) or warn (``"zeros"``) about the videos of ``segments`` without audio."""
    silent = sorted({str(s.index.path) for s in segments if not s.index.audio_rate})
    if not silent:
        return
    shown = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5 else "")
    if missing == "error":
        raise InputError(
            f"{what}: audio requested, but {len(silent)} videos hold no audio stream: {shown} "
            "(missing_audio='zeros' gives them silence)"
        )
    rank_zero_warn(f"{what}: {len(silent)} videos hold no audio stream; their clips get silence: {shown}")


def find_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (by extension, recursively), sorted.

    Raises:
        InputFileNotFoundError: If ``root`` is not a folder.
        InputError: If it holds no video file.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileNotFoundError(f"video folder not found: {root}")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not videos:
        raise InputError(f"{root}: holds no video file (extensions {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return videos


def read_class_folders(root: str | Path) -> tuple[list[Annotation], list[str]]:
    """``<root>/<label>/<video>`` → the videos with their folder's name as label, and the sorted names.

    Raises:
        InputError: If ``root`` has no class folder holding a video, or videos lie directly in it.
    """
    root = Path(root)
    videos = find_videos(root)
    loose = [p for p in videos if p.parent == root]
    if loose:
        raise InputError(
            f"{root}: class folders expected (<label>/<video>), but {loose[0].name} lies at the top"
        )
    annotations = [Annotation(p, p.relative_to(root).parts[0]) for p in videos]
    return annotations, sorted({a.label for a in annotations})


def read_annotations(path: str | Path, root: str | Path | None = None) -> list[Annotation]:
    """An annotation list: ``.csv`` as Kinetics (``path,label[,start,end]``), else mmaction2 ``path label``.

    Args:
        path: The list file.
        root: Folder the listed paths are relative to; default the list's folder. Absolute paths stay.

    Raises:
        InputFileNotFoundError: If the list or a listed video does not exist.
        InputError: Naming the file and line, for a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"annotation list not found: {path}")
    base = Path(root) if root is not None else path.parent
    rows: list[tuple[int, list[str]]] = []
    with path.open(newline="") as handle:
        if path.suffix.lower() == ".csv":
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(handle), 1) if row]
            if rows and rows[0][1][:2] == ["path", "label"]:
                rows = rows[1:]
        else:
            rows = [(n, line.split()) for n, line in enumerate(handle, 1) if line.strip()]
    annotations = []
    for number, fields in rows:
        where = f"{path}, line {number}"
        if not fields[0] or len(fields) > (4 if path.suffix.lower() == ".csv" else 2) or len(fields) == 3:
            raise InputError(f"{where}: expected 'path label' or CSV 'path,label[,start,end]', got {fields}")
        video = Path(fields[0]) if Path(fields[0]).is_absolute() else base / fields[0]
        if not video.is_file():
            raise InputFileNotFoundError(f"{where}: video not found: {video}")
        label = fields[1] if len(fields) > 1 and fields[1] else video.parent.name
        start = end = None
        if len(fields) == 4:
            try:
                start, end = float(fields[2]), float(fields[3])
            except ValueError:
                raise InputError(f"{where}: start and end must be seconds, got {fields[2:]}") from None
            if not 0 <= start < end:
                raise InputError(f"{where}: need 0 <= start < end seconds, got {start}, {end}")
        annotations.append(Annotation(video, label, start, end))
    if not annotations:
        raise InputError(f"{path}: lists no video")
    return annotations


def probe_all(paths: Sequence[Path], threads: int = 0) -> dict[Path, VideoIndex]:
    """The frame index of every distinct path (each video decoded once), in order.

    Args:
        paths: Video files.
        threads: Probe this many files at once (PyAV decodes without holding the GIL); 0 or 1: one by one.
    """
    unique = list(dict.fromkeys(paths))
    if threads <= 1 or len(unique) < 2:
        return {path: probe_video(path) for path in unique}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(unique, pool.map(probe_video, unique), strict=True))


def time_ranges(num_frames: int, fractions: Sequence[float], gap: int) -> list[tuple[int, int]]:
    """Cut frames ``[0, num_frames)`` in time order into consecutive ranges, ``gap`` frames apart.

    The ranges get ``fractions`` (summing to 1) of the frames left after the gaps; frames in a gap belong
    to no range. A range may be empty (``first == stop``).
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    usable = max(num_frames - gap * (len(fractions) - 1), 0)
    bounds = np.round(np.cumsum([0.0, *fractions]) * usable).astype(int)
    return [(int(lo) + i * gap, int(hi) + i * gap) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]


def window_segments(first: int, stop: int, length: int, step: int, extend: int = 0) -> list[tuple[int, int]]:
    """Windows ``[start, start + length + extend)`` starting every ``step`` frames of ``[first, stop)``.

    Only windows of ``length`` frames that fit are made; ``extend`` lets a window reach up to that many
    frames further, within ``[first, stop)`` (room for a random start in training).
    """
    starts = range(first, stop - length + 1, step)
    return [(s, min(stop, s + length + extend)) for s in starts]


def drop_short(
    segments: list[Segment], sampler: ClipSampler, short_clip: ShortClip, what: str
) -> list[Segment]:
    """Segments too short for a clip: kept (``pad``: the last frame repeats) or dropped, with a warning."""
    short = [s for s in segments if not sampler.fits(s.index, s.first, s.stop, s.speed)]
    if not short:
        return segments
    names = sorted({s.index.path.name for s in short})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    spacing = f"{sampler.target_fps} fps" if sampler.target_fps else f"stride {sampler.frame_stride}"
    if short_clip == "skip":
        rank_zero_warn(
            f"{what}: skipped {len(short)} of {len(segments)} clips shorter than {sampler.num_frames} frames "
            f"at "
            f"{spacing} (short_clip='skip'): {shown}"
        )
        return [s for s in segments if s not in short]
    rank_zero_warn(
        f"{what}: {len(short)} of {len(segments)} clips are shorter than {sampler.num_frames} frames at "
        f"{spacing}; their last frame is repeated (short_clip='pad'): {shown}"
    )
    return segments


def _decode_clips(
    segment: Segment, positions: np.ndarray, backend: Backend, short_side: int | None
) -> torch.Tensor:
    """``uint8[K, T, H, W, 3]``: the clips of ``positions`` (``[K, T]``), each frame decoded once."""
    unique, inverse = np.unique(positions, return_inverse=True)
    frames = read_frames(segment.index, unique, backend=backend, short_side=short_side).frames
    clips = frames[torch.from_numpy(inverse.reshape(positions.shape))]
    return clips.flip(1) if segment.reverse else clips


def _decode_side(index: VideoIndex, transform: ClipTransform) -> int | None:
    """Short side to scale to while decoding (FFmpeg's scaler), when the transform shrinks the frames."""
    side = transform.short_side[1]
    return side if side < min(index.width, index.height) else None


class ClipDataset(Dataset):
    """One item per segment: its clips (by ``sampler``), transformed into views.

    Items: ``{"video": float32[C, T, S, S]}`` (``multi_view=False``; needs one view), or
    ``float32[V, C, T, S, S]`` with V = sampler clips × transform crops; ``"label"``: int64 scalar;
    ``"path"``: the file, when ``with_path``; ``"audio"``: ``float32[1, L]`` (``[V, 1, L]`` with
    ``multi_view``), when ``audio`` is given: the mono audio from the clip's first frame to the end of its
    last (:func:`clip_time_span`), at ``audio.sample_rate``, zero-padded or cut to ``audio.length``
    samples, reversed with a reversed clip.

    Args:
        segments: The items.
        sampler: Picks each item's clips within its segment.
        transform: Resizes, crops, flips and normalises each clip.
        multi_view: Stack the views on a leading axis even when there is one.
        with_path: Add the video's path (prediction).
        backend: Decoder backend (see :func:`~domains.video.decoding.read_frames`).
        audio: Return each clip's audio so (None: the audio stream is ignored).

    Raises:
        InputError: With ``audio`` and ``missing="error"``, naming the videos without an audio stream.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        sampler: ClipSampler,
        transform: ClipTransform,
        multi_view: bool = False,
        with_path: bool = False,
        backend: Backend = "pyav",
        audio: AudioOptions | None = None,
    ) -> None:
        views = sampler.num_clips * transform.num_crops
        if views > 1 and not multi_view:
            raise ValueError(f"{views} views per item need multi_view=True")
        if audio is not None:
            check_audio(segments, audio.missing, type(self).__name__)
        self.audio = audio
        self.segments = list(segments)
        self.sampler = sampler
        self.transform = transform
        self.multi_view = multi_view
        self.with_path = with_path
        self.backend: Backend = backend
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor | str]:
        segment = self.segments[item]
        positions = self.sampler(segment.index, segment.first, segment.stop, segment.speed, self.generator)
        clips = _decode_clips(segment, positions, self.backend, _decode_side(segment.index, self.transform))
        video = torch.cat([self.transform(clip, self.generator) for clip in clips])
        out: dict[str, torch.Tensor | str] = {
            "video": video if self.multi_view else video[0],
            "label": torch.tensor(segment.label, dtype=torch.int64),
        }
        if self.audio is not None:
            sound = torch.stack([self._audio(segment, clip_positions) for clip_positions in positions])
            sound = sound.repeat_interleave(self.transform.num_crops, dim=0)
            out["audio"] = sound if self.multi_view else sound[0]
        if self.with_path:
            out["path"] = str(segment.index.path)
        return out

    def _audio(self, segment: Segment, positions: np.ndarray) -> torch.Tensor:
        """``float32[1, length]``: the audio of the clip at ``positions`` (see the class docstring)."""
        assert self.audio is not None
        options = self.audio
        if not segment.index.audio_rate:
            return torch.zeros(1, options.length)
        start, end = clip_time_span(segment.index, positions)
        sound = audio_span(segment.index.path, start, end, options.sample_rate, options.length)
        if segment.reverse:
            valid = min(max(round((end - start) * options.sample_rate), 0), options.length)
            sound[:, :valid] = sound[:, :valid].flip(-1)
        return sound

    def label_counts(self, num_classes: int) -> list[int]:
        """Items per class."""
        return np.bincount([s.label for s in self.segments], minlength=num_classes).tolist()


class SceneDataset(Dataset):
    """Unlabelled clips for generation; with ``num_scenes > 1`` each item concatenates clips of several.

    Item ``i`` starts with a clip of segment ``i``; the other scenes come from the next segments (in order,
    wrapping around) of videos not used yet by the item, or, when every video is used, of time ranges not
    used yet. Scene clips have ``sampler.num_frames`` frames each.

    Items: ``{"video": float32[C, num_scenes * T, S, S]`` (the transform's normalisation, e.g. to
    [-1, 1]), ``"scene_index": int64[num_scenes * T]`` (each frame's scene number)}, plus ``"path"`` (the
    files of the scenes joined by ``|``) when ``with_path``.

    Args:
        segments: The frame ranges clips are taken from.
        sampler: Picks one clip of a segment (one clip: :class:`RandomClipSampler` or a one-clip
            :class:`MultiClipSampler`).
        transform: One view per clip.
        num_scenes: Clips per item.
        with_path: Add the scenes' files.
        backend: Decoder backend.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        sampler: ClipSampler,
        transform: ClipTransform,
        num_scenes: int = 1,
        with_path: bool = False,
        backend: Backend = "pyav",
    ) -> None:
        if sampler.num_clips != 1 or transform.num_crops != 1:
            raise ValueError("generation items take one clip and one crop per scene")
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        self.segments = list(segments)
        if num_scenes > len(self.segments):
            raise InputError(
                f"num_scenes={num_scenes} needs as many clips, but only {len(self.segments)} fit in the split"
            )
        self.sampler = sampler
        self.transform = transform
        self.num_scenes = int(num_scenes)
        self.with_path = with_path
        self.backend: Backend = backend
        self.generator: torch.Generator | None = None
        self.scenes = [self._partners(i) for i in range(len(self.segments))]

    def _partners(self, item: int) -> list[int]:
        chosen = [item]
        others = [(item + k) % len(self.segments) for k in range(1, len(self.segments))]
        for fresh_video in (True, False):
            for other in others:
                if len(chosen) == self.num_scenes:
                    return chosen
                used = {self.segments[c].index.path for c in chosen}
                if other not in chosen and (self.segments[other].index.path not in used or not fresh_video):
                    chosen.append(other)
        return chosen

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor | str]:
        videos = []
        for scene in self.scenes[item]:
            segment = self.segments[scene]
            positions = self.sampler(
                segment.index, segment.first, segment.stop, segment.speed, self.generator
            )
            clip = _decode_clips(
                segment, positions, self.backend, _decode_side(segment.index, self.transform)
            )
            videos.append(self.transform(clip[0], self.generator)[0])
        frames = self.sampler.num_frames
        out: dict[str, torch.Tensor | str] = {
            "video": torch.cat(videos, dim=1),
            "scene_index": torch.arange(self.num_scenes).repeat_interleave(frames),
        }
        if self.with_path:
            out["path"] = "|".join(str(self.segments[s].index.path) for s in self.scenes[item])
        return out


def reseed_clips(dataset: "ClipDataset | SceneDataset", seed: int) -> None:
    """Draw the next item's clip positions, crops and flips from ``seed`` (one seed per training sample).

    :attr:`core.data.BaseDataModule.sample_reseed`: a resumed run then draws what the uninterrupted one did.
    Without it (evaluation) the global random state is used, by samplers that draw nothing.
    """
    dataset.generator = torch.Generator().manual_seed(seed)


def split_ranges(
    indexes: Sequence[VideoIndex],
    split: int,
    fractions: Sequence[float],
    split_by: SplitBy,
    gap_seconds: float,
    seed: int,
) -> list[tuple[VideoIndex, int, int]]:
    """The frame range of every video in split number ``split`` (0 train, 1 validation, 2 test).

    ``time``: every video is cut by :func:`time_ranges` with a gap of ``ceil(gap_seconds * fps)`` frames.
    ``video``: whole videos, shuffled with ``seed`` and dealt to the splits by ``fractions``.
    """
    if split_by == "time":
        out = []
        for index in indexes:
            gap = int(np.ceil(gap_seconds * index.fps - 1e-9))
            first, stop = time_ranges(index.num_frames, fractions, gap)[split]
            out.append((index, first, stop))
        return out
    order = torch.randperm(len(indexes), generator=torch.Generator().manual_seed(seed)).tolist()
    bounds = np.round(np.cumsum([0.0, *fractions]) * len(indexes)).astype(int)
    chosen = sorted(order[bounds[split] : bounds[split + 1]])
    return [(indexes[i], 0, indexes[i].num_frames) for i in chosen]


def task_classes(task: SelfSupervisedTask, speeds: Sequence[int]) -> list[str]:
    """Class names of a self-supervised task: ``forward``/``backward``, or one per speed (``2x``)."""
    return ["forward", "backward"] if task == "arrow_of_time" else [f"{s}x" for s in speeds]


def self_supervised_segments(
    ranges: Sequence[tuple[VideoIndex, int, int]],
    task: SelfSupervisedTask | None,
    speeds: Sequence[int],
    sampler: ClipSampler,
    clip_step: int | None,
    train: bool,
) -> tuple[list[Segment], list[Path]]:
    """Windows of every range, each once per class; and the videos whose range holds no whole window.

    ``task=None`` makes one unlabelled segment per window (generation).

    Windows span the longest clip of the task (the fastest speed) and start every ``clip_step`` frames
    (default: that span, so windows do not overlap). Training windows reach up to ``clip_step - 1`` frames
    further (a random start per epoch); evaluation windows are exact (the centre clip is fixed).
    """
    fastest = max(speeds) if task == "playback_speed" else 1
    segments: list[Segment] = []
    short: list[Path] = []
    for index, first, stop in ranges:
        length = sampler.span(index, fastest)
        step = clip_step or length
        windows = window_segments(first, stop, length, step, extend=step - 1 if train else 0)
        if not windows:
            short.append(index.path)
            windows = [(first, stop)] if stop > first else []
        for lo, hi in windows:
            if task is None:
                segments.append(Segment(index, lo, hi))
            elif task == "arrow_of_time":
                segments += [Segment(index, lo, hi, label=r, reverse=bool(r)) for r in (0, 1)]
            else:
                segments += [Segment(index, lo, hi, label=k, speed=int(s)) for k, s in enumerate(speeds)]
    return segments, short
