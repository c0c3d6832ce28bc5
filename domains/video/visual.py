"""Pictures of clips: ``[−1, 1]`` tensors to uint8 frames, and a frame grid figure for TensorBoard."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["frame_grid_figure", "to_uint8_frames"]


def to_uint8_frames(clip: Tensor) -> Tensor:
    """``(C, T, H, W)`` in ``[−1, 1]`` → ``uint8 (T, H, W, 3)`` (one channel is repeated to RGB)."""
    if clip.ndim != 4 or clip.shape[0] not in (1, 3):
        raise ValueError(f"to_uint8_frames: expected a clip (C=1|3, T, H, W), got {tuple(clip.shape)}")
    frames = ((clip.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0)
    frames = frames.cpu()
    return frames.expand(-1, -1, -1, 3).contiguous() if frames.shape[-1] == 1 else frames


def frame_grid_figure(generated: Tensor, real: Tensor | None = None, max_frames: int = 8) -> Figure:
    """A grid with one row per clip (generated, then real) and one column per frame.

    Args:
        generated: Clips ``(N, C, T, H, W)`` in ``[−1, 1]``.
        real: Optional real clips of the same shape, drawn below.
        max_frames: Columns drawn (frames evenly spaced over the clip).
    """
    clips = [("generated", c) for c in generated] + ([("real", c) for c in real] if real is not None else [])
    frames = generated.shape[2]
    cols = min(max_frames, frames)
    picks = [round(i * (frames - 1) / max(cols - 1, 1)) for i in range(cols)]
    fig, axes = plt.subplots(len(clips), cols, figsize=(1.2 * cols, 1.2 * len(clips)), squeeze=False)
    for row, (name, clip) in enumerate(clips):
        images = to_uint8_frames(clip)
        for col, t in enumerate(picks):
            ax = axes[row][col]
            ax.imshow(images[t].numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
            if row == 0:
                ax.set_title(f"t={t}", fontsize=7)
    fig.tight_layout()
    return fig
