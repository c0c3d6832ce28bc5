"""The shared check of the per-mechanism tests: an fp32 module against its literal fp64 reference."""

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def assert_matches_reference(module: nn.Module, reference: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """Compare ``module(*inputs)`` with ``reference(module64, *inputs64)`` on copied float64 weights.

    Checks the output (``FWD``), then, for the same random output gradient, the gradient of every input
    and of every parameter (``GRAD``). The inputs must require grad.

    Returns:
        The fp32 output, for extra checks by the caller.
    """
    ref = copy.deepcopy(module).double()
    inputs64 = [t.detach().double().requires_grad_(True) for t in inputs]
    out, expected = module(*inputs), reference(ref, *inputs64)
    torch.testing.assert_close(out.double(), expected, **FWD)
    gy = torch.randn_like(expected)
    out.backward(gy.float())
    expected.backward(gy)
    for t, t64 in zip(inputs, inputs64, strict=True):
        torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)
    for (name, p), p_ref in zip(module.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p_ref.grad, **GRAD, msg=f"grad of {name}")
    return out


EXACT = {"atol": 1e-12, "rtol": 1e-10}


def assert_same_outputs_and_grads(
    first: nn.Module, second: nn.Module, x: Tensor, tol: dict[str, float] | None = None, **kwargs
) -> Tensor:
    """Two float64 twins (e.g. one pass vs segments): same output, input and parameter gradients.

    ``first(x, **kwargs)`` and ``second(x', **kwargs)`` run on copies of ``x`` (which must require grad);
    both get the same random output gradient. Tolerance ``tol`` (default ``EXACT``).

    Returns:
        ``first``'s output, for further checks by the caller.
    """
    tol = tol or EXACT
    x2 = x.detach().clone().requires_grad_(True)
    out, out2 = first(x, **kwargs), second(x2, **kwargs)
    torch.testing.assert_close(out2, out, **tol)
    grad = torch.randn_like(out)
    out.backward(grad)
    out2.backward(grad)
    torch.testing.assert_close(x2.grad, x.grad, **tol)
    for (name, p), p2 in zip(first.named_parameters(), second.parameters(), strict=True):
        if p.grad is None or p2.grad is None:  # a parameter this call does not use (e.g. a backward branch)
            assert p.grad is None and p2.grad is None, f"grad of {name}: only one twin has it"
            continue
        torch.testing.assert_close(p2.grad, p.grad, **tol, msg=f"grad of {name}")
    return out


def assert_segments_match(
    whole: nn.Module, segment_size: int, length: int, causal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """A float64 segmented mixer equals itself in one pass, with left padding in the second sequence.

    ``whole`` (already float64, with a ``segment_size`` larger than ``length``) is copied with
    ``segment_size``; both run on the same ``(2, length, dim)`` input and key-padding mask.

    Returns:
        The output, the input and the mask, for comparison with a reference by the caller.
    """
    seg = copy.deepcopy(whole)
    seg.segment_size = segment_size
    x = torch.randn(2, length, whole.dim, dtype=torch.float64, requires_grad=True)
    pad = torch.ones(2, length, dtype=torch.bool)
    pad[1, :3] = False
    return assert_same_outputs_and_grads(whole, seg, x, mask=pad, is_causal=causal), x, pad
