"""The in-memory form of a sequential-recommendation data set: every user's item sequence, concatenated.

:class:`SequenceData` is what the readers and :func:`domains.recsys.preprocess.build_sequences` produce and
what the splits, the noise injection and the datamodule consume. Item indices run from 1 to ``num_items``;
index 0 is padding and never occurs in :attr:`SequenceData.items`. User ``u``'s interactions, oldest first,
are ``items[offsets[u]:offsets[u + 1]]`` (a CSR-style layout: one flat tensor, no Python object per
interaction). It also translates between raw ids and indices (:meth:`SequenceData.encode_items`,
:meth:`SequenceData.decode_items`, :meth:`SequenceData.encode_users`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import torch
from torch import Tensor

__all__ = ["PAD_TOKEN", "SequenceData"]

PAD_TOKEN = "[PAD]"


@dataclass(frozen=True)
class SequenceData:
    """All users' interaction sequences in one flat tensor.

    The constructor validates the layout and raises ``ValueError`` naming the offending field.

    Attributes:
        items: ``(T,)`` int64 item indices in ``1..num_items``, all users concatenated, time order within a
            user (oldest first).
        offsets: ``(U + 1,)`` int64, ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == T``; user ``u``'s
            items are ``items[offsets[u]:offsets[u + 1]]``.
        user_ids: Raw id of user ``u`` (as a string).
        item_ids: Raw id of item index ``i`` (as a string); ``item_ids[0] == "[PAD]"``.
        timestamps: Optional ``(T,)`` float64 time of each interaction (aligned with ``items``; non-decreasing
            within a user). ``None`` when the source has no times (sequence files: order is position). Only
            the time-ratio split needs it.
    """

    items: Tensor
    offsets: Tensor
    user_ids: list[str]
    item_ids: list[str]
    timestamps: Optional[Tensor] = None

    def __post_init__(self) -> None:
        items, offsets = self.items, self.offsets
        if not isinstance(items, Tensor) or items.dtype != torch.int64 or items.dim() != 1:
            raise ValueError(f"SequenceData.items must be a 1-D int64 tensor, got {_describe(items)}")
        if not isinstance(offsets, Tensor) or offsets.dtype != torch.int64 or offsets.dim() != 1:
            raise ValueError(f"SequenceData.offsets must be a 1-D int64 tensor, got {_describe(offsets)}")
        if offsets.numel() < 1 or int(offsets[0]) != 0 or int(offsets[-1]) != items.numel():
            raise ValueError(
                "SequenceData.offsets must start at 0 and end at len(items) = "
                f"{items.numel()}, got {offsets[:1].tolist()} ... {offsets[-1:].tolist()}"
            )
        if offsets.numel() > 1 and bool((offsets[1:] < offsets[:-1]).any()):
            bad = int(torch.nonzero(offsets[1:] < offsets[:-1])[0])
            raise ValueError(
                f"SequenceData.offsets must be non-decreasing; offsets[{bad + 1}] < offsets[{bad}]"
            )
        if len(self.user_ids) != offsets.numel() - 1:
            raise ValueError(
                f"SequenceData.user_ids has {len(self.user_ids)} entries but offsets describe "
                f"{offsets.numel() - 1} users"
            )
        if not self.item_ids or self.item_ids[0] != PAD_TOKEN:
            raise ValueError(f"SequenceData.item_ids[0] must be {PAD_TOKEN!r} (index 0 is padding)")
        if items.numel():
            lo, hi = int(items.min()), int(items.max())
            if lo < 1 or hi > self.num_items:
                raise ValueError(
                    f"SequenceData.items must lie in 1..num_items = 1..{self.num_items} (0 is padding), "
                    f"got values in {lo}..{hi}"
                )
        ts = self.timestamps
        if ts is not None:
            if not isinstance(ts, Tensor) or ts.dim() != 1 or ts.numel() != items.numel():
                raise ValueError(
                    f"SequenceData.timestamps must be a 1-D tensor as long as items ({items.numel()}), "
                    f"got {_describe(ts)}"
                )
            if not ts.is_floating_point():
                raise ValueError(f"SequenceData.timestamps must be floating point, got {ts.dtype}")

    @property
    def num_users(self) -> int:
        """Number of users ``U``."""
        return self.offsets.numel() - 1

    @property
    def num_items(self) -> int:
        """Number of real items (item indices run 1..num_items; 0 is padding)."""
        return len(self.item_ids) - 1

    @property
    def num_interactions(self) -> int:
        """Total number of interactions ``T``."""
        return self.items.numel()

    @property
    def lengths(self) -> Tensor:
        """``(U,)`` int64 sequence length of each user."""
        return self.offsets[1:] - self.offsets[:-1]

    def sequence(self, user: int) -> Tensor:
        """User ``user``'s item indices, oldest first (a view into :attr:`items`)."""
        if not 0 <= user < self.num_users:
            raise IndexError(f"user index {user} out of range 0..{self.num_users - 1}")
        return self.items[int(self.offsets[user]) : int(self.offsets[user + 1])]

    def user_index(self) -> Tensor:
        """``(T,)`` int64 user index of every interaction (aligned with :attr:`items`)."""
        return torch.repeat_interleave(torch.arange(self.num_users), self.lengths)

    def decode_items(self, indices: Tensor | Sequence[int]) -> list[str]:
        """Raw item ids of item indices.

        Args:
            indices: Item indices (any shape; flattened), 1..num_items (0 decodes to the padding token).

        Returns:
            The raw ids, in order.

        Raises:
            IndexError: If an index is outside ``0..num_items`` (the message names it).
        """
        flat = torch.as_tensor(indices).reshape(-1).tolist()
        bad = [i for i in flat if not 0 <= int(i) < len(self.item_ids)]
        if bad:
            raise IndexError(f"item index {bad[0]} is outside 0..{self.num_items} (0 = padding)")
        return [self.item_ids[int(i)] for i in flat]

    def encode_items(self, raw_ids: Sequence[str]) -> Tensor:
        """``(len(raw_ids),)`` int64 item indices of raw item ids.

        Raises:
            KeyError: If an id is not in the catalogue; the message names it.
        """
        out = []
        for raw in raw_ids:
            index = self._item_index.get(str(raw))
            if index is None:
                raise KeyError(
                    f"unknown item id {raw!r}: it is not in the catalogue after preprocessing "
                    f"({self.num_items} items)"
                )
            out.append(index)
        return torch.tensor(out, dtype=torch.long)

    def encode_users(self, raw_ids: Sequence[str]) -> Tensor:
        """``(len(raw_ids),)`` int64 user indices of raw user ids.

        Raises:
            KeyError: If an id is not among the users; the message names it.
        """
        index = {raw: u for u, raw in enumerate(self.user_ids)}
        missing = [raw for raw in raw_ids if str(raw) not in index]
        if missing:
            raise KeyError(
                f"unknown user id {missing[0]!r}: not among the {len(index)} users after preprocessing "
                "(users with too few interactions are dropped)"
            )
        return torch.tensor([index[str(raw)] for raw in raw_ids], dtype=torch.long)

    @cached_property
    def _item_index(self) -> dict[str, int]:
        """``{raw item id: index}`` (built on first use)."""
        return {raw: i for i, raw in enumerate(self.item_ids) if i > 0}

    def equals(self, other: "SequenceData") -> bool:
        """Whether two containers hold the same sequences, ids and timestamps."""
        if self.timestamps is None or other.timestamps is None:
            same_ts = self.timestamps is None and other.timestamps is None
        else:
            same_ts = torch.equal(self.timestamps, other.timestamps)
        return (
            torch.equal(self.items, other.items)
            and torch.equal(self.offsets, other.offsets)
            and self.user_ids == other.user_ids
            and self.item_ids == other.item_ids
            and same_ts
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceData):
            return NotImplemented
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]  # mutable tensors and lists: not hashable

    def __repr__(self) -> str:
        return (
            f"SequenceData(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_interactions={self.num_interactions}, timestamps={self.timestamps is not None})"
        )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dim()}-D {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
