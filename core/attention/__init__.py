"""attnlab's attention library: the :class:`TokenMixer` contract, the registry and the mechanisms.

Importing this package registers every mechanism. See ``docs/attention.md`` for the contract and for
how to add a mechanism (one family per file, a paper-and-equation docstring, a literal reference, and
``@register_mechanism``).
"""

from core.attention.axis import AxisAttention
from core.attention.base import (
    AttentionFactory,
    TokenMixer,
    check_grid,
    check_grid_2d,
    invert_mask,
    normalize_mask,
)
from core.attention.cross import CrossAttention
from core.attention.davit import ChannelGroupAttention, WindowAttention
from core.attention.functional import causal_mask, reference_attention, sdpa
from core.attention.mha import MultiHeadAttention
from core.attention.registry import (
    MechanismInfo,
    get_mechanism,
    list_mechanisms,
    mechanism_table,
    register_mechanism,
)

__all__ = [
    "AttentionFactory",
    "AxisAttention",
    "ChannelGroupAttention",
    "CrossAttention",
    "MechanismInfo",
    "MultiHeadAttention",
    "TokenMixer",
    "WindowAttention",
    "causal_mask",
    "check_grid",
    "check_grid_2d",
    "get_mechanism",
    "invert_mask",
    "list_mechanisms",
    "mechanism_table",
    "normalize_mask",
    "reference_attention",
    "register_mechanism",
    "sdpa",
]
