"""What a speech separation network is: its base class, the factory type the task receives, shared pieces.

The task (:class:`~domains.speech.task.SeparationTask`) takes its network as a factory
(``--model.network=ConvTasNet --model.network.num_stacks=2``) and calls it by keyword with
``num_sources`` (linked from the datamodule) and, when ``--model.attention`` is set, ``attention``. A
network declares the ones it uses in its ``__init__``; the others are not passed.
"""

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.utils import InputError

__all__ = [
    "GatedMaskHead",
    "SeparationNetwork",
    "SeparationNetworkFactory",
    "WaveDecoder",
    "WaveEncoder",
    "fit_length",
]


class SeparationNetwork(nn.Module):
    """Base of the separation networks: mixture waveforms in, one waveform per source out.

    ``forward(mixture (B, T)) -> estimates (B, num_sources, T)``, same sample rate and length as the input
    (any ``T`` at least one encoder window long, odd lengths included). The order of the sources is
    arbitrary: the loss and metrics resolve it with permutation-invariant training.

    Subclassing it also gives configs short class names (``class_path: ConvTasNet`` is this domain's
    network, not torchaudio's).
    """

    def forward(self, mixture: Tensor) -> Tensor:
        """Estimates ``(B, num_sources, T)`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(mixture)")

    @staticmethod
    def check_mixture(mixture: Tensor, owner: str, min_length: int) -> None:
        """Refuse anything but a float ``(B, T)`` batch with ``T >= min_length``, naming the shape."""
        if mixture.ndim != 2 or not mixture.is_floating_point():
            raise InputError(
                f"{owner}: expected a float mixture of shape (B, T), "
                f"got {mixture.dtype} {tuple(mixture.shape)}"
            )
        if mixture.shape[-1] < min_length:
            raise InputError(
                f"{owner}: the mixture has {mixture.shape[-1]} samples, fewer than one encoder window "
                f"({min_length})"
            )


class SeparationNetworkFactory(Protocol):
    """A :class:`SeparationNetwork` class, or a factory of one, as the task calls it."""

    def __call__(self, *, num_sources: int, attention: AttentionFactory | None = None) -> SeparationNetwork:
        """Build the network for ``num_sources`` sources."""
        ...


def fit_length(x: Tensor, length: int) -> Tensor:
    """Zero-pad or trim the last axis of ``x`` to ``length`` samples."""
    excess = x.shape[-1] - length
    return x[..., :length] if excess >= 0 else F.pad(x, (0, -excess))


class WaveEncoder(nn.Module):
    """Learned filterbank ``Conv1d(1 -> N, kernel L, stride L/2, no bias)`` + ReLU: ``(B, T) -> (B, N, F)``.

    The encoder of MossFormer (official ``Encoder``) and of SepFormer/DPRNN; ``F = (T - L) // (L/2) + 1``.

    Args:
        channels: Filters ``N``.
        kernel_size: Window ``L`` (even; stride ``L/2``).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 2 or kernel_size % 2:
            raise ValueError(f"WaveEncoder: kernel_size must be even and >= 2, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, channels, kernel_size, stride=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``(B, T)`` into non-negative frames ``(B, N, F)``."""
        return F.relu(self.conv(x[:, None]))


class WaveDecoder(nn.Module):
    """Learned synthesis filterbank ``ConvTranspose1d(N -> 1, kernel L, stride L/2, no bias)``.

    ``(B, S, N, F) -> (B, S, T)``: each source's masked frames are decoded with the same filters, then
    zero-padded or trimmed to the mixture's ``T`` samples (official MossFormer).

    Args:
        channels: Filters ``N``.
        kernel_size: Window ``L`` (stride ``L/2``).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, 1, kernel_size, stride=kernel_size // 2, bias=False)

    def forward(self, frames: Tensor, length: int) -> Tensor:
        """Decode ``(B, S, N, F)`` into waveforms ``(B, S, length)``."""
        b, s, n, f = frames.shape
        return fit_length(self.conv(frames.reshape(b * s, n, f)).reshape(b, s, -1), length)


class GatedMaskHead(nn.Module):
    """Features ``(B, D, F)`` -> masks ``(B, S, N, F)`` >= 0: the mask head of MossFormer and SepFormer.

    ``m = Conv1d_1x1(D -> S·N)(PReLU(h))`` per source, then
    ``ReLU(Conv1d_1x1(N -> N, no bias)(tanh(Conv1d_1x1(m)) ⊙ σ(Conv1d_1x1(m))))``.

    Args:
        dim: Input channels ``D``.
        channels: Encoder filters ``N``.
        num_sources: Sources ``S``.
    """

    def __init__(self, dim: int, channels: int, num_sources: int) -> None:
        super().__init__()
        self.num_sources = num_sources
        self.prelu = nn.PReLU()
        self.conv_out = nn.Conv1d(dim, channels * num_sources, 1)
        self.output = nn.Conv1d(channels, channels, 1)
        self.output_gate = nn.Conv1d(channels, channels, 1)
        self.conv_mask = nn.Conv1d(channels, channels, 1, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        """Masks ``(B, S, N, F)``."""
        b, _, f = h.shape
        m = self.conv_out(self.prelu(h)).reshape(b * self.num_sources, -1, f)
        m = torch.tanh(self.output(m)) * torch.sigmoid(self.output_gate(m))
        return torch.relu(self.conv_mask(m)).reshape(b, self.num_sources, -1, f)
