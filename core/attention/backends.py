"""Choosing an attention backend: plain PyTorch everywhere, accelerated kernels where they work.

Every mechanism has a plain path that trains on any device: ``sdpa`` (``F.scaled_dot_product_attention``
on gathered or masked tokens) and ``reference`` (the literal equation, for tests and debugging). Some
also have optional accelerated paths:

* ``flex``: compiled FlexAttention (``torch.nn.attention.flex_attention``) with a block mask.
* ``natten``: NATTEN's fused neighbourhood-attention kernels (``pip install natten``).
* ``triton``: our own fused Triton kernels (:mod:`core.attention.kernels`), forward and backward.

Flex and NATTEN are forward-only on CPU in torch 2.14 (FlexAttention raises "does not support backward
on CPU"; NATTEN ≥ 0.20 runs on CPU only through Flex), so ``auto`` picks them on CUDA only. Triton
kernels need CUDA, except under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, slow, for tests).
None is imported at module import time: a mechanism imports its kernels when a forward pass first
asks for them.
An explicitly requested backend that cannot run raises an error naming the backend and the reason.
"""

import importlib.util
import os
from typing import Literal

import torch

__all__ = ["BACKENDS", "Backend", "backend_unavailable_reason", "check_backend", "resolve_backend"]

Backend = Literal["auto", "sdpa", "flex", "natten", "triton", "reference"]
BACKENDS: tuple[str, ...] = ("auto", "sdpa", "flex", "natten", "triton", "reference")


def check_backend(owner: str, backend: str, supported: tuple[str, ...]) -> None:
    """Validate a backend name at construction time.

    Args:
        owner: Mechanism name for the error message.
        backend: Requested backend.
        supported: Backends this mechanism implements (``auto`` is always accepted).

    Raises:
        ValueError: Naming the backend and the supported ones.
    """
    if backend != "auto" and backend not in supported:
        choices = ("auto", *supported)
        raise ValueError(f"{owner}: unknown or unsupported backend {backend!r}; expected one of {choices}")


def backend_unavailable_reason(backend: str, device: torch.device, needs_grad: bool) -> str | None:
    """Why ``backend`` cannot run here, or ``None`` when it can.

    Args:
        backend: ``sdpa``, ``reference``, ``flex``, ``natten`` or ``triton``.
        device: Device of the inputs.
        needs_grad: Whether the call must support backward.
    """
    if backend in ("sdpa", "reference"):
        return None
    if backend == "flex":
        if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
            return f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
        if device.type != "cuda" and needs_grad:
            return (
                f"FlexAttention does not support backward on {device.type} in torch {torch.__version__} "
                "(forward only); use backend='sdpa' to train here"
            )
        return None
    if backend == "natten":
        if importlib.util.find_spec("natten") is None:
            return "the natten package is not installed (pip install natten)"
        if device.type != "cuda" and needs_grad:
            return f"NATTEN has no backward on {device.type} (its CPU path is forward-only FlexAttention)"
        return None
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed (it comes with the CUDA builds of torch)"
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return (
                f"Triton kernels run on CUDA GPUs, not {device.type} (TRITON_INTERPRET=1, set before the "
                "first call, runs them in Triton's slow CPU interpreter for testing)"
            )
        return None
    return f"unknown backend {backend!r}"


def resolve_backend(
    owner: str,
    requested: str,
    supported: tuple[str, ...],
    device: torch.device,
    needs_grad: bool,
    preference: tuple[str, ...] = ("flex", "natten"),
) -> str:
    """Pick the backend for one forward call.

    ``auto`` takes the first entry of ``preference`` that the mechanism supports and that can run on
    CUDA, else ``sdpa`` (or ``reference`` when the mechanism has no SDPA path). An explicit request
    that cannot run raises instead of silently falling back.

    Args:
        owner: Mechanism name for error messages.
        requested: The constructor's ``backend`` argument.
        supported: Backends the mechanism implements.
        device: Device of the inputs.
        needs_grad: Whether this call must support backward (``torch.is_grad_enabled()`` and a
            parameter or input requires grad).
        preference: Accelerated backends ``auto`` tries on CUDA, fastest first.

    Returns:
        The backend to run.

    Raises:
        RuntimeError: If an explicitly requested backend cannot run here.
    """
    if requested == "auto":
        if device.type == "cuda":
            for name in preference:
                if name in supported and backend_unavailable_reason(name, device, needs_grad) is None:
                    return name
        return "sdpa" if "sdpa" in supported else "reference"
    reason = backend_unavailable_reason(requested, device, needs_grad)
    if reason is not None:
        raise RuntimeError(f"{owner}: backend={requested!r} is unavailable: {reason}")
    return requested
