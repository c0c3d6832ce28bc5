"""MoH: multi-head attention as a mixture of heads, with per-token top-k head routing.

Paper: Jin, Zhu, Yuan, Yan, "MoH: Multi-Head Attention as Mixture-of-Head Attention", 2024 (arXiv
2410.11842); official code SkyworkAI/MoH (``MoH-ViT/attention.py``, ``MoH-DiT/models.py``).

Multi-head attention is a sum over heads, ``O = Σ_i H^i W_O^i`` (``H^i`` = head ``i``'s attention output,
``W_O^i`` = its rows of the output projection). MoH treats heads as experts and weights the sum per
token ``t``: ``O_t = Σ_i g_i(x_t) H^i_t W_O^i``. ``h_s`` *shared* heads are always on, ``k`` of the
``h_r = h − h_s`` *routed* heads are chosen per token::

    g_i = α1 · Softmax(W_s x_t)_i                            1 ≤ i ≤ h_s          (shared)
    g_i = α2 · Softmax(W_r x_t)_i  if i ∈ TopK(Softmax(W_r x_t), k), else 0        (routed)
    [α1, α2] = Softmax(W_h x_t)                                                     (two-stage weighting)

The load-balancing loss over the ``T`` tokens of the batch is (paper Eq. 6)::

    L_b = Σ_{i routed} f_i P_i,   f_i = (1/T) Σ_t 1[token t selects head i],
                                  P_i = (1/T) Σ_t Softmax(W_r x_t)_i

and ``self.aux_loss = aux_weight · L_b`` in training (``β = 0.01`` in the paper; None in eval). With a
``(B, N)`` key-padding mask, padded tokens are left out of ``f`` and ``P``.

``gates="official"`` (default) follows the official code, which the paper's results were trained with:
routed gates are renormalised over the selected ``k`` and multiplied by ``k``, shared gates by ``h_s`` and
``[α1, α2]`` by 2, so that uniform routers give every active head weight 1 (the scale of plain MHA);
the load-balancing loss is then ``h_r · L_b`` (the official ``mean(P·f)·h_r²``). ``gates="paper"`` uses
the equations above literally (gates sum to 1 over the heads of a token).

**What we compute.** The official code computes *every* head for every token and then zeroes the
unselected ones, so it saves nothing. Here:

* shared heads are dense SDPA;
* a routed head that no token of the batch selects is skipped entirely;
* ``routed_compute="gather"`` runs, for each (sequence, routed head), SDPA only for the queries that
  selected it: their positions are packed to the front (padded to the busiest pair's count ``c_max``),
  attended against all keys with an explicit mask (causality from the packed query positions, plus the
  user mask rows of those queries), weighted and scattered back. Query-side FLOPs drop to ≈ ``k / h_r``
  of dense when the router is balanced; keys and values are still projected for all tokens (every key can
  be attended by a selecting query);
* ``routed_compute="dense"`` computes the active routed heads for all queries (no packing, faster for
  short sequences and for the fused SDPA kernels);
* ``"auto"`` (default) gathers when ``c_max ≤ gather_threshold · N``, else goes dense.

All paths give the same output and gradients (tested against a literal per-token loop).

Differences from the official code (besides the compute above):

* The official code keeps the loss in a class-level list ``LOAD_BALANCING_LOSSES``; ours is the
  instance's ``aux_loss`` (summed over mixers by the task), already multiplied by ``aux_weight``.
* The official ViT/DiT variants add model-specific parts (TransNeXt's aggregated attention, qk-norm);
  this is MoH on plain softmax self-attention with boolean masks and causality.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.attention.base import TokenMixer, normalize_mask
from core.attention.functional import dense_attention_flops, sdpa
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["MoHAttention"]

Gates = Literal["official", "paper"]
RoutedCompute = Literal["auto", "gather", "dense"]


@register_mechanism(
    paper="Jin et al. 2024, MoH: Multi-Head Attention as Mixture-of-Head Attention",
    complexity="O(N^2 d)",
    example_kwargs={"num_heads": 4, "num_shared": 1, "top_k": 2},
)
class MoHAttention(TokenMixer):
    """Mixture-of-head attention: shared heads plus per-token top-k routed heads, weighted per token.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Total heads ``h`` (shared + routed pool); head width ``C / h``.
        num_shared: Always-active heads ``h_s``; defaults to ``max(1, h // 4)`` (the official 8-head
            configs use 2).
        top_k: Routed heads each token activates, ``1 ≤ k ≤ h − h_s``; defaults to ``round(2/3 · (h − h_s))``
            (4 of 6 for 8 heads: 75 % of heads active, as in MoH-ViT-75 / MoH-LLaMA3).
        gates: ``official`` (renormalised and rescaled gates, see the module docstring) or ``paper``.
        aux_weight: ``β`` of the load-balancing loss put in ``aux_loss`` during training (paper: 0.01).
        routed_compute: ``auto``, ``gather`` (only selecting queries per routed head) or ``dense``.
        gather_threshold: ``auto`` gathers when no routed head is selected by more than this fraction
            of a sequence's queries.
        qkv_bias: Whether the q/k/v projection has a bias.
        proj_bias: Whether the output projection has a bias.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        num_shared: int | None = None,
        top_k: int | None = None,
        gates: Gates = "official",
        aux_weight: float = 0.01,
        routed_compute: RoutedCompute = "auto",
        gather_threshold: float = 0.5,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"MoHAttention: dim={dim} must be divisible by num_heads={num_heads}")
        shared = max(1, num_heads // 4) if num_shared is None else num_shared
        if not 0 <= shared <= num_heads:
            raise ValueError(f"MoHAttention: num_shared must be in [0, num_heads={num_heads}], got {shared}")
        pool = num_heads - shared
        k = (max(1, round(2 * pool / 3)) if pool else 0) if top_k is None else top_k
        if (pool and not 1 <= k <= pool) or (not pool and k):
            raise ValueError(
                f"MoHAttention: top_k must be in [1, num_heads - num_shared = {pool}] "
                f"(0 when every head is shared), got {k}"
            )
        if gates not in ("official", "paper"):
            raise ValueError(f"MoHAttention: gates must be 'official' or 'paper', got {gates!r}")
        if routed_compute not in ("auto", "gather", "dense"):
            raise ValueError(
                f"MoHAttention: routed_compute must be 'auto', 'gather' or 'dense', got {routed_compute!r}"
            )
        self.num_heads = num_heads
        self.num_shared = shared
        self.num_routed = pool
        self.top_k = k
        self.gates: Gates = gates
        self.aux_weight = aux_weight
        self.routed_compute: RoutedCompute = routed_compute
        self.gather_threshold = gather_threshold
        self.attn_drop = attn_drop
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        # Routers (bias-free, as in the official code); only those that have something to choose.
        self.router_routed = nn.Linear(dim, pool, bias=False) if pool else None
        self.router_shared = nn.Linear(dim, shared, bias=False) if shared > 1 else None
        self.router_mix = nn.Linear(dim, 2, bias=False) if shared and pool else None
        self.last_selection: Tensor | None = None  # (B, N, h_r) bool, for introspection

    def head_gates(self, x: Tensor, token_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Per-token head weights ``g (B, N, h)`` and the routed selection ``(B, N, h_r)`` (None if no pool).

        Also sets ``aux_loss`` in training. ``token_mask (B, N)`` (True = real token) restricts the
        load-balancing statistics to real tokens.
        """
        b, n, _ = x.shape
        official = self.gates == "official"
        parts = []
        if self.num_shared:
            if self.router_shared is not None:
                shared = torch.softmax(self.router_shared(x), dim=-1)
            else:
                shared = x.new_ones(b, n, 1)
            parts.append(shared * self.num_shared if official else shared)
        selection = None
        self.aux_loss = None
        if self.router_routed is not None:
            probs = torch.softmax(self.router_routed(x), dim=-1)
            top = probs.topk(self.top_k, dim=-1).indices
            selection = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, top, True)
            routed = probs * selection
            if official:
                denom = routed.sum(-1, keepdim=True).clamp_min(torch.finfo(routed.dtype).eps)
                routed = routed / denom * self.top_k
            parts.append(routed)
            if self.training:
                self.aux_loss = self.aux_weight * self.balance_loss(probs, selection, token_mask)
        if self.router_mix is not None:
            alpha = torch.softmax(self.router_mix(x), dim=-1) * (2.0 if official else 1.0)
            parts = [parts[0] * alpha[..., :1], parts[1] * alpha[..., 1:]]
        return torch.cat(parts, dim=-1), selection

    def balance_loss(self, probs: Tensor, selection: Tensor, token_mask: Tensor | None = None) -> Tensor:
        """``Σ_i f_i P_i`` over routed heads (× ``h_r`` for ``gates="official"``), over real tokens."""
        w = probs.new_ones(probs.shape[:2]) if token_mask is None else token_mask.to(probs.dtype)
        count = w.sum().clamp_min(1.0)
        frac = (selection.to(probs.dtype) * w[..., None]).sum((0, 1)) / count
        mean_prob = (probs * w[..., None]).sum((0, 1)) / count
        loss = (frac * mean_prob).sum()
        return loss * self.num_routed if self.gates == "official" else loss

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Route, attend with the shared and the selected routed heads, weight per token, project."""
        b, n, _ = x.shape
        hs = self.num_shared
        if mask is not None:
            mask = normalize_mask(mask, b, n, n, "MoHAttention")
            if mask.shape[1] not in (1, self.num_heads):
                raise ValueError(
                    f"MoHAttention: a per-head mask must have {self.num_heads} heads, got {tuple(mask.shape)}"
                )
        token_mask = None
        if mask is not None and mask.shape[1:3] == (1, 1):  # key padding = padding of the tokens
            token_mask = mask[:, 0, 0].expand(b, n)
        gates, selection = self.head_gates(x, token_mask)
        self.last_selection = selection
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.attn_drop if self.training else 0.0

        def head_mask(heads: slice | Tensor) -> Tensor | None:
            return mask if mask is None or mask.shape[1] == 1 else mask[:, heads]

        outs = []
        if hs:
            sl = slice(0, hs)
            outs.append(
                sdpa(q[:, sl], k[:, sl], v[:, sl], attn_mask=head_mask(sl), is_causal=is_causal, dropout_p=p)
            )
        if selection is not None:
            outs.append(self._routed(q[:, hs:], k[:, hs:], v[:, hs:], selection, mask, is_causal, p))
        heads = torch.cat(outs, dim=1) * gates.transpose(1, 2)[..., None]  # (B, h, N, d) weighted
        return self.proj_drop(self.proj(merge_heads(heads)))

    def _routed(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        selection: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        dropout_p: float,
    ) -> Tensor:
        """Routed head outputs ``(B, h_r, N, d)``: exact where a query selected the head (else gated to 0)."""
        b, hr, n, d = q.shape
        m = k.shape[2]
        counts = selection.sum(dim=1)  # (B, h_r)
        active = (counts.amax(dim=0) > 0).nonzero().squeeze(-1)  # routed heads some token selected
        c_max = int(counts.max())
        out = q.new_zeros(b, hr, n, d)
        if mask is not None and mask.shape[1] > 1:
            mask = mask[:, self.num_shared :][:, active]
        qa, ka, va = q[:, active], k[:, active], v[:, active]
        mode = self.routed_compute
        if mode == "dense" or (mode == "auto" and c_max > self.gather_threshold * n):
            res = sdpa(qa, ka, va, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)
            return out.index_copy(1, active, res)
        a = active.numel()
        sel = selection[:, :, active].transpose(1, 2)  # (B, a, N)
        # Positions of the selecting queries first (in order), then the others; keep the first c_max.
        order = torch.argsort((~sel).to(torch.int8), dim=-1, stable=True)[..., :c_max]  # (B, a, c_max)
        q_packed = torch.gather(qa, 2, order[..., None].expand(b, a, c_max, d))
        allowed = None
        if mask is not None:
            full = mask.expand(b, a if mask.shape[1] > 1 else 1, mask.shape[2], m)
            if full.shape[2] > 1:  # per-query rows: take the rows of the packed queries
                full = full.expand(b, a, n, m)
                full = torch.gather(full, 2, order[..., None].expand(b, a, c_max, m))
            allowed = full.expand(b, a, c_max, m)
        if is_causal:
            causal = torch.arange(m, device=q.device) <= order[..., None]  # (B, a, c_max, M)
            allowed = causal if allowed is None else allowed & causal
        res = sdpa(q_packed, ka, va, attn_mask=allowed, dropout_p=dropout_p)  # (B, a, c_max, d)
        valid = (torch.arange(c_max, device=q.device) < counts[:, active][..., None]).to(res.dtype)
        res = res * valid[..., None]  # padding slots (queries that did not select the head) -> 0
        packed = q.new_zeros(b, a, n, d).scatter_add(2, order[..., None].expand(b, a, c_max, d), res)
        return out.index_copy(1, active, packed)

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Useful FLOPs: each query attends with its ``h_s + k`` active heads only."""
        active = (self.num_shared + self.top_k) / self.num_heads
        return active * dense_attention_flops(batch, queries, keys, self.dim, is_causal)

    def extra_repr(self) -> str:
        """Add the head split, top-k and gate convention to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, num_shared={self.num_shared}, "
            f"top_k={self.top_k}/{self.num_routed}, gates={self.gates}, routed_compute={self.routed_compute}"
        )
