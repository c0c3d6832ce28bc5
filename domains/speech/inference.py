"""Overlap-add separation of audio longer than what the network should see at once.

A separator trained on 2–4 s crops is run on long recordings segment by segment: segments of ``segment``
samples start every ``segment − overlap`` samples (rounded to the encoder stride; the signal is zero-padded
up to the last segment's end). Each segment is
separated on its own; the order of its sources is arbitrary, so before adding it, its sources are
permuted to best match what has been accumulated on the overlap (the PIT assignment of the
loss, with the squared error as the score: the same source seen by two segments agrees in scale too).
Segments are cross-faded (:func:`trapezoid_window`): each output sample is a convex combination of
the segments that cover it, and the quarter of an overlap next to a segment's cut edge, which the network
sees without context on one side, gets weight 0 from that segment. A network whose receptive field is
shorter than a quarter of the overlap then gives exactly its one-pass output.

Memory is one segment's activations plus the ``(B, S, T)`` output, whatever ``T``.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from domains.speech.losses import best_permutation

__all__ = ["separate", "trapezoid_window"]


def _ramp(length: int, device: torch.device | None) -> Tensor:
    """Rising weights over an overlap of ``length``: 0 on the outer quarter, linear, 1 on the inner one."""
    margin = length // 4
    rise = length - 2 * margin
    ramp = torch.zeros(length, device=device)
    ramp[margin : margin + rise] = torch.arange(1, rise + 1, device=device) / (rise + 1)
    ramp[margin + rise :] = 1.0
    return ramp


def trapezoid_window(
    length: int, ramp_in: int, ramp_out: int, *, device: torch.device | None = None
) -> Tensor:
    """``(length,)`` weights: 1 inside, ramps over the ``ramp_in`` first and ``ramp_out`` last samples.

    A ramp is 0 on the quarter of the overlap next to the segment's cut edge, then rises linearly to 1 on
    the quarter next to the segment's interior; the falling ramp of one segment mirrors the rising ramp of
    the next when their overlaps are equal, so the two weights never vanish together.
    """
    window = torch.ones(length, device=device)
    if ramp_in:
        window[:ramp_in] = _ramp(ramp_in, device)
    if ramp_out:
        window[length - ramp_out :] = _ramp(ramp_out, device).flip(0)
    return window


def separate(
    network: Callable[[Tensor], Tensor],
    mixture: Tensor,
    segment: int | None = None,
    overlap: int | None = None,
    multiple: int = 1,
) -> Tensor:
    """Separate ``mixture (B, T)`` into ``(B, S, T)``, in overlapping segments when ``T > segment``.

    Args:
        network: ``(B, t) -> (B, S, t)``.
        mixture: The waveforms.
        segment: Segment length in samples; None (or ``T <= segment``) runs one pass.
        overlap: Samples shared by neighbouring segments; default ``segment // 2``. Must be less than
            ``segment`` and at least 1 (the permutation alignment needs a shared stretch).
        multiple: Segment starts are multiples of it: pass the network's encoder stride, so that every
            segment's frames fall on the frames of a one-pass run (a learned filterbank is not
            shift-invariant). The mixture is zero-padded at the end up to the last segment's end.

    Returns:
        The estimates, aligned across segments.
    """
    total = mixture.shape[-1]
    if segment is None or total <= segment:
        return network(mixture)
    overlap = segment // 2 if overlap is None else overlap
    if not 1 <= overlap < segment:
        raise ValueError(f"separate: overlap must be in [1, segment={segment}), got {overlap}")
    hop = (segment - overlap) // multiple * multiple
    if hop < 1:
        raise ValueError(
            f"separate: segment - overlap = {segment - overlap} is shorter than multiple={multiple}"
        )
    starts = list(range(0, total - segment + hop, hop))
    mixture = F.pad(mixture, (0, starts[-1] + segment - total))
    out: Tensor | None = None
    weight = mixture.new_zeros(mixture.shape[-1])
    for i, start in enumerate(starts):
        estimate = network(mixture[:, start : start + segment])
        ramp_in = 0 if i == 0 else starts[i - 1] + segment - start
        ramp_out = 0 if i == len(starts) - 1 else start + segment - starts[i + 1]
        window = trapezoid_window(segment, ramp_in, ramp_out, device=mixture.device)
        if out is None:
            out = estimate.new_zeros(*estimate.shape[:2], mixture.shape[-1])
        else:
            # Align on the middle half of the overlap, where both sides have context and weight.
            margin = ramp_in // 4
            shared = slice(start + margin, start + ramp_in - margin)
            so_far = out[..., shared] / weight[shared]
            errors = torch.cdist(estimate[..., margin : ramp_in - margin], so_far)  # (B, S_seg, S_acc)
            perm = best_permutation(-errors)  # (B, S): the segment's source for each accumulated source
            estimate = estimate.gather(1, perm[..., None].expand_as(estimate))
        out[..., start : start + segment] += estimate * window
        weight[start : start + segment] += window
    assert out is not None
    return (out / weight)[..., :total]
