"""Negative SI-SDR with utterance-level permutation-invariant training (PIT).

SI-SDR (Le Roux et al., "SDR – half-baked or well done?", ICASSP 2019), with the zero-mean and ``eps``
placement of SpeechBrain's ``cal_si_snr`` that MossFormer's recipe (ClearerVoice) trains with::

    ŝ, s   = ŝ − mean(ŝ), s − mean(s)                         (over the valid samples)
    s_t    = ⟨ŝ, s⟩ s / (‖s‖² + ε)
    SI-SDR = 10 log10( ‖s_t‖² / (‖ŝ − s_t‖² + ε) + ε ),  ε = 1e-8

Utterance-level PIT (Kolbæk et al. 2017) picks, per utterance, the assignment of estimates to references
that maximises the mean SI-SDR over sources. The mean is a sum of pair scores, so the best assignment is a
linear assignment problem: up to :data:`BRUTE_FORCE_MAX` sources every permutation is scored on the
device (``S!`` gathers, no host sync); beyond, the Hungarian algorithm (``scipy``) solves it exactly in
``O(S³)``.

**Silent references.** SI-SDR is undefined for an all-zero reference (``s_t = 0``: the formula gives
``10 log10 ε = −80 dB`` whatever the estimate). Such a reference is *excluded*: its pair scores are 0 in the
assignment (every permutation scores it the same), it is left out of the loss mean, and it is counted
(:attr:`PITResult.silent`) so the task can log how many there were. An utterance whose references are all
silent contributes nothing (zero loss, zero gradient). No NaN or infinity can arise.
"""

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.utils import InputError

__all__ = [
    "BRUTE_FORCE_MAX",
    "EPS",
    "PITResult",
    "PITSISDRLoss",
    "best_permutation",
    "pairwise_si_sdr",
    "si_sdr",
    "valid_mask",
]

EPS = 1e-8
#: Largest number of sources whose permutations are enumerated (3! = 6); the Hungarian algorithm beyond.
BRUTE_FORCE_MAX = 3
#: A reference whose energy (after removing its mean) is at most this counts as silent.
SILENCE_ENERGY = 1e-10


def valid_mask(lengths: Tensor | None, batch: int, length: int, like: Tensor) -> Tensor | None:
    """``(B, 1, T)`` mask of the valid samples (1) before the zero padding (0), or None without lengths."""
    if lengths is None:
        return None
    if lengths.shape != (batch,):
        raise InputError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > length).any()):
        raise InputError(f"lengths must lie in [1, {length}], got {lengths.tolist()}")
    positions = torch.arange(length, device=like.device)
    return (positions < lengths.to(like.device)[:, None]).to(like.dtype)[:, None]


def _zero_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x - x.mean(dim=-1, keepdim=True)
    mean = (x * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True)
    return (x - mean) * mask


def pairwise_si_sdr(
    estimates: Tensor, references: Tensor, lengths: Tensor | None = None, eps: float = EPS
) -> tuple[Tensor, Tensor]:
    """SI-SDR of every estimate against every reference, and which references are silent.

    Args:
        estimates: ``(B, S, T)``.
        references: ``(B, S, T)``.
        lengths: Optional valid samples per utterance ``(B,)``; samples beyond are ignored.
        eps: The ``ε`` of the formula.

    Returns:
        ``scores (B, S_est, S_ref)`` in dB (float32 or wider) and ``silent (B, S_ref)`` (bool).
    """
    if estimates.ndim != 3 or estimates.shape != references.shape:
        raise InputError(
            f"SI-SDR needs estimates and references of one shape (B, S, T), got {tuple(estimates.shape)} "
            f"and {tuple(references.shape)}"
        )
    est, ref = estimates.float(), references.float()
    mask = valid_mask(lengths, est.shape[0], est.shape[-1], est)
    est, ref = _zero_mean(est, mask), _zero_mean(ref, mask)
    ref_energy = ref.pow(2).sum(dim=-1)  # (B, S_ref)
    dot = est @ ref.transpose(1, 2)  # (B, S_est, S_ref)
    alpha = dot / (ref_energy[:, None, :] + eps)
    target_energy = alpha.pow(2) * ref_energy[:, None, :]
    # ‖ŝ − α s‖² = ‖ŝ‖² − 2α⟨ŝ, s⟩ + α²‖s‖², clamped against rounding.
    noise_energy = (est.pow(2).sum(dim=-1)[:, :, None] - 2 * alpha * dot + target_energy).clamp_min(0)
    scores = 10 * torch.log10(target_energy / (noise_energy + eps) + eps)
    silent = ref_energy <= SILENCE_ENERGY
    return scores.masked_fill(silent[:, None, :], 0.0), silent


def si_sdr(estimates: Tensor, references: Tensor, lengths: Tensor | None = None, eps: float = EPS) -> Tensor:
    """SI-SDR of each estimate against the reference at the same index: ``(B, S, T) -> (B, S)`` dB.

    Silent references give 0 (see the module docstring); use :func:`pairwise_si_sdr` to know which.
    """
    return pairwise_si_sdr(estimates, references, lengths, eps)[0].diagonal(dim1=1, dim2=2)


def best_permutation(scores: Tensor) -> Tensor:
    """The assignment maximising the summed score per utterance: ``(B, S, S) -> perm (B, S)``.

    ``perm[b, j]`` is the estimate assigned to reference ``j``. Exhaustive up to :data:`BRUTE_FORCE_MAX`
    sources, the Hungarian algorithm beyond.
    """
    s = scores.shape[1]
    if s <= BRUTE_FORCE_MAX:
        perms = torch.tensor(list(itertools.permutations(range(s))), device=scores.device)  # (P, S)
        refs = torch.arange(s, device=scores.device)
        totals = scores[:, perms, refs].sum(dim=-1)  # (B, P)
        return perms[totals.argmax(dim=-1)]
    from scipy.optimize import linear_sum_assignment

    cost = scores.detach().double().cpu().numpy()
    rows = []
    for utterance in cost:
        est_idx, ref_idx = linear_sum_assignment(utterance, maximize=True)
        perm = [0] * s
        for e, r in zip(est_idx, ref_idx, strict=True):
            perm[r] = int(e)
        rows.append(perm)
    return torch.tensor(rows, device=scores.device)


@dataclass
class PITResult:
    """What :class:`PITSISDRLoss` returns.

    Attributes:
        loss: Mean negative SI-SDR over the non-silent references of the batch (scalar).
        si_sdr: SI-SDR of each reference with its assigned estimate ``(B, S)`` (0 where silent).
        permutation: ``(B, S)``, the estimate assigned to each reference.
        silent: ``(B, S)`` bool, the silent references (excluded).
    """

    loss: Tensor
    si_sdr: Tensor
    permutation: Tensor
    silent: Tensor

    def aligned(self, estimates: Tensor) -> Tensor:
        """``estimates (B, S, ...)`` reordered so that index ``j`` is the estimate of reference ``j``."""
        index = self.permutation.reshape(*self.permutation.shape, *([1] * (estimates.ndim - 2)))
        return estimates.gather(1, index.expand_as(estimates))


class PITSISDRLoss(nn.Module):
    """Negative SI-SDR with utterance-level PIT: ``(estimates, references[, lengths]) -> PITResult``.

    Args:
        eps: The ``ε`` of SI-SDR (1e-8, as SpeechBrain and ClearerVoice).
    """

    def __init__(self, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, estimates: Tensor, references: Tensor, lengths: Tensor | None = None) -> PITResult:
        """The loss and the assignment (see :class:`PITResult`)."""
        scores, silent = pairwise_si_sdr(estimates, references, lengths, self.eps)
        perm = best_permutation(scores)
        matched = scores.gather(1, perm[:, None, :]).squeeze(1)  # (B, S_ref)
        active = (~silent).to(matched.dtype)
        loss = -(matched * active).sum() / active.sum().clamp_min(1)
        return PITResult(loss=loss, si_sdr=matched, permutation=perm, silent=silent)

    def extra_repr(self) -> str:
        """Show ``eps``."""
        return f"eps={self.eps}"
