"""BCAF parent↔child cross-attention, SpectralSE and the fusion block against literal float64 references.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch
from torch import nn

from core.attention import get_mechanism
from core.attention.bcaf import ParentChildCrossAttention, SpectralSE
from core.blocks.bcaf import BCAFBlock

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _double(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double()


def _attend_one(query, keys, values, heads):
    """One query vector against a list of key/value vectors, per head, literal softmax."""
    d = query.shape[-1] // heads
    out = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        scores = torch.stack([query[sl] @ k[sl] for k in keys]) / math.sqrt(d)
        weights = torch.softmax(scores, dim=0)
        out.append(sum(w * v[sl] for w, v in zip(weights, values, strict=True)))
    return torch.cat(out)


def literal_parent_child(fine, coarse, m: ParentChildCrossAttention):
    """Every child queries the S tokens of its parent; every parent token queries its r_h·r_w children."""
    b, hf, wf, c = fine.shape
    _, hc, wc, s, _ = coarse.shape
    rh, rw = hf // hc, wf // wc
    heads = m.num_heads
    fine_rows, coarse_rows = [], []
    for bi in range(b):
        f_out = [[None] * wf for _ in range(hf)]
        c_out = [[None] * wc for _ in range(hc)]
        for i in range(hc):
            for j in range(wc):
                kids = [fine[bi, i * rh + a, j * rw + e] for a in range(rh) for e in range(rw)]
                toks = [coarse[bi, i, j, t] for t in range(s)]
                if m.direction != "coarse_from_fine":
                    keys = [m.coarse_k(t) for t in toks]
                    vals = [m.coarse_v(t) for t in toks]
                    for a in range(rh):
                        for e in range(rw):
                            q = m.fine_q(fine[bi, i * rh + a, j * rw + e])
                            f_out[i * rh + a][j * rw + e] = m.fine_proj(_attend_one(q, keys, vals, heads))
                else:
                    for a in range(rh):
                        for e in range(rw):
                            f_out[i * rh + a][j * rw + e] = torch.zeros(c, dtype=fine.dtype)
                if m.direction != "fine_from_coarse":
                    keys = [m.fine_k(k) for k in kids]
                    vals = [m.fine_v(k) for k in kids]
                    c_out[i][j] = torch.stack(
                        [m.coarse_proj(_attend_one(m.coarse_q(t), keys, vals, heads)) for t in toks]
                    )
                else:
                    c_out[i][j] = torch.zeros(s, c, dtype=fine.dtype)
        fine_rows.append(torch.stack([torch.stack(row) for row in f_out]))
        coarse_rows.append(torch.stack([torch.stack(row) for row in c_out]))
    return torch.stack(fine_rows), torch.stack(coarse_rows)


def _inputs(b=2, hc=2, wc=2, rh=2, rw=3, s=3, c=8, dtype=torch.float32):
    fine = torch.randn(b, hc * rh, wc * rw, c, dtype=dtype, requires_grad=True)
    coarse = torch.randn(b, hc, wc, s, c, dtype=dtype, requires_grad=True)
    return fine, coarse


def _check_grads(module, ref, inputs, inputs64, outs, outs64):
    live = [i for i, o in enumerate(outs) if o.requires_grad]  # a disabled direction's update is constant
    grads = [torch.randn_like(outs[i]) for i in live]
    torch.autograd.backward([outs[i] for i in live], grads)
    torch.autograd.backward([outs64[i] for i in live], [g.double() for g in grads])
    for t, t64 in zip(inputs, inputs64, strict=True):
        torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)
    for (name, p), p64 in zip(module.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("direction", ["bidirectional", "fine_from_coarse", "coarse_from_fine"])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_parent_child_matches_literal_reference(direction: str, backend: str) -> None:
    attn = ParentChildCrossAttention(8, num_heads=2, direction=direction, backend=backend)
    ref = _double(attn)
    fine, coarse = _inputs()
    fine64, coarse64 = (t.detach().double().requires_grad_(True) for t in (fine, coarse))
    out = attn(fine, coarse)
    expected = literal_parent_child(fine64, coarse64, ref)
    for o, e in zip(out, expected, strict=True):
        assert o.shape == e.shape
        torch.testing.assert_close(o.double(), e, **FWD)
    if direction != "bidirectional":
        assert (out[1 if direction == "fine_from_coarse" else 0] == 0).all()
    _check_grads(attn, ref, (fine, coarse), (fine64, coarse64), out, expected)


def test_parent_child_gradcheck() -> None:
    attn = ParentChildCrossAttention(4, num_heads=2).double()
    fine = torch.randn(1, 4, 2, 4, dtype=torch.float64, requires_grad=True)
    coarse = torch.randn(1, 2, 1, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, c: attn(f, c), (fine, coarse))


def test_parent_child_is_local_to_each_parent() -> None:
    attn = ParentChildCrossAttention(8, num_heads=2).double()
    fine, coarse = _inputs(dtype=torch.float64)
    fine, coarse = fine.detach(), coarse.detach()
    f2, c2 = fine.clone(), coarse.clone()
    f2[:, :2, :3] += torch.randn_like(f2[:, :2, :3])  # the children of parent (0, 0)
    c2[:, 0, 0] += torch.randn_like(c2[:, 0, 0])  # and its spectral tokens
    (fa, ca), (fb, cb) = attn(fine, coarse), attn(f2, c2)
    torch.testing.assert_close(fa[:, 2:], fb[:, 2:], atol=0, rtol=0)
    torch.testing.assert_close(fa[:, :, 3:], fb[:, :, 3:], atol=0, rtol=0)
    torch.testing.assert_close(ca[:, 1:], cb[:, 1:], atol=0, rtol=0)
    torch.testing.assert_close(ca[:, :, 1:], cb[:, :, 1:], atol=0, rtol=0)
    assert not torch.allclose(fa[:, :2, :3], fb[:, :2, :3]) and not torch.allclose(ca[:, 0, 0], cb[:, 0, 0])


def test_parent_child_4d_coarse_is_one_spectral_token() -> None:
    attn = ParentChildCrossAttention(8, num_heads=2)
    fine, coarse = torch.randn(2, 4, 4, 8), torch.randn(2, 2, 2, 8)
    f4, c4 = attn(fine, coarse)
    f5, c5 = attn(fine, coarse[:, :, :, None])
    assert c4.shape == coarse.shape
    torch.testing.assert_close(f4, f5)
    torch.testing.assert_close(c4, c5[:, :, :, 0])


def test_parent_child_errors_name_shapes() -> None:
    attn = ParentChildCrossAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r"fine grid \(5, 6\).*coarse grid \(2, 3\)"):
        attn(torch.randn(1, 5, 6, 8), torch.randn(1, 2, 3, 2, 8))
    with pytest.raises(ValueError, match=r"expected fine of shape \(B, H_f, W_f, 8\)"):
        attn(torch.randn(1, 4, 6, 7), torch.randn(1, 2, 3, 2, 8))
    with pytest.raises(ValueError, match=r"expected coarse of shape \(1, H_c, W_c, S, 8\)"):
        attn(torch.randn(1, 4, 6, 8), torch.randn(2, 2, 3, 2, 8))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ParentChildCrossAttention(8, num_heads=3)
    with pytest.raises(ValueError, match="direction"):
        ParentChildCrossAttention(8, direction="rgb_to_hsi")
    assert ParentChildCrossAttention(96).num_heads == 3 and ParentChildCrossAttention(768).num_heads == 24
    assert get_mechanism("ParentChildCrossAttention").kind == "module"


def literal_spectral_se(x, se: SpectralSE):
    """Squeeze each (b, c, s) over H, W; excite per (b, s) across channels; sum over s."""
    b, c, s, h, w = x.shape
    out = torch.zeros(b, c, h, w, dtype=x.dtype)
    for bi in range(b):
        for si in range(s):
            squeezed = torch.stack([x[bi, ci, si].sum() / (h * w) for ci in range(c)])
            hidden = torch.relu(se.fc1.weight @ squeezed + se.fc1.bias)
            weight = torch.sigmoid(se.fc2.weight @ hidden + se.fc2.bias)
            for ci in range(c):
                out[bi, ci] = out[bi, ci] + weight[ci] * x[bi, ci, si]
    return out


def test_spectral_se_matches_literal_reference_and_gradcheck() -> None:
    se = SpectralSE(16, reduction=4)
    assert se.fc1.out_features == 8  # max(16 // 4, 8)
    ref = _double(se)
    x = torch.randn(2, 16, 3, 4, 5, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out, expected = se(x), literal_spectral_se(x64, ref)
    torch.testing.assert_close(out.double(), expected, **FWD)
    _check_grads(se, ref, (x,), (x64,), (out,), (expected,))
    small = SpectralSE(4, min_hidden=2).double()
    x_small = torch.randn(1, 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (x_small,))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 16, S, H, W\)"):
        se(torch.randn(2, 16, 4, 5))


def _layer_norm(x, ln: nn.LayerNorm):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _mlp(x, mlp):
    h = mlp.fc1(x)
    return mlp.fc2(0.5 * h * (1 + torch.erf(h / math.sqrt(2))))


def literal_bcaf_block(fine, coarse, blk: BCAFBlock):
    """The fusion equations of the official block, channels-first in and out, nearest upsampling by index."""
    f = fine.permute(0, 2, 3, 1)
    z = coarse.permute(0, 3, 4, 2, 1)
    df, dz = literal_parent_child(_layer_norm(f, blk.norm_fine1), _layer_norm(z, blk.norm_coarse1), blk.attn)
    f, z = f + df, z + dz
    f = f + _mlp(_layer_norm(f, blk.norm_fine2), blk.mlp_fine)
    z = z + _mlp(_layer_norm(z, blk.norm_coarse2), blk.mlp_coarse)
    collapsed = literal_spectral_se(z.permute(0, 4, 3, 1, 2), blk.spectral_se).permute(0, 2, 3, 1)
    zc = _layer_norm(collapsed, blk.norm_coarse_fuse)
    hf, wf, hc, wc = f.shape[1], f.shape[2], zc.shape[1], zc.shape[2]
    rh, rw = hf // hc, wf // wc
    rows = [torch.stack([zc[:, i // rh, j // rw] for j in range(wf)], dim=1) for i in range(hf)]
    up = torch.stack(rows, dim=1)
    gate = 1 / (1 + torch.exp(-blk.alpha))
    fused = _layer_norm(_layer_norm(f, blk.norm_fine_fuse) + gate * up, blk.norm_fused)
    return fused.permute(0, 3, 1, 2)


def test_bcaf_block_matches_literal_reference() -> None:
    torch.manual_seed(0)
    blk = BCAFBlock(8, num_heads=2, mlp_ratio=2.0)
    with torch.no_grad():
        blk.alpha.normal_()
        for m in blk.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    ref = _double(blk)
    fine = torch.randn(2, 8, 4, 6, requires_grad=True)
    coarse = torch.randn(2, 8, 3, 2, 2, requires_grad=True)
    fine64, coarse64 = (t.detach().double().requires_grad_(True) for t in (fine, coarse))
    out, expected = blk(fine, coarse), literal_bcaf_block(fine64, coarse64, ref)
    assert out.shape == fine.shape
    torch.testing.assert_close(out.double(), expected, **FWD)
    _check_grads(blk, ref, (fine, coarse), (fine64, coarse64), (out,), (expected,))


def test_bcaf_block_gate_starts_at_half_and_takes_a_factory() -> None:
    blk = BCAFBlock(8, num_heads=2)
    torch.testing.assert_close(torch.sigmoid(blk.alpha), torch.full((8,), 0.5))
    built = []

    def factory(dim: int) -> nn.Module:
        built.append(dim)
        return ParentChildCrossAttention(dim, num_heads=4, direction="fine_from_coarse")

    custom = BCAFBlock(8, attention=factory)
    assert built == [8] and custom.attn.num_heads == 4
    out = custom(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2, 2))
    assert out.shape == (1, 8, 4, 4) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"expected coarse of shape \(1, 8, S, H_c, W_c\)"):
        blk(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2))
    with pytest.raises(ValueError, match=r"fine grid \(4, 5\).*coarse grid \(2, 2\)"):
        blk(torch.randn(1, 8, 4, 5), torch.randn(1, 8, 2, 2, 2))
