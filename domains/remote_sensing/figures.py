"""TensorBoard figures of the remote-sensing tasks: an RGB composite beside the truth and the prediction."""

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

__all__ = ["rgb_composite", "segmentation_overlay"]


def rgb_composite(image: Tensor, bands: Sequence[int]) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1] from three bands of ``(C, H, W)`` (one band is shown as grey).

    Each band is stretched between its 2nd and 98th percentile, the usual display stretch.
    """
    picks = [b if b < image.shape[0] else 0 for b in bands] if len(bands) == 3 else [bands[0]] * 3
    rgb = image[picks].float().cpu().numpy().transpose(1, 2, 0)
    low = np.nanpercentile(rgb, 2, axis=(0, 1))
    high = np.nanpercentile(rgb, 98, axis=(0, 1))
    return np.nan_to_num(np.clip((rgb - low) / np.maximum(high - low, 1e-6), 0.0, 1.0))


def segmentation_overlay(
    image: Tensor,
    truth: Tensor,
    prediction: Tensor,
    rgb_bands: Sequence[int],
    class_names: Sequence[str],
    title: str,
) -> Figure:
    """Three panels: the RGB composite, the true classes and the predicted classes (ignored pixels grey).

    Args:
        image: ``(C, H, W)`` bands.
        truth: ``(H, W)`` class indices, -1 = ignored.
        prediction: ``(H, W)`` class indices.
        rgb_bands: Indices of the bands shown as red, green, blue.
        class_names: Names for the legend.
        title: Figure title.

    Returns:
        The figure (the caller closes it).
    """
    k = len(class_names)
    colours = plt.get_cmap("tab10" if k <= 10 else "tab20")(np.arange(k))[:, :3]
    cmap = ListedColormap(np.vstack([[0.5, 0.5, 0.5], colours]))
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    panels = [
        ("RGB composite", rgb_composite(image, rgb_bands)),
        ("truth", truth.long().cpu().numpy() + 1),
        ("prediction", prediction.long().cpu().numpy() + 1),
    ]
    for ax, (name, data) in zip(axes, panels, strict=True):
        if data.ndim == 3:
            ax.imshow(data)
        else:
            ax.imshow(data, cmap=cmap, vmin=0, vmax=k, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    handles = [Patch(color=colours[i], label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(k, 6), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
