"""Figures for TensorBoard (rendered off-screen with matplotlib's Agg backend)."""

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["close", "confusion_matrix_figure"]


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
