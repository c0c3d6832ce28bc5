"""UltraGen's timestep-gated hierarchical attention block.

Paper: Hu, Zhang, Su & Yi, "UltraGen: High-Resolution Video Generation with Hierarchical Attention",
arXiv 2510.18775 (2025), §3; official code ``sjtuplayer/UltraGen@4f9ec33``,
``diffsynth/models/wan_video_dit.py: SelfAttention.forward``.

The branch outputs of :class:`~core.attention.ultragen.UltraGenAttention` (local ``z_l``, hierarchical
``z_h``, global ``z_g``) are fused with two channel-wise gates computed from the diffusion timestep ``t``::

    e(t)     = [cos(t ω_i), sin(t ω_i)],  ω_i = 10000^(−i / (F/2)),  i < F/2     (F = 256)
    g(t)     = σ(W_3 SiLU(W_2 SiLU(W_1 e(t))))                      one MLP per gate, output width C
    a        = g_local(t) ⊙ z_l + (1 − g_local(t)) ⊙ z_h
    a        = g_global(t) ⊙ a + (1 − g_global(t)) ⊙ z_g
    attn(x)  = W_o a

so early (noisy) steps can lean on the global branch and late steps on the local one. The block wraps this
pre-norm with an MLP::

    x = x + attn(LN(x), t)
    x = x + MLP(LN(x))

Differences from the official code: the official gate MLPs project to a hard-coded width 1536 (Wan-1.3B);
here to ``dim``. Wan's AdaLN-style modulation (shift/scale/gate from ``t``) and the text cross-attention
belong to the host DiT and are not part of this block; add them around it if needed.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.ultragen import UltraGenAttention
from core.layers.mlp import Mlp

__all__ = ["TimestepGate", "UltraGenBlock", "timestep_embedding"]


def timestep_embedding(timestep: Tensor, dim: int = 256, base: float = 10000.0) -> Tensor:
    """Wan's sinusoidal timestep embedding ``[cos(t ω_i), sin(t ω_i)]``, ``ω_i = base^(−i / (dim/2))``.

    Args:
        timestep: Timesteps ``(B,)`` (any real values, e.g. 0…1000).
        dim: Even embedding width ``F``.
        base: Wavelength base.

    Returns:
        ``(B, dim)`` in float64 (cast by the caller).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"timestep_embedding: dim must be a positive even number, got {dim}")
    half = dim // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64, device=timestep.device) / half)
    angles = timestep.to(torch.float64)[:, None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepGate(nn.Module):
    """A channel-wise gate in ``(0, 1)^C`` from the diffusion timestep: ``σ(W_3 SiLU(W_2 SiLU(W_1 e(t))))``.

    Args:
        dim: Gate width ``C``.
        freq_dim: Width ``F`` of the sinusoidal timestep embedding (official: 256).
    """

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        if freq_dim < 2 or freq_dim % 2:
            raise ValueError(f"TimestepGate: freq_dim must be a positive even number, got {freq_dim}")
        self.freq_dim = freq_dim
        self.embed = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.project = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim), nn.Sigmoid())

    def forward(self, timestep: Tensor) -> Tensor:
        """Gates ``(B, C)`` for timesteps ``(B,)``."""
        emb = timestep_embedding(timestep, self.freq_dim).to(self.embed[0].weight.dtype)
        return self.project(self.embed(emb))


class UltraGenBlock(nn.Module):
    """Pre-norm transformer block with UltraGen's timestep-gated hierarchical global–local attention.

    ``forward(x, grid, timestep)``: tokens ``(B, N, C)`` on ``grid`` ``(H, W)`` or ``(T, H, W)``, and the
    diffusion timestep ``(B,)`` or a scalar.

    Args:
        dim: Channels ``C``.
        num_heads: Heads of the default branches.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLP and after the attention projection.
        freq_dim: Width of the sinusoidal timestep embedding.
        local_attention: Factory of the local branch (default ``UltraGenLocalAttention``, ``K = 4 + l % 2``).
        global_attention: Factory of the global branch (default ``UltraGenGlobalAttention``, ``r = 4``).
        hierarchical_attention: Factory of the hierarchical branch (default
            ``UltraGenHierarchicalAttention``, ``r = 2``, ``K' = 2 + l mod 2``).
        use_hierarchical: Whether to use the hierarchical branch (and its gate).
        layer_idx: Index of this block in its stack (passed to the branch factories).
        num_layers: Number of blocks in the stack.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        freq_dim: int = 256,
        local_attention: AttentionFactory | None = None,
        global_attention: AttentionFactory | None = None,
        hierarchical_attention: AttentionFactory | None = None,
        use_hierarchical: bool = True,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = UltraGenAttention(
            dim,
            num_heads=num_heads,
            proj_drop=drop,
            local_attention=local_attention,
            global_attention=global_attention,
            hierarchical_attention=hierarchical_attention,
            use_hierarchical=use_hierarchical,
            static_gates=False,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
        self.gate_global = TimestepGate(dim, freq_dim)
        self.gate_local = TimestepGate(dim, freq_dim) if use_hierarchical else None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: Tensor, grid: Sequence[int], timestep: Tensor | float) -> Tensor:
        """Apply the block to tokens ``(B, N, C)`` (row-major on ``grid``) at diffusion ``timestep``."""
        t = self._timesteps(timestep, x)
        gate_local = None if self.gate_local is None else self.gate_local(t)[:, None]
        x = x + self.attn.gated(
            self.norm1(x), grid=grid, gate_global=self.gate_global(t)[:, None], gate_local=gate_local
        )
        return x + self.mlp(self.norm2(x))

    def _timesteps(self, timestep: Tensor | float, x: Tensor) -> Tensor:
        t = torch.as_tensor(timestep, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"UltraGenBlock: expected timestep of shape ({x.shape[0]},) or a scalar, got {tuple(t.shape)}"
            )
        return t
