"""The contract every sequential recommender of the domain follows, and the factory type the task takes.

:class:`SeqRecNetwork` is the base class of SASRec, BERT4Rec, IGR-SR, GRU4Rec and the popularity baseline:
it documents the input/output contract and gives the CLI an unambiguous set of short class names
(``--model.network=BERT4Rec``). :class:`SeqRecNetworkFactory` is what the task's ``network`` argument
accepts: a network class (or a factory of one) that receives the data-derived sizes ``num_items`` and
``max_len``, and the task's ``attention`` factory, by keyword.
"""

from typing import ClassVar, Literal, Protocol

import torch
from torch import Tensor, nn

from core.attention import AttentionFactory

__all__ = ["Objective", "SeqRecNetwork", "SeqRecNetworkFactory", "check_common", "check_items"]

Objective = Literal["causal", "cloze", "last", "none"]


class SeqRecNetwork(nn.Module):
    """Base class of the domain's networks: item histories in, scores over the catalogue out.

    Items are indices ``1..num_items`` (0 = padding); histories ``items (B, L)`` are left-padded, most
    recent item last, with ``L <= max_len``. A network implements:

    * ``encode(items) -> (B, L, D)``: hidden states; ``h[:, t]`` summarises the history up to ``t``;
    * ``scores(hidden (..., D)) -> (..., num_items + 1)``: logits over the catalogue (column 0 = padding,
      the task masks it);
    * ``user_vector(items) -> (B, D)``: the vector the next item is ranked with;
    * ``output_layer() -> (weight, bias)`` with ``scores(h) == h · weightᵀ (+ bias)``, for the chunked
      full-catalogue cross-entropy (not needed when nothing is trained);
    * optionally ``extra_loss(items) -> Tensor | None``, a regulariser the task adds to the training loss.

    The class attribute ``objective`` tells the task how to train it:

    * ``causal``: every position predicts the next item (SASRec, GRU4Rec);
    * ``cloze``: masked items are predicted; the network then has ``mask_prob`` and ``mask_token``
      (BERT4Rec);
    * ``last``: only the last position predicts the next item (IGR-SR, whose reasoner works per sequence);
    * ``none``: nothing is trained by gradient; the network has ``fit(item_counts)``, which the task
      calls with the training split's interaction counts (popularity).

    ``entry_methods`` names the methods the task calls instead of ``forward`` (sharded training hooks them).

    Attributes:
        num_items: Catalogue size.
        max_len: Longest history the network accepts.
        hidden_dim: Width ``D`` of the hidden states.
    """

    objective: ClassVar[Objective] = "causal"
    entry_methods: ClassVar[tuple[str, ...]] = ("encode", "user_vector", "scores")
    num_items: int
    max_len: int
    hidden_dim: int

    def encode(self, items: Tensor) -> Tensor:
        """Hidden states ``(B, L, D)`` of left-padded ``items`` ``(B, L)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode(items)")

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits ``(..., num_items + 1)`` of ``hidden (..., D)``; column 0 is padding."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores(hidden)")

    def user_vector(self, items: Tensor) -> Tensor:
        """The ``(B, D)`` vector that :meth:`scores` ranks the next item with."""
        raise NotImplementedError(f"{type(self).__name__} must implement user_vector(items)")

    def output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``scores(h) == h · weightᵀ (+ bias)``."""
        raise NotImplementedError(f"{type(self).__name__} has no output layer to train")

    def extra_loss(self, items: Tensor) -> Tensor | None:
        """A term added to the training loss for the inputs ``items (B, L)``; None (default) adds nothing."""
        return None


class SeqRecNetworkFactory(Protocol):
    """A recsys network class, or a factory of one: receives the data-derived sizes by keyword.

    Networks declare only the sizes they use (the popularity baseline takes no ``attention``);
    ``--model.network.*`` holds every other option of the chosen class.
    """

    def __call__(
        self, *, num_items: int, max_len: int, attention: AttentionFactory | None = None
    ) -> SeqRecNetwork:
        """Build the network for a catalogue of ``num_items`` items and histories of ``max_len``."""
        ...


def check_items(items: Tensor, max_len: int, owner: str) -> None:
    """Check an item-index batch: integer ``(B, L)`` with ``1 <= L <= max_len``.

    Raises:
        ValueError: Naming the argument ``items`` and the expected shape or dtype.
    """
    if items.ndim != 2:
        raise ValueError(f"{owner}: expected items of shape (B, L), got {tuple(items.shape)}")
    if items.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{owner}: items must be int64 item indices (0 = padding), got dtype {items.dtype}")
    if not 1 <= items.shape[1] <= max_len:
        raise ValueError(
            f"{owner}: items has length L={items.shape[1]}, expected 1 <= L <= max_len={max_len} "
            "(the learned position table has max_len rows)"
        )


def check_common(
    owner: str, num_items: int, max_len: int, hidden_dim: int, num_layers: int, dropout: float
) -> None:
    """Validate the arguments every sequential model shares, naming the offending one."""
    for name, value in (("num_items", num_items), ("max_len", max_len)):
        if value < 1:
            raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    for name, value in (("hidden_dim", hidden_dim), ("num_layers", num_layers)):
        if value < 1:
            raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}")
