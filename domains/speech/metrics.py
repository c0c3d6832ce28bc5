"""Separation metrics on full-length utterances, DDP-correct: SI-SDR(i), SDR(i), optional PESQ/STOI.

:class:`SeparationMetrics` keeps only sums and counts (``dist_reduce_fx="sum"``), so under DDP
``compute()`` gives the exact mean over every source of every utterance of every process, and merging two
metric objects equals one object fed all the utterances. Per utterance it crops the padding (``lengths``),
aligns the estimates with the references by PIT on SI-SDR (:mod:`domains.speech.losses`), then scores each
non-silent reference ``s_k``:

* ``si_sdr``: SI-SDR(ŝ_k, s_k); ``mixture_si_sdr``: SI-SDR(x, s_k) (the mixture as the estimate);
  ``si_sdri`` = ``si_sdr − mixture_si_sdr``, the headline metric of the separation papers;
* ``sdr``, ``mixture_sdr``, ``sdri``: the same with BSS-eval SDR (the estimate may be distorted by a
  512-tap filter; ``torchmetrics.functional.signal_distortion_ratio``), computed when ``sdr=True``; a
  perfect estimate, where it is infinite, counts as :data:`SDR_CEILING`;
* ``pesq``, ``stoi`` (and their mixture values and improvements): when the ``pesq`` / ``pystoi`` packages
  are importable and ``perceptual=True`` (narrow-band PESQ at 8 kHz, wide-band at 16 kHz);
* ``silent_sources``: references with no energy, for which none of these is defined; they are left out of
  every mean and counted here; ``sources`` and ``utterances``: what the means are over.

A mean over no source is NaN (the base task then leaves it out of the logs).
"""

import importlib.util
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.audio import signal_distortion_ratio

from domains.speech.losses import PITResult, PITSISDRLoss, si_sdr

__all__ = ["SDR_CEILING", "SeparationMetrics", "perceptual_available"]

#: SDR of a perfect estimate (dB); BSS-eval SDR is unbounded there.
SDR_CEILING = 100.0


def perceptual_available() -> dict[str, bool]:
    """Which optional perceptual metrics can run: ``{"pesq": ..., "stoi": ...}``."""
    return {
        "pesq": importlib.util.find_spec("pesq") is not None,
        "stoi": importlib.util.find_spec("pystoi") is not None,
    }


class SeparationMetrics(Metric):
    """SI-SDR, SDR and their improvements over the mixture (see the module docstring).

    ``update(estimates (B, S, T), sources (B, S, T), mixture (B, T), lengths (B,) | None)``.

    Args:
        sample_rate: Sample rate of the signals (PESQ and STOI need it).
        sdr: Also compute BSS-eval SDR and SDRi (slower; off for the training stage).
        perceptual: Also compute PESQ and STOI when their packages are importable.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, sample_rate: int = 8000, sdr: bool = True, perceptual: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.pit = PITSISDRLoss()
        available = perceptual_available() if perceptual else {"pesq": False, "stoi": False}
        if available["pesq"] and sample_rate not in (8000, 16000):
            available["pesq"] = False
        self.measures = ["si_sdr", *(["sdr"] if sdr else []), *(k for k, ok in available.items() if ok)]
        for name in self.measures:
            self.add_state(f"{name}_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"mixture_{name}_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("sources", "silent", "utterances"):
            self.add_state(name, torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, estimates: Tensor, sources: Tensor, mixture: Tensor, lengths: Tensor | None = None
    ) -> None:
        """Score a batch of utterances (each cropped to its length)."""
        estimates, sources, mixture = estimates.detach().float(), sources.float(), mixture.float()
        b, _, t = sources.shape
        lengths = lengths if lengths is not None else torch.full((b,), t, device=sources.device)
        for i in range(b):
            n = int(lengths[i])
            self._update_one(estimates[i : i + 1, :, :n], sources[i : i + 1, :, :n], mixture[i : i + 1, :n])

    def _update_one(self, est: Tensor, ref: Tensor, mix: Tensor) -> None:
        result: PITResult = self.pit(est, ref)
        keep = ~result.silent[0]
        est = result.aligned(est)[0, keep]
        ref = ref[0, keep]
        mix = mix.expand_as(ref)
        self.utterances += 1
        self.silent += int((~keep).sum())
        self.sources += int(keep.sum())
        if not bool(keep.any()):
            return
        for name in self.measures:
            value, mixture_value = self._measure(name, est, ref, mix)
            setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + value.double().sum())
            setattr(
                self,
                f"mixture_{name}_sum",
                getattr(self, f"mixture_{name}_sum") + mixture_value.double().sum(),
            )

    def _measure(self, name: str, est: Tensor, ref: Tensor, mix: Tensor) -> tuple[Tensor, Tensor]:
        """``(value per source, mixture's value per source)`` of one measure on ``(K, T)`` signals."""
        if name == "si_sdr":
            return si_sdr(est[None], ref[None])[0], si_sdr(mix[None], ref[None])[0]
        if name == "sdr":
            # One signal at a time: torch's batched LU solve (MKL, more than one thread) fails at random on
            # some CPUs ("Pivots given to lu_solve must all be greater or equal to 1"); one-by-one is exact.
            pairs = zip(torch.cat((est, mix)).double(), torch.cat((ref, ref)).double(), strict=True)
            both = torch.stack([signal_distortion_ratio(e, r) for e, r in pairs])
            # A perfect match (a mixture with one active source *is* that source) makes the distortion
            # filter's residual 0: torchmetrics then returns inf, or NaN by rounding.
            return both.nan_to_num(nan=SDR_CEILING, posinf=SDR_CEILING).clamp_max(SDR_CEILING).chunk(2)
        if name == "pesq":
            from torchmetrics.functional.audio.pesq import perceptual_evaluation_speech_quality as pesq

            mode = "nb" if self.sample_rate == 8000 else "wb"
            both = pesq(torch.cat((est, mix)).cpu(), torch.cat((ref, ref)).cpu(), self.sample_rate, mode)
            return both.chunk(2)
        from torchmetrics.functional.audio.stoi import short_time_objective_intelligibility as stoi

        both = stoi(torch.cat((est, mix)).cpu(), torch.cat((ref, ref)).cpu(), self.sample_rate)
        return both.chunk(2)

    def compute(self) -> dict[str, Tensor]:
        """Means over the non-silent sources, improvements, and the counts."""
        n = self.sources.double()
        out: dict[str, Tensor] = {}
        for name in self.measures:
            value = getattr(self, f"{name}_sum") / n
            mixture_value = getattr(self, f"mixture_{name}_sum") / n
            out[name] = value.float()
            out[f"mixture_{name}"] = mixture_value.float()
            out[f"{name}i"] = (value - mixture_value).float()
        out["sources"] = self.sources
        out["silent_sources"] = self.silent
        out["utterances"] = self.utterances
        return out
