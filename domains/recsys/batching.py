"""Batches of next-item samples, built on the fly from the flat item tensor, and sampled candidates.

A split's dataset is :class:`IndexDataset` (sample indices ``0..n-1``); its collate function
(:class:`TrainBatchCollate`, :class:`EvalBatchCollate`) gathers a batch's windows from the flat
``items`` tensor of :class:`~domains.recsys.data.SequenceData` with vectorised torch ops, without a Python
object per interaction. :func:`sample_negatives` draws the candidate lists of sampled ranking (``uni100``,
``pop100``).

Batches (item ids 1..num_items, 0 = padding):

* train: ``{"items": (B, L + 1), "user": (B,)}``, left-padded, most recent item last; the task derives
  inputs and targets (causal: ``items[:, :-1]`` → ``items[:, 1:]``; cloze: masks ``items[:, 1:]``).
* val / test / predict: ``{"items": (B, L), "target": (B,), "user": (B,), "seen": (B, S)}`` with the
  left-padded history ending just before the target, the target (0 in predict), and every item of that
  history (0-padded on the right, ``S`` = longest history of the batch) for history masking; with sampled
  ranking, val and test batches also hold ``"candidates": (B, 1 + num_negatives)`` = target then negatives.
"""

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "MIN_TRAIN_ITEMS",
    "EvalBatchCollate",
    "IndexDataset",
    "TrainBatchCollate",
    "left_pad_windows",
    "right_pad_slices",
    "sample_negatives",
]

MIN_TRAIN_ITEMS = 2  # a training sequence needs one (input, target) pair
NEGATIVE_CHUNK = 512  # rows of the (rows, num_items + 1) sampling-weight matrix built at once


def left_pad_windows(items: Tensor, starts: Tensor, ends: Tensor, length: int, trim: bool = False) -> Tensor:
    """The last ``length`` items of each slice ``items[start:end]``, left-padded with 0.

    Args:
        items: ``(T,)`` flat item tensor.
        starts: ``(B,)`` first position of each slice.
        ends: ``(B,)`` one past the last position (``ends >= starts``).
        length: Window length.
        trim: Pad only to the longest window of the batch (at least 1 column) instead of ``length``: the
            columns dropped are padding in every row.

    Returns:
        ``(B, length)`` int64 (fewer columns with ``trim``); row ``b`` ends with ``items[ends[b] - 1]``.
    """
    if trim and len(starts):
        length = max(1, min(length, int((ends - starts).max())))
    positions = ends[:, None] - length + torch.arange(length)[None, :]
    if not items.numel():
        return torch.zeros(positions.shape, dtype=torch.long)
    return torch.where(positions >= starts[:, None], items[positions.clamp(min=0)], 0)


def right_pad_slices(items: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """Every slice ``items[start:end]`` in full, 0-padded on the right to the longest one (at least 1)."""
    width = max(int((ends - starts).max()) if len(starts) else 0, 1)
    positions = starts[:, None] + torch.arange(width)[None, :]
    if not items.numel():
        return torch.zeros(positions.shape, dtype=torch.long)
    return torch.where(positions < ends[:, None], items[positions.clamp(max=items.numel() - 1)], 0)


class IndexDataset(Dataset):
    """A dataset of sample indices ``0..n-1``; the split's collate function gathers the tensors."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class TrainBatchCollate:
    """Turns a list of training-sample indices into ``{"items": (B, L + 1), "user": (B,)}``.

    Sample ``i`` is user ``users[i]`` whose training part is ``items[starts[i]:ends[i]]``. ``last`` windows
    take its most recent ``L + 1`` items (SASRec's official sampler); ``random`` windows end at a uniform
    position among those that leave a full window (the whole part when it is shorter); ``prefix`` windows
    end at a uniform position among all that leave at least one input and its target, i.e. a random prefix
    of the training part (RecBole's every-prefix augmentation, one prefix per user per epoch). Positions
    are drawn with torch's global generator (reproducible under ``seed_everything(workers=True)``).

    Args:
        items: ``(T,)`` flat items (the training parts possibly noisy).
        users: ``(N,)`` user index of each sample.
        starts: ``(N,)`` start of each training part.
        ends: ``(N,)`` end of each training part.
        length: Window length ``L + 1``.
        windows: ``last``, ``random`` or ``prefix``.
        trim: Pad each batch only to its longest window (see :func:`left_pad_windows`).
    """

    def __init__(
        self,
        items: Tensor,
        users: Tensor,
        starts: Tensor,
        ends: Tensor,
        length: int,
        windows: str,
        trim: bool = False,
    ) -> None:
        self.items, self.users, self.starts, self.ends = items, users, starts, ends
        self.length = length
        self.windows = windows
        self.trim = trim

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.users)

    def __call__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The batch of the samples ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        starts, ends = self.starts[idx], self.ends[idx]
        if self.windows != "last":
            # How far the window end may move back: a random window stays full (or the whole part), a
            # prefix keeps at least one input and its target.
            if self.windows == "random":
                spare = (ends - starts - self.length).clamp(min=0)
            else:
                spare = ends - starts - MIN_TRAIN_ITEMS
            ends = ends - (torch.rand(len(idx)) * (spare + 1)).floor().long().clamp(max=spare)
        items = left_pad_windows(self.items, starts, ends, self.length, self.trim)
        return {"items": items, "user": self.users[idx]}


class EvalBatchCollate:
    """Turns a list of evaluation-sample indices into history / target / seen (/ candidates) batches.

    Sample ``i`` is user ``users[i]`` with history ``items[starts[i]:targets[i]]`` and target
    ``items[targets[i]]`` (0 when ``predict``: the history is the whole sequence).

    Args:
        items: ``(T,)`` flat items.
        users: ``(N,)`` user index of each sample.
        starts: ``(N,)`` first position of each history.
        targets: ``(N,)`` position of each target (= end of the history).
        length: History window length ``L``.
        predict: Targets are unknown (0).
        candidates: ``(N, C)`` target-first candidate lists (sampled ranking), or None.
        trim: Pad each batch only to its longest history (see :func:`left_pad_windows`).
    """

    def __init__(
        self,
        items: Tensor,
        users: Tensor,
        starts: Tensor,
        targets: Tensor,
        length: int,
        predict: bool = False,
        candidates: Tensor | None = None,
        trim: bool = False,
    ) -> None:
        self.items, self.users, self.starts, self.targets = items, users, starts, targets
        self.length = length
        self.trim = trim
        self.predict = predict
        self.candidates = candidates

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.users)

    def __call__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The batch of the samples ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        starts, ends = self.starts[idx], self.targets[idx]
        batch = {
            "items": left_pad_windows(self.items, starts, ends, self.length, self.trim),
            "target": torch.zeros(len(idx), dtype=torch.long) if self.predict else self.items[ends],
            "user": self.users[idx],
            "seen": right_pad_slices(self.items, starts, ends),
        }
        if self.candidates is not None:
            batch["candidates"] = self.candidates[idx]
        return batch


def _history_keys(items: Tensor, starts: Tensor, targets: Tensor, width: int) -> Tensor:
    """Sorted ``row * width + item`` keys of every history item and target of each row."""
    lengths = targets - starts + 1  # the history and the target
    rows = torch.repeat_interleave(torch.arange(len(targets)), lengths)
    first = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths)
    positions = first + torch.arange(int(lengths.sum()))
    return torch.sort(rows * width + items[positions]).values


def sample_negatives(
    items: Tensor,
    starts: Tensor,
    targets: Tensor,
    num_items: int,
    num_negatives: int,
    weights: Tensor | None = None,
    seed: int = 0,
    users: Sequence[str] | None = None,
) -> Tensor:
    """Target-first candidate lists: each target plus distinct negatives outside the user's history.

    Negatives are drawn without replacement among the items ``1..num_items`` that are neither in the
    history ``items[start:target]`` nor the target, uniformly (``weights`` None) or proportionally to
    ``weights`` (popularity: successive sampling, i.e. draw by weight, skip items already drawn or excluded),
    from a ``torch.Generator`` seeded with ``seed``: the same lists on every call, process and rank.

    Vectorised: every row draws ``4 * num_negatives`` items by weight at once and keeps, in draw order, the
    first ``num_negatives`` that are neither excluded nor repeated; the few rows left short (long histories,
    very skewed weights) are completed by an exact weighted draw without replacement over their eligible
    items.

    Args:
        items: ``(T,)`` flat items.
        starts: ``(N,)`` first position of each history.
        targets: ``(N,)`` position of each target.
        num_items: Catalogue size.
        num_negatives: Negatives per sample (``C - 1``).
        weights: ``(num_items + 1,)`` non-negative sampling weights (index 0 ignored), or None.
        seed: Generator seed.
        users: Raw user id of each sample, for error messages.

    Returns:
        ``(N, 1 + num_negatives)`` int64 ``[target, negatives...]``.

    Raises:
        ValueError: If a sample has fewer eligible negatives than ``num_negatives``.
    """
    generator = torch.Generator().manual_seed(seed)
    base = (
        torch.ones(num_items + 1, dtype=torch.float64) if weights is None else weights.double().clamp(min=0)
    )
    base = base.clone()
    base[0] = 0.0
    if int((base > 0).sum()) < num_negatives:
        raise ValueError(
            f"only {int((base > 0).sum())} items have a positive sampling weight, fewer than "
            f"num_negatives={num_negatives}; use ranking='full' or fewer negatives"
        )
    n, width = len(targets), num_items + 1
    out = torch.zeros(n, 1 + num_negatives, dtype=torch.long)
    out[:, 0] = items[targets]
    excluded = _history_keys(items, starts, targets, width)
    # Fast path: draws with replacement, keep the first valid distinct ones per row.
    k = 4 * num_negatives
    draws = torch.multinomial(base.float(), n * k, replacement=True, generator=generator).view(n, k)
    keys = torch.arange(n)[:, None] * width + draws
    found = torch.searchsorted(excluded, keys).clamp(max=len(excluded) - 1)
    valid = excluded[found] != keys
    ordered, order = torch.sort(draws, dim=1, stable=True)  # a repeat follows its first draw here
    repeated = torch.zeros_like(valid)
    repeated.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1])
    valid &= ~repeated
    rank = torch.cumsum(valid.long(), dim=1)
    complete = rank[:, -1] >= num_negatives
    take = valid & (rank <= num_negatives) & complete[:, None]
    out[complete, 1:] = draws[take].view(-1, num_negatives)
    # Exact path for the rows left short.
    short = torch.nonzero(~complete).flatten()
    for lo in range(0, len(short), NEGATIVE_CHUNK):
        rows = short[lo : lo + NEGATIVE_CHUNK]
        w = base.float().expand(len(rows), -1).clone()
        keys = _history_keys(items, starts[rows], targets[rows], width)
        w.view(-1)[keys] = 0.0
        eligible = (w > 0).sum(1)
        if bool((eligible < num_negatives).any()):
            bad = int(torch.nonzero(eligible < num_negatives)[0])
            row = int(rows[bad])
            who = f"user {users[row]!r}" if users is not None else f"sample {row}"
            raise ValueError(
                f"{who} has only {int(eligible[bad])} items outside its history with a positive "
                f"sampling weight, fewer than num_negatives={num_negatives}; use ranking='full' or fewer"
                " negatives"
            )
        out[rows, 1:] = torch.multinomial(w, num_negatives, replacement=False, generator=generator)
    return out
