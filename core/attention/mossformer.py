"""MossFormer's gated single-head attention: relu² attention inside chunks plus linear attention over all.

Papers: Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using Gated
Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023 (arXiv 2302.11824);
built on the gated attention unit (GAU) and FLASH of Hua, Dai, Liu, Le, "Transformer Quality in Linear Time",
ICML 2022 (arXiv 2202.10447). Official MossFormer code: ModelScope
``modelscope/models/audio/separation/mossformer_block.py`` (``FLASH_ShareA_FFConvM``), itself derived from
``lucidrains/FLASH-pytorch``; read for the equations and defaults below.

**Shared projection and OffsetScale.** One single-head projection ``z ∈ ℝ^{N×d}`` (``d = query_key_dim``)
gives four cheap "heads" with per-head learnable scale and offset (γ initialised ``N(0, 0.02)``, β = 0)::

    q_quad, q_lin, k_quad, k_lin = γ_h ⊙ z + β_h,   h = 1..4

**Rotary positions** (``rotary_embedding_torch`` convention, as the official code): the first
``rotary_dim = min(32, d)`` channels of all four are rotated in interleaved pairs ``(2j, 2j+1)`` by
``p · 10000^(−2j/rotary_dim)`` at token position ``p`` (:mod:`core.attention.rope`); the rest pass.

**Joint attention** (:func:`joint_attention`). The sequence is cut into chunks of ``g`` tokens (the last
chunk zero-padded and masked). With ``c(i)`` the chunk of token ``i``, values ``v`` and the gate branch
``u`` are both attended::

    quad_i = Σ_{j ∈ c(i)}  relu(q_quad,i · k_quad,j / g)² · [v_j, u_j]         (local, full within the chunk)
    lin_i  = q_lin,i · (1/n) Σ_{j=1..n} k_lin,j [v_j, u_j]ᵀ                     (global, linear)
    [att_v,i, att_u,i] = quad_i + lin_i

Causal variant: inside the chunk only ``j <= i``; the linear part sees the *previous chunks only* through
an exclusive prefix sum over chunks, scaled by ``1/g`` (a constant, so the output at ``i`` does not depend
on the sequence length)::

    lin_i = q_lin,i · (1/g) Σ_{j : c(j) < c(i)} k_lin,j [v_j, u_j]ᵀ

**Gating** (:func:`mossformer_gate`, MossFormer's "attentive gating")::

    out = (att_u ⊙ v) ⊙ σ(att_v ⊙ u)

Cost: ``O(N g (d + e))`` for the chunks and ``O(N d e)`` for the linear part (``e`` = width of ``[v, u]``);
no ``(N, N)`` tensor is built and the causal prefix state is per chunk, ``(B, N/g, d, e)``.

**Segments** (``segment_size`` of :class:`MossFormerAttention`, default :data:`SEGMENT_SIZE`, rounded
down to a multiple of ``g``). The mixer runs over segments of whole chunks so that every operand stays
cache-sized on CPU: each segment is projected and rotated (with its absolute positions) on its own and
its chunk attention computed; the causal linear part carries the prefix state from segment to segment,
the non-causal one first sums ``Σ k_lin [v, u]ᵀ`` over the segments (pass 1) and then reads it per
segment (pass 2). Only the input and the output span the whole sequence. Results equal the one-pass
:func:`joint_attention` up to floating-point rounding (dropout draws differ).

:class:`MossFormerAttention` is the registered token mixer: a complete GAU (Hua et al., Fig. 2) with
``v, u = SiLU(W_h x)``, ``z = SiLU(W_z x)``, the joint attention above, the gate and an output projection.
MossFormer's own block (token shift, convolution-augmented FFConvM projections, ScaleNorm, residual) is
:class:`core.blocks.mossformer.MossFormerBlock`, which reuses :class:`MossFormerJointAttention`.

Differences from the official code:

* Masks: the official ``FLASH_ShareA_FFConvM.forward`` accepts ``mask`` but never passes it to
  ``cal_attention``, so padding is ignored. Here a key-padding mask removes padded keys from both parts and
  the non-causal linear part averages over the *valid* keys (``1/n_valid``; equal to the official ``1/n``
  without a mask), so a padded batch gives the same outputs on its valid tokens as the unpadded sequences.
* The official causal linear part is scaled by ``1/g`` and the non-causal one by ``1/n``; we keep both (the
  causal ``1/g`` keeps outputs independent of future length). The official dropout on the relu² weights is
  kept (``attn_drop``); it is applied before the masks there, which is equivalent.
* The official ``to_out`` is hard-coded to ``2·dim`` inputs, which only matches ``expansion_factor = 4``;
  here ``v`` and ``u`` each have ``expansion_factor · dim / 2`` channels and ``to_out`` follows.
* :class:`MossFormerAttention` uses plain ``Linear + SiLU`` projections (FLASH's GAU) so that it is a
  per-token mixer usable anywhere; the convolutions are in the block.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.registry import register_mechanism
from core.attention.rope import apply_rope, inverse_frequencies, rope_angles

__all__ = [
    "SEGMENT_SIZE",
    "MossFormerAttention",
    "MossFormerJointAttention",
    "OffsetScale",
    "joint_attention",
    "joint_attention_reference",
    "mossformer_gate",
    "rotate_partial",
]


#: Tokens per segment of :class:`MossFormerAttention` (rounded down to a multiple of ``group_size``, at
#: least one chunk). Per token a segment holds ``[v, u]`` (``expansion_factor · C`` channels), ``z`` and
#: its four rotated scale/offset copies (``5 d``), the ``g`` relu² weights of its chunk and their
#: intermediates: about 10 KiB per batch row for C = 64, d = 128, g = 256 (fp32), so 512 tokens (two
#: official chunks) keep each tensor at 1 to 2 MiB for B = 2 and a segment's working set inside L3.
SEGMENT_SIZE = 512


def rotate_partial(t: Tensor, rotary_dim: int, offset: int = 0) -> Tensor:
    """Rotary positions on the first ``rotary_dim`` channels of ``t (..., N, D)``, interleaved pairs.

    Token ``p`` pair ``j`` is rotated by ``p · 10000^(−2j/rotary_dim)``, the ``rotary_embedding_torch``
    convention of the official code; channels ``rotary_dim:`` are returned unchanged. ``offset`` is the
    position of the first token (for a segment of a longer sequence).
    """
    if rotary_dim == 0:
        return t
    positions = torch.arange(offset, offset + t.shape[-2], device=t.device)
    angles = rope_angles(positions, inverse_frequencies(rotary_dim, device=t.device))
    rotated = apply_rope(t[..., :rotary_dim], angles, layout="interleaved")
    return torch.cat((rotated, t[..., rotary_dim:]), dim=-1)


def mossformer_gate(v: Tensor, u: Tensor, att_v: Tensor, att_u: Tensor) -> Tensor:
    """MossFormer's attentive gating ``(att_u ⊙ v) ⊙ σ(att_v ⊙ u)`` (official ``FLASH_ShareA_FFConvM``)."""
    return (att_u * v) * torch.sigmoid(att_v * u)


def _check_joint_inputs(
    quad_q: Tensor, quad_k: Tensor, lin_q: Tensor, lin_k: Tensor, v: Tensor, u: Tensor, group_size: int
) -> None:
    if group_size < 1:
        raise ValueError(f"joint_attention: group_size must be positive, got {group_size}")
    qk = (quad_q, quad_k, lin_q, lin_k)
    if any(t.ndim != 3 or t.shape != quad_q.shape for t in qk) or v.ndim != 3 or u.ndim != 3:
        raise ValueError(
            "joint_attention: expected q/k tensors of one shape (B, N, d) and v, u of shape (B, N, e), got "
            f"{[tuple(t.shape) for t in (*qk, v, u)]}"
        )
    if v.shape[:2] != quad_q.shape[:2] or u.shape[:2] != quad_q.shape[:2]:
        raise ValueError(
            f"joint_attention: v {tuple(v.shape)} and u {tuple(u.shape)} must share (B, N) with the queries "
            f"{tuple(quad_q.shape)}"
        )


def _check_key_mask(key_mask: Tensor | None, batch: int, length: int) -> None:
    if key_mask is not None and (key_mask.dtype != torch.bool or key_mask.shape != (batch, length)):
        raise ValueError(
            f"joint_attention: key_mask must be boolean of shape ({batch}, {length}), "
            f"got {key_mask.dtype} {tuple(key_mask.shape)}"
        )


def joint_attention(
    quad_q: Tensor,
    quad_k: Tensor,
    lin_q: Tensor,
    lin_k: Tensor,
    v: Tensor,
    u: Tensor,
    *,
    group_size: int,
    is_causal: bool = False,
    key_mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """MossFormer's joint local (relu², chunked) and global (linear) attention of ``v`` and ``u``.

    The chunked, trainable form: ``O(N g (d + e) + N d e)`` time, no ``(N, N)`` tensor. See the module
    docstring for the equations.

    Args:
        quad_q: Queries of the chunk attention ``(B, N, d)`` (rotary already applied).
        quad_k: Keys of the chunk attention ``(B, N, d)``.
        lin_q: Queries of the linear attention ``(B, N, d)``.
        lin_k: Keys of the linear attention ``(B, N, d)``.
        v: Values ``(B, N, e_v)``.
        u: Gate-branch values ``(B, N, e_u)``, attended with the same weights.
        group_size: Chunk size ``g``; ``N`` need not be a multiple of it.
        is_causal: Causal masking inside the chunk and an exclusive prefix over previous chunks.
        key_mask: Optional boolean key padding ``(B, N)``, True = valid.
        dropout_p: Dropout on the relu² weights (pass 0 in evaluation).

    Returns:
        ``(att_v, att_u)`` of shapes ``(B, N, e_v)`` and ``(B, N, e_u)``.
    """
    _check_joint_inputs(quad_q, quad_k, lin_q, lin_k, v, u, group_size)
    b, n, _ = quad_q.shape
    _check_key_mask(key_mask, b, n)
    vu = torch.cat((v, u), dim=-1)
    lin_k = _mask_linear_keys(lin_k, key_mask)
    if is_causal:
        out, _ = _causal_segment(quad_q, quad_k, lin_q, lin_k, vu, key_mask, group_size, dropout_p, None)
    else:
        state = lin_k.transpose(-2, -1) @ vu / _valid_count(key_mask, n, vu)  # (B, d, e)
        out = _noncausal_segment(quad_q, quad_k, lin_q, vu, key_mask, group_size, dropout_p, state)
    return out[..., : v.shape[-1]], out[..., v.shape[-1] :]


def _mask_linear_keys(lin_k: Tensor, key_mask: Tensor | None) -> Tensor:
    return lin_k if key_mask is None else lin_k * key_mask[..., None].to(lin_k.dtype)


def _valid_count(key_mask: Tensor | None, n: int, like: Tensor) -> Tensor | float:
    """``n``, or the number of valid keys per batch row ``(B, 1, 1)``: the non-causal linear normaliser."""
    if key_mask is None:
        return float(n)
    return key_mask.sum(dim=1).clamp_min(1).to(like.dtype)[:, None, None]


def _chunk_attention(
    tensors: Sequence[Tensor], key_mask: Tensor | None, g: int, is_causal: bool, dropout_p: float
) -> tuple[list[Tensor], Tensor]:
    """Pad ``(quad_q, quad_k, vu, *rest)`` ``(B, L, ·)`` to whole chunks of ``g``; relu² attention per chunk.

    Returns the chunked ``(vu, *rest)`` ``(B, G, g, ·)`` and the chunk attention ``(B, G, g, e)`` of ``vu``.
    """
    b, n, _ = tensors[0].shape
    pad = (-n) % g
    valid = None if key_mask is None else key_mask[..., None].to(tensors[0].dtype)  # (B, L, 1)
    if pad:
        tensors = [F.pad(t, (0, 0, 0, pad)) for t in tensors]
        valid = F.pad(tensors[0].new_ones(b, n, 1) if valid is None else valid, (0, 0, 0, pad))
    chunks = (n + pad) // g
    qq, kq, vuc, *rest = (t.reshape(b, chunks, g, t.shape[-1]) for t in tensors)
    weights = F.relu(qq @ kq.transpose(-2, -1) / g) ** 2  # (B, G, g, g)
    if valid is not None:
        weights = weights * valid.reshape(b, chunks, 1, g)  # padded / masked keys
    if is_causal:
        weights = weights * torch.ones(g, g, dtype=torch.bool, device=weights.device).tril()
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return [vuc, *rest], weights @ vuc


def _causal_segment(
    quad_q: Tensor,
    quad_k: Tensor,
    lin_q: Tensor,
    lin_k: Tensor,
    vu: Tensor,
    key_mask: Tensor | None,
    g: int,
    dropout_p: float,
    carry: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Causal joint attention of a segment (whole chunks but the last) from the prefix state ``carry``.

    ``lin_k`` must be masked. Returns ``(B, L, e)`` and the prefix state ``(B, 1, d, e)`` after it.
    """
    b, n, d = quad_q.shape
    (vuc, ql, kl), out = _chunk_attention((quad_q, quad_k, vu, lin_q, lin_k), key_mask, g, True, dropout_p)
    state = (kl.transpose(-2, -1) @ vuc / g).cumsum(dim=1)  # (B, G, d, e): inclusive prefix per chunk
    if carry is not None:
        state = state + carry
    start = carry if carry is not None else state.new_zeros(b, 1, d, state.shape[-1])
    exclusive = torch.cat((start, state[:, :-1]), dim=1)
    out = out + ql @ exclusive
    return out.reshape(b, -1, out.shape[-1])[:, :n], state[:, -1:]


def _noncausal_segment(
    quad_q: Tensor,
    quad_k: Tensor,
    lin_q: Tensor,
    vu: Tensor,
    key_mask: Tensor | None,
    g: int,
    dropout_p: float,
    state: Tensor,
) -> Tensor:
    """Non-causal joint attention of a segment given the normalised global state ``(B, d, e)``."""
    n = quad_q.shape[1]
    _, out = _chunk_attention((quad_q, quad_k, vu), key_mask, g, False, dropout_p)
    out = out.reshape(out.shape[0], -1, out.shape[-1])[:, :n]
    return out + lin_q @ state


def joint_attention_reference(
    quad_q: Tensor,
    quad_k: Tensor,
    lin_q: Tensor,
    lin_k: Tensor,
    v: Tensor,
    u: Tensor,
    *,
    group_size: int,
    is_causal: bool = False,
    key_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Literal per-position form of :func:`joint_attention` (slow; for tests and debugging).

    For every batch row and query ``i``, the keys of its chunk (``j <= i`` when causal) and the keys of the
    linear part (all valid keys, or those of earlier chunks when causal) are listed explicitly and summed.
    """
    _check_joint_inputs(quad_q, quad_k, lin_q, lin_k, v, u, group_size)
    b, n, _ = quad_q.shape
    _check_key_mask(key_mask, b, n)
    g = group_size
    vu = torch.cat((v, u), dim=-1)
    rows = []
    for bi in range(b):
        ok = [key_mask is None or bool(key_mask[bi, j]) for j in range(n)]
        n_valid = max(sum(ok), 1)
        outs = []
        for i in range(n):
            local = [j for j in range(n) if j // g == i // g and ok[j] and (not is_causal or j <= i)]
            far = [j for j in range(n) if ok[j] and (j // g < i // g if is_causal else True)]
            acc = torch.zeros_like(vu[bi, 0])
            for j in local:
                acc = acc + F.relu(quad_q[bi, i] @ quad_k[bi, j] / g) ** 2 * vu[bi, j]
            if far:
                scale = 1.0 / g if is_causal else 1.0 / n_valid
                acc = acc + scale * (lin_k[bi, far] @ lin_q[bi, i]) @ vu[bi, far]
            outs.append(acc)
        rows.append(torch.stack(outs))
    out = torch.stack(rows)
    return out[..., : v.shape[-1]], out[..., v.shape[-1] :]


class OffsetScale(nn.Module):
    """Per-head scale and offset of a shared projection: ``z -> (γ_h ⊙ z + β_h for h in heads)``.

    Args:
        dim: Width ``d`` of ``z``.
        heads: Number of outputs (MossFormer: 4, ``q_quad, q_lin, k_quad, k_lin``).
        init_std: Std of the normal initialisation of ``γ`` (official: 0.02); ``β`` starts at 0.
    """

    def __init__(self, dim: int, heads: int = 4, init_std: float = 0.02) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(heads, dim))
        self.beta = nn.Parameter(torch.zeros(heads, dim))
        nn.init.normal_(self.gamma, std=init_std)

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        """``(..., d) -> heads × (..., d)``."""
        return (z[..., None, :] * self.gamma + self.beta).unbind(dim=-2)


class MossFormerJointAttention(nn.Module):
    """OffsetScale → rotary → joint attention: ``(z, v, u) -> (att_v, att_u)``, the GAU attention core.

    Shared by :class:`MossFormerAttention` and :class:`core.blocks.mossformer.MossFormerBlock`.

    Args:
        query_key_dim: Width ``d`` of the shared projection ``z``.
        group_size: Chunk size ``g`` of the quadratic attention.
        rotary_dim: Channels rotated by RoPE; ``None`` means the official ``min(32, d)``, 0 disables it.
        attn_drop: Dropout on the relu² weights (training only; official: the block's dropout, 0.1).
    """

    def __init__(
        self,
        query_key_dim: int,
        *,
        group_size: int = 256,
        rotary_dim: int | None = None,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        rotary_dim = min(32, query_key_dim) if rotary_dim is None else rotary_dim
        if query_key_dim < 1 or group_size < 1:
            raise ValueError(
                f"MossFormerJointAttention: query_key_dim and group_size must be positive, got "
                f"{query_key_dim}, {group_size}"
            )
        if rotary_dim < 0 or rotary_dim % 2 or rotary_dim > query_key_dim:
            raise ValueError(
                "MossFormerJointAttention: rotary_dim must be even and in "
                f"[0, query_key_dim={query_key_dim}], got {rotary_dim}"
            )
        if not 0.0 <= attn_drop < 1.0:
            raise ValueError(f"MossFormerJointAttention: attn_drop must be in [0, 1), got {attn_drop}")
        self.query_key_dim = query_key_dim
        self.group_size = group_size
        self.rotary_dim = rotary_dim
        self.attn_drop = attn_drop
        self.offset_scale = OffsetScale(query_key_dim, heads=4)

    def queries_keys(self, z: Tensor, offset: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``z (B, N, d)`` -> rotated ``(quad_q, quad_k, lin_q, lin_k)``; ``offset``: first position."""
        quad_q, lin_q, quad_k, lin_k = self.offset_scale(z)  # official order
        quad_q, quad_k, lin_q, lin_k = (
            rotate_partial(t, self.rotary_dim, offset) for t in (quad_q, quad_k, lin_q, lin_k)
        )
        return quad_q, quad_k, lin_q, lin_k

    def forward(
        self, z: Tensor, v: Tensor, u: Tensor, *, is_causal: bool = False, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend ``v`` and ``u`` with queries and keys derived from ``z``; returns ``(att_v, att_u)``."""
        if z.ndim != 3 or z.shape[-1] != self.query_key_dim:
            raise ValueError(
                f"MossFormerJointAttention: expected z of shape (B, N, {self.query_key_dim}), "
                f"got {tuple(z.shape)}"
            )
        return joint_attention(
            *self.queries_keys(z),
            v,
            u,
            group_size=self.group_size,
            is_causal=is_causal,
            key_mask=key_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )

    def extra_repr(self) -> str:
        """Show the projection width, chunk size and rotary width."""
        return (
            f"query_key_dim={self.query_key_dim}, group_size={self.group_size}, rotary_dim={self.rotary_dim}"
        )


@register_mechanism(
    paper="Zhao & Ma 2023, MossFormer (gated single-head joint attention); Hua et al. 2022, Transformer "
    "Quality in Linear Time (GAU/FLASH)",
    complexity="O(N g d)",
    example_kwargs={"group_size": 4, "query_key_dim": 8},
)
class MossFormerAttention(TokenMixer):
    """A gated attention unit with MossFormer's joint chunk + linear attention (single head).

    ``v, u = SiLU(W_h x)``; ``z = SiLU(W_z x)``; ``att_v, att_u`` = joint attention of ``v, u`` with
    queries/keys from ``z``; output ``W_o ((att_u ⊙ v) ⊙ σ(att_v ⊙ u))``. Key-padding masks and causality
    (``is_causal`` at call time) are supported; the mixer is per-token apart from the attention.

    Args:
        dim: Channel dimension ``C``.
        group_size: Chunk size ``g`` of the relu² attention (official: 256).
        query_key_dim: Width ``d`` of the shared query/key projection (official: 128).
        expansion_factor: ``W_h`` has ``expansion_factor · C`` outputs, split into ``v`` and ``u``
            (official: 4, so ``v`` and ``u`` have ``2C`` channels each).
        rotary_dim: Rotated channels of the queries and keys; ``None`` = ``min(32, d)``, 0 disables RoPE.
        attn_drop: Dropout on the relu² weights.
        proj_drop: Dropout after the output projection.
        segment_size: Tokens per segment (rounded down to a multiple of ``group_size``, at least one
            chunk; see the module doc); it changes speed, not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch (CPU + GPU); no fused Triton kernel"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        group_size: int = 256,
        query_key_dim: int = 128,
        expansion_factor: float = 4.0,
        rotary_dim: int | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if segment_size < 1:
            raise ValueError(f"MossFormerAttention: segment_size must be positive, got {segment_size}")
        self.segment_size = segment_size
        hidden = int(dim * expansion_factor)
        if hidden < 2 or hidden % 2:
            raise ValueError(
                "MossFormerAttention: expansion_factor * dim must be an even number >= 2 (v and u split it), "
                f"got {expansion_factor} * {dim}"
            )
        self.hidden = hidden
        self.to_hidden = nn.Linear(dim, hidden)
        self.to_qk = nn.Linear(dim, query_key_dim)
        self.attention = MossFormerJointAttention(
            query_key_dim, group_size=group_size, rotary_dim=rotary_dim, attn_drop=attn_drop
        )
        self.to_out = nn.Linear(hidden // 2, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project, attend jointly, gate and project back, segment by segment (see the module doc)."""
        b, n, _ = x.shape
        key_mask = key_padding_mask(mask, b, n, type(self).__name__)
        attention = self.attention
        g = attention.group_size
        drop = attention.attn_drop if self.training else 0.0
        seg = max(1, self.segment_size // g) * g
        # Split once (slicing in the loop would make autograd build a full-size gradient per segment).
        xs = x.split(seg, dim=1)
        masks = key_mask.split(seg, dim=1) if key_mask is not None else [None] * len(xs)
        parts, states, carry, offset = [], [], None, 0
        for x_s, m_s in zip(xs, masks, strict=True):
            v, u = F.silu(self.to_hidden(x_s)).chunk(2, dim=-1)
            quad_q, quad_k, lin_q, lin_k = attention.queries_keys(F.silu(self.to_qk(x_s)), offset)
            offset += x_s.shape[1]
            vu = torch.cat((v, u), dim=-1)
            lin_k = _mask_linear_keys(lin_k, m_s)
            if is_causal:
                att, carry = _causal_segment(quad_q, quad_k, lin_q, lin_k, vu, m_s, g, drop, carry)
                parts.append(self._output(v, u, att))
            else:  # pass 1: the global linear state
                states.append(lin_k.transpose(-2, -1) @ vu)
                parts.append((v, u, quad_q, quad_k, lin_q, vu, m_s))
        if not is_causal:  # pass 2: chunk attention and the linear read per segment
            state = torch.stack(states).sum(dim=0) / _valid_count(key_mask, n, x)
            parts = [
                self._output(v, u, _noncausal_segment(qq, qk, lq, vu, m_s, g, drop, state))
                for v, u, qq, qk, lq, vu, m_s in parts
            ]
        return torch.cat(parts, dim=1)

    def _output(self, v: Tensor, u: Tensor, att: Tensor) -> Tensor:
        """MossFormer's gate on the joint attention ``att = [att_v, att_u]``, output projection, dropout."""
        att_v, att_u = att[..., : v.shape[-1]], att[..., v.shape[-1] :]
        return self.proj_drop(self.to_out(mossformer_gate(v, u, att_v, att_u)))

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Chunk ``QKᵀ`` and ``A[v, u]`` on the attended pairs plus the two linear-attention products."""
        g, d, e = self.attention.group_size, self.attention.query_key_dim, self.hidden
        chunks, tail = divmod(queries, g)
        sizes = [g] * chunks + ([tail] if tail else [])
        pairs = sum(s * (s + 1) // 2 if is_causal else s * s for s in sizes)
        return 2.0 * batch * (pairs * (d + e) + 2 * queries * d * e)

    def extra_repr(self) -> str:
        """Add the widths and chunk size to the default representation."""
        return (
            f"{super().extra_repr()}, hidden={self.hidden}, query_key_dim={self.attention.query_key_dim}, "
            f"group_size={self.attention.group_size}, rotary_dim={self.attention.rotary_dim}, "
            f"segment_size={self.segment_size}"
        )
