"""Reusable building blocks (MLPs, positional encodings, DaViT blocks) shared by domain models."""

from core.blocks.davit import ChannelBlock, ConvPosEnc, DualAttentionBlock, SpatialBlock
from core.blocks.mlp import Mlp
from core.blocks.positional import sinusoidal_positions

__all__ = ["ChannelBlock", "ConvPosEnc", "DualAttentionBlock", "Mlp", "SpatialBlock", "sinusoidal_positions"]
