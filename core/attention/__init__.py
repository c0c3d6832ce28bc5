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
from core.attention.axis_decomposed import AxisDecomposedAttention
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
    grid_2d,
    invert_mask,
    normalize_mask,
)
from core.attention.bcaf import ParentChildCrossAttention, SpectralSE
from core.attention.biformer import BiLevelRoutingAttention
from core.attention.care import CAREAttention, linear_attention
from core.attention.caswit import CrossScaleFusion
from core.attention.channel_gates import CBAM, ECA, SpatialGate, SqueezeExcitation
from core.attention.cross import CrossAttention
from core.attention.danet import ChannelAttention, DualAttention, PositionAttention
from core.attention.davit import ChannelGroupAttention, WindowAttention
from core.attention.dcal import GlobalLocalCrossAttention, PairwiseCrossAttention, attention_rollout
from core.attention.differential import DifferentialAttention, GroupedDifferentialAttention
from core.attention.dma import DynamicMaskAttention
from core.attention.dualtoken import DualTokenAttention
from core.attention.flux import FluxAttention, FluxLayerRouter
from core.attention.functional import causal_mask, reference_attention, sdpa
from core.attention.gated_delta import GatedDeltaNet
from core.attention.gates import AdditiveAttentionGate, ConcatAttentionGate
from core.attention.head_mixing import HeadMixingAttention
from core.attention.herseg import DualGatedLinearAttention
from core.attention.hgrn2 import HGRN2
from core.attention.infnet import INFNetProxyAttention
from core.attention.large_kernel import SDLSKA
from core.attention.layer_attention import LayerAttention
from core.attention.lightning import LightningAttention
from core.attention.linear import LinearAttention, linear_attention_chunked
from core.attention.lla import LocalLinearAttention
from core.attention.ltx import LTXCrossModalAttention
from core.attention.lwga import LWGA
from core.attention.mamba_mixer import MambaMixer
from core.attention.masks import batch_mask, scene_mask, segment_conditional_mask
from core.attention.medusa import MedusaAttention
from core.attention.mha import MultiHeadAttention, default_heads_factory
from core.attention.miras import Memora, MirasMemory, Moneta, Yaad
from core.attention.moh import MoHAttention
from core.attention.mossformer import MossFormerAttention
from core.attention.neighborhood import NeighborhoodAttention
from core.attention.overlock import ContMix
from core.attention.perceiver import PerceiverCrossAttention
from core.attention.registry import (
    MechanismInfo,
    get_mechanism,
    list_mechanisms,
    mechanism_table,
    register_mechanism,
)
from core.attention.rope import apply_rope
from core.attention.sparse_global import HydraSparseGlobalAttention, WindowedSparseAttention
from core.attention.superlinear import SuperlinearAttention
from core.attention.ultragen import (
    UltraGenAttention,
    UltraGenGlobalAttention,
    UltraGenHierarchicalAttention,
    UltraGenLocalAttention,
)

__all__ = [
    "BACKENDS",
    "CBAM",
    "ECA",
    "HGRN2",
    "LWGA",
    "SDLSKA",
    "AdditiveAttentionGate",
    "AttentionFactory",
    "AttentionGate",
    "AttentionGateFactory",
    "AxisAttention",
    "AxisDecomposedAttention",
    "Backend",
    "BiLevelRoutingAttention",
    "CAREAttention",
    "ChannelAttention",
    "ChannelGroupAttention",
    "ConcatAttentionGate",
    "ContMix",
    "CrossAttention",
    "CrossScaleFusion",
    "DifferentialAttention",
    "DualAttention",
    "DualGatedLinearAttention",
    "DualTokenAttention",
    "DynamicMaskAttention",
    "FluxAttention",
    "FluxLayerRouter",
    "GatedDeltaNet",
    "GlobalLocalCrossAttention",
    "GroupedDifferentialAttention",
    "HeadMixingAttention",
    "HydraSparseGlobalAttention",
    "INFNetProxyAttention",
    "LTXCrossModalAttention",
    "LayerAttention",
    "LightningAttention",
    "LinearAttention",
    "LocalLinearAttention",
    "MambaMixer",
    "MechanismInfo",
    "MedusaAttention",
    "Memora",
    "MirasMemory",
    "MoHAttention",
    "Moneta",
    "MossFormerAttention",
    "MultiHeadAttention",
    "NeighborhoodAttention",
    "PairwiseCrossAttention",
    "ParentChildCrossAttention",
    "PerceiverCrossAttention",
    "PositionAttention",
    "SpatialGate",
    "SpatialMixer",
    "SpatialMixerFactory",
    "SpectralSE",
    "SqueezeExcitation",
    "SuperlinearAttention",
    "TokenMixer",
    "UltraGenAttention",
    "UltraGenGlobalAttention",
    "UltraGenHierarchicalAttention",
    "UltraGenLocalAttention",
    "WindowAttention",
    "WindowedSparseAttention",
    "Yaad",
    "apply_rope",
    "attention_rollout",
    "batch_mask",
    "causal_mask",
    "check_grid",
    "check_grid_2d",
    "default_heads_factory",
    "get_mechanism",
    "grid_2d",
    "invert_mask",
    "linear_attention",
    "linear_attention_chunked",
    "list_mechanisms",
    "mechanism_table",
    "normalize_mask",
    "reference_attention",
    "register_mechanism",
    "resolve_backend",
    "scene_mask",
    "sdpa",
    "segment_conditional_mask",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
