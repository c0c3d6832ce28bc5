"""Blocks shared by domain models that take attention factories (plain layers live in ``core.layers``)."""

from core.blocks.bcaf import BCAFBlock
from core.blocks.davit import ChannelBlock, ConvPosEnc, DualAttentionBlock, SpatialBlock
from core.blocks.hybrid import HybridBlock, HybridStack, hybrid_layout
from core.blocks.mossformer import FFConvM, MossFormerBlock, MossFormerStack
from core.blocks.perceiver import LatentLayer, PerceiverBlock
from core.blocks.token_map import TokenMixerMap, token_mixer_map
from core.blocks.ultragen import TimestepGate, UltraGenBlock, timestep_embedding

__all__ = [
    "BCAFBlock",
    "ChannelBlock",
    "ConvPosEnc",
    "DualAttentionBlock",
    "FFConvM",
    "HybridBlock",
    "HybridStack",
    "LatentLayer",
    "MossFormerBlock",
    "MossFormerStack",
    "PerceiverBlock",
    "SpatialBlock",
    "TimestepGate",
    "TokenMixerMap",
    "UltraGenBlock",
    "hybrid_layout",
    "timestep_embedding",
    "token_mixer_map",
]
