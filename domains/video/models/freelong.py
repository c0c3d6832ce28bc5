"""FreeLong++: training-free long-video generation by multi-band spectral fusion of attention branches.

Papers: Lu, Liang, Zhu & Yang, "FreeLong: Training-Free Long Video Generation with SpectralBlend Temporal
Attention", NeurIPS 2024 (arXiv 2407.19918); Lu & Yang, "FreeLong++: Training-Free Long Video Generation
via Multi-band SpectralFusion", arXiv 2507.00162 (2025). Official FreeLong code:
``aniki-ly/FreeLong@3c66750``, ``lvdm/modules/freelong_utils.py``.

A model trained on ``n`` frames, run on ``N > n`` frames, keeps the low-frequency (global) structure of
its attention output but distorts the high frequencies. FreeLong computes the attention output twice, once
over all frames (global) and once with each frame restricted to a local window of ``n`` frames, and keeps
the low frequencies of the global branch and the high frequencies of the local one, with a 3-D FFT over
``(t, h, w)``::

    z = IFFT3(FFT3(z_global) ⊙ P + FFT3(z_local) ⊙ (1 − P))

``P`` is the Gaussian low-pass filter of the official code, ``exp(−½ (f_t²/d_t² + f_h²/d_s² + f_w²/d_s²))``
on frequencies normalised to ``[−1, 1)`` (centred spectrum), ``d_s = d_t = 0.25``.

FreeLong++ generalises this to ``K`` branches with windows from global to local, ``w_0 = N > w_1 > … >
w_{K−1} = n`` (here halving from ``N`` down to ``n``), each contributing one frequency band, from low
(global) to high (local)::

    z = Σ_k IFFT3(FFT3(z_k) ⊙ (P_k − P_{k−1})),   P_{−1} = 0,  P_{K−1} = 1

with nested low-pass filters ``P_0 ⊂ P_1 ⊂ …``. The band edges are ours [O]: ``P_k`` is the Gaussian
low-pass with ``d = d_0 · 2^k``, ``d_0 = 0.25`` (FreeLong's value for the two-branch case). No official
FreeLong++ code was found to follow: the authors' repository (``aniki-ly/FreeLong``, newest commit
``98cf95e``, July 2025, whose README is retitled FreeLong++) holds only FreeLong's two-branch filter
(``gaussian_low_pass_filter``, ``freq_mix_3d``), which two bands here reproduce exactly (tested); the
paper's band edges were not retrieved. The filters sum to one, so identical branches give back the
branch exactly (up to FFT round-off): at the training length the sampler equals plain sampling (tested).
"""

import torch
from torch import Tensor

__all__ = ["band_filters", "freelong_windows", "gaussian_low_pass", "spectral_fusion"]


def gaussian_low_pass(
    shape: tuple[int, int, int], d_s: float, d_t: float, device: torch.device | None = None
) -> Tensor:
    """FreeLong's 3-D Gaussian low-pass filter on a centred spectrum of ``shape = (T, H, W)``.

    Args:
        shape: ``(T, H, W)``.
        d_s: Normalised spatial cut-off (``> 0``).
        d_t: Normalised temporal cut-off (``> 0``).
        device: Device of the filter.

    Returns:
        Float32 ``(T, H, W)`` in ``(0, 1]``, 1 at the zero frequency.
    """
    if d_s <= 0 or d_t <= 0:
        raise ValueError(f"gaussian_low_pass: cut-offs must be positive, got d_s={d_s}, d_t={d_t}")
    axes = [torch.arange(n, dtype=torch.float32, device=device) * 2 / n - 1 for n in shape]
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    return torch.exp(-0.5 * ((t / d_t) ** 2 + (h / d_s) ** 2 + (w / d_s) ** 2))


def band_filters(
    shape: tuple[int, int, int], num_bands: int, cutoff: float = 0.25, device: torch.device | None = None
) -> list[Tensor]:
    """``num_bands`` band filters (low to high frequency) on a centred spectrum that sum to one.

    Band ``k < num_bands − 1`` is ``P_k − P_{k−1}`` with ``P_k`` the Gaussian low-pass of cut-off
    ``cutoff · 2^k``; the last band is ``1 − P_{num_bands − 2}``. One band is the all-pass filter.
    """
    if num_bands < 1:
        raise ValueError(f"band_filters: num_bands must be >= 1, got {num_bands}")
    bands, previous = [], torch.zeros(shape, device=device)
    for k in range(num_bands - 1):
        low = gaussian_low_pass(shape, cutoff * 2**k, cutoff * 2**k, device=device)
        bands.append(low - previous)
        previous = low
    bands.append(1 - previous)
    return bands


def freelong_windows(frames: int, native: int) -> list[int]:
    """Temporal windows of the branches, global first: ``frames``, then halving, down to ``native``.

    Always at least two branches (global and native), so at the training length the fusion runs and
    returns the plain attention output (both branches see every frame).
    """
    if frames < 1 or native < 1:
        raise ValueError(f"freelong_windows: frames and native must be >= 1, got {frames}, {native}")
    native = min(native, frames)
    windows, w = [frames], frames // 2
    while w > native:
        windows.append(w)
        w //= 2
    windows.append(native)
    return windows


def spectral_fusion(branches: list[Tensor], cutoff: float = 0.25) -> Tensor:
    """Fuse branch outputs ``(B, T, H, W, C)`` (global first) band by band with a 3-D FFT over ``(T, H, W)``.

    Args:
        branches: Attention outputs of the branches, from the most global to the most local window.
        cutoff: Cut-off ``d_0`` of the lowest band.

    Returns:
        The fused ``(B, T, H, W, C)``, in the dtype of the branches.
    """
    if not branches:
        raise ValueError("spectral_fusion: needs at least one branch")
    shape = tuple(branches[0].shape[1:4])
    if any(tuple(b.shape) != tuple(branches[0].shape) for b in branches):
        raise ValueError(f"spectral_fusion: branches differ in shape: {[tuple(b.shape) for b in branches]}")
    filters = band_filters(shape, len(branches), cutoff, device=branches[0].device)  # type: ignore[arg-type]
    dims = (1, 2, 3)
    spectrum = None
    for branch, band in zip(branches, filters, strict=True):
        freq = torch.fft.fftshift(torch.fft.fftn(branch.float(), dim=dims), dim=dims) * band[None, ..., None]
        spectrum = freq if spectrum is None else spectrum + freq
    assert spectrum is not None
    fused = torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=dims), dim=dims).real
    return fused.to(branches[0].dtype)
