"""Miras test-time memorisation: Moneta, Yaad and Memora (attentional bias + retention + online update).

Paper: Behrouz, Razaviyayn, Zhong, Mirrokni, "It's All Connected: A Journey Through Test-Time Memorization,
Attentional Bias, Retention, and Online Optimization", 2025 (arXiv 2504.13173).

A Miras layer keeps, per head, a memory that maps keys to values and learns it *at test time*: at every
token it takes one gradient step on an **attentional bias** (the inner loss of ``W(k_t)`` against ``v_t``)
under a **retention gate** (how much of the old memory is kept), then reads the memory with the query.
With a linear memory ``W ∈ R^{dv × dk}`` all three models share one recurrence on an accumulator ``A``::

    e_t = ψ(W_{t−1} k_t − v_t)                  ψ = derivative of the attentional bias
    A_t = α_t A_{t−1} − η_t e_t k_tᵀ            (the gradient of the bias w.r.t. W is e_t k_tᵀ)
    W_t = R(A_t)                                R = read-out implied by the retention gate
    y_t = W_t q_t                               A_0 = 0

with data-dependent retention ``α_t = σ(w_α·x_t + b_α) ∈ (0, 1)`` and learning rate
``η_t = η_max σ(w_η·x_t + b_η)``, one per head and token. Queries and keys are L2-normalised per head.

* **Moneta** (``bias="lp"``, ``retention="lq"``): ℓ_p attentional bias ``‖W k − v‖_p^p`` with the smooth
  derivative ``ψ(e) = p · e · (e² + ε)^{(p−2)/2}`` (``→ p sign(e)|e|^{p−1}`` as ``ε → 0``; smooth for every
  ``p > 1``), and ℓ_q retention, whose closed form normalises the accumulator:
  ``W_t = A_t / (ε_q + ‖A_t‖_q^{q−2})`` (``‖·‖_q`` the entrywise q-norm of the head's matrix). Defaults
  ``p = 3``, ``q = 4``. ``ε_q`` (``norm_eps``, default 1) keeps the read-out finite while ``A ≈ 0``
  (the paper's form has no ``ε_q`` and divides by zero at ``A_0 = 0``): for ``‖A‖_q^{q−2} ≫ 1`` it is the
  paper's map.
* **Yaad** (``bias="huber"``, ``retention="l2"``): Huber attentional bias with a data-dependent threshold
  ``δ_t = softplus(w_δ·x_t + b_δ)``; its derivative clips the residual elementwise,
  ``ψ(e) = clamp(e, −δ_t, δ_t)``, i.e. an ℓ_2 step for small errors and a ``δ_t``-scaled ℓ_1 (sign) step for
  outliers. ℓ_2 retention (weight decay ``α_t``, as Titans): ``W_t = A_t``.
* **Memora** (``bias="l2"``, ``retention="kl"``): ℓ_2 attentional bias ``½‖W k − v‖²`` (``ψ(e) = e``) with a
  KL (entropy) retention, whose closed form is a softmax update:
  ``W_t = c · softmax(α_t log(W_{t−1}/c) − η_t e_t k_tᵀ)``, softmax over the key axis of each row
  (every memory row is a scaled distribution over key coordinates), ``c > 0`` a learned per-head scale.
  Row-constant shifts commute with ``α_t ·`` and vanish under softmax, so this equals ``W_t = c·softmax(A_t)``
  with the accumulator above and ``A_0 = 0`` (``W_0 = c/dk`` uniform): that is how it is computed.
* :class:`MirasMemory` exposes the generic choice (``bias`` × ``retention``); ``bias="l2"`` with
  ``retention="l2"`` is Titans' linear memory without momentum (a gated delta rule).

**Algorithms** (``algorithm``):

* ``recurrent``: the token-by-token update above (the reference).
* ``chunked``: Titans/Miras' parallel training form: inside a chunk of ``chunk_size`` tokens every
  gradient is taken at the memory of the chunk start, ``e_t = ψ(W_{c0} k_t − v_t)``, and the gated sum
  ``A_t = γ_t A_{c0} − Σ_{s≤t} (γ_t/γ_s) η_s e_s k_sᵀ`` (``γ_t = Π α`` inside the chunk, from log-space
  cumulative sums) is evaluated in parallel. For the identity read-out (ℓ_2 retention) outputs come from
  the attention-like form ``y_t = γ_t A_{c0} q_t − Σ_s (γ_t/γ_s) η_s (k_s·q_t) e_s`` (``O(N L d + N d²)``);
  the non-linear read-outs (Moneta, Memora) need each ``A_t`` of the chunk, ``(L, dv, dk)`` per head, which
  is formed per chunk and recomputed in backward under ``torch.utils.checkpoint`` (``O(N L d²)`` time,
  ``O(L d²)`` extra memory). **This is an approximation** whenever ψ or R is non-linear or the bias depends
  on ``W`` (always, except chunk size 1, where it equals the recurrence exactly).
* ``exact`` (ℓ_2 bias and ℓ_2 retention only): the chunked form with the intra-chunk dependence solved
  exactly. ``e_t = W_{t−1} k_t − v_t`` is linear in the earlier errors of the chunk,
  ``e_t + Σ_{s<t} (γ_{t−1}/γ_s) η_s (k_s·k_t) e_s = γ_{t−1} A_{c0} k_t − v_t``, a unit lower-triangular
  ``L × L`` system solved per chunk: equal to the recurrence for every chunk size.
* ``auto`` (default): ``exact`` where it exists, ``chunked`` otherwise.

**Segments** (``segment_size``, default :data:`SEGMENT_SIZE`, rounded down to a multiple of
``chunk_size``). The ``chunked`` / ``exact`` layers run segment by segment so that every operand stays
cache-sized on CPU: each segment is projected and gated on its own and its chunks continue from the
previous segment's end accumulator. Chunk boundaries are unchanged, so the result equals the one-pass
form up to floating-point rounding. Only the input and the output span the whole sequence.

Key padding (``mask`` ``(B, N)``, True = valid) skips the update at padded tokens (``η = 0``, ``α = 1``).
The layer is causal only.

No official code was read; built from the paper. Simplifications:

* The paper's memories are 2-layer MLPs (``W(k) = k + W_1 σ(W_2 k)``, Titans-style); here the memory is a
  linear matrix per head, which keeps the chunked forms exact where stated and CPU-tractable.
* No momentum in the memory's optimiser, no short convolutions on q/k/v and no output gate/norm (the
  paper's blocks add them around the memory).
* Yaad's switch is elementwise (the standard Huber derivative) rather than on the norm of the residual.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "SEGMENT_SIZE",
    "Memora",
    "MirasConfig",
    "MirasMemory",
    "Moneta",
    "Yaad",
    "miras_chunked",
    "miras_recurrent",
]

Bias = Literal["l2", "lp", "huber"]
Retention = Literal["l2", "lq", "kl"]
Algorithm = Literal["auto", "exact", "chunked", "recurrent"]
_TINY = 1e-12

#: Tokens per segment of the chunked layers (rounded down to a multiple of ``chunk_size``). Per segment
#: the layer holds the q/k/v projection (``3C`` floats per token), the gates and the per-chunk
#: ``(L, L)`` decays (the ``(L, dv, dk)`` states of Moneta/Memora exist one chunk at a time): about
#: 2 KiB per token for B = 2, C = 64 (fp32), so 1024 tokens keep a segment's working set at a few MiB.
SEGMENT_SIZE = 1024


@dataclass(frozen=True)
class MirasConfig:
    """The attentional bias, the retention gate and their constants.

    Attributes:
        bias: ``l2`` (``½‖e‖²``), ``lp`` (``‖e‖_p^p``) or ``huber`` (threshold per token).
        retention: ``l2`` (identity read-out), ``lq`` (``A / (ε_q + ‖A‖_q^{q−2})``) or ``kl`` (``c·softmax``).
        p: Exponent of the ℓ_p bias.
        q: Exponent of the ℓ_q retention.
        lp_eps: Smoothing ``ε`` of the ℓ_p derivative.
        norm_eps: ``ε_q`` added to the ℓ_q normaliser.
    """

    bias: Bias = "l2"
    retention: Retention = "l2"
    p: float = 3.0
    q: float = 4.0
    lp_eps: float = 1e-6
    norm_eps: float = 1.0


def _psi(e: Tensor, cfg: MirasConfig, delta: Tensor | None) -> Tensor:
    """Derivative of the attentional bias w.r.t. the prediction, at the residual ``e = W k − v``."""
    if cfg.bias == "l2":
        return e
    if cfg.bias == "lp":
        return cfg.p * e * (e * e + cfg.lp_eps).pow((cfg.p - 2.0) / 2.0)
    if delta is None:
        raise ValueError("miras: the huber bias needs a threshold delta")
    return torch.maximum(torch.minimum(e, delta), -delta)


def _lq_denominator(a: Tensor, cfg: MirasConfig) -> Tensor:
    """``ε_q + ‖A‖_q^{q−2}`` of accumulators ``a (..., dv, dk)``, shape ``(..., 1)``.

    An even integer ``q`` (Moneta's 4) takes ``|A|^q`` as a power of ``A²`` by multiplication: cheaper than
    ``abs().pow(q)`` forward and backward, and equal up to rounding.
    """
    if cfg.q % 2 == 0 and cfg.q <= 8:
        square = a * a
        power = square
        for _ in range(int(cfg.q) // 2 - 1):
            power = power * square
    else:
        power = a.abs().pow(cfg.q)
    norm = power.sum(dim=(-2, -1)).unsqueeze(-1)
    return cfg.norm_eps + (norm + _TINY).pow((cfg.q - 2.0) / cfg.q)


def _readout(a: Tensor, cfg: MirasConfig, scale: Tensor | None) -> Tensor:
    """Memory ``W = R(A)`` from the accumulator ``a (B, H, ..., dv, dk)``."""
    if cfg.retention == "l2":
        return a
    if cfg.retention == "lq":
        return a / _lq_denominator(a, cfg).unsqueeze(-1)
    if scale is None:
        raise ValueError("miras: the kl retention needs a scale c")
    c = scale.view(1, -1, *([1] * (a.ndim - 2)))
    return c * torch.softmax(a, dim=-1)


def miras_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    eta: Tensor,
    cfg: MirasConfig,
    *,
    delta: Tensor | None = None,
    scale: Tensor | None = None,
) -> Tensor:
    """Token-by-token online update (the reference).

    Args:
        q: Queries ``(B, H, T, dk)``.
        k: Keys ``(B, H, T, dk)``.
        v: Values ``(B, H, T, dv)``.
        log_alpha: ``log α_t`` ``(B, H, T)``, ≤ 0.
        eta: Learning rates ``η_t`` ``(B, H, T)``, ≥ 0.
        cfg: Bias and retention.
        delta: Huber thresholds ``(B, H, T)`` (``huber`` only).
        scale: Per-head scale ``c`` ``(H,)`` (``kl`` only).

    Returns:
        ``y_t = W_t q_t`` of shape ``(B, H, T, dv)``.
    """
    b, h, length, dk = k.shape
    a = k.new_zeros(b, h, v.shape[-1], dk)
    ys = []
    for t in range(length):
        w = _readout(a, cfg, scale)
        e = (w @ k[:, :, t, :, None]).squeeze(-1) - v[:, :, t]
        e = _psi(e, cfg, None if delta is None else delta[:, :, t, None])
        a = (
            log_alpha[:, :, t, None, None].exp() * a
            - eta[:, :, t, None, None] * e[..., :, None] * k[:, :, t, None, :]
        )
        ys.append((_readout(a, cfg, scale) @ q[:, :, t, :, None]).squeeze(-1))
    return torch.stack(ys, dim=2)


def _chunk(
    a0: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    eta: Tensor,
    delta: Tensor | None,
    scale: Tensor | None,
    *,
    cfg: MirasConfig,
    exact: bool,
) -> tuple[Tensor, Tensor]:
    """One chunk from its start accumulator ``a0``: outputs ``(B, H, L, dv)`` and the end accumulator."""
    length = q.shape[2]
    lg = torch.cumsum(log_alpha, dim=-1)  # log γ_t relative to the chunk start
    ones = torch.ones(length, length, dtype=torch.bool, device=q.device)
    diff = lg[..., :, None] - lg[..., None, :]
    decay = (
        torch.exp(diff.masked_fill(~ones.tril(), float("-inf"))) * eta[..., None, :]
    )  # (γ_t/γ_s) η_s, s ≤ t
    if exact:
        lg_prev = lg - log_alpha  # log γ_{t−1}
        rhs = lg_prev.exp()[..., None] * (k @ a0.transpose(-2, -1)) - v
        strict = (lg_prev[..., :, None] - lg[..., None, :]).masked_fill(~ones.tril(-1), float("-inf"))
        lower = torch.exp(strict) * eta[..., None, :] * (k @ k.transpose(-2, -1))
        e = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
    else:
        w0 = _readout(a0, cfg, scale)
        e = _psi(k @ w0.transpose(-2, -1) - v, cfg, None if delta is None else delta[..., None])
    if cfg.retention == "lq":
        # A_t = γ_t A0 − Σ_s (γ_t/γ_s) η_s e_s k_sᵀ for every t of the chunk as one matmul
        # [γ | −decay] @ [A0; e ⊗ k] over flattened (dv·dk). The read-out
        # y_t = A_t q_t / (ε_q + ‖A_t‖_q^{q−2}) needs A_t only for its norm; A_t q_t comes from the
        # attention-like form.
        b, h, _, dv = e.shape
        dk = k.shape[-1]
        mix = torch.cat([lg.exp().unsqueeze(-1), -decay], dim=-1)  # (B, H, L, 1 + L)
        outer = (e.unsqueeze(-1) * k.unsqueeze(-2)).reshape(b, h, length, dv * dk)
        states = (mix @ torch.cat([a0.reshape(b, h, 1, dv * dk), outer], dim=2)).view(b, h, length, dv, dk)
        y_lin = lg.exp()[..., None] * (q @ a0.transpose(-2, -1)) - (decay * (q @ k.transpose(-2, -1))) @ e
        return y_lin / _lq_denominator(states, cfg), states[:, :, -1]
    a_end = lg[..., -1, None, None].exp() * a0 - torch.einsum("bhs,bhsv,bhsk->bhvk", decay[..., -1, :], e, k)
    if cfg.retention == "l2":
        y = lg.exp()[..., None] * (q @ a0.transpose(-2, -1)) - (decay * (q @ k.transpose(-2, -1))) @ e
    else:
        states = lg.exp()[..., None, None] * a0[:, :, None] - torch.einsum(
            "bhts,bhsv,bhsk->bhtvk", decay, e, k
        )
        y = torch.einsum("bhtvk,bhtk->bhtv", _readout(states, cfg, scale), q)
    return y, a_end


def miras_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    eta: Tensor,
    cfg: MirasConfig,
    *,
    delta: Tensor | None = None,
    scale: Tensor | None = None,
    chunk_size: int = 16,
    exact: bool = False,
) -> Tensor:
    """Chunked (parallel) form; same arguments and output as :func:`miras_recurrent`.

    With ``exact=False`` gradients inside a chunk are taken at the chunk-start memory (Titans/Miras), an
    approximation except for ``chunk_size=1``. ``exact=True`` (ℓ_2 bias and ℓ_2 retention only) solves
    the intra-chunk dependence and equals the recurrence for any chunk size.
    """
    if chunk_size < 1:
        raise ValueError(f"miras: chunk_size must be positive, got {chunk_size}")
    if exact and (cfg.bias != "l2" or cfg.retention != "l2"):
        raise ValueError(
            f"miras: the exact chunked form needs bias='l2' and retention='l2', "
            f"got {cfg.bias!r}, {cfg.retention!r}"
        )
    b, h, _, dk = k.shape
    a = k.new_zeros(b, h, v.shape[-1], dk)
    return _chunk_loop(q, k, v, log_alpha, eta, cfg, delta, scale, chunk_size, exact, a)[0]


def _chunk_loop(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    eta: Tensor,
    cfg: MirasConfig,
    delta: Tensor | None,
    scale: Tensor | None,
    chunk_size: int,
    exact: bool,
    a: Tensor,
    recompute: bool = True,
) -> tuple[Tensor, Tensor]:
    """Chunks of :func:`miras_chunked` from the accumulator ``a``; outputs and the end accumulator.

    ``recompute``: the non-linear read-outs recompute each chunk in backward (``torch.utils.checkpoint``).
    """
    fn = functools.partial(_chunk, cfg=cfg, exact=exact)
    recompute = recompute and cfg.retention != "l2" and torch.is_grad_enabled()
    ys = []
    # Split once (slicing inside the loop makes the backward pass quadratic in N, see linear.py).
    parts = [t.split(chunk_size, dim=2) for t in (q, k, v)]
    parts += [t.split(chunk_size, dim=-1) for t in (log_alpha, eta)]
    deltas = delta.split(chunk_size, dim=-1) if delta is not None else [None] * len(parts[0])
    for qc, kc, vc, alpha_c, eta_c, delta_c in zip(*parts, deltas, strict=True):
        args = (a, qc, kc, vc, alpha_c, eta_c)
        extra = (delta_c, scale)
        y, a = checkpoint(fn, *args, *extra, use_reentrant=False) if recompute else fn(*args, *extra)
        ys.append(y)
    return torch.cat(ys, dim=2), a


@register_mechanism(
    paper="Behrouz et al. 2025, It's All Connected (Miras), arXiv 2504.13173",
    complexity="O(N d (d + L))",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class MirasMemory(TokenMixer):
    """A Miras memory layer: linear memory per head, chosen attentional bias and retention, causal only.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        bias: Attentional bias ``l2``, ``lp`` or ``huber``.
        retention: Retention gate ``l2``, ``lq`` or ``kl``.
        num_heads: Number of heads; each holds a ``d × d`` memory, ``d = C / heads``.
        p: Exponent of the ℓ_p bias (Moneta's default 3).
        q: Exponent of the ℓ_q retention (Moneta's default 4).
        lp_eps: Smoothing of the ℓ_p derivative.
        norm_eps: ``ε_q`` of the ℓ_q read-out (1 keeps it finite and bounded near ``A = 0``).
        eta_max: Largest inner learning rate ``η``.
        alpha_init: Initial retention ``α`` (the gate's bias is set to its logit).
        chunk_size: Chunk length of the ``chunked`` / ``exact`` algorithms.
        algorithm: ``auto`` (``exact`` for ℓ_2/ℓ_2, else ``chunked``), ``exact``, ``chunked``,
            ``recurrent``.
        segment_size: Tokens per segment of the chunked algorithms (see the module doc); it changes
            speed, not results.
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
        bias: Bias = "l2",
        retention: Retention = "l2",
        num_heads: int = 4,
        p: float = 3.0,
        q: float = 4.0,
        lp_eps: float = 1e-6,
        norm_eps: float = 1.0,
        eta_max: float = 1.0,
        alpha_init: float = 0.95,
        chunk_size: int = 16,
        algorithm: Algorithm = "auto",
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        name = type(self).__name__
        if segment_size < 1:
            raise ValueError(f"{name}: segment_size must be positive, got {segment_size}")
        self.segment_size = segment_size
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by num_heads={num_heads}")
        if bias not in ("l2", "lp", "huber"):
            raise ValueError(f"{name}: bias must be 'l2', 'lp' or 'huber', got {bias!r}")
        if retention not in ("l2", "lq", "kl"):
            raise ValueError(f"{name}: retention must be 'l2', 'lq' or 'kl', got {retention!r}")
        if p <= 1 or q <= 1:
            raise ValueError(f"{name}: p and q must be > 1, got p={p}, q={q}")
        if algorithm not in ("auto", "exact", "chunked", "recurrent"):
            raise ValueError(
                f"{name}: algorithm must be auto, exact, chunked or recurrent, got {algorithm!r}"
            )
        if algorithm == "exact" and (bias != "l2" or retention != "l2"):
            raise ValueError(f"{name}: algorithm='exact' needs bias='l2' and retention='l2'")
        if chunk_size < 1 or eta_max <= 0 or not 0 < alpha_init < 1:
            raise ValueError(
                f"{name}: need chunk_size >= 1, eta_max > 0 and 0 < alpha_init < 1, "
                f"got {chunk_size}, {eta_max}, {alpha_init}"
            )
        self.cfg = MirasConfig(bias, retention, float(p), float(q), lp_eps, norm_eps)
        self.num_heads = num_heads
        self.eta_max = eta_max
        self.chunk_size = chunk_size
        self.algorithm: Algorithm = algorithm
        self.qkv = nn.Linear(dim, 3 * dim)
        gates = 3 if bias == "huber" else 2  # α, η (and δ)
        self.gates = nn.Linear(dim, gates * num_heads)
        with torch.no_grad():
            self.gates.bias[:num_heads].fill_(math.log(alpha_init / (1 - alpha_init)))
        self.log_scale = nn.Parameter(torch.zeros(num_heads)) if retention == "kl" else None
        self.proj = nn.Linear(dim, dim)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project, run the memory update of every head along the sequence, read with q, project back."""
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, type(self).__name__)
        scale = self.log_scale.exp() if self.log_scale is not None else None
        if self.algorithm == "recurrent":
            q, k, v, log_alpha, eta, delta = self._inputs(x, valid)
            out = miras_recurrent(q, k, v, log_alpha, eta, self.cfg, delta=delta, scale=scale)
            return self.proj(merge_heads(out))
        exact = self.algorithm == "exact" or (
            self.algorithm == "auto" and self.cfg.bias == "l2" and self.cfg.retention == "l2"
        )
        # Segment by segment (see the module doc). Split once; per-segment projections.
        seg = max(1, self.segment_size // self.chunk_size) * self.chunk_size
        xs = x.split(seg, dim=1)
        masks = valid.split(seg, dim=1) if valid is not None else [None] * len(xs)
        outs, state = [], None
        for x_s, m_s in zip(xs, masks, strict=True):
            q, k, v, log_alpha, eta, delta = self._inputs(x_s, m_s)
            if state is None:
                state = k.new_zeros(b, self.num_heads, v.shape[-1], k.shape[-1])
            # ℓ_q (Moneta) chunks are a handful of small ops that autograd can keep (about 20 KiB per
            # token for B = 2, C = 64); recomputing them under checkpoint doubled the step time.
            out, state = _chunk_loop(
                q,
                k,
                v,
                log_alpha,
                eta,
                self.cfg,
                delta,
                scale,
                self.chunk_size,
                exact,
                state,
                recompute=self.cfg.retention != "lq",
            )
            outs.append(self.proj(merge_heads(out)))
        return torch.cat(outs, dim=1)

    def _inputs(
        self, x: Tensor, valid: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Normalised ``q, k``, ``v`` (heads) and the gates ``log α, η, δ`` ``(B, H, N)`` of a segment."""
        heads = self.num_heads
        q, k, v = (split_heads(t, heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        g = self.gates(x).transpose(1, 2)  # (B, gates · H, N)
        log_alpha = F.logsigmoid(g[:, :heads])
        eta = self.eta_max * torch.sigmoid(g[:, heads : 2 * heads])
        delta = F.softplus(g[:, 2 * heads :]) if self.cfg.bias == "huber" else None
        if valid is not None:
            keep = valid[:, None].to(x.dtype)  # (B, 1, N)
            log_alpha, eta = log_alpha * keep, eta * keep
        return q, k, v, log_alpha, eta, delta

    def extra_repr(self) -> str:
        """Add the bias, retention, heads and algorithm to the default representation."""
        return (
            f"{super().extra_repr()}, bias={self.cfg.bias}, retention={self.cfg.retention}, "
            f"num_heads={self.num_heads}, algorithm={self.algorithm}, chunk_size={self.chunk_size}, "
            f"segment_size={self.segment_size}"
        )


@register_mechanism(
    paper="Behrouz et al. 2025, It's All Connected (Miras: Moneta), arXiv 2504.13173",
    complexity="O(N L d^2)",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class Moneta(MirasMemory):
    """Moneta: ℓ_p attentional bias + ℓ_q retention, ``W = A / (ε_q + ‖A‖_q^{q−2})``; see MirasMemory."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        p: float = 3.0,
        q: float = 4.0,
        lp_eps: float = 1e-6,
        norm_eps: float = 1.0,
        eta_max: float = 1.0,
        alpha_init: float = 0.95,
        chunk_size: int = 16,
        algorithm: Algorithm = "auto",
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            bias="lp",
            retention="lq",
            num_heads=num_heads,
            p=p,
            q=q,
            lp_eps=lp_eps,
            norm_eps=norm_eps,
            eta_max=eta_max,
            alpha_init=alpha_init,
            chunk_size=chunk_size,
            algorithm=algorithm,
            segment_size=segment_size,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )


@register_mechanism(
    paper="Behrouz et al. 2025, It's All Connected (Miras: Yaad), arXiv 2504.13173",
    complexity="O(N d (d + L))",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class Yaad(MirasMemory):
    """Yaad: Huber attentional bias with data-dependent ``δ_t`` + ℓ_2 retention. See :class:`MirasMemory`."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        eta_max: float = 1.0,
        alpha_init: float = 0.95,
        chunk_size: int = 16,
        algorithm: Algorithm = "auto",
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            bias="huber",
            retention="l2",
            num_heads=num_heads,
            eta_max=eta_max,
            alpha_init=alpha_init,
            chunk_size=chunk_size,
            algorithm=algorithm,
            segment_size=segment_size,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )


@register_mechanism(
    paper="Behrouz et al. 2025, It's All Connected (Miras: Memora), arXiv 2504.13173",
    complexity="O(N L d^2)",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class Memora(MirasMemory):
    """Memora: ℓ_2 attentional bias + KL retention, ``W = c · softmax(A)`` row-wise; see MirasMemory."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        eta_max: float = 1.0,
        alpha_init: float = 0.95,
        chunk_size: int = 16,
        algorithm: Algorithm = "auto",
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(
            dim,
            bias="l2",
            retention="kl",
            num_heads=num_heads,
            eta_max=eta_max,
            alpha_init=alpha_init,
            chunk_size=chunk_size,
            algorithm=algorithm,
            segment_size=segment_size,
            layer_idx=layer_idx,
            num_layers=num_layers,
        )
