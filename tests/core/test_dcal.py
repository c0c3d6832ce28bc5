"""DCAL attention rollout, GLCA and PWCA against literal float64 references of the paper's equations.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch
from torch import nn

from core.attention import MultiHeadAttention, get_mechanism
from core.attention.dcal import (
    GlobalLocalCrossAttention,
    PairwiseCrossAttention,
    attention_rollout,
    select_local_tokens,
)

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _attend_one(q, keys, values, heads, allowed=None):
    """One query against lists of keys/values per head; ``allowed`` lists the keys it may attend."""
    d = q.shape[-1] // heads
    idx = range(len(keys)) if allowed is None else allowed
    out = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        if not idx:
            out.append(torch.zeros(d, dtype=q.dtype))
            continue
        w = torch.softmax(torch.stack([q[sl] @ keys[j][sl] for j in idx]) / math.sqrt(d), dim=0)
        out.append(sum(wi * values[j][sl] for wi, j in zip(w, idx, strict=True)))
    return torch.cat(out)


def _qkv(module, t):
    c = t.shape[-1]
    w, b = module.qkv.weight, module.qkv.bias
    return [(w[i * c : (i + 1) * c] @ t + b[i * c : (i + 1) * c]) for i in range(3)]


def _random_maps(b, heads, n, layers, dtype=torch.float64):
    return [torch.softmax(torch.randn(b, heads, n, n, dtype=dtype), dim=-1) for _ in range(layers)]


def test_attention_rollout_matches_literal_products() -> None:
    b, heads, n = 2, 3, 5
    maps = _random_maps(b, heads, n, 3)
    out = attention_rollout(maps)
    for bi in range(b):
        acc = None
        for w in maps:
            s = [[sum(w[bi, h, i, j] for h in range(heads)) / heads for j in range(n)] for i in range(n)]
            s_bar = [[0.5 * s[i][j] + (0.5 if i == j else 0.0) for j in range(n)] for i in range(n)]
            if acc is None:
                acc = s_bar
            else:
                acc = [[sum(s_bar[i][k] * acc[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
        expected = torch.tensor([[float(v) for v in row] for row in acc], dtype=torch.float64)
        torch.testing.assert_close(out[bi], expected)
    torch.testing.assert_close(out.sum(-1), torch.ones(b, n, dtype=torch.float64))  # still row-stochastic
    torch.testing.assert_close(attention_rollout([m.mean(1) for m in maps]), out)  # 3-D maps too
    with pytest.raises(ValueError, match=r"weights\[1\] of shape \(2, 3, 4, 4\)"):
        attention_rollout([maps[0], maps[0][:, :, :4, :4]])
    with pytest.raises(ValueError, match="empty"):
        attention_rollout([])


def test_select_local_tokens_is_cls_then_top_rollout() -> None:
    rollout = attention_rollout(_random_maps(3, 2, 11, 2))
    idx = select_local_tokens(rollout, 0.3)  # R = ceil(0.3 · 10) = 3
    assert idx.shape == (3, 4) and (idx[:, 0] == 0).all()
    for bi in range(3):
        row = rollout[bi, 0].tolist()
        expected = sorted(range(1, 11), key=lambda j: -row[j])[:3]
        assert idx[bi, 1:].tolist() == expected
    assert select_local_tokens(rollout, 0.01).shape == (3, 2)  # at least one patch
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        select_local_tokens(rollout, 0.0)
    with pytest.raises(ValueError, match=r"expected rollout of shape \(B, N, N\)"):
        select_local_tokens(rollout[:, :5], 0.5)


def literal_glca(x, index, m: GlobalLocalCrossAttention):
    """Eq. 3: each selected query attends every token of its image."""
    b, n, _ = x.shape
    rows = []
    for bi in range(b):
        qkv = [_qkv(m, x[bi, t]) for t in range(n)]
        keys, values = [t[1] for t in qkv], [t[2] for t in qkv]
        outs = [
            m.proj.weight @ _attend_one(qkv[int(t)][0], keys, values, m.num_heads) + m.proj.bias
            for t in index[bi]
        ]
        rows.append(torch.stack(outs))
    return torch.stack(rows)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_glca_matches_literal_reference(backend: str) -> None:
    glca = GlobalLocalCrossAttention(8, num_heads=2, ratio=0.25, backend=backend)
    ref = copy.deepcopy(glca).double()
    x = torch.randn(2, 9, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    rollout = attention_rollout(_random_maps(2, 2, 9, 3))
    out = glca(x, rollout)
    index = glca.local_index(rollout)
    assert out.shape == (2, 3, 8) and index.shape == (2, 3)  # CLS + ceil(0.25 · 8)
    expected = literal_glca(x64, index, ref)
    torch.testing.assert_close(out.double(), expected, **FWD)
    torch.testing.assert_close(glca(x, index=index), out)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(glca.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_glca_gradcheck_and_errors() -> None:
    glca = GlobalLocalCrossAttention(4, num_heads=2, ratio=0.5).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    rollout = attention_rollout(_random_maps(2, 2, 5, 2))
    assert torch.autograd.gradcheck(lambda t: glca(t, rollout), (x,))
    with pytest.raises(ValueError, match=r"expected rollout of shape \(2, 5, 5\)"):
        glca(x, rollout[:, :4, :4])
    with pytest.raises(ValueError, match="exactly one of `rollout`"):
        glca(x)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, N, 4\)"):
        glca(torch.randn(2, 5, 3, dtype=torch.float64), rollout)
    with pytest.raises(ValueError, match=r"long index of shape \(2, R\)"):
        glca(x, index=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="ratio"):
        GlobalLocalCrossAttention(4, num_heads=2, ratio=1.5)
    assert get_mechanism("GlobalLocalCrossAttention").kind == "module"


def literal_pwca(x, ctx, m: PairwiseCrossAttention, mask=None):
    """Eq. 4: each query of image 1 attends the keys/values of [image 1; image 2], all from the shared qkv."""
    b, n, _ = x.shape
    rows = []
    for bi in range(b):
        own = [_qkv(m, x[bi, t]) for t in range(n)]
        other = [] if ctx is None else [_qkv(m, ctx[bi, t]) for t in range(ctx.shape[1])]
        keys = [t[1] for t in own + other]
        values = [t[2] for t in own + other]
        allowed = None if mask is None else [j for j in range(len(keys)) if bool(mask[bi, j])]
        outs = [
            m.proj.weight @ _attend_one(own[t][0], keys, values, m.num_heads, allowed) + m.proj.bias
            for t in range(n)
        ]
        rows.append(torch.stack(outs))
    return torch.stack(rows)


@pytest.mark.parametrize("store", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("with_context", [False, True])
def test_pwca_matches_literal_reference(store: bool, use_mask: bool, with_context: bool) -> None:
    pwca = PairwiseCrossAttention(8, num_heads=2, store_attention=store)
    ref = copy.deepcopy(pwca).double()
    x = torch.randn(2, 5, 8, requires_grad=True)
    ctx = torch.randn(2, 4, 8, requires_grad=True) if with_context else None
    kv_len = 9 if with_context else 5
    mask = torch.rand(2, kv_len) > 0.3 if use_mask else None
    if mask is not None:
        mask[1] = False  # fully masked rows give zeros before the projection
    x64 = x.detach().double().requires_grad_(True)
    ctx64 = None if ctx is None else ctx.detach().double().requires_grad_(True)
    out = pwca(x, context=ctx, mask=mask)
    expected = literal_pwca(x64, ctx64, ref, mask)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    if ctx is not None:
        torch.testing.assert_close(ctx.grad.double(), ctx64.grad, **GRAD)
    for (name, p), p64 in zip(pwca.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")
    if store:
        w = pwca.attention_weights
        assert w is not None and w.shape == (2, 2, 5, kv_len) and not w.requires_grad
        rows = w.sum(-1)
        torch.testing.assert_close(rows[0], torch.ones_like(rows[0]))
    else:
        assert pwca.attention_weights is None


def test_pwca_gradcheck_and_self_attention_without_context() -> None:
    pwca = PairwiseCrossAttention(4, num_heads=2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: pwca(a, context=c), (x, ctx))
    mha = MultiHeadAttention(4, num_heads=2).double()
    mha.load_state_dict(pwca.state_dict())
    pwca.eval()
    torch.testing.assert_close(pwca(x), mha(x))  # the inference path is the shared self-attention
    assert not torch.allclose(pwca(x, context=ctx), mha(x))


def test_pwca_masked_distractor_tokens_do_not_matter_and_errors() -> None:
    pwca = PairwiseCrossAttention(8, num_heads=2).double()
    x, ctx = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 4, 8, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 7:] = False
    changed = ctx.clone()
    changed[:, 2:] += 10 * torch.randn_like(changed[:, 2:])
    torch.testing.assert_close(pwca(x, context=ctx, mask=mask), pwca(x, context=changed, mask=mask))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\) is not key padding \(B=2, M=9\)"):
        pwca(x, context=ctx, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected context of shape \(B, M, 8\)"):
        pwca(x, context=torch.randn(2, 4, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="is_causal"):
        pwca(x, is_causal=True)
    assert get_mechanism("PairwiseCrossAttention").patterns == ("noncausal_self", "noncausal_cross")


def test_stored_weights_drive_glca() -> None:
    """The DCAL protocol: SA layers store their maps, the rollout picks GLCA's local queries."""
    layers = nn.ModuleList(PairwiseCrossAttention(8, num_heads=2, store_attention=True) for _ in range(2))
    glca = GlobalLocalCrossAttention(8, num_heads=2, ratio=0.5)
    x = torch.randn(2, 7, 8)
    h = x
    for layer in layers:
        h = h + layer(h)
    rollout = attention_rollout([layer.attention_weights for layer in layers])
    out = glca(h, rollout)
    assert out.shape == (2, 4, 8) and torch.isfinite(out).all()
