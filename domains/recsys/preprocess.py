"""From raw interactions to :class:`~domains.recsys.data.SequenceData`: filter, order, re-index, add noise.

:func:`build_sequences` runs, in this order (all vectorised with numpy; no Python loop per interaction):

1. **Order**: users are numbered by first appearance in the file; each user's interactions are sorted by
   timestamp with a stable sort (ties, and files without timestamps, keep file order).
2. **Exact duplicates**: rows equal to an earlier one in user, item, timestamp and rating (only checked when
   the source has timestamps: without them a repeated item is a re-consumption in file order) are counted
   and, by ``duplicates``, kept with a :class:`DuplicateInteractionsWarning` (default), dropped, or
   refused. Kept, a duplicated last interaction makes a user's validation target equal to the test target.
3. **Rating threshold** (optional): keep interactions with ``rating >= rating_threshold``.
4. **Dedupe** (optional): ``first`` / ``last`` keep only the earliest / latest interaction of each
   (user, item) pair; ``keep`` (default) keeps repeats (re-consumption is part of the sequence).
5. **k-core** (optional): drop users and items with fewer than ``k_core`` interactions, repeated until
   nothing changes (a fixed point: every remaining user and item has at least ``k_core`` interactions).
6. **Minimum length**: drop users with fewer than ``min_user_interactions`` (default 3: leave-one-out
   needs a training item, a validation and a test target). If this drops users while ``k_core`` is set,
   steps 5-6 repeat until both hold.
7. **Re-index**: users ``0..U-1`` in order of first appearance in the file; items ``1..num_items`` by first
   appearance in the final (user-major, time-ordered) sequences (``item_order="appearance"``, the default; it
   keeps the ids of S3-Rec files, which are numbered that way) or by sorted raw id (``"sorted"``: numeric for
   integer ids, lexicographic for string tokens). Index 0 is padding.

Every step is counted in a :class:`PreprocessReport` (nothing is dropped silently); its
:meth:`~PreprocessReport.summary` is what the datamodule logs.
"""

import warnings
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import torch

from domains.recsys.data import PAD_TOKEN, SequenceData
from domains.recsys.readers import Interactions, RecDataError
from domains.recsys.tables import first_bad

__all__ = [
    "DuplicateInteractionsWarning",
    "FilterStep",
    "PreprocessReport",
    "build_sequences",
    "inject_noise",
]


class DuplicateInteractionsWarning(UserWarning):
    """The data holds exact duplicate interactions (same user, item, timestamp and rating), kept."""


@dataclass
class FilterStep:
    """What one filtering step removed (summed over repeated passes).

    Attributes:
        name: Step name, e.g. ``"k-core (k=5)"``.
        interactions_dropped: Interactions removed.
        users_dropped: Users that had interactions before the step and none after it.
        items_dropped: Items that had interactions before the step and none after it.
        passes: How many times the step ran (k-core rounds, or repeated min-length passes).
    """

    name: str
    interactions_dropped: int = 0
    users_dropped: int = 0
    items_dropped: int = 0
    passes: int = 0


@dataclass
class PreprocessReport:
    """Counts before and after preprocessing, and what each step dropped.

    Attributes:
        source: Where the interactions came from.
        interactions_before: Rows read.
        users_before: Distinct users read.
        items_before: Distinct items read.
        interactions_after: Interactions kept.
        users_after: Users kept.
        items_after: Items kept.
        steps: The filtering steps that ran, in order.
        settings: The options used.
        exact_duplicates: Rows equal to an earlier row in every field (0 when the source has no timestamps).
    """

    source: str
    interactions_before: int
    users_before: int
    items_before: int
    interactions_after: int = 0
    users_after: int = 0
    items_after: int = 0
    steps: list[FilterStep] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
    exact_duplicates: int = 0

    def step(self, name: str) -> FilterStep:
        """The step called ``name`` (created, empty, when it has not run yet)."""
        for existing in self.steps:
            if existing.name == name:
                return existing
        created = FilterStep(name)
        self.steps.append(created)
        return created

    @property
    def users_dropped(self) -> int:
        """Users dropped by all steps together."""
        return self.users_before - self.users_after

    def summary(self) -> str:
        """A multi-line human-readable account of the preprocessing."""
        options = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        lines = [
            f"recsys preprocessing of {self.source} ({options})",
            f"  before: {self.users_before} users, {self.items_before} items, "
            f"{self.interactions_before} interactions",
        ]
        if self.exact_duplicates:
            lines.append(f"  exact duplicate interactions: {self.exact_duplicates}")
        for s in self.steps:
            passes = f" [{s.passes} passes]" if s.passes > 1 else ""
            lines.append(
                f"  {s.name}{passes}: dropped {s.interactions_dropped} interactions, "
                f"{s.users_dropped} users, {s.items_dropped} items"
            )
        lines.append(
            f"  after: {self.users_after} users, {self.items_after} items, {self.interactions_after} "
            f"interactions"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _Table:
    """Integer-coded interactions (user-major, time-ordered) being filtered."""

    def __init__(self, users: np.ndarray, items: np.ndarray, times: Optional[np.ndarray], ratings):
        self.users, self.items, self.times, self.ratings = users, items, times, ratings

    def __len__(self) -> int:
        return len(self.users)

    def n_users(self) -> int:
        return int(np.count_nonzero(np.bincount(self.users))) if len(self.users) else 0

    def n_items(self) -> int:
        return int(np.count_nonzero(np.bincount(self.items))) if len(self.items) else 0

    def apply(self, keep: np.ndarray, step: FilterStep) -> int:
        """Keep rows where ``keep``; add what was dropped to ``step``; return the number of rows dropped."""
        dropped = int(len(keep) - keep.sum())
        step.passes += 1
        if dropped == 0:
            return 0
        users_before, items_before = self.n_users(), self.n_items()
        self.users, self.items = self.users[keep], self.items[keep]
        self.times = None if self.times is None else self.times[keep]
        self.ratings = None if self.ratings is None else self.ratings[keep]
        step.interactions_dropped += dropped
        step.users_dropped += users_before - self.n_users()
        step.items_dropped += items_before - self.n_items()
        return dropped


def build_sequences(
    interactions: Interactions,
    *,
    rating_threshold: Optional[float] = None,
    k_core: Optional[int] = None,
    min_user_interactions: int = 3,
    duplicates: Literal["keep", "drop", "error"] = "keep",
    dedupe: Literal["keep", "first", "last"] = "keep",
    item_order: Literal["appearance", "sorted"] = "appearance",
) -> "tuple[SequenceData, PreprocessReport]":
    """Filter, order and re-index raw interactions into per-user item sequences.

    See the module docstring for the exact order of the steps.

    Args:
        interactions: Raw table from :mod:`domains.recsys.readers`.
        rating_threshold: Keep only interactions with ``rating >= rating_threshold`` (``None``: keep all).
        k_core: Iterated user and item k-core (counting interactions, after dedupe); ``None`` disables it.
        min_user_interactions: Users with fewer interactions after filtering are dropped (and counted).
        duplicates: Exact duplicate rows (same user, item, timestamp and rating; only with timestamps):
            ``keep`` them with a :class:`DuplicateInteractionsWarning` giving their count, ``drop`` all but
            the first, or ``error``.
        dedupe: ``keep`` repeated (user, item) pairs, or keep only the ``first`` / ``last`` in time.
        item_order: Item indices by first ``appearance`` in the final sequences, or by ``sorted`` raw id.

    Returns:
        The sequences (with ``timestamps`` when the source has them) and the report.

    Raises:
        RecDataError: The table is empty, ``rating_threshold`` is set but there are no ratings, every
            user is dropped (the message includes the report), or ``duplicates="error"`` and there are
            exact duplicates.
        ValueError: Invalid options.
    """
    if duplicates not in ("keep", "drop", "error"):
        raise ValueError(f"duplicates must be 'keep', 'drop' or 'error', got {duplicates!r}")
    if dedupe not in ("keep", "first", "last"):
        raise ValueError(f"dedupe must be 'keep', 'first' or 'last', got {dedupe!r}")
    if item_order not in ("appearance", "sorted"):
        raise ValueError(f"item_order must be 'appearance' or 'sorted', got {item_order!r}")
    if min_user_interactions < 1:
        raise ValueError(f"min_user_interactions must be >= 1, got {min_user_interactions}")
    if k_core is not None and k_core < 1:
        raise ValueError(f"k_core must be >= 1 or None, got {k_core}")
    source = interactions.source
    if len(interactions) == 0:
        raise RecDataError(f"{source}: no interactions to preprocess")
    if rating_threshold is not None and interactions.ratings is None:
        raise RecDataError(
            f"{source}: rating_threshold={rating_threshold} is set but the data has no ratings"
        )

    user_codes, user_raw = _factorize(interactions.users)
    item_codes, item_raw = _factorize(interactions.items)
    times = interactions.timestamps
    if times is not None:
        order = np.lexsort((np.asarray(times, dtype=np.float64), user_codes))  # stable: ties keep file order
    else:
        order = np.argsort(user_codes, kind="stable")
    ratings = None if interactions.ratings is None else np.asarray(interactions.ratings)[order]
    table = _Table(
        user_codes[order],
        item_codes[order],
        None if times is None else np.asarray(times, dtype=np.float64)[order],
        ratings,
    )
    report = PreprocessReport(source, len(table), len(user_raw), len(item_raw))
    report.settings = {
        "rating_threshold": rating_threshold,
        "duplicates": duplicates,
        "dedupe": dedupe,
        "k_core": k_core,
        "min_user_interactions": min_user_interactions,
        "item_order": item_order,
    }

    if table.times is not None:
        _handle_duplicates(table, report, duplicates, user_raw, item_raw)
    if rating_threshold is not None:
        table.apply(table.ratings >= rating_threshold, report.step(f"rating >= {rating_threshold}"))
    if dedupe != "keep":
        table.apply(_dedupe_mask(table, len(item_raw), dedupe), report.step(f"dedupe ({dedupe})"))
    while True:
        if k_core is not None:
            step = report.step(f"k-core (k={k_core})")
            while _k_core_pass(table, k_core, step):
                pass
        counts = np.bincount(table.users, minlength=len(user_raw))
        min_step = report.step(f"users with < {min_user_interactions} interactions")
        dropped = table.apply(counts[table.users] >= min_user_interactions, min_step)
        if dropped == 0 or k_core is None:
            break

    report.interactions_after, report.users_after, report.items_after = (
        len(table),
        table.n_users(),
        table.n_items(),
    )
    if len(table) == 0:
        raise RecDataError(f"{source}: every user was dropped by preprocessing\n{report.summary()}")
    return _to_sequence_data(table, user_raw, item_raw, item_order), report


def _factorize(values: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Codes ``0..n-1`` by first appearance, and the unique raw values in that order."""
    import pandas as pd  # the readers already required it

    codes, uniques = pd.factorize(np.asarray(values))
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def _handle_duplicates(
    table: _Table, report: PreprocessReport, how: str, user_raw: np.ndarray, item_raw: np.ndarray
) -> None:
    """Count the exact duplicate rows; then keep them with a warning, drop them, or refuse them (``how``)."""
    columns = [table.users, table.items, table.times] + ([] if table.ratings is None else [table.ratings])
    order = np.lexsort(columns[::-1])  # stable: within a group of equal rows, table order is kept
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for column in columns:
        same &= column[order][1:] == column[order][:-1]
    duplicate = np.zeros(len(table), dtype=bool)
    duplicate[order[1:][same]] = True
    report.exact_duplicates = count = int(duplicate.sum())
    fields = "item, timestamp" + ("" if table.ratings is None else " and rating")
    if count == 0:
        return
    if how == "drop":
        table.apply(~duplicate, report.step("exact duplicates (drop)"))
    elif how == "error":
        row = first_bad(duplicate)
        user, item = str(user_raw[table.users[row]]), str(item_raw[table.items[row]])
        raise RecDataError(
            f"{report.source}: {count} exact duplicate interaction(s) (same user, {fields} as an earlier "
            f"row), e.g. user {user!r}, item {item!r} at time {table.times[row]:.15g}; fix the "
            "file, or pass duplicates='drop' (or 'keep')"
        )
    else:
        users = len(np.unique(table.users[duplicate]))
        warnings.warn(
            f"{report.source}: {count} exact duplicate interactions (same user, {fields} as an earlier row; "
            f"{users} user(s)) are kept: a duplicated last interaction makes a user's validation target "
            "equal to the test target; pass duplicates='drop' to drop them or 'error' to refuse them",
            DuplicateInteractionsWarning,
            stacklevel=3,
        )


def _dedupe_mask(table: _Table, num_items: int, how: str) -> np.ndarray:
    key = table.users * np.int64(num_items) + table.items
    if how == "first":
        _, first = np.unique(key, return_index=True)
    else:
        _, rev = np.unique(key[::-1], return_index=True)
        first = len(key) - 1 - rev
    keep = np.zeros(len(key), dtype=bool)
    keep[first] = True
    return keep


def _k_core_pass(table: _Table, k: int, step: FilterStep) -> bool:
    """One k-core round; returns whether anything was dropped."""
    if len(table) == 0:
        return False
    user_counts = np.bincount(table.users)
    item_counts = np.bincount(table.items)
    keep = (user_counts[table.users] >= k) & (item_counts[table.items] >= k)
    return table.apply(keep, step) > 0


def _to_sequence_data(
    table: _Table, user_raw: np.ndarray, item_raw: np.ndarray, item_order: str
) -> SequenceData:
    kept_users, user_index = np.unique(table.users, return_inverse=True)  # codes sorted = file order
    lengths = np.bincount(user_index, minlength=len(kept_users))
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if item_order == "appearance":
        item_index, kept_items = _factorize(table.items)
    else:
        kept_codes = np.unique(table.items)
        by_raw = np.argsort(item_raw[kept_codes], kind="stable")
        kept_items = kept_codes[by_raw]
        lookup = np.empty(len(item_raw), dtype=np.int64)
        lookup[kept_items] = np.arange(len(kept_items))
        item_index = lookup[table.items]
    return SequenceData(
        items=torch.from_numpy(item_index + 1),
        offsets=torch.from_numpy(offsets),
        user_ids=[str(u) for u in user_raw[kept_users].tolist()],
        item_ids=[PAD_TOKEN, *(str(i) for i in item_raw[kept_items].tolist())],
        timestamps=None if table.times is None else torch.from_numpy(table.times.copy()),
    )


def inject_noise(data: SequenceData, p: float, *, seed: int, protect_last: int = 2) -> SequenceData:
    """Replace a fraction ``p`` of each user's training items with random items (behavioural noise).

    The training part of a user with ``n`` items is the first ``n - protect_last`` (under leave-one-out the
    last two are the validation and test targets, which are never touched). In a training part of length
    ``m``, exactly ``floor(p * m)`` or ``ceil(p * m)`` positions are chosen uniformly at random (stochastic
    rounding: ``p * m`` replacements in expectation, so short sequences are noised too), and each is
    replaced by an item drawn uniformly from the *other* ``num_items - 1`` items (so every chosen position
    really changes). Timestamps, users and ids are kept. Deterministic for a given ``seed``; the input is
    never modified.

    Args:
        data: The clean sequences.
        p: Fraction of training items to replace, in ``[0, 1]``.
        seed: Seed of the random generator (numpy PCG64).
        protect_last: Number of most recent items per user left untouched.

    Returns:
        A new :class:`SequenceData`.

    Raises:
        ValueError: ``p`` outside ``[0, 1]``, ``protect_last < 0``, or fewer than two items to draw from.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"noise fraction p must be in [0, 1], got {p}")
    if protect_last < 0:
        raise ValueError(f"protect_last must be >= 0, got {protect_last}")
    items = data.items.numpy().copy()
    if p == 0.0 or items.size == 0:
        return _with_items(data, items)
    if data.num_items < 2:
        raise ValueError(f"noise needs at least 2 items to draw from, the data has {data.num_items}")
    rng = np.random.default_rng(seed)
    offsets = data.offsets.numpy()
    lengths = np.diff(offsets)
    train_len = np.maximum(lengths - protect_last, 0)
    expected = p * train_len
    n_noisy = np.floor(expected).astype(np.int64)
    n_noisy += rng.random(len(lengths)) < (expected - n_noisy)
    # Rank the positions of each user's training part in a random order; the first n_noisy are replaced.
    user = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(items.size) - offsets[:-1][user]
    in_train = position < train_len[user]
    candidates = np.flatnonzero(in_train)
    shuffled = candidates[np.lexsort((rng.random(candidates.size), user[candidates]))]
    cand_user = user[shuffled]
    start = np.concatenate(([0], np.cumsum(train_len)[:-1]))
    rank = np.arange(shuffled.size) - start[cand_user]
    chosen = shuffled[rank < n_noisy[cand_user]]
    # Uniform over the other items: draw from 1..num_items-1 and skip over the original.
    draw = rng.integers(1, data.num_items, size=chosen.size)
    draw += draw >= items[chosen]
    items[chosen] = draw
    return _with_items(data, items)


def _with_items(data: SequenceData, items: np.ndarray) -> SequenceData:
    timestamps = None if data.timestamps is None else data.timestamps.clone()
    return SequenceData(
        torch.from_numpy(items), data.offsets.clone(), list(data.user_ids), list(data.item_ids), timestamps
    )
