"""MoHAttention against a literal per-token loop of the paper's equations (and the official gate scaling).

The reference routes every token on its own, computes only the heads that token activates, query by
query, and sums ``g_i · head_i`` through the output projection. Tolerances (reference_check): forward
atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import math

import pytest
import torch

import core.attention.moh as moh_module
from core.attention.moh import MoHAttention
from tests.core.reference_check import assert_matches_reference


def literal_gates(m: MoHAttention, xt: torch.Tensor) -> torch.Tensor:
    """The gate vector g (h,) of one token, written out from the equations."""
    official = m.gates == "official"
    parts = []
    if m.num_shared:
        s = torch.softmax(m.router_shared.weight @ xt, 0) if m.num_shared > 1 else xt.new_ones(1)
        parts.append(s * m.num_shared if official else s)
    if m.num_routed:
        p = torch.softmax(m.router_routed.weight @ xt, 0)
        chosen = sorted(range(m.num_routed), key=lambda i: -float(p[i].detach()))[: m.top_k]
        routed = torch.stack([p[i] if i in chosen else p[i] * 0 for i in range(m.num_routed)])
        if official:
            routed = routed / routed.sum() * m.top_k
        parts.append(routed)
    if m.num_shared and m.num_routed:
        alpha = torch.softmax(m.router_mix.weight @ xt, 0) * (2 if official else 1)
        parts = [parts[0] * alpha[0], parts[1] * alpha[1]]
    return torch.cat(parts)


def literal_moh(m: MoHAttention, x, mask=None, causal=False):
    b, n, c = x.shape
    h, d = m.num_heads, m.head_dim
    qkv = m.qkv(x)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    allowed = torch.ones(b, h, n, n, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & (mask[:, None, None, :] if mask.ndim == 2 else mask)
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()
    rows = []
    for bi in range(b):
        for t in range(n):
            g = literal_gates(m, x[bi, t])
            heads = []
            for hi in range(h):
                keys = [j for j in range(n) if allowed[bi, hi, t, j]]
                if float(g[hi].detach()) == 0.0 or not keys:  # unselected head (or no key): not computed
                    heads.append(x.new_zeros(d))
                    continue
                sl = slice(hi * d, (hi + 1) * d)
                scores = torch.stack([q[bi, t, sl] @ k[bi, j, sl] for j in keys]) / math.sqrt(d)
                w = torch.softmax(scores, 0)
                heads.append(g[hi] * sum(w[i] * v[bi, j, sl] for i, j in enumerate(keys)))
            rows.append(m.proj(torch.cat(heads)))
    return torch.stack(rows).view(b, n, c)


def literal_balance(m: MoHAttention, x, token_mask=None):
    """Σ_i f_i P_i over the real tokens (× h_r for the official scaling)."""
    b, n, _ = x.shape
    tokens = [(bi, t) for bi in range(b) for t in range(n) if token_mask is None or token_mask[bi, t]]
    f = torch.zeros(m.num_routed, dtype=x.dtype)
    p_mean = torch.zeros(m.num_routed, dtype=x.dtype)
    for bi, t in tokens:
        p = torch.softmax(m.router_routed.weight @ x[bi, t], 0)
        chosen = sorted(range(m.num_routed), key=lambda i: -float(p[i].detach()))[: m.top_k]
        for i in chosen:
            f[i] += 1.0 / len(tokens)
        p_mean = p_mean + p / len(tokens)
    loss = (f * p_mean).sum()
    return loss * m.num_routed if m.gates == "official" else loss


class _Call(torch.nn.Module):
    def __init__(self, inner, mask, causal):
        super().__init__()
        self.inner, self.mask, self.causal = inner, mask, causal

    def forward(self, x):
        return self.inner(x, mask=self.mask, is_causal=self.causal)


def _mask(kind, b, n, heads):
    if kind == "pad":
        mask = torch.rand(b, n) > 0.3
        mask[:, 0] = True
        return mask
    if kind == "per_head":
        mask = torch.rand(b, heads, n, n) > 0.4
        mask[0, :, 2] = False  # a query with no key in any head
        return mask
    return None


@pytest.mark.parametrize("gates", ["official", "paper"])
@pytest.mark.parametrize("compute", ["gather", "dense"])
@pytest.mark.parametrize("mask_kind", [None, "pad", "per_head"])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_per_token_loop(gates, compute, mask_kind, causal) -> None:
    torch.manual_seed(0)
    attn = MoHAttention(16, num_heads=4, num_shared=1, top_k=2, gates=gates, routed_compute=compute).eval()
    x = torch.randn(2, 7, 16, requires_grad=True)
    mask = _mask(mask_kind, 2, 7, 4)
    assert_matches_reference(_Call(attn, mask, causal), lambda r, t: literal_moh(r.inner, t, mask, causal), x)


@pytest.mark.parametrize(("shared", "top_k"), [(0, 2), (2, 1), (4, 0), (1, 3)])
def test_head_splits_match_per_token_loop(shared, top_k) -> None:
    torch.manual_seed(1)
    attn = MoHAttention(8, num_heads=4, num_shared=shared, top_k=top_k, routed_compute="gather")
    x = torch.randn(2, 5, 8, requires_grad=True)
    assert_matches_reference(_Call(attn, None, True), lambda r, t: literal_moh(r.inner, t, None, True), x)


def test_aux_loss_is_the_balance_loss_in_training_only() -> None:
    torch.manual_seed(2)
    for gates in ("official", "paper"):
        attn = MoHAttention(8, num_heads=4, num_shared=1, top_k=2, gates=gates, aux_weight=0.5).double()
        x = torch.randn(2, 6, 8, dtype=torch.float64)
        pad = torch.ones(2, 6, dtype=torch.bool)
        pad[1, 3:] = False
        attn(x, mask=pad)
        torch.testing.assert_close(attn.aux_loss, 0.5 * literal_balance(attn, x, pad))
        attn(x)
        torch.testing.assert_close(attn.aux_loss, 0.5 * literal_balance(attn, x))
        attn.aux_loss.backward()  # differentiable through P_i
        assert attn.router_routed.weight.grad.abs().sum() > 0
        attn.eval()
        attn(x)
        assert attn.aux_loss is None


def test_gather_skips_unselected_heads_and_queries(monkeypatch) -> None:
    """Routed SDPA runs only for heads some token selected, and only on the queries that selected them."""
    torch.manual_seed(3)
    attn = MoHAttention(16, num_heads=8, num_shared=2, top_k=1, routed_compute="gather").double().eval()
    with torch.no_grad():
        attn.router_routed.weight.zero_()
        attn.router_routed.weight[0, 0] = 5.0  # tokens with x_0 > 0 pick routed head 0, the others head 1
        attn.router_routed.weight[1, 0] = -5.0
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    x[0, :3, 0], x[0, 3:, 0] = 1.0, -1.0
    x[1, :6, 0], x[1, 6:, 0] = 1.0, -1.0
    calls = []
    real_sdpa = moh_module.sdpa

    def spy(q, *args, **kwargs):
        calls.append(tuple(q.shape))
        return real_sdpa(q, *args, **kwargs)

    monkeypatch.setattr(moh_module, "sdpa", spy)
    out = attn(x, is_causal=True)
    assert calls == [(2, 2, 10, 2), (2, 2, 7, 2)]  # shared heads dense; 2 active routed heads, ≤ 7 queries
    calls.clear()
    dense = MoHAttention(16, num_heads=8, num_shared=2, top_k=1, routed_compute="dense").double().eval()
    dense.load_state_dict(attn.state_dict())
    torch.testing.assert_close(out, dense(x, is_causal=True))
    assert calls == [(2, 2, 10, 2), (2, 2, 10, 2)]


def test_gather_equals_dense_gradients_and_gradcheck() -> None:
    torch.manual_seed(4)
    gather = MoHAttention(8, num_heads=4, num_shared=1, top_k=1, routed_compute="gather").double()
    dense = MoHAttention(8, num_heads=4, num_shared=1, top_k=1, routed_compute="dense").double()
    dense.load_state_dict(gather.state_dict())
    x = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    pad = torch.rand(2, 6) > 0.3
    a, b = gather(x, mask=pad, is_causal=True), dense(x, mask=pad, is_causal=True)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.sum(), [x, *gather.parameters()])
    gb = torch.autograd.grad(b.sum(), [x, *dense.parameters()])
    for u, w in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, w)
    assert torch.autograd.gradcheck(lambda t: gather(t, is_causal=True), (x,), fast_mode=True)


def test_defaults_and_errors() -> None:
    attn = MoHAttention(16)
    assert (attn.num_heads, attn.num_shared, attn.top_k) == (8, 2, 4)  # 75 % of heads active
    with pytest.raises(ValueError, match="top_k"):
        MoHAttention(8, num_heads=4, num_shared=1, top_k=4)
    with pytest.raises(ValueError, match="num_shared"):
        MoHAttention(8, num_heads=4, num_shared=5)
    with pytest.raises(ValueError, match="gates"):
        MoHAttention(8, num_heads=4, gates="softmax")
    with pytest.raises(ValueError, match="routed_compute"):
        MoHAttention(8, num_heads=4, routed_compute="sparse")
    with pytest.raises(ValueError, match="per-head mask must have 4 heads"):
        MoHAttention(8, num_heads=4)(torch.randn(1, 3, 8), mask=torch.ones(1, 2, 3, 3, dtype=torch.bool))
