"""Dual-path separator: intra-chunk and inter-chunk token mixing with injected attention.

Papers: Luo, Chen, Yoshioka, "Dual-path RNN: efficient long sequence modeling for time-domain single-channel
speech separation", ICASSP 2020 (arXiv 1910.06379): chunking, alternating intra/inter paths, overlap-add;
Subakan et al., "Attention is All You Need in Speech Separation" (SepFormer), ICASSP 2021
(arXiv 2010.13154): the paths are transformer layers, with the SepFormer defaults below (N = 256, L = 16,
chunks of 250 frames, 2 repeats of 8 + 8 layers, 8 heads, feed-forward 1024). The mixers are injected, so
``--model.attention=<any registered token mixer>`` runs in both paths (``inter_attention`` sets the
inter-chunk one separately)::

    e      = ReLU(Conv1d(1 -> N, L, stride L/2)(x))                                # (B, N, F)
    h      = Conv1d_1x1(N -> D)(LN(e))
    c      = chunks of K frames, hop K/2 (zero-padded ends)                       # (B, D, S, K)
    repeat R times:
        c  = c + LN(Intra(c + PE))       over the K frames of each chunk          # (B·S, K, D)
        c  = c + LN(Inter(c + PE))       over the S chunks at each position       # (B·K, S, D)
        Intra/Inter = layers × [x + Mixer(LN(x)); x + MLP(LN(x))]                 # pre-norm transformer
    h      = overlap-add(c)                                                        # (B, D, F)
    masks  = GatedMaskHead(h); ŝ_k = ConvTranspose1d(masks_k ⊙ e)

Differences from SepFormer: the norms are per-frame LayerNorms (SepFormer's are global over the chunk
tensor, which cannot be causal) and the mask head runs after the overlap-add (one 1×1 convolution per
frame instead of per chunk frame). ``causal=True`` runs both paths causally: each frame then depends only
on past and present samples (within one encoder window), so causal mixers (``GatedDeltaNet``, causal
``LinearAttention`` or ``MossFormerAttention``) give a streaming-capable separator.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer
from core.attention.mha import default_heads_factory
from core.layers import Mlp, sinusoidal_positions
from domains.speech.models.base import GatedMaskHead, SeparationNetwork, WaveDecoder, WaveEncoder

__all__ = ["DualPathSeparator", "DualPathTiny", "TransformerPath"]


class TransformerPath(nn.Module):
    """A stack of pre-norm transformer layers on ``(B, N, D)`` with an injected mixer; one path.

    Args:
        dim: Width ``D``.
        num_layers: Layers.
        attention: Mixer factory, called as ``attention(dim, layer_idx=i, num_layers=num_layers)``.
        mlp_ratio: Feed-forward width as a multiple of ``D``.
        dropout: Dropout after the mixer and in the feed-forward block.
        causal: Call the mixers with ``is_causal=True``.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        attention: AttentionFactory,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.norms1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.mixers = nn.ModuleList(
            attention(dim, layer_idx=i, num_layers=num_layers) for i in range(num_layers)
        )
        self.norms2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.mlps = nn.ModuleList(Mlp(dim, int(dim * mlp_ratio), drop=dropout) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        for mixer in self.mixers:
            _check_causality(mixer, causal)

    def forward(self, x: Tensor) -> Tensor:
        """Mix ``(B, N, D)`` along ``N``."""
        x = x + sinusoidal_positions(x.shape[1], x.shape[2]).to(x)
        for norm1, mixer, norm2, mlp in zip(self.norms1, self.mixers, self.norms2, self.mlps, strict=True):
            x = x + self.drop(mixer(norm1(x), is_causal=self.causal))
            x = x + mlp(norm2(x))
        return x


def _check_causality(mixer: nn.Module, causal: bool) -> None:
    name = type(mixer).__name__
    if not isinstance(mixer, TokenMixer):
        raise TypeError(f"DualPathSeparator: the attention factory built {name}, which is not a TokenMixer")
    if causal and not mixer.supports_causal:
        raise ValueError(f"DualPathSeparator: causal=True needs a causal mixer, and {name} is non-causal")
    if not causal and mixer.causal_only:
        raise ValueError(
            f"DualPathSeparator: {name} is causal-only; set --model.network.causal=true to use it"
        )


class DualPathSeparator(SeparationNetwork):
    """DPRNN/SepFormer-style separator with injected intra- and inter-chunk mixers; SepFormer defaults.

    Args:
        num_sources: Sources to separate (linked from the data).
        channels: Encoder filters ``N``.
        kernel_size: Encoder window ``L`` (stride ``L/2``).
        dim: Width ``D`` of the dual-path blocks.
        chunk_size: Frames per chunk ``K`` (hop ``K/2``).
        num_blocks: Dual-path repeats ``R``.
        layers_per_path: Transformer layers in each intra and inter path.
        mlp_ratio: Feed-forward width over ``D``.
        dropout: Dropout in the paths.
        num_heads: Heads of the default mixer (multi-head softmax attention, as SepFormer).
        causal: Causal mixers in both paths (streaming; see the module docstring).
        attention: Intra-chunk mixer factory (and inter-chunk, unless ``inter_attention`` is set).
        inter_attention: Inter-chunk mixer factory.
    """

    def __init__(
        self,
        num_sources: int = 2,
        channels: int = 256,
        kernel_size: int = 16,
        dim: int = 256,
        chunk_size: int = 250,
        num_blocks: int = 2,
        layers_per_path: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        num_heads: int = 8,
        causal: bool = False,
        attention: AttentionFactory | None = None,
        inter_attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if chunk_size < 2 or chunk_size % 2:
            raise ValueError(f"{name}: chunk_size must be even and >= 2, got {chunk_size}")
        if num_sources < 1 or num_blocks < 1 or layers_per_path < 1:
            raise ValueError(
                f"{name}: num_sources, num_blocks and layers_per_path must be positive, got "
                f"{num_sources}, {num_blocks}, {layers_per_path}"
            )
        intra = attention or default_heads_factory(name, num_heads, {"dim": dim})
        inter = inter_attention or intra
        self.num_sources = num_sources
        self.kernel_size = kernel_size
        self.stride = kernel_size // 2
        self.chunk_size = chunk_size
        self.encoder = WaveEncoder(channels, kernel_size)
        self.norm = nn.LayerNorm(channels)
        self.conv_in = nn.Conv1d(channels, dim, 1)
        path = {"mlp_ratio": mlp_ratio, "dropout": dropout, "causal": causal}
        self.intra = nn.ModuleList(
            TransformerPath(dim, layers_per_path, intra, **path) for _ in range(num_blocks)
        )
        self.inter = nn.ModuleList(
            TransformerPath(dim, layers_per_path, inter, **path) for _ in range(num_blocks)
        )
        self.intra_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_blocks))
        self.inter_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_blocks))
        self.head = GatedMaskHead(dim, channels, num_sources)
        self.decoder = WaveDecoder(channels, kernel_size)

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate ``(B, T)`` into ``(B, num_sources, T)``."""
        self.check_mixture(mixture, type(self).__name__, self.kernel_size)
        frames = self.encoder(mixture)  # (B, N, F)
        h = self.conv_in(self.norm(frames.transpose(1, 2)).transpose(1, 2))
        b, d, f = h.shape
        chunks, padded = self.chunk(h)  # (B, S, K, D)
        s, k = chunks.shape[1:3]
        for intra, inter, intra_norm, inter_norm in zip(
            self.intra, self.inter, self.intra_norms, self.inter_norms, strict=True
        ):
            x = chunks.reshape(b * s, k, d)
            chunks = chunks + intra_norm(intra(x)).reshape(b, s, k, d)
            x = chunks.transpose(1, 2).reshape(b * k, s, d)
            chunks = chunks + inter_norm(inter(x)).reshape(b, k, s, d).transpose(1, 2)
        h = self.overlap_add(chunks, padded)[..., :f]
        return self.decoder(self.head(h) * frames[:, None], mixture.shape[-1])

    def chunk(self, h: Tensor) -> tuple[Tensor, int]:
        """``(B, D, F)`` -> chunks ``(B, S, K, D)`` with hop ``K/2`` and the padded length.

        ``K/2`` zeros precede the first frame (so every frame lies in two chunks) and zeros follow the last
        up to a whole number of hops.
        """
        k, hop = self.chunk_size, self.chunk_size // 2
        f = h.shape[-1]
        tail = hop + (-(f + hop)) % hop
        padded = F.pad(h, (hop, tail))
        return padded.unfold(-1, k, hop).permute(0, 2, 3, 1), padded.shape[-1]

    def overlap_add(self, chunks: Tensor, padded: int) -> Tensor:
        """Inverse of :meth:`chunk`, summing overlapping chunks: ``(B, S, K, D)`` -> ``(B, D, F + tail)``."""
        b, s, k, d = chunks.shape
        hop = k // 2
        cols = chunks.permute(0, 3, 2, 1).reshape(b, d * k, s)
        out = F.fold(cols, (1, padded), (1, k), stride=(1, hop)).reshape(b, d, padded)
        return out[..., hop:]


class DualPathTiny(DualPathSeparator):
    """The smallest dual-path separator (tests, smoke runs): N = 32, D = 32, 1 repeat of 1 + 1 layers."""

    def __init__(
        self,
        num_sources: int = 2,
        channels: int = 32,
        kernel_size: int = 16,
        dim: int = 32,
        chunk_size: int = 32,
        num_blocks: int = 1,
        layers_per_path: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        num_heads: int = 4,
        causal: bool = False,
        attention: AttentionFactory | None = None,
        inter_attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__(
            num_sources,
            channels,
            kernel_size,
            dim,
            chunk_size,
            num_blocks,
            layers_per_path,
            mlp_ratio,
            dropout,
            num_heads,
            causal,
            attention,
            inter_attention,
        )
