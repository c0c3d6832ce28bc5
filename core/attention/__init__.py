"""attnlab's attention library: the :class:`TokenMixer` contract, the registry and the mechanisms.

Importing this package imports every module in it, which registers every mechanism: a new family file
is enrolled in the registry, the registry-driven tests, the benchmark and the CLI's short names
(``--model.attention=<Name>``) without further wiring. See ``docs/attention.md`` for the contract and for
how to add a mechanism (one family per file, a paper-and-equation docstring, a literal reference, and
``@register_mechanism``).
"""

import importlib
import pkgutil

from core.attention.axis import AxisAttention
from core.attention.backends import BACKENDS, Backend, resolve_backend
from core.attention.base import (
    AttentionFactory,
    AttentionGate,
    AttentionGateFactory,
    SpatialMixer,
    SpatialMixerFactory,
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
    "BACKENDS",
    "AttentionFactory",
    "AttentionGate",
    "AttentionGateFactory",
    "AxisAttention",
    "Backend",
    "ChannelGroupAttention",
    "CrossAttention",
    "MechanismInfo",
    "MultiHeadAttention",
    "SpatialMixer",
    "SpatialMixerFactory",
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
    "resolve_backend",
    "sdpa",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
