"""VideoDiT: a small pixel-space video diffusion transformer with UltraGen attention and Mask²DiT scenes.

Papers: Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT, AdaLN-Zero), ICCV 2023;
Wan2.1 (the DiT UltraGen fine-tunes: 3-D RoPE, RMSNorm on q/k, flow matching); Hu et al., "UltraGen"
(arXiv 2510.18775, hierarchical global–local attention in all but the first and last blocks); Qi et al.,
"Mask²DiT" (CVPR 2025, arXiv 2503.19881, multi-scene masks); Lu & Yang, "FreeLong++" (arXiv 2507.00162,
long-video sampling).

**Tokens.** A clip ``(B, C, T, H, W)`` in ``[−1, 1]`` is cut into ``pt × ph × pw`` patches (a strided 3-D
convolution) giving ``N = T'·H'·W'`` video tokens, row-major ``(t, h, w)``. Each of the ``S`` scene slots
has ``L`` learned conditioning tokens (``scene_tokens``), standing in for Mask²DiT's per-scene prompts: no
text encoder is available offline, so a scene is conditioned on its slot, not on words. The sequence is
``[c_1 … c_S | video]`` (Mask²DiT's grouped layout).

**Blocks.** Pre-norm transformer blocks with AdaLN-Zero: from the timestep embedding each block regresses
shift, scale and gate of its attention and MLP branches, the gates initialised to zero so every block
starts as the identity. Timesteps may differ per frame (segment-conditional training), so modulation is
per token. The first and last ``full_attention_blocks`` blocks run full joint attention over conditioning
and video tokens with 3-D RoPE on the video tokens (head channels split between t, h and w as Wan) and
RMSNorm on q and k. The middle blocks run UltraGen's hierarchical attention
(:class:`~core.attention.ultragen.UltraGenAttention`, gated by the timestep as the paper, or any injected
grid mechanism: ``--model.attention``) over the video tokens, followed by a conditioning attention that
exchanges information between video and conditioning tokens (Wan's text cross-attention has the same
place in the block).

**Scene mask** (Mask²DiT, ``scene_mask=True``), in every attention layer: conditioning tokens of scene
``s`` attend ``{c_s, video_s}``; video tokens of scene ``s`` attend ``c_s`` and all video tokens. A
frame's scene comes from the batch's ``scene_index (B, T)``. In the middle blocks the video↔video part of
the mask (all allowed) is UltraGen's; the conditioning attention carries the rest of the mask and no
video↔video pair. Without ``scene_mask`` every token attends every token.

**Sampling.** :meth:`VideoDiT.sample` integrates the flow with Euler steps; ``known``/``known_frames``
keep earlier scenes clean (Mask²DiT scene extension); ``freelong=True`` applies FreeLong++
(:mod:`domains.video.models.freelong`) in every attention layer: branches with temporal windows from the
whole clip down to the training length, fused band by band. Full-attention blocks restrict the branch by
a temporal neighbourhood mask (each frame attends the ``w`` nearest frames); UltraGen blocks run the
mixer on consecutive chunks of ``w`` frames.

Differences from the papers: pixel space at low resolution instead of a VAE latent; no text; the
UltraGen branches have no RoPE (their depthwise 3-D convolutions carry position; the official code
rotates with window-local coordinates).
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer
from core.attention.mha import attend, merge_heads, split_heads
from core.attention.neighborhood import axis_neighborhood
from core.attention.rope import apply_rope, inverse_frequencies, rope_angles
from core.attention.ultragen import UltraGenAttention, UltraGenGlobalAttention
from core.blocks.ultragen import TimestepGate, timestep_embedding
from core.layers.mlp import Mlp
from domains.video.models.base import VideoGenerationNetwork
from domains.video.models.flow import euler_sample
from domains.video.models.freelong import freelong_windows, spectral_fusion

__all__ = [
    "JointAttention",
    "VideoDiT",
    "VideoDiTBlock",
    "conditioning_mask",
    "rope_3d_angles",
    "scene_attention_mask",
    "temporal_window_mask",
]


def scene_attention_mask(token_scene: Tensor, num_scenes: int, tokens_per_scene: int) -> Tensor:
    """Mask²DiT's symmetric mask ``M_ij = [s(i) = s(j)] ∨ [v(i) ∧ v(j)]`` for ``[c_1 … c_S | video]``.

    :func:`core.attention.masks.scene_mask` builds it from per-scene lengths; here scenes come per sample
    from the frames' ``scene_index`` and a sample may hold fewer scenes than slots, so the same formula is
    evaluated on per-token scene ids.

    Args:
        token_scene: Scene of every video token ``(B, N)`` (long).
        num_scenes: Scene slots ``S``.
        tokens_per_scene: Conditioning tokens per slot ``L``.

    Returns:
        Boolean ``(B, 1, S·L + N, S·L + N)``, True = may attend.
    """
    b, n = token_scene.shape
    cond = torch.arange(num_scenes, device=token_scene.device).repeat_interleave(tokens_per_scene)
    scene = torch.cat([cond.expand(b, -1), token_scene], dim=1)
    is_video = torch.cat([torch.zeros(cond.numel(), dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(
        token_scene.device
    )
    mask = (scene[:, :, None] == scene[:, None, :]) | (is_video[:, None] & is_video[None, :])
    return mask[:, None]


def conditioning_mask(mask: Tensor | None, prefix: int, length: int, device: torch.device) -> Tensor:
    """The mask of the conditioning attention of a middle block: ``mask`` without any video↔video pair.

    Video↔video pairs are the grid mixer's; what remains of the scene mask (``mask``, or all pairs when
    None) routes conditioning to and from video. Returns boolean ``(B | 1, 1, L, L)``.
    """
    video = torch.zeros(length, dtype=torch.bool, device=device)
    video[prefix:] = True
    pairs = ~(video[:, None] & video[None, :])[None, None]
    return pairs if mask is None else mask & pairs


def rope_3d_angles(
    grid: Sequence[int], head_dim: int, prefix: int, device: torch.device | None = None
) -> Tensor:
    """RoPE angles ``(prefix + T·H·W, head_dim / 2)``: ``prefix`` unrotated tokens, then a ``(T, H, W)`` grid.

    Head channels are split between the axes as Wan2.1: ``d − 4⌊d/6⌋`` for time, ``2⌊d/6⌋`` each for
    height and width; each axis uses RoFormer's frequencies on integer positions. The prefix
    (conditioning) tokens get angle 0, i.e. no rotation.
    """
    frames, height, width = grid
    sizes = (head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))
    if head_dim % 2 or min(sizes) <= 0 or any(s % 2 for s in sizes):
        raise ValueError(f"rope_3d_angles: head_dim must be even and >= 6 (split t/h/w), got {head_dim}")
    t, h, w = torch.meshgrid(
        *(torch.arange(n, device=device, dtype=torch.float64) for n in (frames, height, width)), indexing="ij"
    )
    parts = [
        rope_angles(pos.flatten(), inverse_frequencies(size, device=device))
        for pos, size in zip((t, h, w), sizes, strict=True)
    ]
    angles = torch.cat(parts, dim=-1)
    return torch.cat([angles.new_zeros(prefix, head_dim // 2), angles], dim=0)


def temporal_window_mask(frames: int, spatial: int, window: int, prefix: int, device: torch.device) -> Tensor:
    """FreeLong++'s local branch as a mask ``(P + N, P + N)`` over ``P`` prefix and ``N`` video tokens.

    Video token ``i`` may attend video token ``j`` only if frame ``j`` is among the ``window`` frames nearest
    to frame ``i`` (NATTEN's clamped neighbourhood); prefix tokens are unrestricted.
    """
    keys, _ = axis_neighborhood(frames, window, 1, 1, False)
    near = torch.zeros(frames, frames, dtype=torch.bool).scatter_(1, keys, True).to(device)
    video = near.repeat_interleave(spatial, 0).repeat_interleave(spatial, 1)
    n = prefix + video.shape[0]
    mask = torch.ones(n, n, dtype=torch.bool, device=device)
    mask[prefix:, prefix:] = video
    return mask


@dataclass
class _Context:
    """What every block needs besides the tokens, computed once per forward."""

    grid: tuple[int, int, int]
    prefix: int
    mask: Tensor | None  # (B, 1, L, L) scene mask, or None
    angles: Tensor  # (L, head_dim / 2)
    timestep: Tensor  # (B,) the generation timestep, for UltraGen's gates
    windows: list[int] | None  # FreeLong++ branch windows in latent frames, global first


class JointAttention(nn.Module):
    """Multi-head attention over ``[conditioning | video]`` with RMSNorm q/k, 3-D RoPE and a boolean mask."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"JointAttention: dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm_q = nn.RMSNorm(head_dim, eps=1e-6)
        self.norm_k = nn.RMSNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None, angles: Tensor | None) -> Tensor:
        """Attend ``x (B, L, C)`` with ``mask`` (True = may attend) and RoPE ``angles (L, head_dim/2)``."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = self.norm_q(q), self.norm_k(k)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        return self.proj(merge_heads(attend(q, k, v, mask=mask)))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def _and(a: Tensor | None, b: Tensor) -> Tensor:
    return b if a is None else a & b


class VideoDiTBlock(nn.Module):
    """DiT block with AdaLN-Zero; full joint attention, or a grid mixer plus conditioning attention.

    Args:
        dim: Token width.
        num_heads: Heads of the joint / conditioning attention.
        mixer: Video-token mixer of a middle block (None: full joint attention).
        conditioning: Whether the sequence holds conditioning tokens (middle blocks then add the
            conditioning attention).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mixer: TokenMixer | None,
        conditioning: bool,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.full = mixer is None
        self.attn: nn.Module = JointAttention(dim, num_heads) if mixer is None else mixer
        timestep_gated = isinstance(mixer, UltraGenAttention) and not mixer.static_gates
        self.gate_global = TimestepGate(dim) if timestep_gated else None
        self.gate_local = TimestepGate(dim) if timestep_gated and mixer.use_hierarchical else None  # type: ignore[union-attr]
        self.cond_norm = nn.LayerNorm(dim, eps=1e-6) if conditioning and mixer is not None else None
        self.cond_attn = JointAttention(dim, num_heads) if self.cond_norm is not None else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor, ctx: _Context) -> Tensor:
        """Tokens ``x (B, L, D)`` with per-token conditioning ``c (B, L, D)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.self_attention(_modulate(self.norm1(x), shift1, scale1), ctx)
        if self.cond_attn is not None:
            assert self.cond_norm is not None
            mask = conditioning_mask(ctx.mask, ctx.prefix, x.shape[1], x.device)
            x = x + self.cond_attn(self.cond_norm(x), mask, ctx.angles)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))

    def self_attention(self, h: Tensor, ctx: _Context) -> Tensor:
        """The block's self-attention output, FreeLong++-fused when ``ctx.windows`` is set."""
        global_out = self._attend(h, ctx, None)
        if not ctx.windows:
            return global_out
        branches = [global_out] + [self._attend(h, ctx, w) for w in ctx.windows[1:]]
        b, _, d = h.shape
        p = ctx.prefix
        video = [out[:, p:].reshape(b, *ctx.grid, d) for out in branches]
        fused = spectral_fusion(video).reshape(b, -1, d)
        return torch.cat([global_out[:, :p], fused], dim=1)

    def _attend(self, h: Tensor, ctx: _Context, window: int | None) -> Tensor:
        """Self-attention of the block, restricted to temporal windows of ``window`` frames if given."""
        frames, height, width = ctx.grid
        if self.full:
            mask = ctx.mask
            if window is not None:
                local = temporal_window_mask(frames, height * width, window, ctx.prefix, h.device)
                mask = _and(mask, local[None, None])
            return self.attn(h, mask, ctx.angles)
        p = ctx.prefix
        video = h[:, p:]
        if window is None:
            out = self._mix(video, ctx.grid, ctx.timestep)
        else:
            out = torch.empty_like(video)
            spatial = height * width
            starts = list(range(0, frames - window + 1, window))
            if starts[-1] + window < frames:
                starts.append(frames - window)
            for s in starts:
                chunk = video[:, s * spatial : (s + window) * spatial]
                out[:, s * spatial : (s + window) * spatial] = self._mix(
                    chunk, (window, height, width), ctx.timestep
                )
        return torch.cat([torch.zeros_like(h[:, :p]), out], dim=1)

    def _mix(self, video: Tensor, grid: tuple[int, int, int], timestep: Tensor) -> Tensor:
        if self.gate_global is not None:
            gate_local = None if self.gate_local is None else self.gate_local(timestep * 1000)[:, None]
            return self.attn.gated(  # type: ignore[operator]
                video,
                grid=grid,
                gate_global=self.gate_global(timestep * 1000)[:, None],
                gate_local=gate_local,
            )
        return self.attn(video, grid=grid)


class VideoDiT(VideoGenerationNetwork):
    """A small video DiT trained by flow matching (see the module docstring).

    Args:
        num_frames: Training clip length ``T`` (linked); FreeLong++'s native length.
        image_size: Frame side in pixels (linked).
        num_scenes: Scene slots ``S`` (linked; 1 for single-scene clips).
        attention: Video-token mixer of the middle blocks (``--model.attention``); called with
            ``grid=(T', H', W')``. Default: UltraGen's hierarchical attention with timestep gates
            (local ``K = 4 + l mod 2`` windows, global ``r = global_downsample``, hierarchical
            ``r = 2``).
        in_channels: Pixel channels.
        patch_size: ``(pt, ph, pw)``.
        dim: Token width.
        depth: Number of blocks.
        num_heads: Heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        full_attention_blocks: Blocks with full attention at each end (UltraGen keeps 3 of 30 per end).
        scene_tokens: Conditioning tokens per scene slot ``L`` (0: unconditional, no conditioning tokens).
        scene_mask: Apply Mask²DiT's symmetric scene mask in every attention layer.
        global_downsample: Compression ``r`` of UltraGen's global branch (paper: 4).
        freelong_cutoff: Cut-off ``d_0`` of the lowest FreeLong++ band.
    """

    def __init__(
        self,
        num_frames: int,
        image_size: int,
        num_scenes: int = 1,
        attention: AttentionFactory | None = None,
        in_channels: int = 3,
        patch_size: tuple[int, int, int] = (1, 4, 4),
        dim: int = 96,
        depth: int = 6,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        full_attention_blocks: int = 1,
        scene_tokens: int = 4,
        scene_mask: bool = True,
        global_downsample: int = 4,
        freelong_cutoff: float = 0.25,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        patch_size = tuple(int(p) for p in patch_size)  # type: ignore[assignment]
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"{name}: patch_size must be three positive ints (pt, ph, pw), got {patch_size}")
        pt, ph, pw = patch_size
        if num_frames % pt or image_size % ph or image_size % pw:
            raise ValueError(
                f"{name}: num_frames={num_frames} and image_size={image_size} must be multiples of "
                f"patch_size={patch_size}"
            )
        if num_scenes < 1 or scene_tokens < 0 or depth < 1:
            raise ValueError(f"{name}: need num_scenes >= 1, scene_tokens >= 0, depth >= 1")
        if not 0 <= 2 * full_attention_blocks <= depth:
            raise ValueError(
                f"{name}: 2 * full_attention_blocks={2 * full_attention_blocks} must be <= depth={depth}"
            )
        self.num_frames = num_frames
        self.image_size = image_size
        self.num_scenes = num_scenes
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.scene_tokens = scene_tokens
        self.scene_mask = scene_mask
        self.freelong_cutoff = freelong_cutoff
        self.patch_embed = nn.Conv3d(in_channels, dim, patch_size, stride=patch_size)
        self.time_embed = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.cond_tokens = nn.Parameter(torch.randn(num_scenes, scene_tokens, dim) * 0.02)
        middle = attention or functools.partial(
            UltraGenAttention,
            num_heads=num_heads,
            static_gates=False,
            global_attention=functools.partial(
                UltraGenGlobalAttention,
                num_heads=num_heads,
                out_proj=False,
                downsample=global_downsample,
            ),
        )
        blocks = []
        for i in range(depth):
            full = i < full_attention_blocks or i >= depth - full_attention_blocks
            mixer = None if full else middle(dim, layer_idx=i, num_layers=depth)
            blocks.append(
                VideoDiTBlock(
                    dim, num_heads=num_heads, mixer=mixer, conditioning=scene_tokens > 0, mlp_ratio=mlp_ratio
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.head = nn.Linear(dim, in_channels * math.prod(patch_size))
        for layer in (self.modulation_out[1], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self, x: Tensor, timestep: Tensor, scene_index: Tensor | None = None, *, freelong: bool = False
    ) -> Tensor:
        """Velocity ``(B, C, T, H, W)`` for ``x_t``, timesteps ``(B,)`` or ``(B, T)`` in ``[0, 1]``.

        Args:
            x: Noised clips ``(B, C, T, H, W)``.
            timestep: Noise level per sample or per frame.
            scene_index: Scene of every frame ``(B, T)`` (long, ``< num_scenes``); None: one scene.
            freelong: Fuse FreeLong++ branches in every attention layer (for clips longer than training).
        """
        b, c, frames, height, width = self._check_input(x)
        pt, ph, pw = self.patch_size
        t_frames = self._frame_timesteps(timestep, b, frames, x.device)[:, ::pt]  # (B, T')
        scene = self._scene_index(scene_index, b, frames, x.device)[:, ::pt]
        tokens = self.patch_embed(x)
        grid = tuple(tokens.shape[2:])
        spatial = grid[1] * grid[2]
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, D)
        emb = self.time_embed(timestep_embedding(t_frames.flatten() * 1000).to(tokens.dtype)).view(
            b, grid[0], -1
        )
        cond_video = emb.repeat_interleave(spatial, dim=1)
        sample_t = t_frames.max(dim=1).values
        prefix = self.num_scenes * self.scene_tokens
        if prefix:
            cond_emb = self.time_embed(timestep_embedding(sample_t * 1000).to(tokens.dtype))
            tokens = torch.cat([self.cond_tokens.flatten(0, 1).expand(b, -1, -1), tokens], dim=1)
            cond = torch.cat([cond_emb[:, None].expand(-1, prefix, -1), cond_video], dim=1)
        else:
            cond = cond_video
        mask = self.attention_mask(scene, spatial)
        head_dim = tokens.shape[-1] // self.num_heads
        ctx = _Context(
            grid=grid,  # type: ignore[arg-type]
            prefix=prefix,
            mask=mask,
            angles=rope_3d_angles(grid, head_dim, prefix, device=x.device),
            timestep=sample_t,
            windows=freelong_windows(grid[0], self.num_frames // pt) if freelong else None,
        )
        for block in self.blocks:
            tokens = block(tokens, cond, ctx)
        shift, scale = self.modulation_out(cond).chunk(2, dim=-1)
        out = self.head(_modulate(self.norm_out(tokens), shift, scale))[:, prefix:]
        out = out.view(b, *grid, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return out.reshape(b, c, frames, height, width)

    def attention_mask(self, latent_scene: Tensor, spatial: int) -> Tensor | None:
        """The scene mask of every attention layer, ``(B, 1, L, L)``, or None without ``scene_mask``.

        Args:
            latent_scene: Scene of every latent frame ``(B, T')``.
            spatial: Video tokens per latent frame ``H'·W'``.
        """
        if not (self.scene_mask and self.num_scenes * self.scene_tokens):
            return None
        token_scene = latent_scene.repeat_interleave(spatial, dim=1)
        return scene_attention_mask(token_scene, self.num_scenes, self.scene_tokens)

    @torch.no_grad()
    def sample(
        self,
        noise: Tensor,
        scene_index: Tensor | None = None,
        *,
        steps: int = 20,
        freelong: bool = False,
        known: Tensor | None = None,
        known_frames: Tensor | None = None,
    ) -> Tensor:
        """Generate clips from ``noise (B, C, T, H, W)`` in ``steps`` Euler steps (see the module doc)."""

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self(x, t, scene_index, freelong=freelong)

        return euler_sample(velocity, noise, steps, known=known, known_frames=known_frames).clamp(-1, 1)

    def _check_input(self, x: Tensor) -> tuple[int, int, int, int, int]:
        name = type(self).__name__
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name}: expected x of shape (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}"
            )
        b, c, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        if t % pt or h % ph or w % pw:
            raise ValueError(
                f"{name}: clip size {t}x{h}x{w} must be a multiple of patch_size={self.patch_size}"
            )
        return b, c, t, h, w

    def _frame_timesteps(self, timestep: Tensor, b: int, frames: int, device: torch.device) -> Tensor:
        t = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape == (b,):
            return t[:, None].expand(b, frames)
        if t.shape == (b, frames):
            return t
        raise ValueError(
            f"{type(self).__name__}: expected timestep of shape ({b},) or ({b}, {frames}), "
            f"got {tuple(t.shape)}"
        )

    def _scene_index(self, scene_index: Tensor | None, b: int, frames: int, device: torch.device) -> Tensor:
        if scene_index is None:
            return torch.zeros(b, frames, dtype=torch.long, device=device)
        if scene_index.shape != (b, frames):
            raise ValueError(
                f"{type(self).__name__}: expected scene_index of shape ({b}, {frames}), "
                f"got {tuple(scene_index.shape)}"
            )
        if scene_index.numel() and (int(scene_index.min()) < 0 or int(scene_index.max()) >= self.num_scenes):
            raise ValueError(
                f"{type(self).__name__}: scene_index values must lie in [0, {self.num_scenes}), got "
                f"[{int(scene_index.min())}, {int(scene_index.max())}]"
            )
        return scene_index.long()
