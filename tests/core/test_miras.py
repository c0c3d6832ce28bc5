"""Miras (Moneta, Yaad, Memora): recurrence vs the paper's update rules, chunked forms, module contract.

References are float64 and short (T ≤ 20, except the exact-ℓ2 chunked check at T = 63). Tolerances:
float64 algorithm-vs-algorithm atol 1e-10; fp32 module vs float64 reference forward atol 1e-5 / rtol 1e-4,
gradients atol 1e-4 / rtol 1e-3 (as test_attention.py).
"""

import copy

import pytest
import torch

from core.attention import get_mechanism
from core.attention.miras import (
    Memora,
    MirasConfig,
    MirasMemory,
    Moneta,
    Yaad,
    miras_chunked,
    miras_recurrent,
)
from tests.core.reference_check import assert_same_outputs_and_grads

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
EXACT = {"atol": 1e-10, "rtol": 1e-9}
COMBOS = [("lp", "lq"), ("huber", "l2"), ("l2", "kl"), ("l2", "l2"), ("lp", "kl")]


def _inputs(t: int, heads: int = 2, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k = (
        torch.nn.functional.normalize(torch.randn(2, heads, t, d, generator=g, dtype=torch.float64), dim=-1)
        for _ in range(2)
    )
    v = torch.randn(2, heads, t, d, generator=g, dtype=torch.float64)
    log_alpha = torch.nn.functional.logsigmoid(torch.randn(2, heads, t, generator=g, dtype=torch.float64) + 2)
    eta = torch.rand(2, heads, t, generator=g, dtype=torch.float64)
    delta = torch.rand(2, heads, t, generator=g, dtype=torch.float64) * 0.5 + 0.05
    scale = torch.rand(heads, generator=g, dtype=torch.float64) + 0.5
    return q, k, v, log_alpha, eta, delta, scale


def _loss(pred, v, cfg, delta):
    """The attentional biases as losses; their W-gradients come from autograd."""
    e = pred - v
    if cfg.bias == "l2":
        return 0.5 * (e * e).sum()
    if cfg.bias == "lp":
        return ((e * e + cfg.lp_eps) ** (cfg.p / 2)).sum()
    small = e.abs() <= delta
    return torch.where(small, 0.5 * e * e, delta * (e.abs() - 0.5 * delta)).sum()


def literal_miras(q, k, v, log_alpha, eta, cfg, delta, scale):
    """The paper's update rules, one head and one token at a time, with autograd gradients of the bias.

    Moneta: A ← α A − η ∇ℓ_p(W), W = A / (ε_q + ‖A‖_q^{q−2}). Yaad / ℓ2: W ← α W − η ∇ℓ(W).
    Memora: W ← c · softmax(α log(W / c) − η ∇ℓ_2(W)) row-wise, W_0 = c / dk.
    """
    b, h, t, dk = k.shape
    out = torch.zeros(b, h, t, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            c = scale[hi]
            a = torch.zeros(v.shape[-1], dk, dtype=q.dtype)
            w = torch.full_like(a, float(c) / dk) if cfg.retention == "kl" else a.clone()
            for i in range(t):
                wv = w.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(
                    _loss(wv @ k[bi, hi, i], v[bi, hi, i], cfg, delta[bi, hi, i]), wv
                )
                alpha, lr = log_alpha[bi, hi, i].exp(), eta[bi, hi, i]
                if cfg.retention == "lq":
                    a = alpha * a - lr * grad
                    w = a / (cfg.norm_eps + (a.abs() ** cfg.q).sum() ** ((cfg.q - 2) / cfg.q))
                elif cfg.retention == "kl":
                    w = c * torch.softmax(alpha * torch.log(w / c) - lr * grad, dim=-1)
                else:
                    w = alpha * w - lr * grad
                out[bi, hi, i] = w @ q[bi, hi, i]
    return out


@pytest.mark.parametrize(("bias", "retention"), COMBOS)
def test_recurrence_matches_the_papers_update_rules(bias: str, retention: str) -> None:
    q, k, v, la, eta, delta, scale = _inputs(8)
    cfg = MirasConfig(bias, retention, p=3.0, q=4.0)
    out = miras_recurrent(q, k, v, la, eta, cfg, delta=delta, scale=scale)
    torch.testing.assert_close(out, literal_miras(q, k, v, la, eta, cfg, delta, scale), **EXACT)


@pytest.mark.parametrize(("bias", "retention"), COMBOS)
def test_chunk_size_one_equals_the_recurrence_and_larger_chunks_approximate_it(
    bias: str, retention: str
) -> None:
    q, k, v, la, eta, delta, scale = _inputs(20)
    cfg = MirasConfig(bias, retention)
    ref = miras_recurrent(q, k, v, la, eta, cfg, delta=delta, scale=scale)
    one = miras_chunked(q, k, v, la, eta, cfg, delta=delta, scale=scale, chunk_size=1)
    torch.testing.assert_close(one, ref, **EXACT)
    approx = miras_chunked(q, k, v, la, eta, cfg, delta=delta, scale=scale, chunk_size=6)
    assert torch.isfinite(approx).all()
    assert not torch.allclose(approx, ref, atol=1e-6)  # gradients at the chunk start: an approximation


@pytest.mark.parametrize(("t", "chunk"), [(63, 16), (20, 7), (5, 32)])
def test_exact_l2_chunked_equals_the_recurrence(t: int, chunk: int) -> None:
    q, k, v, la, eta, _, _ = _inputs(t, seed=t)
    cfg = MirasConfig("l2", "l2")
    ref = miras_recurrent(q, k, v, la, eta, cfg)
    torch.testing.assert_close(
        miras_chunked(q, k, v, la, eta, cfg, chunk_size=chunk, exact=True), ref, **EXACT
    )


@pytest.mark.parametrize(
    ("bias", "retention", "exact"), [("l2", "l2", True), ("lp", "lq", False), ("l2", "kl", False)]
)
def test_chunked_gradients(bias: str, retention: str, exact: bool) -> None:
    q, k, v, la, eta, delta, scale = (x[:1, :1, :5] if x.ndim == 4 else x for x in _inputs(5, heads=1, d=2))
    la, eta, delta = la[:1, :1, :5], eta[:1, :1, :5], delta[:1, :1, :5]
    scale = scale[:1]
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, la, eta)]
    cfg = MirasConfig(bias, retention)
    fn = lambda *z: miras_chunked(*z, cfg, delta=delta, scale=scale, chunk_size=2, exact=exact)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    if exact:  # exact chunked grads == recurrent grads
        g1 = torch.autograd.grad(fn(*leaves).sum(), leaves)
        g2 = torch.autograd.grad(miras_recurrent(*leaves, cfg).sum(), leaves)
        for a, b in zip(g1, g2, strict=True):
            torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("cls", [Moneta, Yaad, Memora, MirasMemory])
def test_module_chunked_matches_recurrent_module(cls) -> None:
    """fp32 chunked module (chunk 1 for non-linear variants, exact ℓ2 chunk 5) vs the float64 recurrence."""
    chunk = 5 if cls is MirasMemory else 1
    mixer = cls(8, num_heads=2, chunk_size=chunk)
    ref = copy.deepcopy(mixer).double()
    ref.algorithm = "recurrent"
    x = torch.randn(2, 11, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, 4] = False
    out = mixer(x, mask=pad, is_causal=True)
    expected = ref(x64, mask=pad, is_causal=True)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(mixer.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("cls", [Moneta, Yaad, Memora])
def test_padded_tokens_do_not_update_the_memory(cls) -> None:
    mixer = cls(8, num_heads=2, chunk_size=3).double()
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    pad = torch.ones(1, 9, dtype=torch.bool)
    pad[0, 2] = False
    y = x.clone()
    y[0, 2] += 5.0
    keep = pad[0]
    a, b = mixer(x, mask=pad, is_causal=True), mixer(y, mask=pad, is_causal=True)
    torch.testing.assert_close(a[:, keep], b[:, keep], atol=1e-12, rtol=0)


def test_registration_and_errors() -> None:
    for name, bias, retention in (("Moneta", "lp", "lq"), ("Yaad", "huber", "l2"), ("Memora", "l2", "kl")):
        info = get_mechanism(name)
        assert info.patterns == ("causal_self",)
        cfg = info.cls(8, **dict(info.example_kwargs)).cfg
        assert (cfg.bias, cfg.retention) == (bias, retention)
    with pytest.raises(ValueError, match="causal-only"):
        Moneta(8, num_heads=2)(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="exact"):
        MirasMemory(8, bias="lp", algorithm="exact")
    with pytest.raises(ValueError, match="retention"):
        MirasMemory(8, retention="l1")
    with pytest.raises(ValueError, match="key padding"):
        Yaad(8, num_heads=2)(torch.randn(1, 4, 8), mask=torch.ones(1, 4, 4, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="exact chunked form"):
        q = torch.randn(1, 1, 3, 2)
        miras_chunked(q, q, q, q[..., 0], q[..., 0], MirasConfig("huber", "l2"), exact=True)


@pytest.mark.parametrize("cls", [Memora, Moneta, Yaad, MirasMemory])
@pytest.mark.parametrize(("n", "segment"), [(24, 8), (23, 10)])
def test_segments_match_one_pass(cls, n: int, segment: int) -> None:
    """Segments (chunk 4, a short last segment) equal one pass, values and gradients, in float64."""
    torch.manual_seed(9)
    whole = cls(8, num_heads=2, chunk_size=4, segment_size=64).double()
    seg = copy.deepcopy(whole)
    seg.segment_size = segment  # rounded down to 8, a multiple of the chunk
    x = torch.randn(2, n, 8, dtype=torch.float64, requires_grad=True)
    pad = torch.ones(2, n, dtype=torch.bool)
    pad[0, 4] = False
    pad[1, -3:] = False
    assert_same_outputs_and_grads(whole, seg, x, EXACT, mask=pad, is_causal=True)
