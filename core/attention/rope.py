"""Rotary position embeddings (RoPE) on continuous positions, shared by the mechanisms that rotate q and k.

Paper: Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", Neurocomputing 2024
(arXiv 2104.09864), Eq. 13-16. A pair of channels ``(x_1, x_2)`` at position ``p`` is rotated by the angle
``θ = ω · p``::

    RoPE(x, p) = (x_1 cos θ − x_2 sin θ,  x_2 cos θ + x_1 sin θ)

so that ``⟨RoPE(q, p), RoPE(k, s)⟩`` depends on ``p − s`` only: attention logits see relative positions.
Positions are real numbers here (seconds, pixels, fractions), not just token indices, which lets streams
sampled at different rates share one time axis (LTX-2's audio-video cross-attention, :mod:`ltx`).

Two pairing layouts exist in the wild and both are supported by :func:`apply_rope`:

* ``"split"`` (GPT-NeoX, LTX-2's ``LTXRopeType.SPLIT``): channel ``j`` pairs with ``j + D/2``.
* ``"interleaved"`` (RoFormer, GPT-J, LTX-Video's legacy mode): channel ``2j`` pairs with ``2j + 1``.

Two frequency ladders are provided:

* :func:`inverse_frequencies`: RoFormer's ``ω_j = base^(−2j/D)`` for integer token positions.
* :func:`log_spaced_frequencies`: LTX-Video / LTX-2's ``ω_j = (π / max_position) · base^(j/(F−1))``,
  log-spaced from ``π / max_position`` to ``base · π / max_position``, for positions in physical units
  (LTX-2 uses ``max_position = 20`` seconds on its time axis).

Angles are computed in float64 and the cos/sin tables are cast to the input dtype: rotation angles grow
with ``ω · p`` and float32 angles lose precision quickly (LTX-2's ``double_precision_rope`` option).
"""

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["RopeLayout", "apply_rope", "inverse_frequencies", "log_spaced_frequencies", "rope_angles"]

RopeLayout = Literal["split", "interleaved"]


def inverse_frequencies(dim: int, base: float = 10000.0, device: torch.device | None = None) -> Tensor:
    """RoFormer's frequencies ``ω_j = base^(−2j/dim)`` for ``j = 0 .. dim/2 − 1`` (float64).

    Args:
        dim: Rotated width (even); there is one frequency per channel pair.
        base: Wavelength base.
        device: Device of the result.

    Returns:
        A float64 tensor of shape ``(dim / 2,)``.
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f"inverse_frequencies: dim must be a positive even number, got {dim}")
    j = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    return base ** (-j / dim)


def log_spaced_frequencies(
    num: int, base: float = 10000.0, max_position: float = 1.0, device: torch.device | None = None
) -> Tensor:
    """LTX-Video / LTX-2's frequencies ``ω_j = (π / max_position) · base^(j / (num − 1))`` (float64).

    LTX writes the angle as ``(π/2) · base^(j/(F−1)) · (2 p / max_position − 1)``; the constant
    ``−(π/2) · base^(j/(F−1))`` rotates q and k alike and cancels in ``⟨q, k⟩``, so only the slope
    ``ω_j`` returned here matters.

    Args:
        num: Number of frequencies ``F`` (one per rotated channel pair).
        base: Ratio of the highest to the lowest frequency (LTX: ``theta = 10000``).
        max_position: Position span that maps to a half turn of the lowest frequency (LTX-2: 20 s).
        device: Device of the result.

    Returns:
        A float64 tensor of shape ``(num,)``, increasing.
    """
    if num < 1:
        raise ValueError(f"log_spaced_frequencies: num must be positive, got {num}")
    if max_position <= 0 or base <= 0:
        raise ValueError(
            f"log_spaced_frequencies: base and max_position must be positive, got {base}, {max_position}"
        )
    exponent = torch.linspace(0.0, 1.0, num, dtype=torch.float64, device=device)
    return (math.pi / max_position) * base**exponent


def rope_angles(positions: Tensor, frequencies: Tensor) -> Tensor:
    """Rotation angles ``positions[..., n] · frequencies[f]`` in float64.

    Args:
        positions: Real positions of shape ``(..., N)``.
        frequencies: Frequencies of shape ``(F,)``.

    Returns:
        A float64 tensor ``(..., N, F)``.
    """
    if frequencies.ndim != 1:
        raise ValueError(f"rope_angles: expected frequencies of shape (F,), got {tuple(frequencies.shape)}")
    return positions.to(torch.float64)[..., None] * frequencies.to(
        device=positions.device, dtype=torch.float64
    )


def apply_rope(x: Tensor, angles: Tensor, layout: RopeLayout = "split") -> Tensor:
    """Rotate channel pairs of ``x`` by ``angles``.

    Args:
        x: Tensor ``(..., N, D)`` with even ``D`` (e.g. ``(B, H, N, D)`` queries or keys).
        angles: Angles broadcastable to ``(..., N, D/2)``; pair ``j`` is rotated by ``angles[..., j]``.
        layout: ``"split"`` pairs channel ``j`` with ``j + D/2``; ``"interleaved"`` pairs ``2j`` with
            ``2j + 1``.

    Returns:
        The rotated tensor, same shape and dtype as ``x``.
    """
    d = x.shape[-1]
    if d % 2 or angles.shape[-1] != d // 2:
        raise ValueError(
            f"apply_rope: expected x with an even last axis D and angles (..., N, D/2); got x "
            f"{tuple(x.shape)} and angles {tuple(angles.shape)}"
        )
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if layout == "split":
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if layout == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    raise ValueError(f"apply_rope: unknown layout {layout!r}; expected 'split' or 'interleaved'")
