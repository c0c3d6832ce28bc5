"""Reusable building blocks (MLPs, positional encodings, transformer layers) shared by domain models."""

from core.blocks.mlp import Mlp
from core.blocks.positional import sinusoidal_positions

__all__ = ["Mlp", "sinusoidal_positions"]
