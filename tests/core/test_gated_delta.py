"""Gated DeltaNet: chunked == recurrent == the paper's literal matrix recurrence, causality, masks, grads.

Tolerances: float64 functional forms agree to atol 1e-10; the fp32 module against its float64 recurrent
copy uses test_attention.py's forward atol 1e-5 / rtol 1e-4 and gradients atol 1e-4 / rtol 1e-3.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from core.attention.gated_delta import (
    GatedDeltaNet,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
)
from tests.core.reference_check import assert_same_outputs_and_grads

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
F64 = {"atol": 1e-10, "rtol": 1e-8}


def literal_gated_delta(q, k, v, g, beta, initial_state=None):
    """Paper's form (S: Dv × Dk): S_t = α_t S_{t-1} (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ, o_t = S_t q_t / √dk."""
    b, h, n, dk = q.shape
    dv = v.shape[-1]
    out = torch.zeros(b, h, n, dv, dtype=q.dtype)
    eye = torch.eye(dk, dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            s = torch.zeros(dv, dk, dtype=q.dtype) if initial_state is None else initial_state[bi, hi].T
            for t in range(n):
                kt, vt, bt = k[bi, hi, t], v[bi, hi, t], beta[bi, hi, t]
                s = g[bi, hi, t].exp() * s @ (eye - bt * torch.outer(kt, kt)) + bt * torch.outer(vt, kt)
                out[bi, hi, t] = s @ q[bi, hi, t] / dk**0.5
    return out


def _inputs(n, dk=4, dv=6, b=2, h=2, requires_grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    q, k = F.normalize(rnd(b, h, n, dk), dim=-1), F.normalize(rnd(b, h, n, dk), dim=-1)
    v = rnd(b, h, n, dv)
    g = -torch.rand(b, h, n, generator=gen, dtype=torch.float64)  # α in (e^-1, 1]
    beta = torch.rand(b, h, n, generator=gen, dtype=torch.float64)
    ts = (q, k, v, g, beta)
    return tuple(t.requires_grad_(requires_grad) for t in ts)


@pytest.mark.parametrize(("n", "chunk"), [(5, 2), (16, 16), (63, 16)])
def test_chunked_equals_recurrent_equals_literal(n, chunk) -> None:
    q, k, v, g, beta = _inputs(n)
    s0 = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    expected = literal_gated_delta(q, k, v, g, beta, s0)
    rec, rec_state = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=s0)
    out, state = gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=chunk, initial_state=s0)
    torch.testing.assert_close(rec, expected, **F64)
    torch.testing.assert_close(out, expected, **F64)
    torch.testing.assert_close(state, rec_state, **F64)


def test_chunked_gradients_match_recurrent() -> None:
    ins = _inputs(63, requires_grad=True)
    ins_ref = tuple(t.detach().clone().requires_grad_(True) for t in ins)
    out, state = gated_delta_rule_chunked(*ins, chunk_size=16)
    ref, ref_state = gated_delta_rule_recurrent(*ins_ref)
    grad_o, grad_s = torch.randn_like(out), torch.randn_like(state)
    torch.autograd.backward((out, state), (grad_o, grad_s))
    torch.autograd.backward((ref, ref_state), (grad_o, grad_s))
    for name, t, t_ref in zip("q k v g beta".split(), ins, ins_ref, strict=True):
        torch.testing.assert_close(t.grad, t_ref.grad, **F64, msg=lambda m, name=name: f"{name}: {m}")


def test_chunked_gradcheck() -> None:
    ins = _inputs(5, dk=3, dv=2, b=1, h=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: gated_delta_rule_chunked(*t, chunk_size=2)[0], ins)


def test_chunked_is_exactly_causal() -> None:
    q, k, v, g, beta = _inputs(12)
    v2, k2 = v.clone(), k.clone()
    v2[:, :, 7:] += 3.0
    k2[:, :, 7:] = F.normalize(k2[:, :, 7:] + 1.0, dim=-1)
    a = gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=4)[0]
    c = gated_delta_rule_chunked(q, k2, v2, g, beta, chunk_size=4)[0]
    torch.testing.assert_close(a[:, :, :7], c[:, :, :7], atol=0, rtol=0)
    assert not torch.allclose(a[:, :, 7:], c[:, :, 7:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"decay": "logsigmoid", "use_short_conv": False, "use_gate": False},
        {"allow_neg_eigval": True, "expand_v": 1.0},
    ],
)
def test_module_chunk_fp32_matches_recurrent_fp64(kwargs) -> None:
    torch.manual_seed(0)
    mixer = GatedDeltaNet(16, num_heads=2, head_dim=4, chunk_size=8, **kwargs)
    ref = copy.deepcopy(mixer).double()
    ref.mode = "recurrent"
    x = torch.randn(2, 21, 16, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out, expected = mixer(x, is_causal=True), ref(x64, is_causal=True)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(mixer.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_module_gradcheck() -> None:
    mixer = GatedDeltaNet(4, num_heads=1, head_dim=2, expand_v=1.0, conv_size=2, chunk_size=2).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mixer(t, is_causal=True), (x,), fast_mode=True)


def test_module_causality_and_decay_range() -> None:
    mixer = GatedDeltaNet(8, num_heads=2, chunk_size=4).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    a, c = mixer(x, is_causal=True), mixer(y, is_causal=True)
    torch.testing.assert_close(a[:, :6], c[:, :6], atol=0, rtol=0)
    g, beta = mixer.gates(x)
    assert g.shape == beta.shape == (2, 2, 11)
    assert (g <= 0).all() and ((beta > 0) & (beta < 1)).all()


def test_key_padding_freezes_the_state() -> None:
    """Left padding == the unpadded sequence; padded tokens (anywhere) never change valid outputs."""
    mixer = GatedDeltaNet(8, num_heads=2, chunk_size=4).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :3] = False  # left padding in row 0
    out = mixer(x, mask=mask, is_causal=True)
    torch.testing.assert_close(out[0, 3:], mixer(x[:1, 3:], is_causal=True)[0], **F64)
    torch.testing.assert_close(out[1], mixer(x[1:], is_causal=True)[0], **F64)
    mask[1, 4:6] = False  # a gap in row 1: changing the gap's tokens changes nothing valid
    y = x.clone()
    y[~mask] += 5 * torch.randn_like(y[~mask])
    a, c = mixer(x, mask=mask, is_causal=True), mixer(y, mask=mask, is_causal=True)
    torch.testing.assert_close(a[mask], c[mask], **F64)
    broadcast = mixer(x, mask=mask[:, None, None, :], is_causal=True)
    torch.testing.assert_close(broadcast, a, atol=0, rtol=0)
    assert torch.isfinite(mixer(x, mask=torch.zeros(2, 10, dtype=torch.bool), is_causal=True)).all()


def test_contract_errors() -> None:
    mixer = GatedDeltaNet(8, num_heads=2)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="causal-only"):
        mixer(x)
    with pytest.raises(ValueError, match="only takes key-padding masks"):
        mixer(x, mask=torch.ones(2, 6, 6, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="boolean"):
        mixer(x, mask=torch.ones(2, 6), is_causal=True)
    with pytest.raises(ValueError, match="decay"):
        GatedDeltaNet(8, decay="exp")
    with pytest.raises(ValueError, match="mode"):
        GatedDeltaNet(8, mode="fused")
    with pytest.raises(ValueError, match="expand_v"):
        GatedDeltaNet(8, num_heads=2, head_dim=3, expand_v=0.5)
    with pytest.raises(ValueError, match="chunk_size"):
        gated_delta_rule_chunked(*_inputs(4), chunk_size=0)
    with pytest.raises(ValueError, match=r"q, k \(B, H, N, Dk\)"):
        gated_delta_rule_recurrent(*_inputs(4)[:2], torch.randn(2, 2, 3, 6), *_inputs(4)[3:])


@pytest.mark.parametrize(("n", "chunk", "segment"), [(24, 4, 8), (23, 4, 10), (23, 2, 2)])
def test_segments_match_one_pass_and_recurrent(n, chunk, segment) -> None:
    """Segments (a short last one; one shorter than the conv window) equal one pass and the recurrence."""
    torch.manual_seed(6)
    whole = GatedDeltaNet(8, num_heads=2, head_dim=4, chunk_size=chunk, segment_size=64).double()
    seg = copy.deepcopy(whole)
    seg.segment_size = segment
    x = torch.randn(2, n, 8, dtype=torch.float64, requires_grad=True)
    pad = torch.ones(2, n, dtype=torch.bool)
    pad[1, :3] = False
    pad[0, 9] = False
    out = assert_same_outputs_and_grads(whole, seg, x, mask=pad, is_causal=True)
    seg.mode = "recurrent"
    with torch.no_grad():
        torch.testing.assert_close(seg(x, mask=pad, is_causal=True), out.detach(), atol=1e-12, rtol=1e-10)
