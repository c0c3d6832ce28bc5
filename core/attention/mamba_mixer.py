"""MambaMixer: selective state-space token mixing followed by selective channel mixing.

Paper: Behrouz, Santacatterina, Zabih, "MambaMixer: Efficient Selective State Space Models with Dual Token
and Channel Selection", 2024 (arXiv 2403.19888). The selective SSM (S6) is Gu & Dao, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces", 2023 (arXiv 2312.00752).

**Selective SSM (S6).** For an input sequence ``u_t ∈ R^E`` (``E`` inner channels) and a diagonal state
matrix ``A ∈ R^{E×S}`` (``A = −exp(A_log)``, S4D-real initialisation ``A_log[e, s] = log(s + 1)``), the
step size and the input/output matrices are *selected* from the input::

    Δ_t = softplus(W_Δ (W_r u_t) + b_Δ) ∈ R^E,     B_t = W_B u_t ∈ R^S,     C_t = W_C u_t ∈ R^S

discretised by zero-order hold on ``A`` and Euler on ``B`` (as Mamba): ``Ā_t = exp(Δ_t A)``,
``B̄_t = Δ_t B_t``, and scanned per channel ``e``::

    h_t = Ā_t ⊙ h_{t−1} + B̄_t u_t,        y_t = ⟨C_t, h_t⟩ + D ⊙ u_t         (h_t ∈ R^{E×S})

**Selective token mixer** (one Mamba block on the ``N`` tokens): ``[x, z] = W_in x``,
``u = SiLU(causal depthwise conv(x))``, ``y = S6(u)``, output ``W_out (y ⊙ SiLU(z))``. With
``is_causal=True`` the scan runs forward only (a causal mixer). A non-causal call runs a *bidirectional*
scan by default (``bidirectional=True``, as the vision models of MambaMixer/Vim do): a second S6 with its
own conv/selection/A/D parameters scans the reversed sequence and the two outputs are summed before the
gate. ``bidirectional=False`` makes non-causal calls identical to causal ones.

**Selective channel mixer**: the same selective SSM applied *across channels*. The ``C`` channels of one
token form a sequence of scalars; a Mamba block with ``d_model = 1`` and ``channel_expand`` inner channels
scans it in both directions (channels have no order), and its output is added back::

    out = t + ChannelMixer(LayerNorm(t)),        t = TokenMixer(x)

The channel mixer acts on each token separately, so it does not mix tokens: causality and key padding of
the token mixer carry over unchanged.

**Scan algorithms** (``scan``): ``chunked`` (default) is the parallel form: the sequence is cut into chunks
of ``chunk_size`` and, inside a chunk, an inclusive Hillis–Steele scan combines the affine maps
``h ↦ exp(la) h + b`` in ``log2(chunk)`` vectorised steps, carrying log-decays as sums (no division, no
exponent of a positive number, so it cannot overflow); the state is carried across chunks. ``recurrent``
is the step-by-step reference. Both materialise the per-token state ``(E, S)`` of one chunk only;
autograd keeps ``O(N E S log chunk)``. The fused CUDA kernel of ``mamba_ssm`` keeps it in SRAM instead.

Key padding (``mask`` of shape ``(B, N)``, True = valid): padded tokens are zeroed before the convolution
and get ``Δ = 0`` (``Ā = 1``, ``B̄ = 0``), so they neither write to nor decay the state: they are invisible
to every other token in both scan directions. Masks with a query axis are not supported by a scan.

Differences from the paper / official code (no official MambaMixer code was read; built from the papers):

* The weighted-averaging connections of the MambaMixer *block* (each mixer's input is a learned weighted
  average of the outputs of all earlier token and channel mixers) are out of scope: a TokenMixer sees one
  input. Here the channel mixer has a plain residual connection.
* The paper's channel mixer uses the token axis as the feature dimension of the channel SSM (a fixed
  number of patches / time steps). That needs a fixed ``N`` and mixes tokens, which would break causality
  and key padding; ours shares one ``d_model = 1`` selective SSM across all tokens instead.
* Mamba's ``dt`` initialisation (``b_Δ = softplus⁻¹(U[dt_min, dt_max])`` log-uniform) and S4D-real ``A``
  are followed; weights otherwise use PyTorch's default initialisation.
"""

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.utils.checkpoint import checkpoint

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.registry import register_mechanism

__all__ = [
    "SEGMENT_SIZE",
    "MambaMixer",
    "SelectiveSSM",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_recurrent",
    "selective_scan_state",
]

Scan = Literal["chunked", "recurrent"]

#: Tokens per segment of the chunked layer. A segment holds the token mixer's projections (``≈ 10 E``
#: floats per token and batch element, E = 2C) and the channel mixer's per-token sequences
#: (``C × channel_expand × d_state`` floats per token in each chunk buffer): 2 MiB for B = 2, C = 64
#: (fp32) with 128 tokens. The scan's own buffers are ``(chunk_size, B, E, S)``, 1 MiB for chunk 64.
SEGMENT_SIZE = 128


def selective_scan_recurrent(u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """Step-by-step selective scan, the reference: ``h_t = exp(Δ_t A) h_{t−1} + Δ_t u_t B_t``.

    Args:
        u: Inputs ``(B, T, E)``.
        delta: Step sizes ``(B, T, E)`` (non-negative).
        a: State matrix ``(E, S)`` (negative entries).
        b: Input matrices ``(B, T, S)``.
        c: Output matrices ``(B, T, S)``.
        d: Skip weights ``(E,)``.

    Returns:
        ``y = ⟨C_t, h_t⟩ + D u_t`` of shape ``(B, T, E)``.
    """
    h = u.new_zeros(u.shape[0], u.shape[2], a.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * a) * h + (delta[:, t] * u[:, t])[..., None] * b[:, t, None, :]
        ys.append((h * c[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1) + d * u


def _scan_in_place(
    decay: Tensor, inc: Tensor, carry: Tensor | None, *, reverse: bool, doubling: bool
) -> Tensor:
    """Solve a diagonal linear recurrence along dim 0 of time-major ``(L, ...)`` tensors, without autograd.

    Forward: ``h_t = decay_t ⊙ h_{t−1} + inc_t`` with ``h_{−1} = carry``. Reverse (the adjoint):
    ``g_t = decay_{t+1} ⊙ g_{t+1} + inc_t`` with ``g_{L−1} = carry + inc_{L−1}`` (``carry`` already holds
    the next step's decay). ``doubling`` uses a Hillis–Steele scan (``log2 L`` vectorised steps, products
    of decays in ``[0, 1]``: nothing can overflow), else a loop of ``L`` in-place steps. Writes the result
    into ``inc`` (the loop) or returns a new tensor (doubling).
    """
    length = inc.shape[0]
    if reverse:  # g_t depends on t + 1: flip, shift the decays by one step
        ones = torch.ones_like(decay[:1])
        if not doubling:
            if carry is not None:
                inc[-1] += carry
            for t in range(length - 2, -1, -1):
                inc[t].addcmul_(decay[t + 1], inc[t + 1])
            return inc
        decay, inc = torch.cat([decay[1:], ones]).flip(0), inc.flip(0)
        return _scan_in_place(decay, inc, carry, reverse=False, doubling=True).flip(0)
    if carry is not None:
        inc[0].addcmul_(decay[0], carry)
    if not doubling:
        for t in range(1, length):
            inc[t].addcmul_(decay[t], inc[t - 1])
        return inc
    decay = decay.clone()
    shift = 1
    while shift < length:  # element t composes the maps of (t − 2·shift, t] after this step
        inc = torch.cat([inc[:shift], torch.addcmul(inc[shift:], decay[shift:], inc[:-shift])])
        decay = torch.cat([decay[:shift], decay[shift:] * decay[:-shift]])
        shift *= 2
    return inc


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan with an entry and an exit state and a hand-written, recomputing backward.

    Forward keeps one chunk's ``(L, B, E, S)`` decays and states at a time and saves only the inputs and
    each chunk's entry state ``(B, E, S)``; backward recomputes a chunk's states from its entry state,
    runs the adjoint recurrence backwards and reduces the gradients chunk by chunk.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: Tensor,
        delta: Tensor,
        a: Tensor,
        b: Tensor,
        c: Tensor,
        h0: Tensor,
        chunk_size: int,
    ) -> tuple[Tensor, Tensor]:
        doubling = x.device.type != "cpu"
        h, ys, entries = h0, [], []
        pieces = zip(*(t.split(chunk_size, dim=1) for t in (x, delta, b, c)), strict=True)
        for x_c, delta_c, b_c, c_c in pieces:
            entries.append(h)
            states = _chunk_states(x_c, delta_c, a, b_c, h, doubling)
            ys.append(_sum_state(states, c_c).transpose(0, 1))
            h = states[-1].clone()
        ctx.save_for_backward(x, delta, a, b, c, torch.stack(entries))
        ctx.chunk_size, ctx.doubling = chunk_size, doubling
        ctx.set_materialize_grads(False)
        return torch.cat(ys, dim=1), h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor | None, gh: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, delta, a, b, c, entries = ctx.saved_tensors
        size, doubling = ctx.chunk_size, ctx.doubling
        if gy is None:
            gy = torch.zeros_like(x)
        gx, gdelta = torch.empty_like(x), torch.empty_like(delta)
        gb, gc = torch.empty_like(b), torch.empty_like(c)
        ga = torch.zeros_like(a)
        carry = gh  # adjoint of the state after the chunk being processed, times its decay
        for i in range(entries.shape[0] - 1, -1, -1):
            sl = slice(i * size, (i + 1) * size)
            x_c, delta_c, b_c, c_c, gy_c = x[:, sl], delta[:, sl], b[:, sl], c[:, sl], gy[:, sl]
            entry = entries[i]
            decay = torch.exp(delta_c.transpose(0, 1).unsqueeze(-1) * a)  # (L, B, E, S)
            states = _chunk_states(x_c, delta_c, a, b_c, entry, doubling, decay=decay)
            adj = gy_c.transpose(0, 1).unsqueeze(-1) * c_c.transpose(0, 1).unsqueeze(-2)  # ∂y_t/∂h_t part
            adj = _scan_in_place(decay, adj, carry, reverse=True, doubling=doubling)  # total ∂L/∂h_t
            gx[:, sl] = _sum_state(adj, b_c).transpose(0, 1)
            gb[:, sl] = _sum_channel(adj, x_c).transpose(0, 1)
            gc[:, sl] = _sum_channel(states, gy_c).transpose(0, 1)
            carry = decay[0] * adj[0]
            # ∂L/∂log(decay_t) = adj_t ⊙ decay_t ⊙ h_{t−1}; log(decay_t) = Δ_t a.
            glog = torch.cat([entry.unsqueeze(0), states[:-1]]).mul_(decay).mul_(adj)
            gdelta[:, sl] = (glog * a).sum(-1).transpose(0, 1)
            ga += glog.mul_(delta_c.transpose(0, 1).unsqueeze(-1)).sum((0, 1))
        return gx, gdelta, ga, gb, gc, carry, None


def _sum_state(t: Tensor, v: Tensor) -> Tensor:
    """``Σ_s t[l, b, e, s] v[b, l, s]``: time-major ``t (L, B, E, S)``, ``v (B, L, S)`` -> ``(L, B, E)``."""
    return torch.matmul(t, v.transpose(0, 1).unsqueeze(-1)).squeeze(-1)


def _sum_channel(t: Tensor, v: Tensor) -> Tensor:
    """``Σ_e t[l, b, e, s] v[b, l, e]``: time-major ``t (L, B, E, S)``, ``v (B, L, E)`` -> ``(L, B, S)``."""
    return torch.matmul(v.transpose(0, 1).unsqueeze(-2), t).squeeze(-2)


def _chunk_states(
    x: Tensor, delta: Tensor, a: Tensor, b: Tensor, h: Tensor, doubling: bool, decay: Tensor | None = None
) -> Tensor:
    """States ``(L, B, E, S)`` (time-major) of one chunk from its entry state ``h``."""
    if decay is None:
        decay = torch.exp(delta.transpose(0, 1).unsqueeze(-1) * a)  # Ā_t, in (0, 1]
    inc = x.transpose(0, 1).unsqueeze(-1) * b.transpose(0, 1).unsqueeze(-2)  # B̄_t u_t
    return _scan_in_place(decay, inc, h, reverse=False, doubling=doubling)


def selective_scan_state(
    u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, h0: Tensor, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    """Chunked selective scan from the entry state ``h0 (B, E, S)``; returns ``y`` and the exit state.

    Same arguments as :func:`selective_scan_recurrent` (the exit state is the ``h`` after the last token);
    ``chunk_size`` need not divide ``T``. Gradients flow to every input including ``h0``.
    """
    if chunk_size < 1:
        raise ValueError(f"selective_scan: chunk_size must be positive, got {chunk_size}")
    y, h = _SelectiveScan.apply(delta * u, delta, a, b, c, h0, chunk_size)
    return y + d * u, h


def selective_scan_chunked(
    u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, chunk_size: int = 64
) -> Tensor:
    """Chunked selective scan from a zero state; arguments and result as :func:`selective_scan_recurrent`.

    Each chunk's ``(L, E, S)`` states exist only while it is processed (forward and backward); autograd
    keeps the inputs and one ``(E, S)`` state per chunk. ``chunk_size`` need not divide ``T``.
    """
    h0 = u.new_zeros(u.shape[0], u.shape[2], a.shape[1])
    return selective_scan_state(u, delta, a, b, c, d, h0, chunk_size)[0]


def selective_scan(
    u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, *, scan: Scan, chunk_size: int
) -> Tensor:
    """Dispatch to the chunked (parallel) or recurrent selective scan."""
    if scan == "recurrent":
        return selective_scan_recurrent(u, delta, a, b, c, d)
    return selective_scan_chunked(u, delta, a, b, c, d, chunk_size)


class SelectiveSSM(nn.Module):
    """One scan direction of a Mamba block: causal depthwise conv, SiLU, selection of ``Δ, B, C``, S6 scan.

    Args:
        inner: Inner channels ``E``.
        d_state: State size ``S`` per channel.
        dt_rank: Rank of the ``Δ`` projection.
        d_conv: Kernel size of the causal depthwise convolution.
        dt_min: Smallest initial step size.
        dt_max: Largest initial step size.
    """

    def __init__(
        self, inner: int, d_state: int, dt_rank: int, d_conv: int, dt_min: float = 1e-3, dt_max: float = 0.1
    ) -> None:
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner)
        dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.a_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1)
        )
        self.d = nn.Parameter(torch.ones(inner))

    def forward(self, x: Tensor, keep: Tensor | None, *, scan: Scan, chunk_size: int) -> Tensor:
        """``x (B, T, E)`` (padded tokens already zero) -> ``y (B, T, E)``; ``keep (B, T)`` zeroes their Δ."""
        if scan != "recurrent":
            return self.segment(x, keep, None, chunk_size=chunk_size)[0]
        length = x.shape[1]
        u = F.silu(self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2))
        delta, b, c = self._select(u, keep)
        a = -torch.exp(self.a_log.to(u.dtype))
        return selective_scan_recurrent(u, delta, a, b, c, self.d)

    def segment(
        self, x: Tensor, keep: Tensor | None, state: tuple[Tensor, Tensor] | None, *, chunk_size: int
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One segment of the chunked scan, continuing from ``state`` (None at the sequence start).

        ``state = (tail, h)``: the last ``d_conv − 1`` inputs before the segment (the convolution's left
        context) and the SSM state after them. Returns ``y`` and the state after the segment.
        """
        bsz, _, inner = x.shape
        if state is None:
            tail = x.new_zeros(bsz, self.conv.kernel_size[0] - 1, inner)
            h = x.new_zeros(bsz, inner, self.d_state)
        else:
            tail, h = state
        full = torch.cat([tail, x], dim=1) if tail.shape[1] else x
        conv = F.conv1d(full.transpose(1, 2), self.conv.weight, self.conv.bias, groups=inner)
        u = F.silu(conv.transpose(1, 2))
        delta, b, c = self._select(u, keep)
        a = -torch.exp(self.a_log.to(u.dtype))
        y, h = selective_scan_state(u, delta, a, b, c, self.d, h, chunk_size)
        return y, (full[:, full.shape[1] - tail.shape[1] :], h)

    def _select(self, u: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``Δ`` (zero at padded tokens), ``B`` and ``C`` from the convolved input ``u``."""
        dt, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        if keep is not None:
            delta = delta * keep[..., None].to(delta.dtype)
        return delta, b, c


class _MambaBranch(nn.Module):
    """``W_out((S6_fwd(x) [+ flip S6_bwd(flip x)]) ⊙ SiLU(z))`` with ``[x, z] = W_in(input)``."""

    def __init__(
        self, d_model: int, inner: int, d_state: int, dt_rank: int, d_conv: int, two_way: bool
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.forward_ssm = SelectiveSSM(inner, d_state, dt_rank, d_conv)
        self.backward_ssm = SelectiveSSM(inner, d_state, dt_rank, d_conv) if two_way else None
        self.out_proj = nn.Linear(inner, d_model, bias=False)

    def forward(
        self, x: Tensor, keep: Tensor | None, *, both_ways: bool, scan: Scan, chunk_size: int
    ) -> Tensor:
        """One pass over the whole sequence (the reference path and the channel mixer)."""
        if scan != "recurrent":
            return torch.cat(self.segments([x], [keep], both_ways=both_ways, chunk_size=chunk_size), dim=1)
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        if keep is not None:
            xs = xs * keep[..., None].to(xs.dtype)
        y = self.forward_ssm(xs, keep, scan=scan, chunk_size=chunk_size)
        if both_ways and self.backward_ssm is not None:
            keep_r = None if keep is None else keep.flip(1)
            y = y + self.backward_ssm(xs.flip(1), keep_r, scan=scan, chunk_size=chunk_size).flip(1)
        return self.out_proj(y * F.silu(z))

    def segments(
        self, xs: Sequence[Tensor], keeps: Sequence[Tensor | None], *, both_ways: bool, chunk_size: int
    ) -> list[Tensor]:
        """Chunked scan over consecutive segments of a sequence; one output per segment.

        The forward scan carries its state from segment to segment. With ``both_ways`` the forward
        outputs are kept and a second pass runs the backward scan over the segments in reverse order
        (each flipped), combining, gating and projecting as it goes.
        """
        two_way = both_ways and self.backward_ssm is not None
        state, kept, outs = None, [], []
        for x, keep in zip(xs, keeps, strict=True):
            inner, z = self.in_proj(x).chunk(2, dim=-1)
            if keep is not None:
                inner = inner * keep[..., None].to(inner.dtype)
            y, state = self.forward_ssm.segment(inner, keep, state, chunk_size=chunk_size)
            if two_way:
                kept.append((inner, z, y, keep))
            else:
                outs.append(self.out_proj(y * F.silu(z)))
        if not two_way or self.backward_ssm is None:
            return outs
        state = None
        for inner, z, y, keep in reversed(kept):
            keep_r = None if keep is None else keep.flip(1)
            y_r, state = self.backward_ssm.segment(inner.flip(1), keep_r, state, chunk_size=chunk_size)
            outs.append(self.out_proj((y + y_r.flip(1)) * F.silu(z)))
        return outs[::-1]


@register_mechanism(
    paper="Behrouz et al. 2024, MambaMixer: Dual Token and Channel Selection (arXiv 2403.19888)",
    complexity="O(N d S)",
    example_kwargs={"d_state": 4, "chunk_size": 4},
)
class MambaMixer(TokenMixer):
    """Selective token mixer (Mamba S6 over tokens) + selective channel mixer (S6 across channels).

    Args:
        dim: Channel dimension ``C``.
        d_state: State size ``S`` of every selective SSM (Mamba's default 16).
        expand: Inner width of the token mixer, ``E = expand · C`` (Mamba's default 2).
        d_conv: Kernel size of the causal depthwise convolutions (Mamba's default 4).
        dt_rank: Rank of the ``Δ`` projection; ``ceil(C / 16)`` by default (Mamba's choice).
        bidirectional: Non-causal calls also scan the reversed sequence (own parameters) and sum.
        channel_mixer: Add the selective channel mixer after the token mixer (MambaMixer's dual selection).
        channel_expand: Inner channels of the channel mixer's ``d_model = 1`` Mamba block.
        scan: ``chunked`` (parallel, default) or ``recurrent`` (reference loop).
        chunk_size: Chunk length of the chunked scan.
        segment_size: Tokens per segment of the chunked layer (see the module doc); it changes speed and
            memory, not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch scan with a recomputing backward (CPU + GPU); no fused selective-scan kernel"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_rank: int | None = None,
        bidirectional: bool = True,
        channel_mixer: bool = True,
        channel_expand: int = 2,
        scan: Scan = "chunked",
        chunk_size: int = 64,
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        for name, value in (("d_state", d_state), ("expand", expand), ("d_conv", d_conv)):
            if value < 1:
                raise ValueError(f"MambaMixer: {name} must be positive, got {value}")
        if channel_expand < 1 or chunk_size < 1 or segment_size < 1:
            raise ValueError(
                f"MambaMixer: channel_expand, chunk_size and segment_size must be positive, got "
                f"{channel_expand}, {chunk_size}, {segment_size}"
            )
        if scan not in ("chunked", "recurrent"):
            raise ValueError(f"MambaMixer: scan must be 'chunked' or 'recurrent', got {scan!r}")
        rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        if rank < 1:
            raise ValueError(f"MambaMixer: dt_rank must be positive, got {rank}")
        self.d_state, self.expand, self.bidirectional = d_state, expand, bidirectional
        self.scan: Scan = scan
        self.chunk_size = chunk_size
        self.segment_size = segment_size
        self.token = _MambaBranch(dim, expand * dim, d_state, rank, d_conv, bidirectional)
        self.channel_norm = nn.LayerNorm(dim) if channel_mixer else None
        self.channel = _MambaBranch(1, channel_expand, d_state, 1, d_conv, True) if channel_mixer else None

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Token mixing (causal or bidirectional scan), then per-token channel mixing with a residual."""
        b, n, _ = x.shape
        keep = key_padding_mask(mask, b, n, "MambaMixer")
        both_ways = not is_causal and self.bidirectional
        if self.scan == "recurrent":  # the reference: one pass, no segments
            return self._channel_mix(self.token(x, keep, both_ways=both_ways, scan="recurrent", chunk_size=1))
        # Segment by segment (see the module doc). Split once; per-segment projections.
        xs = x.split(self.segment_size, dim=1)
        keeps = keep.split(self.segment_size, dim=1) if keep is not None else [None] * len(xs)
        ts = self.token.segments(xs, keeps, both_ways=both_ways, chunk_size=self.chunk_size)
        if self.channel is None or not torch.is_grad_enabled():
            return torch.cat([self._channel_mix(t) for t in ts], dim=1)
        # The channel mixer's per-token activations (C x channel_expand x d_state) are recomputed.
        return torch.cat([checkpoint(self._channel_mix, t, use_reentrant=False) for t in ts], dim=1)

    def _channel_mix(self, t: Tensor) -> Tensor:
        """``t + ChannelMixer(LayerNorm(t))`` per token (identity without the channel mixer)."""
        if self.channel is None or self.channel_norm is None:
            return t
        b, n, c = t.shape
        seq = self.channel_norm(t).reshape(b * n, c, 1)
        mixed = self.channel(seq, None, both_ways=True, scan=self.scan, chunk_size=self.chunk_size)
        return t + mixed.reshape(b, n, c)

    def extra_repr(self) -> str:
        """Add the SSM sizes and scan options to the default representation."""
        return (
            f"{super().extra_repr()}, d_state={self.d_state}, expand={self.expand}, "
            f"bidirectional={self.bidirectional}, channel_mixer={self.channel is not None}, "
            f"scan={self.scan}, chunk_size={self.chunk_size}, segment_size={self.segment_size}"
        )
