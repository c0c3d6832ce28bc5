"""HGRN2: chunked GLA == recurrent == literal per-head recurrence, causality, masks, lower bounds, grads.

Tolerances: float64 functional forms agree to atol 1e-10; the fp32 module against the float64 literal
uses test_attention.py's forward atol 1e-5 / rtol 1e-4 and gradients atol 1e-4 / rtol 1e-3.
"""

import copy

import pytest
import torch

from core.attention.hgrn2 import HGRN2, gla_chunked, gla_recurrent
from tests.core.reference_check import assert_segments_match

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
F64 = {"atol": 1e-10, "rtol": 1e-8}


def literal_hgrn2(x, m: HGRN2):
    """The paper's equations head by head and token by token, from the module's weights."""
    b, n, c = x.shape
    h, e = m.num_heads, m.expand_ratio
    d = c // h
    lam = m.lower_bound
    ys = torch.zeros(b, n, c, dtype=x.dtype)
    for bi in range(b):
        for hi in range(h):
            rows, cols = slice(hi * e, (hi + 1) * e), slice(hi * d, (hi + 1) * d)
            s = torch.zeros(e, d, dtype=x.dtype)
            for t in range(n):
                xt = x[bi, t]
                f = lam + (1 - lam) * torch.sigmoid(m.f_proj.weight[rows] @ xt)
                i = m.i_proj.weight[cols] @ xt
                o = m.q_proj.weight[rows] @ xt
                o = o * torch.sigmoid(o)  # swish
                s = torch.diag(f) @ s + torch.outer(1 - f, i)
                ys[bi, t, cols] = m.scale * s.T @ o
    rms = ys.pow(2).mean(-1, keepdim=True).add(m.g_norm.eps).rsqrt()
    return (ys * rms * m.g_norm.weight) @ m.o_proj.weight.T


def _inputs(n, dk=4, dv=6, b=2, h=2, requires_grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, n, dk, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, n, dv, generator=gen, dtype=torch.float64)
    g = -3 * torch.rand(b, h, n, dk, generator=gen, dtype=torch.float64)
    return tuple(t.requires_grad_(requires_grad) for t in (q, k, v, g))


def literal_gla(q, k, v, g, s0):
    """o_t = Σ_{i≤t} Σ_j q_tj k_ij exp(Σ_{i<s≤t} g_sj) v_i + (q_t ⊙ exp(Σ_{s≤t} g_s))ᵀ S_0, pair by pair."""
    n = q.shape[2]
    out = torch.zeros(*q.shape[:3], v.shape[-1], dtype=q.dtype)
    for t in range(n):
        out[:, :, t] = ((q[:, :, t] * g[:, :, : t + 1].sum(2).exp()).unsqueeze(-2) @ s0).squeeze(-2)
        for i in range(t + 1):
            w = (q[:, :, t] * k[:, :, i] * g[:, :, i + 1 : t + 1].sum(2).exp()).sum(-1, keepdim=True)
            out[:, :, t] += w * v[:, :, i]
    return out


@pytest.mark.parametrize(("n", "chunk"), [(5, 2), (16, 16), (63, 16)])
def test_gla_chunked_equals_recurrent_equals_literal(n, chunk) -> None:
    q, k, v, g = _inputs(n)
    s0 = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    rec, rec_state = gla_recurrent(q, k, v, g, initial_state=s0)
    out, state = gla_chunked(q, k, v, g, chunk_size=chunk, initial_state=s0)
    torch.testing.assert_close(out, rec, **F64)
    torch.testing.assert_close(state, rec_state, **F64)
    if n <= 16:
        torch.testing.assert_close(rec, literal_gla(q, k, v, g, s0), **F64)


def test_gla_chunked_is_stable_under_strong_decay() -> None:
    q, k, v, g = _inputs(32)
    g = 200 * g  # log decays down to -600 per step: e^{-b} factorisations would overflow
    out, _ = gla_chunked(q, k, v, g, chunk_size=16)
    torch.testing.assert_close(out, gla_recurrent(q, k, v, g)[0], **F64)


def test_gla_gradients_match_recurrent_and_gradcheck() -> None:
    ins = _inputs(63, requires_grad=True)
    ins_ref = tuple(t.detach().clone().requires_grad_(True) for t in ins)
    out, ref = gla_chunked(*ins, chunk_size=16)[0], gla_recurrent(*ins_ref)[0]
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    for name, t, t_ref in zip("q k v g".split(), ins, ins_ref, strict=True):
        torch.testing.assert_close(t.grad, t_ref.grad, **F64, msg=lambda m, name=name: f"{name}: {m}")
    small = _inputs(5, dk=2, dv=3, b=1, h=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: gla_chunked(*t, chunk_size=2)[0], small)


@pytest.mark.parametrize(
    ("layer_idx", "kwargs"), [(0, {}), (2, {"expand_ratio": 3}), (1, {"mode": "recurrent"})]
)
def test_module_matches_literal(layer_idx, kwargs) -> None:
    torch.manual_seed(0)
    mixer = HGRN2(8, num_heads=2, chunk_size=4, layer_idx=layer_idx, num_layers=3, **kwargs)
    ref = copy.deepcopy(mixer).double()
    x = torch.randn(2, 11, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out, expected = mixer(x, is_causal=True), literal_hgrn2(x64, ref)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(mixer.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_lower_bound_grows_with_depth() -> None:
    x = 10 * torch.randn(2, 7, 8, dtype=torch.float64)
    bounds = []
    for i in range(4):
        mixer = HGRN2(8, num_heads=2, layer_idx=i, num_layers=4).double()
        k, log_f = mixer.gates(x)
        f = log_f.exp()
        torch.testing.assert_close(k, 1 - f, **F64)
        assert (f >= mixer.lower_bound - 1e-12).all() and (f <= 1).all()
        bounds.append(mixer.lower_bound)
    assert bounds == [0.0, 0.25, 0.5, 0.75]
    assert HGRN2(8, lower_bound=0.9, layer_idx=0).lower_bound == 0.9
    assert HGRN2(8, lower_bound=None, layer_idx=3, num_layers=4).lower_bound == 0.0


def test_causality_and_key_padding() -> None:
    mixer = HGRN2(8, num_heads=2, chunk_size=4, layer_idx=1, num_layers=2).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    torch.testing.assert_close(
        mixer(x, is_causal=True)[:, :6], mixer(y, is_causal=True)[:, :6], atol=0, rtol=0
    )
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :3] = False
    out = mixer(x, mask=mask, is_causal=True)
    torch.testing.assert_close(out[0, 3:], mixer(x[:1, 3:], is_causal=True)[0], **F64)
    mask[1, 4:6] = False
    z = x.clone()
    z[~mask] += 5 * torch.randn_like(z[~mask])
    a, c = mixer(x, mask=mask, is_causal=True), mixer(z, mask=mask, is_causal=True)
    torch.testing.assert_close(a[mask], c[mask], **F64)
    assert torch.isfinite(mixer(x, mask=torch.zeros(2, 10, dtype=torch.bool), is_causal=True)).all()


def test_contract_errors() -> None:
    mixer = HGRN2(8, num_heads=2)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="causal-only"):
        mixer(x)
    with pytest.raises(ValueError, match="only takes key-padding masks"):
        mixer(x, mask=torch.ones(1, 2, 6, 6, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        HGRN2(10, num_heads=3)
    with pytest.raises(ValueError, match="lower_bound"):
        HGRN2(8, lower_bound=1.0)
    with pytest.raises(ValueError, match="q_activation"):
        HGRN2(8, q_activation="relu")
    with pytest.raises(ValueError, match="log_decay must be shaped like k"):
        gla_chunked(*_inputs(4)[:3], torch.zeros(2, 2, 4, 3))


@pytest.mark.parametrize(("n", "segment"), [(24, 8), (23, 10)])
def test_segments_match_one_pass_and_recurrent(n, segment) -> None:
    """Segments (chunk 4, a short last segment) equal one pass and the recurrence, values and gradients."""
    torch.manual_seed(7)
    whole = HGRN2(8, num_heads=2, chunk_size=4, segment_size=64, layer_idx=1, num_layers=3).double()
    out, x, pad = assert_segments_match(whole, segment, n, causal=True)
    whole.mode = "recurrent"
    with torch.no_grad():
        torch.testing.assert_close(whole(x, mask=pad, is_causal=True), out.detach(), atol=1e-12, rtol=1e-10)
