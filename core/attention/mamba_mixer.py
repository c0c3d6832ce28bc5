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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.registry import register_mechanism

__all__ = [
    "MambaMixer",
    "SelectiveSSM",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_recurrent",
]

Scan = Literal["chunked", "recurrent"]


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


def selective_scan_chunked(
    u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, chunk_size: int = 64
) -> Tensor:
    """Parallel selective scan: a log-space Hillis–Steele scan inside chunks, the state carried across chunks.

    Same arguments and result as :func:`selective_scan_recurrent`; ``chunk_size`` need not divide ``T``.
    """
    if chunk_size < 1:
        raise ValueError(f"selective_scan: chunk_size must be positive, got {chunk_size}")
    bsz, _, e = u.shape
    h = u.new_zeros(bsz, e, a.shape[1])
    ys = []
    # Split once (slicing inside the loop makes the backward pass quadratic in T, see linear.py).
    pieces = zip(*(t.split(chunk_size, dim=1) for t in (u, delta, b, c)), strict=True)
    for u_c, delta_c, b_c, c_c in pieces:
        log_a = delta_c[..., None] * a  # (B, L, E, S): log of Ā_t, ≤ 0
        inc = (delta_c * u_c)[..., None] * b_c[:, :, None, :]  # B̄_t u_t
        size, shift = log_a.shape[1], 1
        while shift < size:  # element t composes the maps of (t − 2·shift, t] after this step
            prev_inc = F.pad(inc[:, :-shift], (0, 0, 0, 0, shift, 0))
            prev_log = F.pad(log_a[:, :-shift], (0, 0, 0, 0, shift, 0))
            inc = inc + torch.exp(log_a) * prev_inc
            log_a = log_a + prev_log
            shift *= 2
        states = torch.exp(log_a) * h[:, None] + inc  # (B, L, E, S)
        ys.append((states * c_c[:, :, None, :]).sum(-1))
        h = states[:, -1]
    return torch.cat(ys, dim=1) + d * u


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
        length = x.shape[1]
        u = F.silu(self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        if keep is not None:
            delta = delta * keep[..., None].to(delta.dtype)
        a = -torch.exp(self.a_log.to(u.dtype))
        return selective_scan(u, delta, a, b, c, self.d, scan=scan, chunk_size=chunk_size)


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
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        if keep is not None:
            xs = xs * keep[..., None].to(xs.dtype)
        y = self.forward_ssm(xs, keep, scan=scan, chunk_size=chunk_size)
        if both_ways and self.backward_ssm is not None:
            keep_r = None if keep is None else keep.flip(1)
            y = y + self.backward_ssm(xs.flip(1), keep_r, scan=scan, chunk_size=chunk_size).flip(1)
        return self.out_proj(y * F.silu(z))


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
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch scan (CPU + GPU); no fused selective-scan kernel"

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
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        for name, value in (("d_state", d_state), ("expand", expand), ("d_conv", d_conv)):
            if value < 1:
                raise ValueError(f"MambaMixer: {name} must be positive, got {value}")
        if channel_expand < 1 or chunk_size < 1:
            raise ValueError(
                f"MambaMixer: channel_expand and chunk_size must be positive, got {channel_expand}, "
                f"{chunk_size}"
            )
        if scan not in ("chunked", "recurrent"):
            raise ValueError(f"MambaMixer: scan must be 'chunked' or 'recurrent', got {scan!r}")
        rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        if rank < 1:
            raise ValueError(f"MambaMixer: dt_rank must be positive, got {rank}")
        self.d_state, self.expand, self.bidirectional = d_state, expand, bidirectional
        self.scan: Scan = scan
        self.chunk_size = chunk_size
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
        b, n, c = x.shape
        keep = key_padding_mask(mask, b, n, "MambaMixer")
        opts = {"scan": self.scan, "chunk_size": self.chunk_size}
        t = self.token(x, keep, both_ways=not is_causal and self.bidirectional, **opts)
        if self.channel is None or self.channel_norm is None:
            return t
        seq = self.channel_norm(t).reshape(b * n, c, 1)
        return t + self.channel(seq, None, both_ways=True, **opts).reshape(b, n, c)

    def extra_repr(self) -> str:
        """Add the SSM sizes and scan options to the default representation."""
        return (
            f"{super().extra_repr()}, d_state={self.d_state}, expand={self.expand}, "
            f"bidirectional={self.bidirectional}, channel_mixer={self.channel is not None}, "
            f"scan={self.scan}, chunk_size={self.chunk_size}"
        )
