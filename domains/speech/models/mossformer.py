"""MossFormer: gated single-head transformer with convolution-augmented joint self-attention.

Paper: Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using Gated
Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023 (arXiv 2302.11824).
Official code: ModelScope ``modelscope/models/audio/separation/mossformer.py`` (``MossFormer``,
``MossFormer_MaskNet``, ``Computation_Block``, ``ScaledSinuEmbedding``); the blocks are
:class:`core.blocks.mossformer.MossFormerStack`. The network, as the official code::

    e      = ReLU(Conv1d(1 -> N, L=16, stride 8, no bias)(x))                  # (B, N, F)
    h      = Conv1d_1x1(N -> N, no bias)(GroupNorm(1, N)(e))
    h      = h + scale · [sin(p ω), cos(p ω)]                                   # scaled sinusoidal PE
    h      = h + GroupNorm(1, N)(MossFormerStack(h))                            # 24 blocks + LayerNorm
    m      = Conv1d_1x1(N -> S·N)(PReLU(h))  -> (B·S, N, F)
    m      = ReLU(Conv1d_1x1(N -> N, no bias)(tanh(Conv1d_1x1(m)) ⊙ σ(Conv1d_1x1(m))))
    ŝ_k    = ConvTranspose1d(N -> 1, 16, stride 8, no bias)(m_k ⊙ e), padded/trimmed to len(x)

:class:`MossFormer` has the paper's L configuration (N = 512, 24 blocks, group 256, query/key 128:
42.1 M parameters, tested); :class:`MossFormerSmall` and :class:`MossFormerTiny` are narrower, shallower
presets for CPU training (not configurations of the paper, whose S/M sizes are not published in the code).
"""

import torch
from torch import Tensor, nn

from core.blocks.mossformer import MossFormerStack
from domains.speech.models.base import GatedMaskHead, SeparationNetwork, WaveDecoder, WaveEncoder

__all__ = [
    "MossFormer",
    "MossFormerMaskNet",
    "MossFormerSmall",
    "MossFormerTiny",
    "ScaledSinusoidalEmbedding",
]


class ScaledSinusoidalEmbedding(nn.Module):
    """``scale · [sin(p ω_i), cos(p ω_i)]`` with ``ω_i = 10000^(−2i/C)`` and one learnable scale (init 1).

    The official ``ScaledSinuEmbedding``: sines in the first half of the channels, cosines in the second
    (not interleaved). Returns ``(N, C)`` for ``N`` positions.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, length: int) -> Tensor:
        """Embeddings of positions ``0 .. length-1``."""
        t = torch.arange(length, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        angles = t[:, None] * self.inv_freq
        return torch.cat((angles.sin(), angles.cos()), dim=-1) * self.scale


class MossFormerMaskNet(nn.Module):
    """The official ``MossFormer_MaskNet``: encoder frames ``(B, N, F)`` -> masks ``(B, S, N, F)``.

    Args:
        channels: ``N`` (encoder filters and block width, equal in the official model).
        num_sources: Sources ``S``.
        num_blocks: MossFormer blocks.
        **block_kwargs: Passed to every block (``group_size``, ``query_key_dim``, ``dropout``, ...).
    """

    def __init__(self, channels: int, num_sources: int, num_blocks: int, **block_kwargs: object) -> None:
        super().__init__()
        self.num_sources = num_sources
        self.norm = nn.GroupNorm(1, channels, eps=1e-8)
        self.conv_in = nn.Conv1d(channels, channels, 1, bias=False)
        self.pos_enc = ScaledSinusoidalEmbedding(channels)
        self.blocks = MossFormerStack(channels, num_blocks, **block_kwargs)
        self.blocks_norm = nn.GroupNorm(1, channels, eps=1e-8)
        self.head = GatedMaskHead(channels, channels, num_sources)

    def forward(self, frames: Tensor) -> Tensor:
        """Masks ``(B, S, N, F)`` (non-negative) for encoder frames ``(B, N, F)``."""
        h = self.conv_in(self.norm(frames))
        h = h + self.pos_enc(frames.shape[-1]).T
        h = h + self.blocks_norm(self.blocks(h.transpose(1, 2)).transpose(1, 2))
        return self.head(h)


class MossFormer(SeparationNetwork):
    """MossFormer separator; defaults are the paper's L configuration (42.1 M parameters).

    Args:
        num_sources: Sources to separate (linked from the data).
        channels: Encoder filters and block width ``N``.
        kernel_size: Encoder window ``L`` (stride ``L/2``); 16 at 8 kHz.
        num_blocks: MossFormer blocks (L: 24).
        group_size: Chunk size ``g`` of the local relu² attention, in frames.
        query_key_dim: Width of the shared query/key projection.
        expansion_factor: ``v`` and ``u`` together have ``expansion_factor · N`` channels.
        dropout: Dropout in the blocks (official 0.1).
        conv_kernel_size: Depthwise kernel of the blocks' convolution modules (official 17).
        causal: Causal blocks (the mask net's GroupNorms stay global, as officially).
    """

    def __init__(
        self,
        num_sources: int = 2,
        channels: int = 512,
        kernel_size: int = 16,
        num_blocks: int = 24,
        group_size: int = 256,
        query_key_dim: int = 128,
        expansion_factor: float = 4.0,
        dropout: float = 0.1,
        conv_kernel_size: int = 17,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"{type(self).__name__}: num_sources must be positive, got {num_sources}")
        self.num_sources = num_sources
        self.kernel_size = kernel_size
        self.stride = kernel_size // 2
        self.encoder = WaveEncoder(channels, kernel_size)
        self.mask_net = MossFormerMaskNet(
            channels,
            num_sources,
            num_blocks,
            group_size=group_size,
            query_key_dim=query_key_dim,
            expansion_factor=expansion_factor,
            dropout=dropout,
            kernel_size=conv_kernel_size,
            causal=causal,
        )
        self.decoder = WaveDecoder(channels, kernel_size)

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate ``(B, T)`` into ``(B, num_sources, T)``."""
        self.check_mixture(mixture, type(self).__name__, self.kernel_size)
        frames = self.encoder(mixture)
        return self.decoder(self.mask_net(frames) * frames[:, None], mixture.shape[-1])


class MossFormerSmall(MossFormer):
    """A CPU-sized MossFormer: N = 128, 4 blocks, query/key 64, groups of 128 frames (0.58 M parameters)."""

    def __init__(
        self,
        num_sources: int = 2,
        channels: int = 128,
        kernel_size: int = 16,
        num_blocks: int = 4,
        group_size: int = 128,
        query_key_dim: int = 64,
        expansion_factor: float = 4.0,
        dropout: float = 0.1,
        conv_kernel_size: int = 17,
        causal: bool = False,
    ) -> None:
        super().__init__(
            num_sources,
            channels,
            kernel_size,
            num_blocks,
            group_size,
            query_key_dim,
            expansion_factor,
            dropout,
            conv_kernel_size,
            causal,
        )


class MossFormerTiny(MossFormer):
    """The smallest MossFormer (tests, smoke runs): N = 32, 2 blocks, query/key 16, groups of 64 (27 k)."""

    def __init__(
        self,
        num_sources: int = 2,
        channels: int = 32,
        kernel_size: int = 16,
        num_blocks: int = 2,
        group_size: int = 64,
        query_key_dim: int = 16,
        expansion_factor: float = 4.0,
        dropout: float = 0.0,
        conv_kernel_size: int = 17,
        causal: bool = False,
    ) -> None:
        super().__init__(
            num_sources,
            channels,
            kernel_size,
            num_blocks,
            group_size,
            query_key_dim,
            expansion_factor,
            dropout,
            conv_kernel_size,
            causal,
        )
