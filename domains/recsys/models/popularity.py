"""Most-popular baseline: every user gets the same ranking, by training-interaction count."""

import torch
from torch import Tensor

from domains.recsys.models.base import SeqRecNetwork, check_items

__all__ = ["PopularityRecommender"]


class PopularityRecommender(SeqRecNetwork):
    """Rank items by ``log(1 + count)`` of their training interactions; nothing is learned by gradient.

    ``objective = "none"``: the task calls :meth:`fit` with the item counts of the training split and
    skips the optimisation. ``encode`` and ``user_vector`` return zero tensors of width 1 so the task's
    generic evaluation code runs unchanged; ``scores`` ignores its input's values and broadcasts the
    popularity scores to its shape. Combined with history masking this is the classic "most popular unseen
    item" baseline. The model has no parameters; ``counts`` is a (saved) buffer.

    Args:
        num_items: Catalogue size; item indices are ``1..num_items`` (0 = padding).
        max_len: Longest history; linked from the datamodule (only used to validate inputs).
    """

    objective = "none"

    def __init__(self, num_items: int, max_len: int) -> None:
        super().__init__()
        for name, value in (("num_items", num_items), ("max_len", max_len)):
            if value < 1:
                raise ValueError(f"PopularityRecommender: {name} must be >= 1, got {value}")
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = 1
        self.register_buffer("counts", torch.zeros(num_items + 1))

    def fit(self, item_counts: Tensor) -> None:
        """Set the interaction counts.

        Args:
            item_counts: ``(num_items + 1,)`` non-negative counts indexed by item (entry 0, padding, is
                ignored and stored as 0).

        Raises:
            ValueError: If ``item_counts`` has the wrong shape or negative entries.
        """
        expected = (self.num_items + 1,)
        if tuple(item_counts.shape) != expected:
            raise ValueError(
                f"PopularityRecommender.fit: expected item_counts of shape {expected} "
                f"(index 0 = padding), got {tuple(item_counts.shape)}"
            )
        if (item_counts < 0).any():
            raise ValueError("PopularityRecommender.fit: item_counts must be non-negative")
        counts = item_counts.detach().to(self.counts.device, self.counts.dtype).clone()
        counts[0] = 0
        self.counts.copy_(counts)

    def encode(self, items: Tensor) -> Tensor:
        """Zeros ``(B, L, 1)`` (there is no user state)."""
        check_items(items, self.max_len, "PopularityRecommender")
        return torch.zeros(*items.shape, 1, device=items.device, dtype=self.counts.dtype)

    def scores(self, hidden: Tensor) -> Tensor:
        """``log(1 + counts)`` broadcast to ``(..., num_items + 1)`` for ``hidden (..., 1)``."""
        pop = torch.log1p(self.counts).to(hidden.dtype)
        return pop.expand(*hidden.shape[:-1], self.num_items + 1)

    def user_vector(self, items: Tensor) -> Tensor:
        """Zeros ``(B, 1)``."""
        return self.encode(items)[:, -1]
