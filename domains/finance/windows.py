"""Windows of consecutive events over a per-event feature matrix, the dataset every datamodule yields.

A :class:`LOBWindowDataset` holds the features and labels of all events of one split (several days may be
concatenated) and the indices of the events that end a valid window; windows never reach outside the
data or across two days (source files).
"""

from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from domains.finance.labels import CLASS_NAMES, UNDEFINED

__all__ = ["LOBWindowDataset", "segment_window_ends", "window_zscore"]


class LOBWindowDataset(Dataset):
    """Windows of ``seq_len`` consecutive events over a per-event feature matrix.

    Item ``i`` is the window ending (inclusively) at event ``t = ends[i]``::

        {"x": features[t - T + 1 : t + 1] (T, F) float32, "y": labels[t] (H,) int64,
         "time": float seconds after midnight of event t, "index": int event index of t,
         "day": int index of the source file of t}

    Args:
        features: ``(N, F)`` float32 features of N events (several days may be concatenated).
        labels: ``(N, H)`` int64 labels, one column per horizon (-1 undefined).
        times: ``(N,)`` float64 event times in seconds after midnight (NaN when unknown).
        ends: Valid window-end indices into the N events.
        seq_len: Window length T.
        days: ``(N,)`` int64 index of each event's source file; default all 0.
        event_index: ``(N,)`` int64 identity of each event in its source file (the 0-based message-file row
            for LOBSTER, the sample column for FI-2010); default ``0 .. N-1``.
        name: Split name, for messages.
        last_mid: Re-base the ``price_columns`` on the window's last mid: ``(mid_ticks (N,), scale (N,),
            price_columns)``. The stored prices are relative to each event's own mid; item ``t`` adds
            ``(mid_ticks[s] − mid_ticks[t]) / scale[s]`` to event ``s`` of its window, so that a window shows
            how far every quote lies from the price at the time of the prediction (stationary, and the
            window's price path is kept).
        window_groups: Z-score every window on its own (``window`` normalisation): one list of column
            indices per group sharing a mean/std over the window's events; other columns stay as they are.

    Raises:
        ValueError: On inconsistent shapes, or a window that starts before the data or spans two days.
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        times: np.ndarray,
        ends: np.ndarray,
        seq_len: int,
        days: np.ndarray | None = None,
        event_index: np.ndarray | None = None,
        name: str = "split",
        last_mid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        window_groups: list[np.ndarray] | None = None,
    ) -> None:
        n = features.shape[0]
        self.features = features.to(torch.float32)
        self.labels = labels.to(torch.int64)
        if self.labels.ndim != 2 or self.labels.shape[0] != n or features.ndim != 2:
            raise ValueError(
                f"{name}: expected features (N, F) and labels (N, H), got {features.shape} and {labels.shape}"
            )
        self.times = np.asarray(times, dtype=np.float64)
        self.days = np.zeros(n, dtype=np.int64) if days is None else np.asarray(days, dtype=np.int64)
        self.event_index = (
            np.arange(n, dtype=np.int64) if event_index is None else np.asarray(event_index, np.int64)
        )
        if not len(self.times) == len(self.days) == len(self.event_index) == n:
            raise ValueError(f"{name}: times, days and event_index must have {n} entries")
        self.ends = np.asarray(ends, dtype=np.int64)
        self.seq_len = seq_len
        self.name = name
        starts = self.ends - seq_len + 1
        if len(self.ends) and (starts.min() < 0 or self.ends.max() >= n):
            raise ValueError(f"{name}: a window of {seq_len} events reaches outside the {n} events")
        if len(self.ends) and (self.days[starts] != self.days[self.ends]).any():
            raise ValueError(f"{name}: a window spans two days (files)")
        self.last_mid = None
        if last_mid is not None:
            mid_ticks, scale, columns = last_mid
            self.last_mid = (
                torch.as_tensor(np.nan_to_num(mid_ticks), dtype=torch.float64),
                torch.as_tensor(scale, dtype=torch.float64),
                torch.as_tensor(columns, dtype=torch.long),
            )
        self.group_matrix = None
        if window_groups:
            # (F, G) membership: column sums @ G gives the group sums of a window in one product.
            matrix = torch.zeros(features.shape[1], len(window_groups), dtype=torch.float32)
            for g, columns in enumerate(window_groups):
                matrix[torch.as_tensor(columns, dtype=torch.long), g] = 1.0
            self.group_matrix = matrix

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = int(self.ends[i])
        return {
            "x": self.window(t),
            "y": self.labels[t],
            "time": float(self.times[t]),
            "index": int(self.event_index[t]),
            "day": int(self.days[t]),
        }

    def window(self, t: int) -> torch.Tensor:
        """The ``(T, F)`` window ending at event ``t``, re-based and normalised as configured."""
        x = self.features[t - self.seq_len + 1 : t + 1]
        if self.last_mid is not None:
            mid, scale, columns = self.last_mid
            shift = (mid[t - self.seq_len + 1 : t + 1] - mid[t]) / scale[t - self.seq_len + 1 : t + 1]
            x = x.clone()
            x[:, columns] += shift.to(x.dtype)[:, None]
        if self.group_matrix is not None:
            x = window_zscore(x, self.group_matrix)
        return x

    def label_counts(self, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
        """Count of each class per horizon over the windows.

        Args:
            num_classes: Number of classes.

        Returns:
            int64 array ``(H, num_classes + 1)``; the last column counts undefined labels.
        """
        labels = self.labels[torch.as_tensor(self.ends)].numpy()
        counts = np.zeros((labels.shape[1], num_classes + 1), dtype=np.int64)
        for k in range(labels.shape[1]):
            column = labels[:, k]
            counts[k, :num_classes] = np.bincount(column[column >= 0], minlength=num_classes)[:num_classes]
            counts[k, num_classes] = int((column == UNDEFINED).sum())
        return counts


def segment_window_ends(offset: int, length: int, seq_len: int, what: str) -> np.ndarray:
    """Indices of the events that end a complete window inside one segment (a day, or part of one).

    Args:
        offset: Index of the segment's first event in the concatenated split.
        length: Events in the segment.
        seq_len: Window length T.
        what: Names the segment in the warning given when it is shorter than one window.

    Returns:
        int64 indices ``offset + T - 1 .. offset + length - 1`` (empty when ``length < T``).
    """
    if length < seq_len:
        rank_zero_warn(f"{what} has {length} events, fewer than seq_len={seq_len}: it yields no window")
    return np.arange(offset + seq_len - 1, offset + length, dtype=np.int64)


def window_zscore(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Z-score a ``(T, F)`` window per group of columns with the window's own mean and std.

    Args:
        x: The window.
        groups: ``(F, G)`` 0/1 membership of each column in each group; a column in no group is unchanged.

    Returns:
        The normalised window (a new tensor); a group whose std is ~0 (relative to its mean) is only centred.
    """
    # float64: raw prices (~1e6 LOBSTER units) squared would lose their variance in float32.
    x64, g64 = x.double(), groups.double()
    counts = (g64.sum(0) * x.shape[0]).clamp(min=1)
    mean = x64.sum(0) @ g64 / counts
    var = (x64 * x64).sum(0) @ g64 / counts - mean**2
    std = var.clamp(min=0).sqrt()
    std = torch.where(std > 1e-6 * mean.abs().clamp(min=1), std, torch.ones_like(std))
    member = g64.sum(1) > 0
    col_mean = torch.where(member, g64 @ mean, torch.zeros_like(x64[0]))
    col_std = torch.where(member, g64 @ std, torch.ones_like(x64[0]))
    return ((x64 - col_mean) / col_std).to(x.dtype)
