"""Figures for TensorBoard (rendered off-screen with matplotlib's Agg backend)."""

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["close", "confusion_matrix_figure", "segmentation_figure"]


def confusion_matrix_figure(matrix: Tensor, class_names: Sequence[str], title: str) -> Figure:
    """Plot a confusion matrix (rows: true class, columns: predicted) with counts and row-normalised %.

    Args:
        matrix: ``(C, C)`` integer counts.
        class_names: Names of the C classes.
        title: Figure title.

    Returns:
        The matplotlib figure (the caller closes it).
    """
    counts = matrix.detach().cpu().double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(class_names), 1.2 + 1.2 * len(class_names)))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, labels=list(class_names), rotation=30)
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(counts[i, j])}\n{rates[i, j]:.0%}", ha="center", va="center", color=colour)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)


def segmentation_figure(image: Tensor, truth: Tensor, prediction: Tensor, title: str) -> Figure:
    """Show a 2-D slice three times: the image, the ground truth over it, the prediction over it.

    Args:
        image: ``(H, W)`` intensities.
        truth: ``(H, W)`` class indices (0 = background, drawn transparent).
        prediction: ``(H, W)`` class indices.
        title: Figure title (case and slice).

    Returns:
        The matplotlib figure (the caller closes it).
    """
    num_classes = int(max(int(truth.max()), int(prediction.max()), 1)) + 1
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.4))
    panels = (("image", None), ("ground truth", truth), ("prediction", prediction))
    for ax, (name, overlay) in zip(axes, panels, strict=True):
        ax.imshow(image.T.numpy(), cmap="gray", origin="lower")
        if overlay is not None:
            masked = overlay.T.double().numpy()
            masked[masked == 0] = float("nan")
            ax.imshow(masked, cmap="autumn", alpha=0.5, vmin=1, vmax=max(num_classes - 1, 1), origin="lower")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
