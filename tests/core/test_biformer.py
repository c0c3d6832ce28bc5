"""BiFormer bi-level routing attention against a literal float64 reference of the paper's equations.

The reference loops over tokens: it finds each token's region from its (row, col), averages the real
tokens of every region, ranks the regions by ``Q_r · K_r``, collects the real tokens of the ``k`` best
regions and takes a softmax over them, per head; LCE is a loop over the kernel taps.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import functools
import math

import pytest
import torch

from core.attention import MultiHeadAttention, reference_attention
from core.attention.biformer import BiLevelRoutingAttention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def literal_bra(x, m: BiLevelRoutingAttention, grid, valid=None, scale=None):
    """BiFormer §3.2 token by token, in the dtype of x."""
    b, n, c = x.shape
    height, width = (1, n) if grid is None else ((1, grid[0]) if len(grid) == 1 else grid)
    heads, d = m.num_heads, c // m.num_heads
    scale = c**-0.5 if scale is None else scale
    rh, rw = math.ceil(height / m.n_win), math.ceil(width / m.n_win)
    cols = math.ceil(width / rw)
    num_regions = math.ceil(height / rh) * cols
    topk = min(m.topk, num_regions)
    valid = torch.ones(b, n, dtype=torch.bool) if valid is None else valid
    q, k, v = m.qkv(x).split(c, dim=-1)

    def region_of(t: int) -> int:
        i, j = divmod(t, width)
        return (i // rh) * cols + j // rw

    out = torch.zeros(b, n, c, dtype=x.dtype)
    rows = []
    for bi in range(b):
        members = [
            [t for t in range(n) if region_of(t) == r and bool(valid[bi, t])] for r in range(num_regions)
        ]
        q_src, k_src = (q, k) if m.diff_routing else (q.detach(), k.detach())
        zero = torch.zeros(c, dtype=x.dtype)
        q_r = [sum((q_src[bi, t] for t in mem), zero) / max(len(mem), 1) for mem in members]
        k_r = [sum((k_src[bi, t] for t in mem), zero) / max(len(mem), 1) for mem in members]
        routed, weights = [], []
        for r in range(num_regions):
            scores = [
                (scale * (q_r[r] @ k_r[s])) if members[s] else torch.tensor(-1e300, dtype=x.dtype)
                for s in range(num_regions)
            ]
            best = sorted(range(num_regions), key=lambda s, sc=scores: -float(sc[s].detach()))[:topk]
            routed.append(best)
            weights.append(
                dict(zip(best, torch.softmax(torch.stack([scores[s] for s in best]), 0), strict=True))
            )
        token_outs = []
        for t in range(n):
            r = region_of(t)
            keys = [s for s in range(n) if region_of(s) in routed[r] and bool(valid[bi, s])]
            head_outs = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                if not keys:
                    head_outs.append(torch.zeros(d, dtype=x.dtype))
                    continue
                w_r = [weights[r][region_of(s)] if m.soft_routing else 1.0 for s in keys]
                kk = torch.stack([w * k[bi, s, sl] for w, s in zip(w_r, keys, strict=True)])
                vv = torch.stack([w * v[bi, s, sl] for w, s in zip(w_r, keys, strict=True)])
                att = torch.softmax(scale * (kk @ q[bi, t, sl]), dim=0)
                head_outs.append(att @ vv)
            token_outs.append(torch.cat(head_outs))
        rows.append(torch.stack(token_outs))
    out = torch.stack(rows)
    if m.lce is not None:
        ks = m.lce.kernel_size[0]
        p = ks // 2
        v_masked = v * valid[..., None].to(x.dtype)
        lce_rows = []
        for bi in range(b):
            toks = []
            for t in range(n):
                i, j = divmod(t, width)
                acc = m.lce.bias.clone()
                for di in range(ks):
                    for dj in range(ks):
                        ii, jj = i + di - p, j + dj - p
                        if 0 <= ii < height and 0 <= jj < width:
                            acc = acc + m.lce.weight[:, 0, di, dj] * v_masked[bi, ii * width + jj]
                toks.append(acc)
            lce_rows.append(torch.stack(toks))
        out = out + torch.stack(lce_rows)
    return m.proj(out)


def _compare(attn, x_shape, grid, valid=None, scale=None):
    ref = copy.deepcopy(attn).double()
    x = torch.randn(*x_shape, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = attn(x, grid=grid, mask=valid)
    expected = literal_bra(x64, ref, grid, valid, scale)
    torch.testing.assert_close(out.double(), expected, **FWD)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda s, name=name: f"{name}: {s}")


@pytest.mark.parametrize(
    ("grid", "n_win", "topk"),
    [((4, 4), 2, 2), ((5, 7), 3, 3), (None, 3, 2), ((11,), 4, 2)],
    ids=["divisible", "ragged", "seq-none", "seq-1d"],
)
@pytest.mark.parametrize("use_mask", [False, True])
def test_bra_matches_literal(grid, n_win: int, topk: int, use_mask: bool) -> None:
    torch.manual_seed(0)
    n = 11 if grid is None else math.prod(grid)
    attn = BiLevelRoutingAttention(12, num_heads=3, n_win=n_win, topk=topk)
    valid = torch.rand(2, n) > 0.3 if use_mask else None
    _compare(attn, (2, n, 12), grid, valid)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_bra_options_match_literal(backend: str) -> None:
    """head_dim scale, soft + differentiable + parametric routing, no LCE, both backends."""
    torch.manual_seed(1)
    attn = BiLevelRoutingAttention(
        8,
        num_heads=2,
        n_win=2,
        topk=2,
        qk_scale="head_dim",
        soft_routing=True,
        diff_routing=True,
        lce_kernel=0,
        backend=backend,
    )
    assert attn.router_emb is None and attn.lce is None
    _compare(attn, (2, 15, 8), (3, 5), scale=4**-0.5)


def test_param_routing_and_detached_routing() -> None:
    """param_routing gets gradients; detached soft routing differs from differentiable soft routing."""
    torch.manual_seed(2)
    attn = BiLevelRoutingAttention(
        8, num_heads=2, n_win=2, topk=2, soft_routing=True, diff_routing=True, param_routing=True
    ).double()
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    attn(x, grid=(4, 4)).square().sum().backward()
    assert attn.router_emb.weight.grad.abs().sum() > 0

    soft = BiLevelRoutingAttention(8, num_heads=2, n_win=2, topk=2, soft_routing=True).double()
    diff = BiLevelRoutingAttention(
        8, num_heads=2, n_win=2, topk=2, soft_routing=True, diff_routing=True
    ).double()
    diff.load_state_dict(soft.state_dict())
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    o1, o2 = soft(x1, grid=(4, 4)), diff(x2, grid=(4, 4))
    torch.testing.assert_close(o1, o2)
    o1.square().sum().backward()
    o2.square().sum().backward()
    assert not torch.allclose(x1.grad, x2.grad)


def test_all_regions_without_lce_is_global_attention_with_full_dim_scale() -> None:
    """Topk = all regions and no LCE: plain MHA with the official scale dim**-0.5 (not head_dim**-0.5)."""
    attn = BiLevelRoutingAttention(8, num_heads=2, n_win=3, topk=9, lce_kernel=0).double()
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    q, k, v = (t.view(2, 20, 2, 4).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    expected = attn.proj(reference_attention(q, k, v, scale=8**-0.5).transpose(1, 2).reshape(2, 20, 8))
    torch.testing.assert_close(attn(x, grid=(4, 5)), expected)
    mha = MultiHeadAttention(8, num_heads=2).double()
    mha.qkv.load_state_dict(attn.qkv.state_dict())
    mha.proj.load_state_dict(attn.proj.state_dict())
    assert not torch.allclose(attn(x, grid=(4, 5)), mha(x))  # MHA uses head_dim**-0.5


def test_routing_restricts_attention() -> None:
    """With topk=1 a region's outputs do not depend on the tokens of regions it does not route to."""
    torch.manual_seed(3)
    attn = BiLevelRoutingAttention(8, num_heads=2, n_win=4, topk=1, lce_kernel=0).double()
    x = torch.randn(1, 16, 8, dtype=torch.float64)  # 1-D: 4 regions of 4 tokens

    def routing(t):
        q, k, _ = attn.qkv(t).chunk(3, dim=-1)
        return (q.view(4, 4, 8).mean(1) @ k.view(4, 4, 8).mean(1).T).argmax(-1)

    out, routed = attn(x), routing(x)
    checked = 0
    for r in range(4):
        for s in set(range(4)) - {r, int(routed[r])}:
            y = x.clone()
            y[:, 4 * s : 4 * s + 4] += 0.01 * torch.randn(1, 4, 8, dtype=torch.float64)
            if int(routing(y)[r]) != int(routed[r]):
                continue  # the perturbation changed r's routing itself
            torch.testing.assert_close(attn(y)[:, 4 * r : 4 * r + 4], out[:, 4 * r : 4 * r + 4])
            checked += 1
    assert checked >= 4


def test_gradcheck() -> None:
    torch.manual_seed(4)
    attn = BiLevelRoutingAttention(4, num_heads=2, n_win=2, topk=1, lce_kernel=3).double()
    x = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[True] * 7 + [False] * 2])
    assert torch.autograd.gradcheck(lambda t: attn(t, grid=(3, 3), mask=valid), (x,))


def test_masked_and_padded_tokens_do_not_leak() -> None:
    """Changing masked tokens leaves every unmasked output unchanged (routing, attention and LCE)."""
    torch.manual_seed(5)
    attn = BiLevelRoutingAttention(8, num_heads=2, n_win=3, topk=2).double()
    x = torch.randn(2, 35, 8, dtype=torch.float64)
    valid = torch.rand(2, 35) > 0.4
    y = x.clone()
    y[~valid] += 5 * torch.randn_like(y[~valid])
    a, c = attn(x, grid=(5, 7), mask=valid), attn(y, grid=(5, 7), mask=valid)
    torch.testing.assert_close(a[valid], c[valid])
    assert not torch.allclose(a[~valid], c[~valid])
    none = torch.zeros(2, 35, dtype=torch.bool)
    assert torch.isfinite(attn(x, grid=(5, 7), mask=none)).all()


def test_swaps_into_tlob() -> None:
    from domains.finance.models.tlob import TLOB

    model = TLOB(
        num_features=8,
        seq_len=12,
        hidden_dim=8,
        num_layers=1,
        attention=functools.partial(BiLevelRoutingAttention, num_heads=2, n_win=3),
    )
    out = model(torch.randn(2, 12, 8))
    out.sum().backward()
    assert torch.isfinite(out).all()


def test_contract_errors() -> None:
    attn = BiLevelRoutingAttention(8, num_heads=2, n_win=2)
    x = torch.randn(2, 8, 8)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\), \(N,\) or None"):
        attn(x, grid=(2, 2, 2))
    with pytest.raises(ValueError, match=r"key-padding mask of shape \(2, 8\)"):
        attn(x, mask=torch.ones(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        attn(torch.randn(2, 8, 6))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, is_causal=True)
    for kwargs, match in [
        ({"n_win": 0}, "n_win"),
        ({"topk": 0}, "topk"),
        ({"lce_kernel": 4}, "lce_kernel"),
        ({"qk_scale": "dim"}, "qk_scale"),
        ({"qk_scale": -1.0}, "qk_scale"),
        ({"diff_routing": True}, "soft_routing"),
        ({"soft_routing": True, "param_routing": True}, "diff_routing"),
        ({"num_heads": 3}, "num_heads"),
    ]:
        with pytest.raises(ValueError, match=match):
            BiLevelRoutingAttention(8, **kwargs)
