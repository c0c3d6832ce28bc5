"""Rectified flow (flow matching with straight paths): noising, the velocity target, the Euler sampler.

Papers: Liu, Gong & Liu, "Flow Straight and Fast", ICLR 2023 (arXiv 2209.03003); Lipman et al., "Flow
Matching for Generative Modeling", ICLR 2023; timestep sampling of Esser et al., "Scaling Rectified Flow
Transformers" (SD3), ICML 2024. Wan2.1 (UltraGen's base) trains with this objective.

With data ``x_0`` and noise ``ε ~ N(0, I)``, ``x_t = (1 − t) x_0 + t ε`` for ``t ∈ [0, 1]``; the network
predicts the velocity ``v = dx_t/dt = ε − x_0`` (MSE). Sampling integrates ``dx/dt = v`` from ``t = 1``
(noise) to ``t = 0`` with Euler steps ``x ← x + (t_{i+1} − t_i) v(x, t_i)``.
"""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = ["TimestepSampling", "euler_sample", "noised", "sample_timesteps", "velocity_target"]

TimestepSampling = Literal["uniform", "logit_normal"]


def _broadcast(t: Tensor, x: Tensor) -> Tensor:
    """``t (B,)`` or per-frame ``(B, T)`` as a tensor broadcastable to ``x (B, C, T, H, W)``."""
    if t.ndim == 1:
        return t.view(-1, 1, 1, 1, 1).to(x.dtype)
    if t.ndim == 2 and t.shape == (x.shape[0], x.shape[2]):
        return t[:, None, :, None, None].to(x.dtype)
    raise ValueError(
        f"expected timesteps of shape ({x.shape[0]},) or ({x.shape[0]}, {x.shape[2]}), got {tuple(t.shape)}"
    )


def noised(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """``x_t = (1 − t) x_0 + t ε`` with ``t`` per sample ``(B,)`` or per frame ``(B, T)``."""
    tb = _broadcast(t, x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The regression target ``ε − x_0``."""
    return noise - x0


def sample_timesteps(
    batch: int,
    mode: TimestepSampling = "logit_normal",
    *,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training timesteps ``(B,)`` in ``(0, 1)``: uniform, or SD3's logit-normal ``σ(N(0, 1))``."""
    if mode == "uniform":
        return torch.rand(batch, device=device, generator=generator)
    if mode == "logit_normal":
        return torch.sigmoid(torch.randn(batch, device=device, generator=generator))
    raise ValueError(f"unknown timestep sampling {mode!r}; expected 'uniform' or 'logit_normal'")


@torch.no_grad()
def euler_sample(
    velocity: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,
    steps: int,
    *,
    known: Tensor | None = None,
    known_frames: Tensor | None = None,
) -> Tensor:
    """Integrate ``dx/dt = v(x, t)`` from ``t = 1`` to ``0`` in ``steps`` equal Euler steps.

    Args:
        velocity: ``v(x (B, C, T, H, W), t (B, T)) -> (B, C, T, H, W)``; ``t`` is per frame.
        noise: The starting point ``x_1`` ``(B, C, T, H, W)``.
        steps: Number of Euler steps (>= 1).
        known: Clean frames ``(B, C, T, H, W)`` to condition on (Mask²DiT scene extension), or None.
        known_frames: Boolean ``(B, T)``, True where ``known`` is given: those frames stay clean and get
            timestep 0 at every step; the others are generated.

    Returns:
        The sample ``x_0``.
    """
    if steps < 1:
        raise ValueError(f"euler_sample: steps must be >= 1, got {steps}")
    if (known is None) != (known_frames is None):
        raise ValueError("euler_sample: give both known and known_frames, or neither")
    b, _, frames = noise.shape[:3]
    if known_frames is not None and (known_frames.shape != (b, frames) or known_frames.dtype != torch.bool):
        raise ValueError(
            f"euler_sample: known_frames must be boolean ({b}, {frames}), got {tuple(known_frames.shape)}"
        )
    ts = torch.linspace(1.0, 0.0, steps + 1, device=noise.device)
    x = noise
    keep = None if known_frames is None else known_frames[:, None, :, None, None]
    for i in range(steps):
        t = ts[i].expand(b, frames)
        if keep is not None:
            assert known is not None and known_frames is not None
            x = torch.where(keep, known, x)
            t = torch.where(known_frames, torch.zeros_like(t), t)
        x = x + (ts[i + 1] - ts[i]) * velocity(x, t)
    if keep is not None:
        x = torch.where(keep, known, x)  # type: ignore[arg-type]
    return x
