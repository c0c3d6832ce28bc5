"""Reusable building blocks shared by domain models: MLPs, positions, blocks taking attention factories."""

from core.blocks.bcaf import BCAFBlock
from core.blocks.davit import ChannelBlock, ConvPosEnc, DualAttentionBlock, SpatialBlock
from core.blocks.hybrid import HybridBlock, HybridStack, hybrid_layout
from core.blocks.mlp import Mlp
from core.blocks.mossformer import FFConvM, MossFormerBlock, MossFormerStack
from core.blocks.perceiver import LatentLayer, PerceiverBlock
from core.blocks.positional import sinusoidal_positions
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
    "Mlp",
    "MossFormerBlock",
    "MossFormerStack",
    "PerceiverBlock",
    "SpatialBlock",
    "TimestepGate",
    "TokenMixerMap",
    "UltraGenBlock",
    "hybrid_layout",
    "sinusoidal_positions",
    "timestep_embedding",
    "token_mixer_map",
]
