"""Faceptor Layer-Attention against a literal float64 reference of the decoder's cross-attention step.

Tolerances: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3 (fp32 module vs fp64 literal).
"""

import copy
import math

import pytest
import torch

from core.attention.layer_attention import LayerAttention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _ln(y, norm):
    mu = y.mean(dim=-1, keepdim=True)
    var = ((y - mu) ** 2).mean(dim=-1, keepdim=True)
    return (y - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def literal_attention(m, feats, q_in, pos=None, valid=None):
    """MHA of q_in over all (layer l, position n): keys (F_l[n] + p[n] + e_l) W_K, values F_l[n] W_V."""
    b, n_layers, n, c = feats.shape
    heads = m.attn.num_heads
    d = c // heads
    wk, wv = m.attn.kv.weight[:c], m.attn.kv.weight[c:]
    bk, bv = m.attn.kv.bias[:c], m.attn.kv.bias[c:]
    rows = []
    for bi in range(b):
        outs = []
        for qi in range(q_in.shape[1]):
            q = m.attn.q.weight @ q_in[bi, qi] + m.attn.q.bias
            pairs = [
                (li, j) for li in range(n_layers) for j in range(n) if valid is None or bool(valid[bi, j])
            ]
            per_head = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                scores, values = [], []
                for li, j in pairs:
                    key_in = feats[bi, li, j] + m.layer_embed[li]
                    if pos is not None:
                        key_in = key_in + pos[min(bi, pos.shape[0] - 1), j]
                    scores.append(q[sl] @ (wk @ key_in + bk)[sl] / math.sqrt(d))
                    values.append((wv @ feats[bi, li, j] + bv)[sl])
                w = torch.softmax(torch.stack(scores), dim=0)
                per_head.append(sum(wi * vi for wi, vi in zip(w, values, strict=True)))
            outs.append(m.attn.proj.weight @ torch.cat(per_head) + m.attn.proj.bias)
        rows.append(torch.stack(outs))
    return torch.stack(rows)


def literal_layer_attention(m, feats, task=0, pos=None, valid=None, queries=None):
    """Official post-norm step: T ← LN(T + MHA(T + P_T, layer tokens))."""
    t = m.query_feat[task].expand(feats.shape[0], -1, -1) if queries is None else queries
    return _ln(t + literal_attention(m, feats, t + m.query_pos[task], pos, valid), m.norm)


def _module(**kw) -> LayerAttention:
    torch.manual_seed(0)
    m = LayerAttention(8, 3, **({"num_queries": (2, 1), "num_heads": 2} | kw))
    with torch.no_grad():
        m.norm.weight.add_(0.3 * torch.randn(8))
        m.norm.bias.add_(0.3 * torch.randn(8))
    return m


def _feats(dtype=torch.float32):
    torch.manual_seed(1)
    return torch.randn(2, 3, 5, 8, dtype=dtype)


def test_matches_literal_reference_forward_and_grad() -> None:
    m = _module()
    ref = copy.deepcopy(m).double()
    f = _feats().requires_grad_(True)
    f64 = f.detach().double().requires_grad_(True)
    pos = torch.randn(1, 5, 8)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = m(f, pos=pos, mask=valid)
    exp = literal_layer_attention(ref, f64, pos=pos.double(), valid=valid)
    assert out.shape == (2, 2, 8)
    torch.testing.assert_close(out.double(), exp, **FWD)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (exp * w.double()).sum().backward()
    torch.testing.assert_close(f.grad.double(), f64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        if p64.grad is None:  # the other task's queries
            assert p.grad is None or p.grad.abs().sum() == 0, name
            continue
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=name)


def test_second_task_and_given_queries() -> None:
    m = _module().double()
    f = _feats(torch.float64)
    out = m(f, task=1)
    assert out.shape == (2, 1, 8)
    torch.testing.assert_close(out, literal_layer_attention(m, f, task=1), atol=1e-10, rtol=0)
    queries = torch.randn(2, 2, 8, dtype=torch.float64)
    exp = literal_layer_attention(m, f, queries=queries)
    torch.testing.assert_close(m(f, queries=queries), exp, atol=1e-10, rtol=0)


def test_pre_norm_variant() -> None:
    m = _module(norm_first=True).double()
    f = _feats(torch.float64)
    t = m.query_feat[0].expand(2, -1, -1)
    expected = t + literal_attention(m, f, _ln(t, m.norm) + m.query_pos[0])
    torch.testing.assert_close(m(f), expected, atol=1e-10, rtol=0)


def test_gradcheck() -> None:
    m = _module().double()
    f = torch.randn(1, 3, 4, 8, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[True, True, True, False]])
    fn = lambda x, p: m(x, pos=p, mask=valid)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f, pos), eps=1e-6, atol=1e-5, fast_mode=True)


def test_padded_positions_are_ignored_in_every_layer() -> None:
    m = _module().double()
    f = _feats(torch.float64)
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[:, -2:] = False
    f2 = f.clone()
    f2[:, :, -2:] = 30 * torch.randn(2, 3, 2, 8, dtype=torch.float64)
    torch.testing.assert_close(m(f, mask=valid), m(f2, mask=valid), atol=0, rtol=0)
    assert not torch.allclose(m(f), m(f2))
    assert torch.isfinite(m(f, mask=torch.zeros(2, 5, dtype=torch.bool))).all()


def test_layer_embeddings_make_the_layer_order_matter() -> None:
    m = _module().double()
    f = _feats(torch.float64)
    perm = f[:, [2, 0, 1]]
    assert not torch.allclose(m(f), m(perm), atol=1e-6)
    with torch.no_grad():  # without layer embeddings the layers are an unordered set of keys
        m.layer_embed.fill_(0.7)
    torch.testing.assert_close(m(f), m(perm), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer_outputs": torch.randn(2, 4, 5, 8)}, r"expected layer_outputs of shape \(B, 3, N, 8\)"),
        ({"layer_outputs": torch.randn(2, 5, 8)}, r"expected layer_outputs of shape \(B, 3, N, 8\)"),
        ({"task": 2}, r"task must be in \[0, 2\)"),
        ({"queries": torch.randn(2, 3, 8)}, r"expected queries of shape \(2, 2, 8\)"),
        ({"pos": torch.randn(2, 4, 8)}, r"expected pos of shape \(B\|1, 5, 8\)"),
        ({"mask": torch.ones(2, 5)}, r"expected mask .* \(2, 5\)"),
    ],
)
def test_shape_errors(kwargs, match) -> None:
    m = _module()
    f = kwargs.pop("layer_outputs", torch.randn(2, 3, 5, 8))
    with pytest.raises(ValueError, match=match):
        m(f, **kwargs)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        LayerAttention(8, 0)
    with pytest.raises(ValueError, match="must be positive"):
        LayerAttention(8, 2, num_queries=(3, 0))
