"""LTX-2's bidirectional audio-video cross-attention with temporal RoPE on both streams.

Paper: HaCohen et al., "LTX-2: Efficient Joint Audio-Visual Foundation Model", arXiv 2601.03233 (2026),
official code Lightricks/LTX-2 (``ltx_core/model/transformer/transformer.py``, ``attention.py``,
``rope.py``). Every LTX-2 block couples its video stream ``a`` and its audio stream ``b`` with two
cross-attentions whose queries come from one stream and keys/values from the other. The streams have
different token rates (video latents at ``fps / 8``, audio latents at 25 per second), so positions are
**timestamps in seconds** and a 1-D rotary embedding on time is applied to the queries *and* the keys::

    â = RMS(a),  b̂ = RMS(b)                                    (pre-norm, parameter-free)
    Q = RMSNorm_q(â W_q),  K = RMSNorm_k(b̂ W_k),  V = b̂ W_v    (qk-norm over all heads jointly)
    Q_h ← RoPE(Q_h, t_a),  K_h ← RoPE(K_h, t_b)                 (per head h, time in seconds)
    a' = a + [softmax(Q_h K_hᵀ / √d) V_h]_h W_o                  (direction b → a)
    b' = b + (the same with the roles of a and b swapped)        (direction a → b)

Both directions read the *input* states (the official block snapshots ``vx``/``ax`` before the first
direction so the order of the two directions does not matter).

RoPE (:mod:`core.attention.rope`): LTX's frequency ladder ``ω_j = (π / max_time) · θ^(j/(F−1))`` with
``F = inner_dim / 2`` frequencies, ``θ = 10000``, ``max_time = 20`` s, spread over the heads in
**bands**: head ``h`` rotates its channel pairs ``(i, i + d/2)`` (``split`` layout) with frequencies
``ω_{h·d/2 + i}``, so low heads see slow (coarse-time) and high heads fast (fine-time) rotations. Because
the same rotation family is applied to both streams, ``⟨RoPE(q, t_a), RoPE(k, t_b)⟩`` depends only on
``t_a − t_b``: shifting every timestamp of both streams by one offset leaves the output unchanged.

Differences from the official code:

* The official pre-norm of each direction is AdaLN: ``RMS(x) · (1 + scale) + shift`` and a ``gate`` on
  the output, all from the diffusion timestep (and per-direction learned tables). The timestep belongs to
  the DiT block, not to the attention, and the constant (table) part folds into the q/k/v projections and
  their biases, so here the pre-norm is the parameter-free RMS norm (``pre_norm=False`` lets a block pass
  its own modulated inputs) and there is no output gate.
* The official angle is ``(π/2) θ^(j/(F−1)) (2 t / max_time − 1)``; its constant term rotates q and k
  alike and cancels in ``q·k``, so we use ``ω_j t`` (same logits, better float precision). Angles are
  computed in float64 (the official ``double_precision_rope`` option).
* Token times may be given as ``(..., 2)`` ``[start, end)`` spans; like the official
  ``use_middle_indices_grid`` the midpoint is used. Omitted times default to the token midpoints of a
  common one-second clip, ``(i + 0.5) / N``, i.e. both streams are assumed to cover the same span.
* Official audio-video attention takes no mask; here ``mask_a``/``mask_b`` are key-padding masks
  (True = real token) so padded tokens of one stream never reach the other; a sample whose other stream
  is entirely padded gets a zero update. Padded queries still get an (unused) output.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import normalize_mask
from core.attention.mha import Backend, attend, merge_heads, split_heads
from core.attention.registry import register_mechanism
from core.attention.rope import RopeLayout, apply_rope, log_spaced_frequencies, rope_angles

__all__ = ["LTXCrossModalAttention", "TimedCrossAttention"]


class TimedCrossAttention(nn.Module):
    """One direction of LTX-2's audio-video attention: queries from one stream, keys/values from the other.

    The output width is ``query_dim``; attention runs at ``inner_dim = num_heads · head_dim``.

    Args:
        query_dim: Width of the query stream.
        context_dim: Width of the key/value stream.
        inner_dim: Attention width; must be divisible by ``num_heads`` with an even head size.
        num_heads: Number of heads.
        qk_norm: RMSNorm (learnable weight) over the full ``inner_dim`` of q and k, as LTX-2.
        norm_eps: Epsilon of the RMS norms (LTX-2: 1e-6).
        gated_attention: Per-head output gate ``2·σ(x W_g)`` (LTX-2's ``apply_gated_attention``).
        rope_layout: Channel pairing of the rotary embedding (LTX-2: ``split``).
        backend: ``auto``/``sdpa`` or ``reference`` (the literal equation).
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        inner_dim: int,
        *,
        num_heads: int = 8,
        qk_norm: bool = True,
        norm_eps: float = 1e-6,
        gated_attention: bool = False,
        rope_layout: RopeLayout = "split",
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if num_heads < 1 or inner_dim % num_heads or (inner_dim // num_heads) % 2:
            raise ValueError(
                f"TimedCrossAttention: inner_dim={inner_dim} must split into num_heads={num_heads} heads "
                "of even size"
            )
        if backend not in ("auto", "sdpa", "reference"):
            raise ValueError(
                f"TimedCrossAttention: unknown backend {backend!r}; expected auto, sdpa or reference"
            )
        self.num_heads = num_heads
        self.inner_dim = inner_dim
        self.rope_layout: RopeLayout = rope_layout
        self.backend: Backend = backend
        self.to_q = nn.Linear(query_dim, inner_dim)
        self.to_k = nn.Linear(context_dim, inner_dim)
        self.to_v = nn.Linear(context_dim, inner_dim)
        self.q_norm = nn.RMSNorm(inner_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(inner_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.to_gate_logits = nn.Linear(query_dim, num_heads) if gated_attention else None
        self.to_out = nn.Linear(inner_dim, query_dim)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        *,
        q_angles: Tensor | None = None,
        k_angles: Tensor | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend ``x (B, N, C_q)`` to ``context (B, M, C_kv)``.

        Args:
            x: Query stream.
            context: Key/value stream.
            q_angles: RoPE angles of the queries, ``(B | 1, heads, N, head_dim / 2)``; None = no RoPE.
            k_angles: RoPE angles of the keys, ``(B | 1, heads, M, head_dim / 2)``.
            key_mask: Boolean key padding ``(B, M)``, True = may attend. A sample without any key gets a
                zero output (not the output projection's bias), as if the other stream were absent.

        Returns:
            ``(B, N, C_q)``.
        """
        q = split_heads(self.q_norm(self.to_q(x)), self.num_heads)
        k = split_heads(self.k_norm(self.to_k(context)), self.num_heads)
        v = split_heads(self.to_v(context), self.num_heads)
        if q_angles is not None and k_angles is not None:
            q = apply_rope(q, q_angles, self.rope_layout)
            k = apply_rope(k, k_angles, self.rope_layout)
        mask = None
        if key_mask is not None:
            if key_mask.ndim != 2:
                raise ValueError(
                    f"TimedCrossAttention: expected key_mask of shape (B, M), got {tuple(key_mask.shape)}"
                )
            mask = normalize_mask(key_mask, x.shape[0], x.shape[1], context.shape[1], "TimedCrossAttention")
        out = attend(q, k, v, mask=mask, backend=self.backend)
        if self.to_gate_logits is not None:
            gates = 2.0 * torch.sigmoid(self.to_gate_logits(x))  # (B, N, heads)
            out = out * gates.transpose(1, 2)[..., None]
        out = self.to_out(merge_heads(out))
        if key_mask is not None:
            out = out * key_mask.any(dim=-1).to(out.dtype)[:, None, None]
        return out

    def extra_repr(self) -> str:
        """Show the attention width and heads."""
        return f"inner_dim={self.inner_dim}, num_heads={self.num_heads}, backend={self.backend}"


@register_mechanism(
    paper="HaCohen et al. 2026, LTX-2: Efficient Joint Audio-Visual Foundation Model",
    complexity="O(N_a N_b d)",
    example_kwargs={
        "dim_a": 8,
        "dim_b": 6,
        "inner_dim": 8,
        "num_heads": 2,
        "qk_norm": True,
        "norm_eps": 1e-6,
        "gated_attention": True,
        "pre_norm": True,
        "residual": True,
        "rope": True,
        "rope_theta": 10000.0,
        "max_time": 20.0,
        "rope_layout": "split",
        "backend": "auto",
    },
)
class LTXCrossModalAttention(nn.Module):
    """Bidirectional cross-attention between two streams of different token rates, with temporal RoPE.

    ``forward(a, b, *, times_a, times_b, mask_a, mask_b) -> (a_out, b_out)``: ``a`` attends ``b`` and
    ``b`` attends ``a``, both from the input states, each with residual. In LTX-2 ``a`` is the video
    stream and ``b`` the audio stream.

    Args:
        dim_a: Width of stream ``a``.
        dim_b: Width of stream ``b``.
        inner_dim: Attention width of both directions; defaults to ``min(dim_a, dim_b)`` (LTX-2 uses the
            audio stream's heads × head size for both directions).
        num_heads: Heads of both directions; the head size must be even (RoPE pairs).
        qk_norm: RMSNorm over the full width of q and k (LTX-2: yes).
        norm_eps: Epsilon of the RMS norms.
        gated_attention: Per-head output gates ``2·σ(x W_g)`` (LTX-2.3's ``apply_gated_attention``).
        pre_norm: Parameter-free RMS norm of both streams before attention (see the module docstring).
        residual: Return ``a + Δa, b + Δb`` (True, as the LTX-2 block) or the updates ``Δa, Δb``.
        rope: Apply the temporal rotary embedding to q and k.
        rope_theta: Ratio of the fastest to the slowest RoPE frequency (LTX-2: 10000).
        max_time: Seconds that map to a half turn of the slowest frequency (LTX-2: 20).
        rope_layout: ``split`` (LTX-2) or ``interleaved`` channel pairing.
        backend: ``auto``/``sdpa`` or ``reference``.
    """

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        *,
        inner_dim: int | None = None,
        num_heads: int = 8,
        qk_norm: bool = True,
        norm_eps: float = 1e-6,
        gated_attention: bool = False,
        pre_norm: bool = True,
        residual: bool = True,
        rope: bool = True,
        rope_theta: float = 10000.0,
        max_time: float = 20.0,
        rope_layout: Literal["split", "interleaved"] = "split",
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if dim_a <= 0 or dim_b <= 0:
            raise ValueError(
                f"LTXCrossModalAttention: dim_a and dim_b must be positive, got {dim_a}, {dim_b}"
            )
        if rope_theta <= 0 or max_time <= 0:
            raise ValueError(
                f"LTXCrossModalAttention: rope_theta and max_time must be positive, "
                f"got {rope_theta}, {max_time}"
            )
        inner_dim = inner_dim or min(dim_a, dim_b)
        self.dim_a, self.dim_b, self.inner_dim, self.num_heads = dim_a, dim_b, inner_dim, num_heads
        self.residual, self.use_rope = residual, rope
        self.rope_theta, self.max_time = rope_theta, max_time
        common = {
            "num_heads": num_heads,
            "qk_norm": qk_norm,
            "norm_eps": norm_eps,
            "gated_attention": gated_attention,
            "rope_layout": rope_layout,
            "backend": backend,
        }
        self.b_to_a = TimedCrossAttention(dim_a, dim_b, inner_dim, **common)
        self.a_to_b = TimedCrossAttention(dim_b, dim_a, inner_dim, **common)
        self.norm_a = nn.RMSNorm(dim_a, eps=norm_eps, elementwise_affine=False) if pre_norm else nn.Identity()
        self.norm_b = nn.RMSNorm(dim_b, eps=norm_eps, elementwise_affine=False) if pre_norm else nn.Identity()

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        *,
        times_a: Tensor | None = None,
        times_b: Tensor | None = None,
        mask_a: Tensor | None = None,
        mask_b: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exchange information between the streams.

        Args:
            a: Stream ``a`` ``(B, N_a, dim_a)`` (video in LTX-2).
            b: Stream ``b`` ``(B, N_b, dim_b)`` (audio in LTX-2).
            times_a: Timestamps in seconds of ``a``'s tokens, ``(B | 1, N_a)`` or ``[start, end)`` spans
                ``(B | 1, N_a, 2)`` (the midpoint is used). Default: ``(i + 0.5) / N_a``.
            times_b: Timestamps of ``b``'s tokens, ``(B | 1, N_b)`` or ``(B | 1, N_b, 2)``.
            mask_a: Key padding of ``a`` ``(B, N_a)``, True = real token; padded ``a`` tokens are not
                attended by ``b``.
            mask_b: Key padding of ``b`` ``(B, N_b)``.

        Returns:
            ``(a_out, b_out)`` with the shapes of ``a`` and ``b``.
        """
        self._check(a, "a", self.dim_a)
        self._check(b, "b", self.dim_b)
        if b.shape[0] != a.shape[0]:
            raise ValueError(
                f"LTXCrossModalAttention: a and b must share the batch size, "
                f"got {a.shape[0]} and {b.shape[0]}"
            )
        batch = a.shape[0]
        mask_a = self._check_mask(mask_a, "mask_a", batch, a.shape[1])
        mask_b = self._check_mask(mask_b, "mask_b", batch, b.shape[1])
        ang_a = ang_b = None
        if self.use_rope:
            ang_a = self._angles(self._check_times(times_a, "times_a", a), a.dtype)
            ang_b = self._angles(self._check_times(times_b, "times_b", b), b.dtype)
        a_n, b_n = self.norm_a(a), self.norm_b(b)
        delta_a = self.b_to_a(a_n, b_n, q_angles=ang_a, k_angles=ang_b, key_mask=mask_b)
        delta_b = self.a_to_b(b_n, a_n, q_angles=ang_b, k_angles=ang_a, key_mask=mask_a)
        if self.residual:
            return a + delta_a, b + delta_b
        return delta_a, delta_b

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Video-like ``a`` (5 tokens, width 8) and audio-like ``b`` (7 tokens, width 6)."""
        return torch.randn(batch, 5, 8, dtype=dtype), torch.randn(batch, 7, 6, dtype=dtype)

    def _angles(self, times: Tensor, dtype: torch.dtype) -> Tensor:
        """Head-banded angles ``(B | 1, heads, N, head_dim / 2)`` for timestamps ``(B | 1, N)``."""
        freqs = log_spaced_frequencies(self.inner_dim // 2, self.rope_theta, self.max_time, times.device)
        angles = rope_angles(times, freqs)  # (B|1, N, inner/2), float64
        b, n, _ = angles.shape
        return angles.view(b, n, self.num_heads, -1).transpose(1, 2)

    @staticmethod
    def _check(x: Tensor, name: str, dim: int) -> None:
        if x.ndim != 3 or x.shape[-1] != dim:
            raise ValueError(
                f"LTXCrossModalAttention: expected {name} of shape (B, N, {dim}), got {tuple(x.shape)}"
            )

    @staticmethod
    def _check_mask(mask: Tensor | None, name: str, batch: int, n: int) -> Tensor | None:
        if mask is None:
            return None
        if mask.dtype != torch.bool or tuple(mask.shape) != (batch, n):
            raise ValueError(
                f"LTXCrossModalAttention: expected {name} to be a boolean key padding mask of shape "
                f"({batch}, {n}) with True = real token, got {tuple(mask.shape)} {mask.dtype}"
            )
        return mask

    @staticmethod
    def _check_times(times: Tensor | None, name: str, x: Tensor) -> Tensor:
        batch, n = x.shape[0], x.shape[1]
        if times is None:
            return ((torch.arange(n, device=x.device, dtype=torch.float64) + 0.5) / n)[None]
        if times.ndim == 3 and times.shape[-1] == 2:
            times = times.to(torch.float64).mean(dim=-1)
        if times.ndim != 2 or times.shape[0] not in (1, batch) or times.shape[1] != n:
            raise ValueError(
                f"LTXCrossModalAttention: expected {name} of shape (B|1, {n}) or (B|1, {n}, 2) "
                f"with B={batch}, "
                f"got {tuple(times.shape)}"
            )
        return times

    def extra_repr(self) -> str:
        """Show stream widths, attention width and the RoPE settings."""
        return (
            f"dim_a={self.dim_a}, dim_b={self.dim_b}, inner_dim={self.inner_dim}, "
            f"num_heads={self.num_heads}, "
            f"rope={self.use_rope}, rope_theta={self.rope_theta}, max_time={self.max_time}, "
            f"residual={self.residual}"
        )
