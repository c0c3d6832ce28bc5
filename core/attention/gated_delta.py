"""Gated DeltaNet: a linear recurrent token mixer with a gated delta-rule state update.

Paper: Yang, Kautz, Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta Rule", ICLR 2025
(arXiv 2412.06464). Official code: ``NVlabs/GatedDeltaNet``, built on the flash-linear-attention (fla)
layer ``fla/layers/gated_deltanet.py`` and its Triton kernels ``fla/ops/gated_delta_rule``; the layer
structure and the initialisations below follow that layer as described in the paper and its README.

**Recurrence.** Per head, with a matrix state ``S_t ∈ R^{d_v × d_k}``, L2-normalised ``q_t, k_t``, the
data-dependent decay ``α_t = exp(g_t) ∈ (0, 1]`` and the writing strength ``β_t ∈ (0, 1)``::

    S_t = α_t S_{t-1} (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ,        o_t = S_t (q_t / √d_k)

``α`` erases the whole memory (Mamba2's gate); ``β`` replaces the value stored under key ``k_t`` by
``v_t`` (the delta rule). Gates, as in the official layer::

    g_t = −exp(A_log) · softplus(W_a x_t + dt_bias)   (decay="mamba2", default)
    g_t = log σ(W_a x_t)                                (decay="logsigmoid", the GLA-style gate)
    β_t = σ(W_b x_t)                                    (2 σ(·) with allow_neg_eigval: eigenvalues in (−1, 1))

``q, k, v`` come from linear projections followed by a causal depthwise convolution of width
``conv_size`` and SiLU (``use_short_conv``; without it only the SiLU). The per-head output is
``RMSNorm(o_t) ⊙ SiLU(W_g x_t)`` (``use_gate``), heads are concatenated and projected back to ``C``.

**Chunked form** (:func:`gated_delta_rule_chunked`, the training path). Write the update with the state
transposed, ``S_t = α_t S_{t-1} + k_t u_tᵀ`` with ``u_t = β_t (v_t − α_t S_{t-1}ᵀ k_t)``. Inside a chunk
of ``c`` tokens starting from state ``S_0``, with ``γ_t = ∏_{s≤t} α_s`` (cumulative inside the chunk)::

    (I + A) U = diag(β) V − diag(β γ) K S_0,   A_ti = β_t (γ_t / γ_i) k_tᵀ k_i  for i < t

so ``U = W_v − W_k S_0`` with the WY / UT-transform factors ``W_v = T diag(β) V``, ``W_k = T diag(βγ) K``,
``T = (I + A)^{-1}`` (one unit-lower-triangular solve per chunk, parallel over chunks). Then::

    O   = diag(γ) Q S_0 + (Q Kᵀ ⊙ Γ) U,          Γ_ti = γ_t / γ_i  for i ≤ t, else 0
    S_c = γ_c S_0 + (diag(γ_c / γ) K)ᵀ U

Only ``γ_t / γ_i`` with ``i ≤ t`` appear (never ``1 / γ``), so no factor exceeds one. The intra-chunk
work is ``O(N c (d_k + d_v))`` and the state pass is a loop over ``N / c`` chunks of ``O(d_k d_v c)``
matrix products; no ``(N, N)`` tensor is built. :func:`gated_delta_rule_recurrent` is the token-by-token
reference (``mode="recurrent"``).

**Segments** (``segment_size``, default :data:`SEGMENT_SIZE`). In ``mode="chunk"`` the layer runs
segment by segment so that every operand stays cache-sized on CPU: each segment is projected,
convolved (with the last ``conv_size − 1`` projected tokens of the previous segment as the convolution's
left context), run through the chunked rule from the previous segment's exit state, normalised, gated
and projected on its own. Only the input and the output span the whole sequence. Results equal the
one-pass form up to floating-point rounding.

**Masks.** A recurrent model has no attention matrix, so only key padding is accepted (a ``(B, N)``
mask, or one that broadcasts as ``(B | 1, 1, 1, N)``). A padded token does not touch the state
(``β = 0`` and ``α = 1``) and its projections are zeroed before the short convolution, so it does not
leak into its neighbours either. Left or right padding therefore gives exactly the outputs of the
unpadded sequence; outputs *at* padded positions are computed but meaningless. A gap in the middle acts
as zeros inside the convolution window (the official varlen path instead removes the gap).

Differences from the official code:

* The fla layer runs Triton kernels (GPU only); here the chunked form is plain PyTorch, so it trains on
  CPU and GPU alike. ``mode="recurrent"`` is the slow reference, not fla's fused recurrent kernel.
* fla pads nothing: it unpads variable-length batches (``cu_seqlens``); we emulate it by freezing the
  state on padded tokens (see *Masks*).
* Defaults are sized for this library (``num_heads=4``, ``head_dim = C / num_heads``); the paper's
  1.3B model uses ``head_dim=256``, 6 heads and ``expand_v=2``. ``A_log`` and ``dt_bias`` get weight
  decay unless the optimiser excludes them (the official code flags them ``_no_weight_decay``).
* No key/value cache for incremental decoding; the final state is returned by the functional forms.
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.mha import split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "SEGMENT_SIZE",
    "CausalDepthwiseConv",
    "GatedDeltaNet",
    "check_recurrent_inputs",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
    "pad_to_chunks",
]

Decay = Literal["mamba2", "logsigmoid"]
Mode = Literal["chunk", "recurrent"]

#: Tokens per segment of the chunked layer (rounded down to a multiple of ``chunk_size``). Per token a
#: segment holds the q/k/v projection (``2 d_k + d_v`` channels per head, twice: before and after the
#: convolution) and the ``(c, c)`` intra-chunk matrices per head: about 6 KiB for B = 2, C = 64, 4 heads,
#: ``expand_v = 2``, c = 64 (fp32), so 1024 tokens keep a segment's largest tensors at 1 to 2 MiB (L2
#: sized) and its whole working set at a few MiB (well inside L3); 64k tokens take 64 iterations.
SEGMENT_SIZE = 1024


class CausalDepthwiseConv(nn.Module):
    """Causal depthwise 1-D convolution over tokens, then SiLU: fla's ``ShortConvolution``.

    Token ``t`` sees tokens ``t − kernel_size + 1 … t`` (zeros before the start).

    Args:
        channels: Channels of ``(B, N, channels)`` inputs.
        kernel_size: Window width (official: 4).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"CausalDepthwiseConv: kernel_size must be positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: Tensor, prefix: Tensor | None = None) -> Tensor:
        """``(B, N, C) -> (B, N, C)``.

        Args:
            x: Inputs ``(B, N, C)``.
            prefix: Optional inputs just before ``x`` ``(B, P, C)`` (the end of the previous segment),
                used as the window's left context instead of zeros; its last ``kernel_size − 1`` tokens
                matter.
        """
        h = x.transpose(1, 2)
        width = self.kernel_size - 1
        if prefix is not None and width:
            h = torch.cat((prefix[:, -width:].transpose(1, 2), h), dim=-1)
        h = F.pad(h, (self.kernel_size - 1 - (h.shape[-1] - x.shape[1]), 0))
        return F.silu(self.conv(h).transpose(1, 2))


def check_recurrent_inputs(owner: str, q: Tensor, k: Tensor, v: Tensor, *gates: Tensor) -> None:
    """Check ``q, k (B, H, N, Dk)``, ``v (B, H, N, Dv)`` and gates that start with ``(B, H, N)``."""
    if q.ndim != 4 or q.shape != k.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{owner}: expected q, k (B, H, N, Dk) and v (B, H, N, Dv), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    for gate in gates:
        if gate.shape[:3] != q.shape[:3]:
            raise ValueError(f"{owner}: gates must be shaped like q[..., :N], got {tuple(gate.shape)}")


def gated_delta_rule_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Token-by-token gated delta rule (reference): ``S_t = α_t S_{t-1} + β_t k_t (v_t − α_t S_{t-1}ᵀ k_t)ᵀ``.

    The state is stored transposed, ``(B, H, Dk, Dv)``, and ``o_t = S_tᵀ (scale · q_t)``.

    Args:
        q: Queries ``(B, H, N, Dk)`` (already normalised; not normalised here).
        k: Keys ``(B, H, N, Dk)``.
        v: Values ``(B, H, N, Dv)``.
        g: Log decays ``(B, H, N)``, ``α = exp(g)``.
        beta: Writing strengths ``(B, H, N)``.
        scale: Query scale; ``Dk ** -0.5`` when None.
        initial_state: Optional ``(B, H, Dk, Dv)`` state before the first token.

    Returns:
        Outputs ``(B, H, N, Dv)`` and the final state ``(B, H, Dk, Dv)``.
    """
    check_recurrent_inputs("gated_delta_rule_recurrent", q, k, v, g, beta)
    b, h, n, dk = q.shape
    scale = dk**-0.5 if scale is None else scale
    state = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for t in range(n):
        kt = k[:, :, t]
        state = state * g[:, :, t, None, None].exp()
        u = beta[:, :, t, None] * (v[:, :, t] - (kt.unsqueeze(-2) @ state).squeeze(-2))
        state = state + kt.unsqueeze(-1) * u.unsqueeze(-2)
        outs.append(((q[:, :, t] * scale).unsqueeze(-2) @ state).squeeze(-2))
    return torch.stack(outs, dim=2), state


def pad_to_chunks(t: Tensor, chunk_size: int) -> Tensor:
    """Zero-pad the token axis (dim 2) to a multiple of ``chunk_size`` and split it into chunks."""
    n = t.shape[2]
    pad = (-n) % chunk_size
    if pad:
        widths = [0, 0] * (t.ndim - 3) + [0, pad]
        t = F.pad(t, widths)
    return t.reshape(*t.shape[:2], -1, chunk_size, *t.shape[3:])


def gated_delta_rule_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    chunk_size: int = 64,
    scale: float | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunkwise-parallel gated delta rule (WY / UT transform inside chunks, state passed between them).

    Same arguments and results as :func:`gated_delta_rule_recurrent`; ``N`` need not be a multiple of
    ``chunk_size`` (the tail chunk is zero-padded with ``β = 0``, ``g = 0``, which leaves the state alone).
    Memory is ``O(N · chunk_size)`` per head for the intra-chunk matrices plus ``O(N (Dk + Dv))``.

    Raises:
        ValueError: For mismatched shapes or ``chunk_size < 1``.
    """
    check_recurrent_inputs("gated_delta_rule_chunked", q, k, v, g, beta)
    if chunk_size < 1:
        raise ValueError(f"gated_delta_rule_chunked: chunk_size must be positive, got {chunk_size}")
    b, h, n, dk = q.shape
    dv = v.shape[-1]
    scale = dk**-0.5 if scale is None else scale
    c = min(chunk_size, n)
    qc, kc, vc = pad_to_chunks(q * scale, c), pad_to_chunks(k, c), pad_to_chunks(v, c)  # (B, H, nc, c, D)
    gc, bc = (
        pad_to_chunks(g.unsqueeze(-1), c)[..., 0],
        pad_to_chunks(beta.unsqueeze(-1), c)[..., 0],
    )  # (B, H, nc, c)
    cum = gc.cumsum(-1)  # log γ_t inside each chunk
    incl = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    strict = incl.tril(-1)
    gamma_ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(~incl, float("-inf")).exp()
    a = (bc.unsqueeze(-1) * (kc @ kc.transpose(-1, -2)) * gamma_ratio).masked_fill(~strict, 0.0)
    rhs = torch.cat([bc.unsqueeze(-1) * vc, (bc * cum.exp()).unsqueeze(-1) * kc], dim=-1)
    w = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)  # T · rhs, T = (I + A)^{-1}
    w_v, w_k = w.split([dv, dk], dim=-1)
    scores = (qc @ kc.transpose(-1, -2)) * gamma_ratio  # zero above the diagonal
    q_decayed = qc * cum.exp().unsqueeze(-1)
    k_decayed = kc * (cum[..., -1:] - cum).exp().unsqueeze(-1)
    chunk_decay = cum[..., -1].exp()[..., None, None]  # (B, H, nc, 1, 1)
    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state
    outs = []
    # unbind once: indexing chunk i inside the loop would make autograd scatter into a full-size zero
    # tensor per chunk, a backward quadratic in N.
    per_chunk = (t.unbind(2) for t in (w_v, w_k, q_decayed, scores, k_decayed, chunk_decay))
    for wv_i, wk_i, q_i, scores_i, k_i, decay_i in zip(*per_chunk, strict=True):
        u = wv_i - wk_i @ state
        outs.append(q_i @ state + scores_i @ u)
        state = decay_i * state + k_i.transpose(-1, -2) @ u
    out = torch.stack(outs, dim=2).reshape(b, h, -1, dv)[:, :, :n]
    return out, state


def _inverse_softplus(t: Tensor) -> Tensor:
    return t + torch.log(-torch.expm1(-t))


@register_mechanism(
    paper="Yang, Kautz, Hatamizadeh 2025, Gated Delta Networks: Improving Mamba2 with Delta Rule",
    complexity="O(N d^2)",
    example_kwargs={"num_heads": 2, "head_dim": 4, "chunk_size": 4},
)
class GatedDeltaNet(TokenMixer):
    """Gated DeltaNet token mixer (causal only: it is a recurrent model).

    Args:
        dim: Channel dimension ``C``.
        num_heads: Number of heads ``H``.
        head_dim: Key/query size per head ``d_k``; defaults to ``C // num_heads``.
        expand_v: Value size per head is ``expand_v · d_k`` (official: 2).
        decay: ``mamba2`` (``g = −exp(A_log) softplus(W_a x + dt_bias)``, official) or ``logsigmoid``
            (``g = log σ(W_a x)``).
        allow_neg_eigval: ``β = 2σ(·)`` so the transition's eigenvalues reach ``(−1, 1)``.
        use_short_conv: Causal depthwise convolution + SiLU on q, k, v (official: True); otherwise SiLU.
        conv_size: Width of that convolution (official: 4).
        use_gate: Output gate ``RMSNorm(o) ⊙ SiLU(W_g x)``; otherwise ``RMSNorm(o)``.
        chunk_size: Tokens per chunk of the chunked form (official kernels: 64).
        mode: ``chunk`` (parallel, trainable) or ``recurrent`` (the token-by-token reference).
        norm_eps: Epsilon of the output RMSNorm.
        segment_size: Tokens per segment of the chunked form (see the module doc); it changes speed,
            not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch (CPU + GPU); no fused Triton kernel"

    supports_mask = True
    supports_causal = True
    causal_only = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand_v: float = 2.0,
        decay: Decay = "mamba2",
        allow_neg_eigval: bool = False,
        use_short_conv: bool = True,
        conv_size: int = 4,
        use_gate: bool = True,
        chunk_size: int = 64,
        mode: Mode = "chunk",
        norm_eps: float = 1e-5,
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if segment_size < 1:
            raise ValueError(f"GatedDeltaNet: segment_size must be positive, got {segment_size}")
        head_dim = dim // num_heads if head_dim is None and num_heads >= 1 else head_dim
        if num_heads < 1 or head_dim is None or head_dim < 1:
            raise ValueError(
                f"GatedDeltaNet: need num_heads >= 1 and head_dim >= 1, got {num_heads}, {head_dim}"
            )
        head_v_dim = int(head_dim * expand_v)
        if head_v_dim < 1 or head_v_dim != head_dim * expand_v:
            raise ValueError(f"GatedDeltaNet: expand_v * head_dim must be a positive integer, got {expand_v}")
        if decay not in ("mamba2", "logsigmoid"):
            raise ValueError(f"GatedDeltaNet: decay must be 'mamba2' or 'logsigmoid', got {decay!r}")
        if mode not in ("chunk", "recurrent"):
            raise ValueError(f"GatedDeltaNet: mode must be 'chunk' or 'recurrent', got {mode!r}")
        if chunk_size < 1 or conv_size < 1:
            raise ValueError(
                f"GatedDeltaNet: chunk_size and conv_size must be positive, got {chunk_size}, {conv_size}"
            )
        self.num_heads, self.head_dim, self.head_v_dim = num_heads, head_dim, head_v_dim
        self.decay: Decay = decay
        self.mode: Mode = mode
        self.allow_neg_eigval = allow_neg_eigval
        self.chunk_size = chunk_size
        self.segment_size = segment_size
        key_dim, value_dim = num_heads * head_dim, num_heads * head_v_dim
        self.split_sizes = (key_dim, key_dim, value_dim)
        self.qkv_proj = nn.Linear(dim, 2 * key_dim + value_dim, bias=False)
        self.conv = CausalDepthwiseConv(2 * key_dim + value_dim, conv_size) if use_short_conv else None
        self.a_proj = nn.Linear(dim, num_heads, bias=False)
        self.b_proj = nn.Linear(dim, num_heads, bias=False)
        if decay == "mamba2":
            # Mamba2 init: A ~ U(0, 16), dt log-uniform in [1e-3, 1e-1], dt_bias = softplus^{-1}(dt).
            self.A_log = nn.Parameter(torch.empty(num_heads).uniform_(0, 16).clamp_min(1e-4).log())
            dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_bias = nn.Parameter(_inverse_softplus(dt.clamp_min(1e-4)))
        self.g_proj = nn.Linear(dim, value_dim, bias=False) if use_gate else None
        self.o_norm = nn.RMSNorm(head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(value_dim, dim, bias=False)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log decay ``g`` and writing strength ``β``, each ``(B, H, N)``."""
        a = self.a_proj(x)
        if self.decay == "mamba2":
            g = -self.A_log.exp() * F.softplus(a + self.dt_bias)
        else:
            g = F.logsigmoid(a)
        beta = self.b_proj(x).sigmoid()
        if self.allow_neg_eigval:
            beta = 2 * beta
        return g.transpose(1, 2), beta.transpose(1, 2)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project, convolve, run the gated delta rule per head, gate, normalise and project back."""
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, "GatedDeltaNet")
        if self.mode == "recurrent":
            q, k, v, g, beta, _ = self._inputs(x, valid, None)
            o, _ = gated_delta_rule_recurrent(q, k, v, g, beta)
            return self._output(o, x)
        # Chunked: segment by segment (see the module doc). Split once; per-segment projections.
        seg = max(1, self.segment_size // self.chunk_size) * self.chunk_size
        xs = x.split(seg, dim=1)
        masks = valid.split(seg, dim=1) if valid is not None else [None] * len(xs)
        outs, state, prefix = [], None, None
        for x_s, m_s in zip(xs, masks, strict=True):
            q, k, v, g, beta, prefix = self._inputs(x_s, m_s, prefix)
            o, state = gated_delta_rule_chunked(
                q, k, v, g, beta, chunk_size=self.chunk_size, initial_state=state
            )
            outs.append(self._output(o, x_s))
        return torch.cat(outs, dim=1)

    def _inputs(
        self, x: Tensor, valid: Tensor | None, prefix: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``q, k, v`` (heads), ``g, β`` of a segment and its convolution context for the next one.

        ``prefix`` is the previous segment's (masked, unconvolved) projection tail; the returned one holds
        the last ``conv_size − 1`` projected tokens up to this segment (None without the convolution).
        """
        qkv = self.qkv_proj(x)
        if valid is not None:
            qkv = qkv * valid.unsqueeze(-1).to(qkv.dtype)
        tail = None
        if self.conv is not None:
            width = self.conv.kernel_size - 1
            if width:
                short = prefix is not None and qkv.shape[1] < width
                tail = (torch.cat((prefix, qkv), dim=1) if short else qkv)[:, -width:]
            qkv = self.conv(qkv, prefix)
        else:
            qkv = F.silu(qkv)
        q, k, v = (split_heads(t, self.num_heads) for t in qkv.split(self.split_sizes, dim=-1))
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        g, beta = self.gates(x)
        if valid is not None:
            keep = valid[:, None, :].to(g.dtype)
            g, beta = g * keep, beta * keep  # padded tokens: α = 1, β = 0, the state is untouched
        return q, k, v, g, beta, tail

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Per-head RMSNorm, the output gate ``SiLU(W_g x)`` and the output projection."""
        b, n, _ = x.shape
        o = self.o_norm(o.transpose(1, 2))  # (B, N, H, Dv), RMSNorm per head
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x)).view(b, n, self.num_heads, self.head_v_dim)
        return self.o_proj(o.reshape(b, n, -1))

    def extra_repr(self) -> str:
        """Add heads, sizes, gate parameterisation and mode to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"head_v_dim={self.head_v_dim}, decay={self.decay}, chunk_size={self.chunk_size}, "
            f"segment_size={self.segment_size}, mode={self.mode}"
        )
