"""Conv-TasNet: learned filterbank + temporal convolutional network (TCN) masks.

Paper: Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for Speech
Separation", IEEE/ACM TASLP 2019 (arXiv 1809.07454); non-causal configuration. Layer for layer the same
network as ``torchaudio.models.ConvTasNet`` (itself a port of the authors' ``naplab/Conv-TasNet``), so the
parameter counts match at equal sizes (tested)::

    frames = Conv1d(1 -> N, L, stride L/2, padding L/2, no bias)(pad_to_stride(x))   # no nonlinearity
    h      = Conv1d_1x1(N -> B)(gLN(frames))
    for r < R, x < X:                                # dilation 2^x
        y       = gLN(PReLU(DWConv_P,2^x(gLN(PReLU(Conv1d_1x1(B -> H)(h))))))
        h      += Conv1d_1x1(H -> B)(y)              # residual (none after the very last block)
        skip   += Conv1d_1x1(H -> B)(y)
    masks  = sigmoid(Conv1d_1x1(B -> S·N)(PReLU(skip)))
    ŝ_k    = ConvTranspose1d(N -> 1, L, stride L/2, padding L/2, no bias)(masks_k ⊙ frames)

gLN is ``GroupNorm(1, C, eps=1e-8)`` (global layer norm over channels and time). Implementation
difference: the residual and skip 1×1 convolutions of a block read the same input, so they are one
``Conv1d(H -> 2B)`` (same parameters, one matrix product instead of two).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domains.speech.models.base import SeparationNetwork

__all__ = ["ConvTasNet", "TemporalBlock"]

Norm = Literal["gLN", "cLN"]


class ChannelNorm(nn.Module):
    """cLN: layer norm over the channels of each frame of ``(B, C, T)`` (per-frame, so usable causally)."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each frame's channels."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "gLN":
        return nn.GroupNorm(1, channels, eps=1e-8)
    if kind == "cLN":
        return ChannelNorm(channels)
    raise ValueError(f"ConvTasNet: norm must be 'gLN' or 'cLN', got {kind!r}")


class TemporalBlock(nn.Module):
    """One 1-D convolutional block of the TCN: ``(B, B_c, T) -> (residual (B, B_c, T) | None, skip)``.

    Args:
        io_channels: Bottleneck channels ``B``.
        hidden_channels: Hidden channels ``H``.
        kernel_size: Depthwise kernel ``P``.
        dilation: Dilation of the depthwise convolution.
        residual: Whether the block has a residual output (all but the last block of the TCN).
        norm: ``gLN`` (paper's non-causal) or ``cLN``.
    """

    def __init__(
        self,
        io_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation: int,
        residual: bool = True,
        norm: Norm = "gLN",
    ) -> None:
        super().__init__()
        self.io_channels = io_channels
        self.residual = residual
        self.layers = nn.Sequential(
            nn.Conv1d(io_channels, hidden_channels, 1),
            nn.PReLU(),
            _norm(norm, hidden_channels),
            nn.Conv1d(
                hidden_channels,
                hidden_channels,
                kernel_size,
                padding=dilation * (kernel_size - 1) // 2,
                dilation=dilation,
                groups=hidden_channels,
            ),
            nn.PReLU(),
            _norm(norm, hidden_channels),
        )
        self.out = nn.Conv1d(hidden_channels, io_channels * (2 if residual else 1), 1)

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """The residual (None for the last block) and the skip output."""
        out = self.out(self.layers(x))
        if not self.residual:
            return None, out
        residual, skip = out.split(self.io_channels, dim=1)
        return residual, skip


class ConvTasNet(SeparationNetwork):
    """Conv-TasNet (non-causal), the separation baseline; defaults are the paper's best configuration.

    Args:
        num_sources: Sources to separate (linked from the data).
        enc_channels: Encoder filters ``N``.
        enc_kernel_size: Encoder window ``L`` in samples (stride ``L/2``); even.
        bottleneck_channels: ``B`` (and skip channels ``Sc``).
        hidden_channels: ``H``.
        kernel_size: Depthwise kernel ``P`` (odd).
        num_layers: Blocks per stack ``X`` (dilations ``1 .. 2^(X-1)``).
        num_stacks: Repeats ``R``.
        norm: ``gLN`` (paper) or ``cLN``.
        mask_activation: ``sigmoid`` (paper) or ``relu`` (torchaudio's pretrained bundle).
    """

    def __init__(
        self,
        num_sources: int = 2,
        enc_channels: int = 512,
        enc_kernel_size: int = 16,
        bottleneck_channels: int = 128,
        hidden_channels: int = 512,
        kernel_size: int = 3,
        num_layers: int = 8,
        num_stacks: int = 3,
        norm: Norm = "gLN",
        mask_activation: Literal["sigmoid", "relu"] = "sigmoid",
    ) -> None:
        super().__init__()
        if enc_kernel_size < 2 or enc_kernel_size % 2:
            raise ValueError(f"ConvTasNet: enc_kernel_size must be even and >= 2, got {enc_kernel_size}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvTasNet: kernel_size must be odd, got {kernel_size}")
        if mask_activation not in ("sigmoid", "relu"):
            raise ValueError(
                f"ConvTasNet: mask_activation must be 'sigmoid' or 'relu', got {mask_activation!r}"
            )
        if num_sources < 1:
            raise ValueError(f"ConvTasNet: num_sources must be positive, got {num_sources}")
        self.num_sources = num_sources
        self.enc_channels = enc_channels
        self.enc_kernel_size = enc_kernel_size
        self.stride = enc_kernel_size // 2
        self.mask_activation = mask_activation
        self.encoder = nn.Conv1d(
            1, enc_channels, enc_kernel_size, stride=self.stride, padding=self.stride, bias=False
        )
        self.input_norm = _norm(norm, enc_channels)
        self.input_conv = nn.Conv1d(enc_channels, bottleneck_channels, 1)
        depth = num_layers * num_stacks
        self.blocks = nn.ModuleList(
            TemporalBlock(
                bottleneck_channels,
                hidden_channels,
                kernel_size,
                dilation=2 ** (i % num_layers),
                residual=i < depth - 1,
                norm=norm,
            )
            for i in range(depth)
        )
        self.output_prelu = nn.PReLU()
        self.output_conv = nn.Conv1d(bottleneck_channels, enc_channels * num_sources, 1)
        self.decoder = nn.ConvTranspose1d(
            enc_channels, 1, enc_kernel_size, stride=self.stride, padding=self.stride, bias=False
        )

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate ``(B, T)`` into ``(B, num_sources, T)``."""
        self.check_mixture(mixture, type(self).__name__, 1)
        b, length = mixture.shape
        # Pad so that the last window ends on the signal's end (torchaudio's _align_num_frames_with_strides).
        pad = (-length) % self.stride
        frames = self.encoder(F.pad(mixture, (0, pad))[:, None])  # (B, N, F)
        h = self.input_conv(self.input_norm(frames))
        skip: Tensor | float = 0.0
        for block in self.blocks:
            residual, s = block(h)
            if residual is not None:
                h = h + residual
            skip = skip + s
        logits = self.output_conv(self.output_prelu(skip))
        masks = torch.sigmoid(logits) if self.mask_activation == "sigmoid" else F.relu(logits)
        masked = masks.view(b, self.num_sources, self.enc_channels, -1) * frames[:, None]
        decoded = self.decoder(masked.view(b * self.num_sources, self.enc_channels, -1))
        return decoded.view(b, self.num_sources, -1)[..., :length]
