"""LTX-2 audio-video cross-attention and the RoPE helpers against literal float64 references.

Tolerances: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3 (fp32 module vs fp64 literal).
The RoPE property tests run in float64 with atol 1e-10.
"""

import copy
import math

import pytest
import torch

from core.attention.ltx import LTXCrossModalAttention
from core.attention.rope import apply_rope, inverse_frequencies, log_spaced_frequencies, rope_angles

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _module(**kw) -> LTXCrossModalAttention:
    torch.manual_seed(0)
    args = {"inner_dim": 8, "num_heads": 2, "gated_attention": True} | kw
    m = LTXCrossModalAttention(8, 6, **args)
    with torch.no_grad():  # make the qk-norm weights non-trivial
        for p in m.parameters():
            if p.ndim == 1 and p.shape[0] == 8 and torch.all(p == 1):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return m


def _rms(x, eps, weight=None):
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def _lin(x, layer):
    return x @ layer.weight.T + layer.bias


def _literal_direction(att, x, ctx, tq, tk, valid_k, max_time, theta):
    """One direction, token by token: official LTX angle (π/2)·θ^(j/(F-1))·(2t/max − 1), split pairs."""
    eps = att.q_norm.eps
    heads, inner = att.num_heads, att.inner_dim
    d = inner // heads
    n_freq = inner // 2
    q = _rms(_lin(x, att.to_q), eps, att.q_norm.weight)
    k = _rms(_lin(ctx, att.to_k), eps, att.k_norm.weight)
    v = _lin(ctx, att.to_v)

    def rotate(vec, t, h):  # vec: (d,) of head h at time t
        out = vec.clone()
        for i in range(d // 2):
            j = h * (d // 2) + i
            ang = (math.pi / 2) * theta ** (j / (n_freq - 1)) * (2 * t / max_time - 1)
            c, s = math.cos(ang), math.sin(ang)
            out[i] = vec[i] * c - vec[i + d // 2] * s
            out[i + d // 2] = vec[i + d // 2] * c + vec[i] * s
        return out

    rows = []
    for bi in range(x.shape[0]):
        outs = []
        for n in range(x.shape[1]):
            heads_out = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                keys = [m for m in range(ctx.shape[1]) if bool(valid_k[bi, m])]
                if not keys:
                    heads_out.append(torch.zeros(d, dtype=x.dtype))
                    continue
                qn = rotate(q[bi, n, sl], float(tq[bi, n]), h)
                scores = torch.stack(
                    [qn @ rotate(k[bi, m, sl], float(tk[bi, m]), h) for m in keys]
                ) / math.sqrt(d)
                w = torch.softmax(scores, dim=0)
                o = sum(wi * v[bi, m, sl] for wi, m in zip(w, keys, strict=True))
                if att.to_gate_logits is not None:
                    o = o * 2 * torch.sigmoid(_lin(x[bi, n], att.to_gate_logits)[h])
                heads_out.append(o)
            outs.append(torch.cat(heads_out))
        rows.append(torch.stack(outs))
    return _lin(torch.stack(rows), att.to_out)


def literal_ltx(m, a, b, ta, tb, mask_a=None, mask_b=None):
    eps = m.b_to_a.q_norm.eps
    va = torch.ones(a.shape[:2], dtype=torch.bool) if mask_a is None else mask_a
    vb = torch.ones(b.shape[:2], dtype=torch.bool) if mask_b is None else mask_b
    ta, tb = ta.expand(a.shape[0], -1), tb.expand(b.shape[0], -1)
    an, bn = _rms(a, eps), _rms(b, eps)
    da = _literal_direction(m.b_to_a, an, bn, ta, tb, vb, m.max_time, m.rope_theta)
    db = _literal_direction(m.a_to_b, bn, an, tb, ta, va, m.max_time, m.rope_theta)
    return a + da, b + db


def _inputs(dtype=torch.float32):
    torch.manual_seed(1)
    a = torch.randn(2, 5, 8, dtype=dtype)
    b = torch.randn(2, 7, 6, dtype=dtype)
    ta = (torch.arange(5, dtype=dtype) * 0.32 + 0.1)[None]  # video latents at 25/8 fps
    tb = torch.stack([torch.arange(7, dtype=dtype) * 0.04, torch.arange(7, dtype=dtype) * 0.04 + 0.5])
    return a, b, ta, tb


def test_matches_literal_reference_forward_and_grad() -> None:
    m = _module()
    ref = copy.deepcopy(m).double()
    a, b, ta, tb = _inputs()
    mask_b = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    a.requires_grad_(True)
    b.requires_grad_(True)
    a64 = a.detach().double().requires_grad_(True)
    b64 = b.detach().double().requires_grad_(True)
    out = m(a, b, times_a=ta, times_b=tb, mask_b=mask_b)
    exp = literal_ltx(ref, a64, b64, ta.double(), tb.double(), mask_b=mask_b)
    for o, e in zip(out, exp, strict=True):
        torch.testing.assert_close(o.double(), e, **FWD)
    w = [torch.randn_like(o) for o in out]
    sum((o * wi).sum() for o, wi in zip(out, w, strict=True)).backward()
    sum((e * wi.double()).sum() for e, wi in zip(exp, w, strict=True)).backward()
    torch.testing.assert_close(a.grad.double(), a64.grad, **GRAD)
    torch.testing.assert_close(b.grad.double(), b64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=name)


def test_reference_backend_matches_sdpa_and_default_times() -> None:
    a, b, _, _ = _inputs(torch.float64)
    m = _module(backend="reference").double()
    fast = _module().double()
    fast.load_state_dict(m.state_dict())
    out_ref, out_fast = m(a, b), fast(a, b)
    torch.testing.assert_close(out_ref[0], out_fast[0], atol=1e-12, rtol=0)
    # default times are the token midpoints of a common 1-second clip
    ta = ((torch.arange(5, dtype=torch.float64) + 0.5) / 5)[None]
    tb = ((torch.arange(7, dtype=torch.float64) + 0.5) / 7)[None]
    exp = literal_ltx(m, a, b, ta, tb)
    torch.testing.assert_close(out_fast[1], exp[1], atol=1e-10, rtol=0)


def test_gradcheck() -> None:
    m = _module(inner_dim=4, num_heads=2).double()
    a = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 4, 6, dtype=torch.float64, requires_grad=True)
    ta, tb = torch.rand(1, 3, dtype=torch.float64), torch.rand(1, 4, dtype=torch.float64)
    mask_a = torch.tensor([[True, True, False]])
    assert torch.autograd.gradcheck(
        lambda x, y: m(x, y, times_a=ta, times_b=tb, mask_a=mask_a),
        (a, b),
        eps=1e-6,
        atol=1e-5,
        fast_mode=True,
    )


def test_shift_of_all_timestamps_leaves_output_unchanged() -> None:
    m = _module().double()
    a, b, ta, tb = _inputs(torch.float64)
    base = m(a, b, times_a=ta, times_b=tb)
    shifted = m(a, b, times_a=ta + 3.7, times_b=tb + 3.7)
    for o, s in zip(base, shifted, strict=True):
        torch.testing.assert_close(o, s, atol=1e-10, rtol=0)
    # ... but a shift of one stream only changes the alignment, and so the output
    moved = m(a, b, times_a=ta, times_b=tb + 0.1)
    assert not torch.allclose(base[0], moved[0], atol=1e-6)
    assert not torch.allclose(base[1], moved[1], atol=1e-6)


def test_spans_use_their_midpoint() -> None:
    m = _module().double()
    a, b, ta, tb = _inputs(torch.float64)
    spans_a = torch.stack([ta - 0.16, ta + 0.16], dim=-1)
    spans_b = torch.stack([tb - 0.02, tb + 0.02], dim=-1)
    out = m(a, b, times_a=spans_a, times_b=spans_b)
    exp = m(a, b, times_a=ta, times_b=tb)
    torch.testing.assert_close(out[0], exp[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("padded_stream", ["a", "b"])
def test_padded_tokens_do_not_reach_the_other_stream(padded_stream: str) -> None:
    m = _module().double()
    a, b, ta, tb = _inputs(torch.float64)
    mask_a = torch.ones(2, 5, dtype=torch.bool)
    mask_b = torch.ones(2, 7, dtype=torch.bool)
    a2, b2 = a.clone(), b.clone()
    if padded_stream == "a":
        mask_a[:, -2:] = False
        a2[:, -2:] = 100 * torch.randn(2, 2, 8, dtype=torch.float64)
    else:
        mask_b[:, -3:] = False
        b2[:, -3:] = 100 * torch.randn(2, 3, 6, dtype=torch.float64)
    kw = {"times_a": ta, "times_b": tb, "mask_a": mask_a, "mask_b": mask_b}
    out1, out2 = m(a, b, **kw), m(a2, b2, **kw)
    if padded_stream == "a":
        torch.testing.assert_close(out1[1], out2[1], atol=0, rtol=0)  # b never saw a's padding
        torch.testing.assert_close(out1[0][:, :3], out2[0][:, :3], atol=0, rtol=0)
    else:
        torch.testing.assert_close(out1[0], out2[0], atol=0, rtol=0)
        torch.testing.assert_close(out1[1][:, :4], out2[1][:, :4], atol=0, rtol=0)
    # sanity: without the mask the padding would have changed the other stream
    unmasked = m(a2, b2, times_a=ta, times_b=tb)
    other = 1 if padded_stream == "a" else 0
    assert not torch.allclose(unmasked[other], out1[other])


def test_all_masked_keys_give_zero_update() -> None:
    m = _module().double()
    a, b, _, _ = _inputs(torch.float64)
    out_a, out_b = m(a, b, mask_b=torch.zeros(2, 7, dtype=torch.bool))
    assert torch.isfinite(out_b).all()
    torch.testing.assert_close(out_a, a, atol=0, rtol=0)


def test_no_residual_returns_updates() -> None:
    a, b, ta, tb = _inputs(torch.float64)
    m = _module().double()
    plain = _module(residual=False).double()
    plain.load_state_dict(m.state_dict())
    full, delta = m(a, b, times_a=ta, times_b=tb), plain(a, b, times_a=ta, times_b=tb)
    torch.testing.assert_close(full[0] - a, delta[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": torch.randn(2, 5, 7)}, r"expected a of shape \(B, N, 8\)"),
        ({"b": torch.randn(2, 7)}, r"expected b of shape \(B, N, 6\)"),
        ({"b": torch.randn(3, 7, 6)}, "share the batch size"),
        ({"times_a": torch.rand(2, 4)}, r"expected times_a of shape \(B\|1, 5\)"),
        ({"times_b": torch.rand(3, 7)}, r"expected times_b of shape \(B\|1, 7\)"),
        ({"mask_a": torch.ones(2, 4, dtype=torch.bool)}, r"expected mask_a .* \(2, 5\)"),
        ({"mask_b": torch.ones(2, 7)}, r"expected mask_b .* boolean"),
    ],
)
def test_shape_errors(kwargs, match) -> None:
    m = _module()
    a, b = torch.randn(2, 5, 8), torch.randn(2, 7, 6)
    args = {"a": a, "b": b} | kwargs
    a, b = args.pop("a"), args.pop("b")
    with pytest.raises(ValueError, match=match):
        m(a, b, **args)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="heads of even size"):
        LTXCrossModalAttention(8, 6, inner_dim=6, num_heads=2)
    with pytest.raises(ValueError, match="must be positive"):
        LTXCrossModalAttention(8, 6, max_time=0.0)


# --- RoPE helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["split", "interleaved"])
def test_apply_rope_literal_and_relative(layout: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64)
    pos = torch.tensor([0.0, 1.5, -2.0], dtype=torch.float64)
    freqs = inverse_frequencies(6)
    out = apply_rope(x, rope_angles(pos, freqs), layout)
    for n in range(3):
        for j in range(3):
            i1, i2 = (j, j + 3) if layout == "split" else (2 * j, 2 * j + 1)
            ang = float(pos[n]) * 10000.0 ** (-2 * j / 6)
            assert math.isclose(
                out[n, i1], x[n, i1] * math.cos(ang) - x[n, i2] * math.sin(ang), abs_tol=1e-12
            )
            assert math.isclose(
                out[n, i2], x[n, i2] * math.cos(ang) + x[n, i1] * math.sin(ang), abs_tol=1e-12
            )
    q, k = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)

    def dot(p, s):
        rq = apply_rope(q[None], rope_angles(torch.tensor([p], dtype=torch.float64), freqs), layout)
        rk = apply_rope(k[None], rope_angles(torch.tensor([s], dtype=torch.float64), freqs), layout)
        return float((rq * rk).sum())

    assert math.isclose(dot(0.3, 1.1), dot(5.3, 6.1), abs_tol=1e-10)
    assert not math.isclose(dot(0.3, 1.1), dot(0.3, 2.1), abs_tol=1e-6)


def test_log_spaced_frequencies_and_errors() -> None:
    f = log_spaced_frequencies(4, base=1000.0, max_position=20.0)
    expected = [math.pi / 20 * 1000.0 ** (j / 3) for j in range(4)]
    torch.testing.assert_close(f, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected x with an even last axis"):
        apply_rope(torch.randn(2, 5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown layout"):
        apply_rope(torch.randn(2, 4), torch.zeros(2, 2), "rotated")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive even"):
        inverse_frequencies(5)
