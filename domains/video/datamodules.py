"""Video datamodules: classification from labelled videos, self-supervised labels from any videos, generation.

* :class:`VideoClassificationDataModule` -- class folders (``<label>/<video>``, UCF101/HMDB51) split by
  video, or annotation lists per split (mmaction2 ``path label`` lines, Kinetics-style CSV
  ``path,label[,start,end]``);
* :class:`SelfSupervisedVideoDataModule` -- *arrow of time* (forward vs reversed clip) or *playback speed*
  (1×/2×/4× frame spacing) labels made from any folder of videos, with train/validation/test clips from
  disjoint time ranges of every video (or from disjoint videos);
* :class:`VideoGenerationDataModule` -- unlabelled clips in [-1, 1], optionally ``num_scenes`` clips from
  different videos or time ranges concatenated into one item.

Batches (one item = one clip; frames are decoded in the DataLoader's workers):

* classification train/val: ``{"video": float32[B, C, T, S, S] (normalised), "label": int64[B]}``;
  test and predict: ``{"video": float32[B, V, C, T, S, S], "label": int64[B]}`` with V = clips × crops
  views of each video (V may be 1), and ``"path": list[str]`` in prediction;
* generation: ``{"video": float32[B, C, T, S, S] in [-1, 1], "scene_index": int64[B, T]}``, ``"path"`` in
  prediction (the scenes' files joined by ``|``).

The audio stream is ignored unless a classification datamodule is given ``audio=True``: then every item
also carries ``"audio": float32[B, 1, L]`` (``[B, V, 1, L]`` at test and prediction), the mono audio of
exactly the clip's time span (:class:`~domains.video.datasets.ClipDataset`).

Videos are probed (decoded once, :func:`~domains.video.decoding.probe_video`) when a stage's splits are
built; the sizes the tasks need (:attr:`~core.data.BaseDataModule.links`) are known right after
``__init__``.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from core.data import BaseDataModule, Split
from core.utils import InputError
from domains.video.datasets import (
    Annotation,
    AudioOptions,
    ClipDataset,
    MissingAudio,
    SceneDataset,
    Segment,
    SelfSupervisedTask,
    ShortClip,
    SplitBy,
    drop_short,
    find_videos,
    probe_all,
    read_annotations,
    read_class_folders,
    reseed_clips,
    self_supervised_segments,
    split_ranges,
    task_classes,
)
from domains.video.decoding import Backend, VideoIndex
from domains.video.sampling import ClipSampler, MultiClipSampler, RandomClipSampler, UniformClipSampler
from domains.video.transforms import KINETICS_MEAN, KINETICS_STD, ClipTransform

__all__ = [
    "SelfSupervisedVideoDataModule",
    "VideoClassificationDataModule",
    "VideoDataModule",
    "VideoFolderDataModule",
    "VideoGenerationDataModule",
]

SPLIT_NUMBER = {"train": 0, "val": 1, "test": 2, "predict": 2}


class VideoDataModule(BaseDataModule):
    """Base of the video datamodules: clip geometry, transforms, probing and the split summary.

    Args:
        num_frames: Frames per clip T.
        frame_stride: Frames between consecutive clip frames.
        target_fps: Sample frames ``1 / target_fps`` seconds apart instead of by ``frame_stride``.
        image_size: Side S of the square crops.
        short_side: Shorter side frames are scaled to before cropping; default ``image_size``.
        scale_jitter: Training only: draw the short side from ``[low, high]`` per clip (SlowFast).
        flip: Training only: probability of mirroring a clip.
        short_clip: A clip longer than its video or range: ``pad`` (repeat the last frame) or ``skip``
            (drop the item; the count and files are logged).
        backend: Decoder: ``pyav``, ``torchcodec`` or ``auto``.
        batch_size: Clips per training batch.
        eval_batch_size: Clips per validation, test and prediction batch; default ``batch_size``.
        num_workers: DataLoader worker processes, which decode the clips.
        pin_memory: Page-locked batches; default when CUDA is available.
    """

    sample_name = "clips"
    # Clip starts, crops and flips are drawn per sample from its own seed: exact resumes (core.data.sampling).
    sample_reseed = reseed_clips
    mean: ClassVar[tuple[float, float, float]] = KINETICS_MEAN
    std: ClassVar[tuple[float, float, float]] = KINETICS_STD

    def __init__(
        self,
        num_frames: int = 8,
        frame_stride: int = 1,
        target_fps: float | None = None,
        image_size: int = 32,
        short_side: int | None = None,
        scale_jitter: tuple[int, int] | None = None,
        flip: float = 0.5,
        short_clip: ShortClip = "pad",
        backend: Backend = "pyav",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory)
        if short_clip not in ("pad", "skip"):
            raise ValueError(f"short_clip must be 'pad' or 'skip', got {short_clip!r}")
        if backend not in ("auto", "pyav", "torchcodec"):
            raise ValueError(f"backend must be 'auto', 'pyav' or 'torchcodec', got {backend!r}")
        self.num_frames = int(num_frames)
        self.frame_stride = int(frame_stride)
        self.target_fps = target_fps
        self.image_size = int(image_size)
        self.short_side = int(short_side) if short_side is not None else self.image_size
        self.scale_jitter = tuple(scale_jitter) if scale_jitter is not None else None
        self.flip = float(flip)
        self.short_clip: ShortClip = short_clip
        self.backend: Backend = backend
        self.audio = False
        self.audio_sample_rate = 16000
        self.audio_seconds: float | None = None
        self.missing_audio: MissingAudio = "error"
        self._audio_length: int | None = None
        # Built here once so that bad geometry fails at construction, before any video is read.
        self.transform(train=True)
        self.clip_sampler(train=True)
        self._indexes: dict[Path, VideoIndex] = {}

    # ------------------------------------------------------------------ pieces

    def transform(self, train: bool, crops: int = 1) -> ClipTransform:
        """Training: random crop and flip (scale jitter when set); evaluation: centre or three crops."""
        if train:
            return ClipTransform(
                self.image_size,
                self.scale_jitter or self.short_side,
                crop="random",
                flip=self.flip,
                mean=self.mean,
                std=self.std,
            )
        return ClipTransform(
            self.image_size,
            self.short_side,
            crop="three" if crops == 3 else "center",
            mean=self.mean,
            std=self.std,
        )

    def clip_sampler(self, train: bool, num_clips: int = 1) -> ClipSampler:
        """Training: a random clip; evaluation: ``num_clips`` evenly spaced clips."""
        if train:
            return RandomClipSampler(self.num_frames, self.frame_stride, self.target_fps)
        return MultiClipSampler(num_clips, self.num_frames, self.frame_stride, self.target_fps)

    def set_audio(self, audio: bool, sample_rate: int, seconds: float | None, missing: MissingAudio) -> None:
        """Check and keep the audio options (see the classification datamodules' arguments)."""
        if sample_rate < 1 or (seconds is not None and not seconds > 0):
            raise ValueError(
                f"need audio_sample_rate >= 1 and audio_seconds > 0, got {sample_rate}, {seconds}"
            )
        if missing not in ("error", "zeros"):
            raise ValueError(f"missing_audio must be 'error' or 'zeros', got {missing!r}")
        self.audio = bool(audio)
        self.audio_sample_rate = int(sample_rate)
        self.audio_seconds = None if seconds is None else float(seconds)
        self.missing_audio = missing

    def audio_videos(self) -> list[Path]:
        """Every video of the datamodule (all splits): the default audio length is their longest clip."""
        raise NotImplementedError

    def audio_length(self, sampler: ClipSampler) -> int:
        """Audio samples per clip, the same in every split: ``audio_seconds``, else the longest clip span.

        The longest span is that of ``sampler``'s clips at the fastest speed (:attr:`max_speed`) over all
        videos of the datamodule, from the first frame to the end of the last (one mean frame interval).
        """
        if self._audio_length is None:
            seconds = self.audio_seconds
            if seconds is None:
                indexes = self.indexes(self.audio_videos())
                if isinstance(sampler, UniformClipSampler):
                    seconds = max(index.duration for index in indexes)
                else:
                    seconds = max(sampler.span(i, self.max_speed) / i.fps for i in indexes)
            self._audio_length = int(np.ceil(seconds * self.audio_sample_rate - 1e-6))
        return self._audio_length

    @property
    def max_speed(self) -> int:
        """The largest frame-spacing multiplier of the items (playback speed); 1 otherwise."""
        return 1

    def clip_dataset(
        self, split: Split, segments: list[Segment], sampler: ClipSampler, test_crops: int
    ) -> ClipDataset:
        """The clips of ``segments``; at test and prediction each item is clips × ``test_crops`` views."""
        evaluate_views = split in ("test", "predict")
        audio = None
        if self.audio:
            audio = AudioOptions(self.audio_sample_rate, self.audio_length(sampler), self.missing_audio)
        return ClipDataset(
            segments,
            sampler,
            self.transform(split == "train", test_crops if evaluate_views else 1),
            multi_view=evaluate_views,
            with_path=split == "predict",
            backend=self.backend,
            audio=audio,
        )

    def indexes(self, paths: Sequence[Path]) -> list[VideoIndex]:
        """The frame index of each path, probing each video once per datamodule (``num_workers`` at once)."""
        missing = [p for p in dict.fromkeys(paths) if p not in self._indexes]
        self._indexes.update(probe_all(missing, threads=self.num_workers))
        return [self._indexes[p] for p in paths]

    # ------------------------------------------------------------------ summary

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits, then log the clips per class of each."""
        super().setup(stage)
        rank_zero_info(self.describe())

    def describe(self) -> str:
        """One line per built split: its clips and, when labelled, the clips per class."""
        lines = [repr(self)]
        names = getattr(self, "class_names", None)
        for split, dataset in self.datasets.items():
            if isinstance(dataset, ClipDataset) and names:
                counts = dataset.label_counts(len(names))
                shares = ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True))
                lines.append(f"  {split}: {len(dataset)} clips ({shares})")
            elif dataset is not None:
                lines.append(f"  {split}: {len(dataset)} items")  # type: ignore[arg-type]
        return "\n".join(lines)

    def __repr__(self) -> str:
        spacing = f"target_fps={self.target_fps}" if self.target_fps else f"frame_stride={self.frame_stride}"
        return f"{type(self).__name__}(num_frames={self.num_frames}, {spacing}, image_size={self.image_size})"


class VideoClassificationDataModule(VideoDataModule):
    """Labelled videos: class folders split by video, or annotation lists per split.

    Give ``data_root`` alone (class folders ``<label>/<video>``, dealt per class into train/val/test by
    ``split`` with ``seed``), or ``train_list``, ``val_list``, ``test_list`` (paths relative to
    ``data_root``, default each list's folder). mmaction2 lists carry class ids (names: ``class_names``, or
    ``"0"``, ``"1"``, ...); CSV lists and class folders carry names (sorted unless ``class_names`` orders
    them). A CSV ``start,end`` limits an item to those seconds of its video.

    Training takes one random clip per video (``sampling="random"``) or TSN's frames spread over the whole
    video (``sampling="uniform"``); validation the centre clip (or the spread frames); test and prediction
    ``test_clips`` evenly spaced clips × ``test_crops`` crops per video.

    Args:
        data_root: Class folders, or the folder list paths are relative to.
        train_list: Annotation list of the training videos.
        val_list: Annotation list of the validation videos.
        test_list: Annotation list of the test videos.
        predict_list: Annotation list to predict (labels may be any class); default: the test split.
        split: Train/val/test fractions of each class's videos (class folders without lists).
        seed: Seed of the per-class shuffle before the split.
        class_names: Class names in id order; default from the data.
        sampling: ``random`` clips of ``num_frames`` frames, or ``uniform`` (TSN) over the whole video.
        test_clips: Clips per video at test and prediction.
        test_crops: Crops per clip at test and prediction: 1 (centre) or 3 (along the longer side).
        audio: Return each clip's audio as ``"audio"`` (mono, resampled): the audio from the clip's first
            frame to the end of its last, zero-padded or cut to one length; default: the audio is ignored.
        audio_sample_rate: Samples per second of the returned audio.
        audio_seconds: Length of the returned audio; default: the longest clip span over all videos (at the
            fastest playback speed), so no clip's audio is cut.
        missing_audio: A video without an audio stream when ``audio`` is set: ``error`` (an InputError
            naming the videos when the split is built) or ``zeros`` (silence, with a warning naming them).

    The clip geometry and loader arguments are those of :class:`VideoDataModule`.
    """

    links: ClassVar[dict[str, str]] = {
        "num_classes": "num_classes",
        "class_names": "class_names",
        "num_frames": "num_frames",
        "image_size": "image_size",
    }

    def __init__(
        self,
        data_root: str | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        predict_list: str | None = None,
        split: tuple[float, float, float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        class_names: list[str] | None = None,
        sampling: Literal["random", "uniform"] = "random",
        test_clips: int = 1,
        test_crops: Literal[1, 3] = 1,
        audio: bool = False,
        audio_sample_rate: int = 16000,
        audio_seconds: float | None = None,
        missing_audio: MissingAudio = "error",
        num_frames: int = 8,
        frame_stride: int = 1,
        target_fps: float | None = None,
        image_size: int = 32,
        short_side: int | None = None,
        scale_jitter: tuple[int, int] | None = None,
        flip: float = 0.5,
        short_clip: ShortClip = "pad",
        backend: Backend = "pyav",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            num_frames, frame_stride, target_fps, image_size, short_side, scale_jitter, flip, short_clip,
            backend, batch_size, eval_batch_size, num_workers, pin_memory,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["class_names", "pin_memory"])
        self.set_audio(audio, audio_sample_rate, audio_seconds, missing_audio)
        _check_split(split)
        if test_clips < 1 or test_crops not in (1, 3):
            raise ValueError(f"need test_clips >= 1 and test_crops 1 or 3, got {test_clips}, {test_crops}")
        if sampling not in ("random", "uniform"):
            raise ValueError(f"sampling must be 'random' or 'uniform', got {sampling!r}")
        if sampling == "uniform" and test_clips != 1:
            raise ValueError("sampling='uniform' spreads one clip over the whole video: use test_clips=1")
        self.data_root = Path(data_root) if data_root is not None else None
        self.sampling = sampling
        self.test_clips = int(test_clips)
        self.test_crops = int(test_crops)
        lists = {"train": train_list, "val": val_list, "test": test_list}
        self.list_paths = {s: Path(p) for s, p in {**lists, "predict": predict_list}.items() if p is not None}
        if any(p is not None for p in lists.values()):
            if lists["train"] is None:
                raise InputError(
                    "annotation lists need at least train_list (and usually val_list, test_list)"
                )
            self.annotations = {s: read_annotations(p, self.data_root) for s, p in self.list_paths.items()}
            found = [a.label for items in self.annotations.values() for a in items]
        elif self.data_root is not None:
            videos, _ = read_class_folders(self.data_root)
            self.annotations = _split_by_class(videos, split, seed)
            found = [a.label for a in videos]
        else:
            raise InputError(
                "give data_root (class folders) or train_list/val_list/test_list (annotation lists)"
            )
        self.class_names, self.label_ids = _class_names(
            found, class_names, self.list_paths or {"data_root": self.data_root}
        )
        self.num_classes = len(self.class_names)

    def build_dataset(self, split: Split) -> Dataset | None:
        """The clips of ``split`` (predict: ``predict_list``, else the test videos); None without videos."""
        key = split if split != "predict" or "predict" in self.annotations else "test"
        annotations = self.annotations.get(key, [])
        if not annotations:
            return None
        indexes = self.indexes([a.path for a in annotations])
        ids = self.label_ids
        segments = [_segment(a, index, ids[a.label]) for a, index in zip(annotations, indexes, strict=True)]
        train = split == "train"
        evaluate_views = split in ("test", "predict")
        if self.sampling == "uniform":
            sampler: ClipSampler = UniformClipSampler(self.num_frames, random=train)
        else:
            sampler = self.clip_sampler(train, self.test_clips if evaluate_views else 1)
        segments = drop_short(segments, sampler, self.short_clip, f"{type(self).__name__} {split} split")
        return self.clip_dataset(split, segments, sampler, self.test_crops) if segments else None

    def audio_videos(self) -> list[Path]:
        """Every listed video."""
        return list(dict.fromkeys(a.path for items in self.annotations.values() for a in items))

    def input_paths(self) -> list[Path]:
        """The data folder, the annotation lists and every listed video."""
        videos = [a.path for items in self.annotations.values() for a in items]
        return [p for p in (self.data_root, *self.list_paths.values()) if p is not None] + videos


class VideoFolderDataModule(VideoDataModule):
    """Base of the datamodules that make items from any videos: the videos, split ranges and windows.

    Subclasses call :meth:`set_folder` in ``__init__`` and build their splits from :meth:`window_segments`.
    """

    def set_folder(
        self,
        data_root: str | None,
        paths: list[str] | None,
        split: Sequence[float],
        split_by: SplitBy,
        gap_seconds: float,
        clip_step: int | None,
        seed: int,
    ) -> None:
        """Check and keep the videos and the split options (see the subclasses' arguments)."""
        _check_split(split)
        if split_by not in ("time", "video"):
            raise ValueError(f"split_by must be 'time' or 'video', got {split_by!r}")
        if gap_seconds < 0 or (clip_step is not None and clip_step < 1):
            raise ValueError(f"need gap_seconds >= 0 and clip_step >= 1, got {gap_seconds}, {clip_step}")
        self.videos = _video_paths(data_root, paths)
        self.data_root = Path(data_root) if data_root is not None else None
        self.split = tuple(float(f) for f in split)
        self.split_by: SplitBy = split_by
        self.gap_seconds = float(gap_seconds)
        self.clip_step = clip_step
        self.seed = int(seed)

    def window_segments(
        self, split: Split, sampler: ClipSampler, task: SelfSupervisedTask | None, speeds: Sequence[int]
    ) -> list[Segment]:
        """The windows of ``split``'s range of every video, once per class of ``task`` (None: once).

        A range without a whole window is dropped (``short_clip="skip"``) or kept as one padded window,
        with a warning naming the videos.
        """
        ranges = split_ranges(
            self.indexes(self.videos),
            SPLIT_NUMBER[split],
            self.split,
            self.split_by,
            self.gap_seconds,
            self.seed,
        )
        segments, short = self_supervised_segments(
            ranges, task, speeds, sampler, self.clip_step, split == "train"
        )
        if short:
            names = ", ".join(sorted({p.name for p in short}))
            action = "skipped" if self.short_clip == "skip" else "padded (last frame repeated)"
            rank_zero_warn(
                f"{type(self).__name__} {split} split: the ranges of {len(short)} videos hold no whole clip "
                f"and are {action}: {names}"
            )
            if self.short_clip == "skip":
                segments = [s for s in segments if s.index.path not in set(short)]
        return segments

    def input_paths(self) -> list[Path]:
        """The folder and the videos."""
        return ([self.data_root] if self.data_root is not None else []) + list(self.videos)


class SelfSupervisedVideoDataModule(VideoFolderDataModule):
    """Labels made from any videos: *arrow of time* or *playback speed*, from disjoint parts of the videos.

    ``arrow_of_time``: class 0 a clip played forward, class 1 the same frames reversed. ``playback_speed``:
    class k the clip with frame spacing ``speeds[k]`` × ``frame_stride`` (or × ``1 / target_fps``), so it
    plays ``speeds[k]`` times faster. Every window gives one item per class, so the classes are balanced.

    Splits (``split_by``): ``time`` cuts every video in time order into train, validation and test ranges
    (``split`` fractions of its frames) with ``gap_seconds`` of frames between ranges left out, so no frame
    of one split is within that gap of another split's; ``video`` deals whole videos (shuffled with
    ``seed``) to the splits. Prediction uses the test clips.

    Args:
        data_root: A folder of videos (searched recursively).
        paths: Video files (instead of, or besides, ``data_root``).
        task: ``arrow_of_time`` or ``playback_speed``.
        speeds: Playback speeds (frame-spacing multipliers) of ``playback_speed``, one class each.
        split: Train/val/test fractions.
        split_by: ``time`` ranges of every video, or whole videos (``video``).
        gap_seconds: Frames left out between consecutive time ranges (at least one clip span is safest).
        clip_step: Frames between consecutive window starts; default: the longest clip's span (windows do
            not overlap).
        seed: Seed of the video shuffle (``split_by="video"``).
        test_crops: Crops per clip at test and prediction: 1 or 3.
        audio: Return each clip's audio as ``"audio"`` (mono, resampled): the audio from the clip's first
            frame to the end of its last, zero-padded or cut to one length; default: the audio is ignored.
        audio_sample_rate: Samples per second of the returned audio.
        audio_seconds: Length of the returned audio; default: the longest clip span over all videos (at the
            fastest playback speed), so no clip's audio is cut.
        missing_audio: A video without an audio stream when ``audio`` is set: ``error`` (an InputError
            naming the videos when the split is built) or ``zeros`` (silence, with a warning naming them).

    The clip geometry and loader arguments are those of :class:`VideoDataModule`.
    """

    links: ClassVar[dict[str, str]] = VideoClassificationDataModule.links

    def __init__(
        self,
        data_root: str | None = None,
        paths: list[str] | None = None,
        task: SelfSupervisedTask = "arrow_of_time",
        speeds: list[int] | None = None,
        split: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_by: SplitBy = "time",
        gap_seconds: float = 1.0,
        clip_step: int | None = None,
        seed: int = 0,
        test_crops: Literal[1, 3] = 1,
        audio: bool = False,
        audio_sample_rate: int = 16000,
        audio_seconds: float | None = None,
        missing_audio: MissingAudio = "error",
        num_frames: int = 8,
        frame_stride: int = 1,
        target_fps: float | None = None,
        image_size: int = 32,
        short_side: int | None = None,
        scale_jitter: tuple[int, int] | None = None,
        flip: float = 0.5,
        short_clip: ShortClip = "skip",
        backend: Backend = "pyav",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            num_frames, frame_stride, target_fps, image_size, short_side, scale_jitter, flip, short_clip,
            backend, batch_size, eval_batch_size, num_workers, pin_memory,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["pin_memory"])
        self.set_folder(data_root, paths, split, split_by, gap_seconds, clip_step, seed)
        self.set_audio(audio, audio_sample_rate, audio_seconds, missing_audio)
        if task not in ("arrow_of_time", "playback_speed"):
            raise ValueError(f"task must be 'arrow_of_time' or 'playback_speed', got {task!r}")
        speeds = [1, 2, 4] if speeds is None else [int(s) for s in speeds]
        if task == "playback_speed" and (
            len(speeds) < 2 or min(speeds) < 1 or len(set(speeds)) != len(speeds)
        ):
            raise ValueError(f"speeds must be two or more distinct integers >= 1, got {speeds}")
        if test_crops not in (1, 3):
            raise ValueError(f"test_crops must be 1 or 3, got {test_crops}")
        self.task: SelfSupervisedTask = task
        self.speeds = speeds
        self.test_crops = int(test_crops)
        self.class_names = task_classes(task, speeds)
        self.num_classes = len(self.class_names)

    @property
    def max_speed(self) -> int:
        """The fastest playback speed (``playback_speed``), else 1."""
        return max(self.speeds) if self.task == "playback_speed" else 1

    def audio_videos(self) -> list[Path]:
        """The videos."""
        return list(self.videos)

    def build_dataset(self, split: Split) -> Dataset | None:
        """Every window of the split's ranges, once per class; None when no window fits."""
        train = split == "train"
        sampler = self.clip_sampler(train)
        segments = self.window_segments(split, sampler, self.task, self.speeds)
        return self.clip_dataset(split, segments, sampler, self.test_crops) if segments else None


class VideoGenerationDataModule(VideoFolderDataModule):
    """Unlabelled clips of any videos for generation, in [-1, 1]; optionally several scenes per item.

    An item holds ``num_scenes`` clips of ``num_frames / num_scenes`` frames each, concatenated in time: the
    first from its own window, the others from windows of other videos (or, when every video is used, of
    other time ranges); ``scene_index`` gives each frame's scene. Splits as in
    :class:`SelfSupervisedVideoDataModule` (time ranges with a gap, or whole videos). Training draws a
    random clip in each window (and flips it); evaluation takes the window's centre clip.

    Args:
        data_root: A folder of videos (searched recursively).
        paths: Video files (instead of, or besides, ``data_root``).
        num_scenes: Clips per item.
        num_frames: Frames per item in all (a multiple of ``num_scenes``).
        split: Train/val/test fractions.
        split_by: ``time`` ranges of every video, or whole videos (``video``).
        gap_seconds: Frames left out between consecutive time ranges.
        clip_step: Frames between consecutive window starts; default: one clip span.
        seed: Seed of the video shuffle (``split_by="video"``).
        flip: Training only: probability of mirroring a scene (default 0: generated motion keeps its side).

    The clip geometry and loader arguments are those of :class:`VideoDataModule`.
    """

    links: ClassVar[dict[str, str]] = {
        "num_frames": "num_frames",
        "image_size": "image_size",
        "num_scenes": "num_scenes",
    }
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        data_root: str | None = None,
        paths: list[str] | None = None,
        num_scenes: int = 1,
        split: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_by: SplitBy = "time",
        gap_seconds: float = 1.0,
        clip_step: int | None = None,
        seed: int = 0,
        num_frames: int = 8,
        frame_stride: int = 1,
        target_fps: float | None = None,
        image_size: int = 32,
        short_side: int | None = None,
        scale_jitter: tuple[int, int] | None = None,
        flip: float = 0.0,
        short_clip: ShortClip = "skip",
        backend: Backend = "pyav",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        if num_scenes < 1 or num_frames % num_scenes:
            raise ValueError(f"num_frames={num_frames} must be a multiple of num_scenes={num_scenes} >= 1")
        self.num_scenes = int(num_scenes)  # the base builds this module's scene sampler
        super().__init__(
            num_frames, frame_stride, target_fps, image_size, short_side, scale_jitter, flip, short_clip,
            backend, batch_size, eval_batch_size, num_workers, pin_memory,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["pin_memory"])
        self.set_folder(data_root, paths, split, split_by, gap_seconds, clip_step, seed)

    @property
    def scene_frames(self) -> int:
        """Frames per scene."""
        return self.num_frames // self.num_scenes

    def clip_sampler(self, train: bool, num_clips: int = 1) -> ClipSampler:
        """One clip of ``scene_frames`` frames: random in training, the centre one otherwise."""
        if train:
            return RandomClipSampler(self.scene_frames, self.frame_stride, self.target_fps)
        return MultiClipSampler(1, self.scene_frames, self.frame_stride, self.target_fps)

    def build_dataset(self, split: Split) -> Dataset | None:
        """The windows of the split's ranges, as scenes; None when fewer than ``num_scenes`` fit."""
        train = split == "train"
        sampler = self.clip_sampler(train)
        segments = self.window_segments(split, sampler, None, [1])
        what = f"{type(self).__name__} {split} split"
        if len(segments) < self.num_scenes:
            if segments:
                rank_zero_warn(
                    f"{what}: {len(segments)} clips, fewer than num_scenes={self.num_scenes}; no data"
                )
            return None
        return SceneDataset(
            segments,
            sampler,
            self.transform(train),
            num_scenes=self.num_scenes,
            with_path=split == "predict",
            backend=self.backend,
        )


# ---------------------------------------------------------------------- helpers


def _check_split(split: Sequence[float]) -> None:
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must be three train/val/test fractions >= 0 summing to 1, got {split}")


def _video_paths(data_root: str | None, paths: list[str] | None) -> list[Path]:
    """The videos of ``data_root`` and ``paths``, each once, in order."""
    if data_root is None and not paths:
        raise InputError("give data_root (a folder of videos) or paths (video files)")
    videos = find_videos(data_root) if data_root is not None else []
    for path in paths or []:
        if not Path(path).is_file():
            raise InputError(f"video file not found: {path}")
        videos.append(Path(path))
    return list(dict.fromkeys(videos))


def _split_by_class(
    videos: list[Annotation], split: Sequence[float], seed: int
) -> dict[str, list[Annotation]]:
    """Deal each class's videos, shuffled with ``seed``, to train/val/test by ``split`` (stratified)."""
    parts: dict[str, list[Annotation]] = {"train": [], "val": [], "test": []}
    generator = torch.Generator().manual_seed(seed)
    for label in sorted({v.label for v in videos}):
        members = [v for v in videos if v.label == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        bounds = np.round(np.cumsum([0.0, *split]) * len(members)).astype(int)
        for name, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True):
            parts[name] += [members[i] for i in sorted(order[lo:hi])]
    return parts


def _class_names(
    found: list[str], given: list[str] | None, sources: dict
) -> tuple[list[str], dict[str, int]]:
    """Class names in id order (``given``, checked against the labels, else from the labels); label → id."""
    where = ", ".join(str(p) for p in sources.values())
    numeric = all(label.lstrip("-").isdigit() for label in found)
    if numeric:
        ids = sorted({int(label) for label in found})
        if ids[0] < 0:
            raise InputError(f"{where}: class ids must be >= 0, found {ids[0]}")
        names = list(given) if given is not None else [str(i) for i in range(ids[-1] + 1)]
        if ids[-1] >= len(names):
            raise InputError(f"{where}: class id {ids[-1]} but {len(names)} class_names")
        return names, {label: int(label) for label in found}
    names = sorted(set(found)) if given is None else list(given)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise InputError(f"{where}: labels {unknown[:5]} are not in class_names")
    return names, {name: i for i, name in enumerate(names)}


def _segment(annotation: Annotation, index: VideoIndex, label: int) -> Segment:
    """The frames of ``annotation`` (its ``start``/``end`` seconds when given) as a segment."""
    first, stop = 0, index.num_frames
    if annotation.start is not None and annotation.end is not None:
        times = index.times - index.times[0]
        first = int(np.searchsorted(times, annotation.start - 1e-9))
        stop = int(np.searchsorted(times, annotation.end - 1e-9))
        if stop <= first:
            raise InputError(
                f"{annotation.path}: no frame in [{annotation.start}, {annotation.end}) s; the video has "
                f"{index.duration:.2f} s"
            )
    return Segment(index, first, stop, label=label)
