"""What a finance network is: the base class every LOB classifier derives from, and its factory type."""

from typing import Protocol

from torch import nn

from core.attention.base import AttentionFactory

__all__ = ["LOBNetwork", "LOBNetworkFactory"]


class LOBNetwork(nn.Module):
    """Base of the limit-order-book classifiers.

    A network maps windows ``x`` of shape ``(B, T, F)`` to logits ``(B, num_horizons, num_classes)`` (no
    softmax). Subclasses take, by keyword, whichever data-derived sizes they need among those of
    :class:`LOBNetworkFactory`; their other ``__init__`` arguments are their options
    (``--model.network.<option>``).
    """


class LOBNetworkFactory(Protocol):
    """A :class:`LOBNetwork` class, or a factory of one, as the task ``LOBClassifier`` calls it.

    The keywords are the sizes the data gives (the CLI leaves them out of ``--model.network.*``) and the
    task's attention factory.
    """

    def __call__(
        self,
        *,
        num_features: int,
        num_lob_features: int,
        seq_len: int,
        num_horizons: int,
        num_classes: int,
        attention: AttentionFactory | None = None,
    ) -> LOBNetwork:
        """Build the network."""
        ...
