"""Losses shared by the domains' tasks.

:func:`linear_cross_entropy` is cross-entropy over a large output layer (a recommender's item table, a
language model's vocabulary) computed in row chunks, so the ``(rows, classes)`` logits matrix never
exists in full.
"""

import torch
from torch import Tensor

__all__ = ["linear_cross_entropy"]


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    excluded_class: int | None = None,
    chunk_size: int = 512,
) -> Tensor:
    """Mean cross-entropy of ``logits = hidden · weightᵀ + bias`` against ``target``, in row chunks.

    Equal to ``F.cross_entropy(hidden @ weight.T + bias, target)`` (with column ``excluded_class`` set to
    -inf first), values and gradients, but the logits are built ``chunk_size`` rows at a time and the
    gradients of ``hidden``, ``weight`` and ``bias`` are computed in the same pass (the softmax of a chunk
    is used once, while it is in cache). Why: with a 12k-item catalogue and ~2k target positions per batch
    the full logits are 100 MB; on CPU every such allocation is fresh pages from the kernel, and the
    softmax and its backward then run at memory speed. Chunking made SASRec's training step on Amazon
    Toys about twice as fast on CPU (``benchmarks/recsys_throughput.py``); memory is
    ``chunk_size × classes`` instead of ``rows × classes``.

    The gradients are computed in the forward pass, so the result must be used as a loss (its backward
    only scales them by the incoming gradient). Softmax and accumulation run in float32.

    Args:
        hidden: ``(N, D)`` rows to classify.
        weight: ``(C, D)`` output layer.
        target: ``(N,)`` class indices in ``[0, C)``, never ``excluded_class``.
        bias: Optional ``(C,)`` output bias.
        excluded_class: A class that is never a prediction (recommenders: the padding item 0), or None.
        chunk_size: Rows per chunk.

    Returns:
        The scalar mean loss.

    Raises:
        ValueError: On mismatched shapes, an empty batch, or (CPU tensors; on a GPU the values are not
            checked, to avoid a device sync per step) a target outside ``[0, C)`` or equal to
            ``excluded_class``.
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear_cross_entropy: expected hidden (N, D) and weight (C, D) with the same D, got "
            f"{tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if target.shape != hidden.shape[:1] or not len(target):
        raise ValueError(
            f"linear_cross_entropy: expected a non-empty target of shape ({hidden.shape[0]},), "
            f"got {tuple(target.shape)}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"linear_cross_entropy: expected bias ({weight.shape[0]},), got {tuple(bias.shape)}")
    if chunk_size < 1:
        raise ValueError(f"linear_cross_entropy: chunk_size must be >= 1, got {chunk_size}")
    if target.device.type == "cpu":  # on an accelerator these checks would sync every step
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= weight.shape[0]:
            raise ValueError(
                f"linear_cross_entropy: target values must lie in [0, {weight.shape[0]}), got [{low}, {high}]"
            )
        if excluded_class is not None and bool((target == excluded_class).any()):
            raise ValueError(f"linear_cross_entropy: a target equals the excluded class {excluded_class}")
    return _LinearCrossEntropy.apply(hidden, weight, bias, target, excluded_class, chunk_size)


class _LinearCrossEntropy(torch.autograd.Function):
    """Chunked forward that also computes the gradients (see :func:`linear_cross_entropy`)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        excluded_class: int | None,
        chunk_size: int,
    ) -> Tensor:
        # Everything here is float32 by design; under autocast torch.mm(out=float32) would get bfloat16
        # operands and fail (bf16-mixed training).
        with torch.autocast(hidden.device.type, enabled=False):
            rows = hidden.shape[0]
            w = weight.float()
            b = None if bias is None else bias.float()
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            need_b = bias is not None and ctx.needs_input_grad[2]
            grad_h = torch.empty_like(hidden, dtype=torch.float32) if need_h else None
            grad_w = torch.zeros_like(w) if need_w else None
            grad_b = torch.zeros_like(b) if need_b else None
            total = hidden.new_zeros((), dtype=torch.float32)
            for start in range(0, rows, chunk_size):
                h = hidden[start : start + chunk_size].float()
                y = target[start : start + chunk_size]
                logits = h @ w.T if b is None else torch.addmm(b, h, w.T)
                if excluded_class is not None:
                    logits[:, excluded_class] = float("-inf")
                log_probs = torch.log_softmax(logits, dim=1)
                total -= log_probs.gather(1, y[:, None]).sum()
                if need_h or need_w or need_b:
                    # d(mean loss)/d logits = (softmax - onehot) / rows, reusing the buffer.
                    grad = log_probs.exp_()
                    grad[torch.arange(len(y), device=y.device), y] -= 1.0
                    grad /= rows
                    if need_h:
                        torch.mm(grad, w, out=grad_h[start : start + chunk_size])
                    if need_w:
                        grad_w.addmm_(grad.T, h)
                    if need_b:
                        grad_b += grad.sum(0)
        ctx.save_for_backward(
            *(g.to(t.dtype) if g is not None else None for g, t in ((grad_h, hidden), (grad_w, weight)))
        )
        ctx.grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return (total / rows).to(hidden.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        grad_b = ctx.grad_b
        scale = grad_out
        return (
            None if grad_h is None else grad_h * scale,
            None if grad_w is None else grad_w * scale,
            None if grad_b is None else grad_b * scale,
            None,
            None,
            None,
        )
