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

__all__ = ["LOBWindowDataset", "segment_window_ends"]


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

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = int(self.ends[i])
        return {
            "x": self.features[t - self.seq_len + 1 : t + 1],
            "y": self.labels[t],
            "time": float(self.times[t]),
            "index": int(self.event_index[t]),
            "day": int(self.days[t]),
        }

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
