"""Superlinear (N = 2) attention against a literal, query-by-query float64 reference, plus its key properties.

Properties: with every block selected the joint combination is exactly dense causal attention; no
causally eligible position is structurally excluded (each block can be made the best and is then
attended); the own block is always attended; causality. Tolerances: float64 vs float64 atol/rtol 1e-10
(gradients 1e-8); fp32 module vs fp64 reference: FWD atol 1e-5 / rtol 1e-4.
"""

import copy
import math

import pytest
import torch

from core.attention.functional import reference_attention
from core.attention.superlinear import SuperlinearAttention, span_search, superlinear_attention

EXACT = {"atol": 1e-10, "rtol": 1e-10}
FWD = {"atol": 1e-5, "rtol": 1e-4}


def literal_superlinear(q, k, v, u, s, top_k, key_mask=None, causal=False, combine="gated"):
    b, h, n, d = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    nb = math.ceil(n / s)
    for bi in range(b):
        valid = [key_mask is None or bool(key_mask[bi, j]) for j in range(n)]
        for hi in range(h):
            summaries = {}
            for c in range(nb):
                js = [j for j in range(c * s, min(n, (c + 1) * s)) if valid[j]]
                if js:
                    summaries[c] = sum(k[bi, hi, j] for j in js) / len(js)
            for i in range(n):
                own = i // s
                cand = [c for c in summaries if c != own and (not causal or c < own)]
                score = {c: float((u[bi, hi, i] @ summaries[c]).detach() / math.sqrt(d)) for c in cand}
                chosen = sorted(cand, key=lambda c: -score[c])[:top_k]

                def keys_of(c, own=own, i=i, valid=valid):
                    return [
                        j
                        for j in range(c * s, min(n, (c + 1) * s))
                        if valid[j] and (not causal or c != own or j <= i)
                    ]

                def attend(js, i=i, hi=hi, bi=bi):
                    lg = torch.stack([q[bi, hi, i] @ k[bi, hi, j] / math.sqrt(d) for j in js])
                    w = torch.softmax(lg, 0)
                    return sum(w[t] * v[bi, hi, j] for t, j in enumerate(js))

                if combine == "joint":
                    js = [j for c in [own, *chosen] for j in keys_of(c)]
                    if js:
                        out[bi, hi, i] = attend(js)
                    continue
                outs, gates = [], []
                own_keys = keys_of(own)
                if own_keys:
                    outs.append(attend(own_keys))
                    mean = sum(k[bi, hi, j] for j in own_keys) / len(own_keys)
                    gates.append(u[bi, hi, i] @ mean / math.sqrt(d))
                for c in chosen:
                    outs.append(attend(keys_of(c)))
                    gates.append(u[bi, hi, i] @ summaries[c] / math.sqrt(d))
                if outs:
                    g = torch.softmax(torch.stack(gates), 0)
                    out[bi, hi, i] = sum(g[t] * o for t, o in enumerate(outs))
    return out


@pytest.mark.parametrize("combine", ["gated", "joint"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_functional_matches_literal(combine: str, causal: bool, use_mask: bool) -> None:
    torch.manual_seed(0)
    b, h, n, d, s, top_k = 2, 2, 11, 4, 3, 2  # 11 tokens: a ragged last block
    q, k, v, u = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for _ in range(4))
    key_mask = torch.rand(b, n) > 0.3 if use_mask else None
    if key_mask is not None:
        key_mask[1, 3:6] = False  # a whole block without valid keys: never selected
    m4 = None if key_mask is None else key_mask[:, None, None, :]
    out = superlinear_attention(
        q, k, v, u, block_size=s, top_k=top_k, mask=m4, is_causal=causal, combine=combine
    )
    ref = literal_superlinear(q, k, v, u, s, top_k, key_mask, causal, combine)
    torch.testing.assert_close(out, ref, **EXACT)
    g = torch.randn_like(out)
    for a, r in zip(
        torch.autograd.grad(out, (q, k, v, u), g, allow_unused=True),
        torch.autograd.grad(ref, (q, k, v, u), g, allow_unused=True),
        strict=True,
    ):
        if r is None:  # joint: the search query gets no gradient
            assert a is None or a.abs().max() == 0
        else:
            torch.testing.assert_close(a, r, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("causal", [False, True])
def test_all_blocks_selected_is_dense_attention(causal: bool) -> None:
    torch.manual_seed(1)
    q, k, v, u = (torch.randn(2, 2, 13, 4, dtype=torch.float64) for _ in range(4))
    pad = torch.rand(2, 13) > 0.2
    m4 = pad[:, None, None, :]
    out = superlinear_attention(q, k, v, u, block_size=4, top_k=4, mask=m4, is_causal=causal, combine="joint")
    torch.testing.assert_close(out, reference_attention(q, k, v, attn_mask=m4, is_causal=causal), **EXACT)


def test_no_eligible_position_is_structurally_excluded() -> None:
    """For every query and every earlier block, inputs exist that select that block; it is then attended."""
    n, s, d = 12, 3, 4
    for i in range(n):
        own = i // s
        for target in range(own):
            k = torch.zeros(1, 1, n, d, dtype=torch.float64)
            k[..., 0] = -1.0
            k[..., target * s : (target + 1) * s, 0] = 1.0  # target block's summary points along e_0
            k = k + 0.01 * torch.randn_like(k)
            u = torch.zeros(1, 1, n, d, dtype=torch.float64)
            u[..., 0] = 10.0
            index, ok, _, _ = span_search(u, k, s, 1, is_causal=True)
            assert ok[0, 0, i, 0] and index[0, 0, i, 0] == target
            q = torch.randn(1, 1, n, d, dtype=torch.float64)
            v = torch.randn(1, 1, n, d, dtype=torch.float64, requires_grad=True)
            out = superlinear_attention(q, k, v, u, block_size=s, top_k=1, is_causal=True)
            (grad,) = torch.autograd.grad(out[0, 0, i].sum(), v)
            attended = grad[0, 0].abs().sum(-1) > 0
            expected = torch.zeros(n, dtype=torch.bool)
            expected[target * s : (target + 1) * s] = True  # the selected block
            expected[own * s : i + 1] = True  # the own block up to the query
            assert torch.equal(attended, expected), (i, target)


def test_module_matches_literal_and_causality() -> None:
    torch.manual_seed(2)
    mixer = SuperlinearAttention(8, num_heads=2, top_k=1)
    ref = copy.deepcopy(mixer).double()
    x = torch.randn(2, 10, 8)
    pad = torch.ones(2, 10, dtype=torch.bool)
    pad[1, -3:] = False
    for causal in (False, True):
        out = mixer(x, mask=pad, is_causal=causal)
        x64 = x.double()
        q, k, v = (t.view(2, 10, 2, 4).transpose(1, 2) for t in ref.qkv(x64).chunk(3, -1))
        u = ref.search(x64).view(2, 10, 2, 4).transpose(1, 2)
        lit = literal_superlinear(q, k, v, u, 4, 1, pad, causal)  # ceil(sqrt(10)) = 4
        expected = ref.proj(lit.transpose(1, 2).reshape(2, 10, 8))
        torch.testing.assert_close(out.double(), expected, **FWD)
    y = x.clone()
    y[:, 5:] += torch.randn_like(y[:, 5:])
    torch.testing.assert_close(
        mixer(x, is_causal=True)[:, :5], mixer(y, is_causal=True)[:, :5], atol=0, rtol=0
    )
    mixer(x, is_causal=True).sum().backward()
    assert mixer.search.weight.grad.abs().sum() > 0  # the gated search is trainable


def test_flops_and_errors() -> None:
    mixer = SuperlinearAttention(8, num_heads=2, block_size=2, top_k=1)
    # causal, 4 tokens, blocks [0,1], [2,3]: local 1,2 then 1+2, 2+2 -> 10 pairs; 4 queries x 2 blocks search
    assert mixer.attention_flops(1, 4, 4, is_causal=True) == 4.0 * 10 * 8 + 2.0 * 4 * 2 * 8
    with pytest.raises(ValueError, match="combine"):
        SuperlinearAttention(8, num_heads=2, combine="sum")
    with pytest.raises(ValueError, match="top_k"):
        SuperlinearAttention(8, num_heads=2, top_k=0)
