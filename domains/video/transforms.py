"""Spatial clip transforms on decoded frames: short-side resize, crops, flips, normalisation.

They run in the DataLoader's worker processes on the ``uint8[T, H, W, 3]`` frames the decoder returns
(resizing stays in ``uint8``, so a worker holds a quarter of the memory a float clip would take) and
produce the network's ``float32[C, T, H, W]`` layout at the end. Every crop cuts the same window from
every frame of a clip, and a flip flips the whole clip, so motion is never distorted.

:class:`ClipTransform` is the pipeline the datasets use: training takes a random crop (after an optional
random short side, SlowFast's scale jitter) and a random horizontal flip; evaluation takes the centre
crop, or three crops along the longer side (SlowFast's and TimeSformer's test views).
"""

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ClipTransform",
    "center_crop",
    "crop",
    "horizontal_flip",
    "normalize",
    "random_crop",
    "resize_short_side",
    "three_crops",
]

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
"""The normalisation of SlowFast and TimeSformer."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CropMode = Literal["random", "center", "three"]


def _check(frames: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Scale ``uint8[T, H, W, 3]`` frames (bilinear, antialiased) so the shorter side is ``size``."""
    _check(frames)
    height, width = frames.shape[1:3]
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    if target == (height, width):
        return frames
    resized = F.interpolate(
        frames.permute(0, 3, 1, 2).float(), size=target, mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def crop(frames: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The ``size`` × ``size`` window at ``(top, left)`` of every frame."""
    height, width = frames.shape[1:3]
    if size > height or size > width:
        raise ValueError(f"crop of {size} px does not fit frames of {height}x{width}")
    return frames[:, top : top + size, left : left + size]


def random_crop(frames: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A square window at a random place, the same in every frame."""
    height, width = frames.shape[1:3]
    top = int(torch.randint(height - size + 1, (1,), generator=generator))
    left = int(torch.randint(width - size + 1, (1,), generator=generator))
    return crop(frames, top, left, size)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """The centred square window."""
    height, width = frames.shape[1:3]
    return crop(frames, (height - size) // 2, (width - size) // 2, size)


def three_crops(frames: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three squares along the longer side: its start, centre and end (SlowFast's test crops)."""
    height, width = frames.shape[1:3]
    if width >= height:
        top = (height - size) // 2
        return [crop(frames, top, left, size) for left in (0, (width - size) // 2, width - size)]
    left = (width - size) // 2
    return [crop(frames, top, left, size) for top in (0, (height - size) // 2, height - size)]


def horizontal_flip(frames: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left to right."""
    return frames.flip(2)


def normalize(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``uint8[T, H, W, 3]`` → ``float32[3, T, H, W]``: ``(x / 255 - mean) / std`` per channel."""
    video = frames.permute(3, 0, 1, 2).float().div_(255.0)
    mean_ = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    std_ = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return video.sub_(mean_).div_(std_)


class ClipTransform:
    """Resize, crop, flip and normalise a clip: ``uint8[T, H, W, 3]`` → ``float32[V, 3, T, S, S]``.

    V is 1, or 3 for ``crop="three"``.

    Args:
        crop_size: Side S of the square crops (the network's ``image_size``).
        short_side: Shorter side after resizing; default ``crop_size`` (a crop then spans the whole short
            side). In training a pair ``(low, high)`` draws it uniformly per clip (scale jitter).
        crop: ``random`` (training), ``center`` or ``three``.
        flip: Probability of mirroring a clip left to right.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
    """

    def __init__(
        self,
        crop_size: int,
        short_side: int | tuple[int, int] | None = None,
        crop: CropMode = "center",
        flip: float = 0.0,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
    ) -> None:
        low, high = (crop_size, crop_size) if short_side is None else _pair(short_side)
        if crop_size < 1 or low < crop_size or high < low:
            raise ValueError(
                f"need 1 <= crop_size <= short_side (a range low <= high), got crop_size={crop_size}, "
                f"short_side={short_side}"
            )
        if crop not in ("random", "center", "three"):
            raise ValueError(f"crop must be 'random', 'center' or 'three', got {crop!r}")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip must be a probability, got {flip}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got {mean}, {std}")
        self.crop_size = int(crop_size)
        self.short_side = (int(low), int(high))
        self.crop: CropMode = crop
        self.flip = float(flip)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @property
    def num_crops(self) -> int:
        """Views per clip."""
        return 3 if self.crop == "three" else 1

    def __repr__(self) -> str:
        return (
            f"ClipTransform(crop_size={self.crop_size}, short_side={self.short_side}, crop={self.crop!r}, "
            f"flip={self.flip})"
        )

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The normalised views of one clip."""
        low, high = self.short_side
        side = low if low == high else low + int(torch.randint(high - low + 1, (1,), generator=generator))
        frames = resize_short_side(frames, side)
        if self.crop == "random":
            views = [random_crop(frames, self.crop_size, generator)]
        elif self.crop == "center":
            views = [center_crop(frames, self.crop_size)]
        else:
            views = three_crops(frames, self.crop_size)
        if self.flip and float(torch.rand((), generator=generator)) < self.flip:
            views = [horizontal_flip(view) for view in views]
        return torch.stack([normalize(view, self.mean, self.std) for view in views])


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    low, high = value
    return int(low), int(high)
