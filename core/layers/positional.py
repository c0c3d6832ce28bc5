"""Fixed sinusoidal positional encodings (Vaswani et al. 2017, §3.5)."""

import math

import torch
from torch import Tensor

__all__ = ["sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(p / base^(2i/d))``; odd ``dim`` allowed.

    Args:
        length: Number of positions.
        dim: Encoding width.
        base: Wavelength base.

    Returns:
        A float32 tensor ``(length, dim)``.
    """
    position = torch.arange(length, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(base) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: dim // 2])
    return pe.float()
