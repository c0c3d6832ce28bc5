"""Train / validation / test splits of :class:`~domains.recsys.data.SequenceData`, as positions.

A :class:`Split` does not copy sequences: it says where each user's training prefix ends and which
positions of ``data.items`` are evaluation targets. The history of a target at position ``p`` of user ``u``
is ``data.items[data.offsets[u]:p]`` (everything the user did before it; also what is masked as "seen").

* :func:`leave_one_out` (the protocol of SASRec and BERT4Rec): train = ``items[:-2]``, validation target =
  ``items[-2]`` (history ``items[:-2]``), test target = ``items[-1]`` (history ``items[:-1]``, which
  includes the validation item). Every user needs at least 3 items.
* :func:`time_ratio_split`: global time cut points (see its docstring); every interaction after the
  training cut is a validation or test target.

:func:`split_samples` turns a split into the samples of every data split (which users train, which
targets are scored), :func:`noisy_training_prefixes` injects noise into the training prefixes only (the
robustness protocol) and :func:`training_item_counts` counts the items of the training prefixes.
"""

from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from core.utils import InputError
from domains.recsys.batching import MIN_TRAIN_ITEMS
from domains.recsys.data import SequenceData
from domains.recsys.preprocess import inject_noise  # re-exported: noise is applied to training parts

__all__ = [
    "Samples",
    "Split",
    "inject_noise",
    "leave_one_out",
    "noisy_training_prefixes",
    "split_samples",
    "time_ratio_split",
    "training_item_counts",
]


@dataclass(frozen=True)
class Split:
    """Split boundaries as positions into ``data.items``.

    Attributes:
        kind: ``leave_one_out`` or ``time_ratio``.
        train_end: ``(U,)`` int64 exclusive end of each user's training prefix: user ``u`` trains on
            ``items[offsets[u]:train_end[u]]`` (empty when ``train_end[u] == offsets[u]``).
        val_positions: ``(V,)`` int64 positions in ``data.items`` of the validation targets, ascending.
        val_users: ``(V,)`` int64 user of each validation target.
        test_positions: ``(N,)`` int64 positions of the test targets, ascending.
        test_users: ``(N,)`` int64 user of each test target.
        cut_times: ``(train_cut, val_cut)`` for ``time_ratio`` (interactions with ``t <= train_cut`` are
            training, ``train_cut < t <= val_cut`` validation, ``t > val_cut`` test), else ``None``.
        cold_dropped: Targets dropped because the user had no earlier interaction (``time_ratio`` only).
    """

    kind: str
    train_end: Tensor
    val_positions: Tensor
    val_users: Tensor
    test_positions: Tensor
    test_users: Tensor
    cut_times: Optional[tuple[float, float]] = None
    cold_dropped: int = 0

    def train_lengths(self, data: SequenceData) -> Tensor:
        """``(U,)`` length of each user's training prefix."""
        return self.train_end - data.offsets[:-1]

    def history(self, data: SequenceData, position: int, user: int) -> Tensor:
        """Items user ``user`` interacted with before the target at ``position`` (oldest first)."""
        return data.items[int(data.offsets[user]) : position]

    def describe(self) -> str:
        """One line: the kind and the number of targets."""
        cuts = "" if self.cut_times is None else f", cuts at t={self.cut_times[0]:g} / {self.cut_times[1]:g}"
        cold = f", {self.cold_dropped} cold-start targets dropped" if self.cold_dropped else ""
        return (
            f"{self.kind} split: {len(self.val_positions)} validation and {len(self.test_positions)} test "
            f"targets{cuts}{cold}"
        )


def leave_one_out(data: SequenceData) -> Split:
    """Leave-one-out: each user's last item is the test target, the second-last the validation target.

    Args:
        data: Sequences; every user needs at least 3 items (one to train on, two targets).

    Returns:
        ``train_end = val_positions = offsets[1:] - 2`` and ``test_positions = offsets[1:] - 1``.

    Raises:
        InputError: Some users have fewer than 3 items (the message counts them and names the first).
    """
    lengths = data.lengths
    short = lengths < 3
    if bool(short.any()):
        first = int(torch.nonzero(short)[0])
        raise InputError(
            f"leave-one-out needs at least 3 items per user; {int(short.sum())} users have fewer "
            f"(first: user {first} = raw id {data.user_ids[first]!r} with {int(lengths[first])}); "
            "build the data with min_user_interactions >= 3"
        )
    ends = data.offsets[1:]
    users = torch.arange(data.num_users)
    return Split("leave_one_out", ends - 2, ends - 2, users, ends - 1, users.clone())


def time_ratio_split(
    data: SequenceData,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    timestamps: Optional[Tensor] = None,
    *,
    targets: Literal["all", "first"] = "all",
) -> Split:
    """Split by global time: the earliest interactions train, later ones are validation then test targets.

    Exactly: sort all ``T`` timestamps; ``n_train = round(ratios[0] * T)`` and ``n_val =
    round((ratios[0] + ratios[1]) * T)``; the cut times are the ``n_train``-th and ``n_val``-th smallest
    timestamps. An interaction at time ``t`` is training if ``t <= train_cut``, a validation target if
    ``train_cut < t <= val_cut`` and a test target if ``t > val_cut`` (ties at a cut go to the earlier
    part, so the parts can differ slightly from the ratios). Because each user's interactions are in time
    order, a user's training part is a prefix. Each target's history is everything the user did before it
    (training items and earlier targets); only training items are trained on. Targets with an empty
    history (users whose first interaction is after the training cut) are dropped and counted in
    ``cold_dropped``.

    Args:
        data: Sequences, time-ordered within each user.
        ratios: Train, validation and test fractions of all interactions (non-negative, sum 1, train > 0).
        timestamps: ``(T,)`` times aligned with ``data.items``; defaults to ``data.timestamps``.
        targets: ``all`` interactions after the cut are targets, or only each user's ``first`` one in the
            validation period and first one in the test period.

    Returns:
        The split.

    Raises:
        InputError: No timestamps, timestamps of the wrong length or not ordered within a user, or bad ratios.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
        raise InputError(f"ratios must be 3 non-negative fractions summing to 1 with train > 0, got {ratios}")
    if targets not in ("all", "first"):
        raise InputError(f"targets must be 'all' or 'first', got {targets!r}")
    ts_tensor = data.timestamps if timestamps is None else timestamps
    if ts_tensor is None:
        raise InputError(
            "time_ratio_split needs timestamps, and this data has none (sequence files only give the order); "
            "use leave_one_out"
        )
    ts = torch.as_tensor(ts_tensor).double().numpy()
    if ts.shape != (data.num_interactions,):
        raise InputError(f"timestamps must have shape ({data.num_interactions},), got {tuple(ts.shape)}")
    offsets = data.offsets.numpy()
    user = np.repeat(np.arange(data.num_users), np.diff(offsets))
    first_of_user = np.zeros(ts.size, dtype=bool)
    first_of_user[offsets[:-1][np.diff(offsets) > 0]] = True
    decreasing = (np.diff(ts) < 0) & ~first_of_user[1:]
    if decreasing.any():
        pos = int(np.flatnonzero(decreasing)[0]) + 1
        raise InputError(
            f"timestamps are not in time order within user {int(user[pos])} (position {pos}); "
            "build the data with build_sequences"
        )
    total = ts.size
    ordered = np.sort(ts)
    n_train = min(max(round(ratios[0] * total), 1), total)
    n_val = min(max(round((ratios[0] + ratios[1]) * total), n_train), total)
    train_cut, val_cut = float(ordered[n_train - 1]), float(ordered[n_val - 1])

    is_train = ts <= train_cut
    train_end = offsets[:-1] + np.bincount(user, weights=is_train, minlength=data.num_users).astype(np.int64)
    is_target = ~is_train & (np.arange(ts.size) > offsets[:-1][user])  # non-empty history
    cold = int((~is_train).sum() - is_target.sum())
    val = is_target & (ts <= val_cut)
    test = is_target & (ts > val_cut)
    if targets == "first":
        val, test = _first_per_user(val, user), _first_per_user(test, user)
    val_pos, test_pos = np.flatnonzero(val), np.flatnonzero(test)
    return Split(
        "time_ratio",
        torch.from_numpy(train_end),
        torch.from_numpy(val_pos),
        torch.from_numpy(user[val_pos]),
        torch.from_numpy(test_pos),
        torch.from_numpy(user[test_pos]),
        cut_times=(train_cut, val_cut),
        cold_dropped=cold,
    )


def _first_per_user(mask: np.ndarray, user: np.ndarray) -> np.ndarray:
    positions = np.flatnonzero(mask)
    _, first = np.unique(user[positions], return_index=True)
    out = np.zeros_like(mask)
    out[positions[first]] = True
    return out


def _in_training_prefix(data: SequenceData, train_end: Tensor) -> Tensor:
    """``(T,)`` bool: whether each interaction lies in its user's training prefix (before ``train_end``)."""
    return torch.arange(data.num_interactions) < torch.repeat_interleave(train_end, data.lengths)


def training_item_counts(data: SequenceData, train_end: Tensor) -> Tensor:
    """``(num_items + 1,)`` int64 interactions per item in the training prefixes (index 0, padding: 0)."""
    counts = torch.bincount(data.items[_in_training_prefix(data, train_end)], minlength=data.num_items + 1)
    counts[0] = 0
    return counts


def noisy_training_prefixes(clean: SequenceData, train_end: Tensor, p: float, *, seed: int) -> SequenceData:
    """``clean`` with noise injected into the training prefixes only (validation / test items untouched).

    The prefixes are cut out, passed to :func:`~domains.recsys.preprocess.inject_noise` with
    ``protect_last=0`` (under leave-one-out this is the same as protecting the last two items) and put
    back, so the rule holds for any split.

    Args:
        clean: The sequences.
        train_end: ``(U,)`` exclusive end of each user's training prefix (:attr:`Split.train_end`).
        p: Fraction of each prefix's items replaced by random items.
        seed: Seed of the noise.

    Returns:
        The noisy sequences (same offsets, ids and timestamps).
    """
    n_train = train_end - clean.offsets[:-1]
    prefix_of = _in_training_prefix(clean, train_end)
    prefixes = SequenceData(
        items=clean.items[prefix_of],
        offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(n_train, 0)]),
        user_ids=clean.user_ids,
        item_ids=clean.item_ids,
    )
    noisy = inject_noise(prefixes, p, seed=seed, protect_last=0)
    items = clean.items.clone()
    items[prefix_of] = noisy.items
    return SequenceData(items, clean.offsets, clean.user_ids, clean.item_ids, clean.timestamps)


class Samples(NamedTuple):
    """The samples of one data split: sample ``i`` is user ``users[i]`` with ``items[starts[i]:ends[i]]``.

    For training, ``items[starts[i]:ends[i]]`` is the training prefix; for evaluation it is the history and
    ``ends[i]`` the position of the target; for prediction it is the whole sequence.
    """

    users: Tensor
    starts: Tensor
    ends: Tensor


def split_samples(data: SequenceData, split: Split) -> dict[str, Samples]:
    """The samples of ``train``, ``val``, ``test`` and ``predict`` under ``split``.

    * ``train``: one per user whose training prefix holds at least :data:`MIN_TRAIN_ITEMS` items (a single
      item has no next-item pair; shorter users are still evaluated);
    * ``val`` / ``test``: one per target with at least one earlier item (a cold-start target is not scored);
    * ``predict``: one per user, the whole sequence.
    """
    starts, users = data.offsets[:-1], torch.arange(data.num_users)
    keep = split.train_end - starts >= MIN_TRAIN_ITEMS
    out = {"train": Samples(users[keep], starts[keep], split.train_end[keep])}
    evaluation = {
        "val": (split.val_users, split.val_positions),
        "test": (split.test_users, split.test_positions),
    }
    for name, (target_users, targets) in evaluation.items():
        has_history = targets > starts[target_users]
        target_users = target_users[has_history]
        out[name] = Samples(target_users, starts[target_users], targets[has_history])
    out["predict"] = Samples(users, starts, data.offsets[1:])
    return out
