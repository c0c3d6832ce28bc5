"""UltraGen hierarchical global–local attention against literal float64 references of the paper's equations.

Every branch is recomputed in float64 with explicit loops: windows are enumerated one by one (and only
their real tokens take part, so padding can never leak), compressed tokens are built as explicit sums
over their ``r × r`` pixels, the bilinear resize is the ``align_corners=False`` formula written out, and
the depthwise 3-D convolution is a sum over its 27 offsets. Tolerances as in test_attention.py: forward
atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention.davit import window_partition
from core.attention.ultragen import (
    UltraGenAttention,
    UltraGenGlobalAttention,
    UltraGenHierarchicalAttention,
    UltraGenLocalAttention,
    window_partition_3d,
    window_reverse_3d,
)
from core.blocks.ultragen import TimestepGate, UltraGenBlock, timestep_embedding

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


# ----------------------------------------------------------------------------------------------------------
# literal references


def literal_attention(q, k, v, heads):
    """softmax(q kᵀ / √d) v per head, for q (N, C) and k, v (M, C)."""
    c = q.shape[-1]
    d = c // heads
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        logits = q[:, sl] @ k[:, sl].T / math.sqrt(d)
        weights = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
        outs.append((weights / weights.sum(dim=-1, keepdim=True)) @ v[:, sl])
    return torch.cat(outs, dim=-1)


def literal_windows(video, qkv, heads, num_windows=None, window=None, valid=None):
    """Window attention on video (B, T, H, W, C): windows of ⌈H/K⌉ × ⌈W/K⌉ positions × all frames.

    Loops over batch items and windows; inside a window only real (valid) tokens are keys.
    """
    b, frames, height, width, c = video.shape
    if window is None:
        window = (-(-height // num_windows), -(-width // num_windows))
    wh, ww = window
    flat = video.reshape(b, -1, c)
    valid = None if valid is None else valid.reshape(b, -1)
    rows = []
    for bi in range(b):
        parts, order = [], []
        for r0 in range(0, height, wh):
            for c0 in range(0, width, ww):
                idx = [
                    (t * height + i) * width + j
                    for t in range(frames)
                    for i in range(r0, min(r0 + wh, height))
                    for j in range(c0, min(c0 + ww, width))
                ]
                q, k, v = qkv(flat[bi, idx]).split(c, dim=-1)
                keep = [n for n, s in enumerate(idx) if valid is None or bool(valid[bi, s])]
                parts.append(literal_attention(q, k[keep], v[keep], heads) if keep else torch.zeros_like(q))
                order += idx
        rows.append(torch.cat(parts)[torch.argsort(torch.tensor(order))])
    return torch.stack(rows).view(video.shape)


def literal_down(video, conv, r):
    """Depthwise r×r stride-r conv of each frame, zero padding to a multiple of r: explicit pixel sums."""
    b, frames, height, width, c = video.shape
    h, w = -(-height // r), -(-width // r)
    weight = conv.weight[:, 0]  # (C, r, r)
    out = conv.bias.expand(b, frames, h, w, c).clone()
    for a in range(h):
        for e in range(w):
            acc = torch.zeros(b, frames, c, dtype=video.dtype)
            for u in range(r):
                for s in range(r):
                    i, j = a * r + u, e * r + s
                    if i < height and j < width:
                        acc = acc + weight[:, u, s] * video[:, :, i, j]
            out[:, :, a, e] = out[:, :, a, e] + acc
    return out


def bilinear_matrix(n_in, scale, dtype):
    """1-D bilinear interpolation (align_corners=False) from n_in to n_in·scale samples, as a matrix."""
    n_out = n_in * scale
    m = torch.zeros(n_out, n_in, dtype=dtype)
    for p in range(n_out):
        src = max((p + 0.5) / scale - 0.5, 0.0)
        i0 = math.floor(src)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[p, i0] += 1 - lam
        m[p, i1] += lam
    return m


def literal_up(small, r, height, width):
    """Bilinear ×r resize of (B, T, h, w, C), cropped to (height, width)."""
    _, _, h, w, _ = small.shape
    ah, aw = bilinear_matrix(h, r, small.dtype), bilinear_matrix(w, r, small.dtype)
    up = torch.einsum("pa,btaec,qe->btpqc", ah, small, aw)
    return up[:, :, :height, :width]


def literal_conv3d(video, conv):
    """Depthwise 3×3×3 conv with zero padding 1 as a sum over the 27 offsets; video (B, T, H, W, C)."""
    _, frames, height, width, _ = video.shape
    padded = torch.nn.functional.pad(video, (0, 0, 1, 1, 1, 1, 1, 1))
    out = conv.bias.expand_as(video).clone()
    for dt in range(3):
        for di in range(3):
            for dj in range(3):
                shifted = padded[:, dt : dt + frames, di : di + height, dj : dj + width]
                out = out + conv.weight[:, 0, dt, di, dj] * shifted
    return out


def as_video(x, grid):
    frames, height, width = (1, *grid) if len(grid) == 2 else grid
    return x.view(x.shape[0], frames, height, width, x.shape[-1])


def literal_local(x, m: UltraGenLocalAttention, grid, valid=None):
    video = as_video(x, grid)
    if valid is not None:
        valid = valid.view(video.shape[:4])
    window = (m.window_size, m.window_size) if m.window_size else None
    out = literal_windows(video, m.qkv, m.num_heads, m.num_windows, window, valid)
    return m.proj(out.reshape(x.shape))


def literal_compressed(x, m, grid, hierarchical: bool):
    video = as_video(x, grid)
    _, _, height, width, c = video.shape
    r = m.downsample
    small = literal_down(video, m.down_conv, r)
    if hierarchical:
        attended = literal_windows(small, m.qkv, m.num_heads, m.num_windows)
    else:
        flat = small.reshape(small.shape[0], -1, c)
        attended = torch.stack([literal_attention(*m.qkv(s).split(c, dim=-1), m.num_heads) for s in flat])
        attended = attended.view(small.shape)
    out = literal_conv3d(literal_up(attended, r, height, width), m.up_conv)
    return m.proj(out.reshape(x.shape))


def literal_ultragen(x, m: UltraGenAttention, grid, gate_global, gate_local):
    local = literal_local(x, m.local_branch, grid)
    glob = literal_compressed(x, m.global_branch, grid, hierarchical=False)
    if m.hierarchical_branch is None:
        fused = gate_global * local + (1 - gate_global) * glob
    else:
        hier = literal_compressed(x, m.hierarchical_branch, grid, hierarchical=True)
        fused = gate_local * local + (1 - gate_local) * hier
        fused = gate_global * fused + (1 - gate_global) * glob
    return m.proj(fused)


def check_against(module, reference_fn, x_shape, **kw):
    """fp32 module vs fp64 literal reference: outputs, input gradients and every parameter gradient."""
    ref = copy.deepcopy(module).double()
    x = torch.randn(*x_shape, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = module(x, **kw)
    expected = reference_fn(x64, ref)
    torch.testing.assert_close(out.double(), expected, **FWD)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(module.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=name)


# ----------------------------------------------------------------------------------------------------------
# branches vs literal references


@pytest.mark.parametrize(
    ("grid", "kwargs"),
    [
        ((2, 5, 7), {"layer_idx": 0, "num_layers": 2}),  # K = 4: 2×2 windows, padded
        ((2, 5, 7), {"layer_idx": 1, "num_layers": 2}),  # K = 5: 1×2 windows, padded
        ((3, 4), {"num_windows": 2}),  # 2-D grid = one frame
        ((2, 4, 5), {"window_size": 3}),
    ],
)
def test_local_matches_literal(grid, kwargs) -> None:
    attn = UltraGenLocalAttention(12, num_heads=3, **kwargs)
    n = math.prod(grid)
    check_against(attn, lambda x, ref: literal_local(x, ref, grid), (2, n, 12), grid=grid)


def test_local_key_padding_mask_matches_literal() -> None:
    grid = (2, 4, 5)
    attn = UltraGenLocalAttention(8, num_heads=2, num_windows=2)
    valid = torch.rand(2, 40) > 0.4
    check_against(attn, lambda x, ref: literal_local(x, ref, grid, valid), (2, 40, 8), grid=grid, mask=valid)


@pytest.mark.parametrize(("grid", "r"), [((2, 6, 7), 4), ((2, 3), 4), ((3, 4, 5), 2), ((8, 8), 4)])
def test_global_matches_literal(grid, r) -> None:
    attn = UltraGenGlobalAttention(8, num_heads=2, downsample=r)
    n = math.prod(grid)
    check_against(
        attn, lambda x, ref: literal_compressed(x, ref, grid, hierarchical=False), (2, n, 8), grid=grid
    )


@pytest.mark.parametrize(("grid", "layer_idx"), [((2, 9, 10), 0), ((2, 9, 10), 1), ((6, 8), 0), ((2, 3), 1)])
def test_hierarchical_matches_literal(grid, layer_idx) -> None:
    attn = UltraGenHierarchicalAttention(8, num_heads=2, layer_idx=layer_idx, num_layers=2)
    n = math.prod(grid)
    check_against(
        attn, lambda x, ref: literal_compressed(x, ref, grid, hierarchical=True), (2, n, 8), grid=grid
    )


@pytest.mark.parametrize("use_hierarchical", [True, False])
def test_ultragen_attention_matches_literal(use_hierarchical: bool) -> None:
    grid = (2, 6, 7)
    attn = UltraGenAttention(8, num_heads=2, use_hierarchical=use_hierarchical, layer_idx=1, num_layers=2)
    with torch.no_grad():  # non-trivial static gates
        attn.gate_global_logit.normal_()
        if use_hierarchical:
            attn.gate_local_logit.normal_()

    def reference(x, ref):
        gate_local = None if ref.gate_local_logit is None else torch.sigmoid(ref.gate_local_logit)
        return literal_ultragen(x, ref, grid, torch.sigmoid(ref.gate_global_logit), gate_local)

    check_against(attn, reference, (2, 84, 8), grid=grid)


def test_ultragen_gated_per_sample_gates_match_literal() -> None:
    grid = (2, 4, 4)
    attn = UltraGenAttention(8, num_heads=2, static_gates=False).double()
    x = torch.randn(2, 32, 8, dtype=torch.float64)
    g_global, g_local = torch.rand(2, 1, 8, dtype=torch.float64), torch.rand(2, 8, dtype=torch.float64)
    out = attn.gated(x, grid=grid, gate_global=g_global, gate_local=g_local)
    torch.testing.assert_close(out, literal_ultragen(x, attn, grid, g_global, g_local[:, None]))


# ----------------------------------------------------------------------------------------------------------
# gradcheck


@pytest.mark.parametrize(
    "factory",
    [
        lambda: UltraGenLocalAttention(4, num_heads=2, num_windows=2),
        lambda: UltraGenGlobalAttention(4, num_heads=2, downsample=2),
        lambda: UltraGenHierarchicalAttention(4, num_heads=2, num_windows=2),
        lambda: UltraGenAttention(4, num_heads=2),
    ],
    ids=["local", "global", "hierarchical", "ultragen"],
)
def test_gradcheck(factory) -> None:
    attn = factory().double()
    x = torch.randn(1, 2 * 2 * 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, grid=(2, 2, 3)), (x,), fast_mode=True)


# ----------------------------------------------------------------------------------------------------------
# padding, masks, windows


@pytest.mark.parametrize("frames", [1, 2])
def test_local_padding_does_not_leak(frames: int) -> None:
    """K = 2 on 5×5: 3×3 windows; the bottom-right one holds 2×2 real positions, padded to 3×3."""
    attn = UltraGenLocalAttention(8, num_heads=2, num_windows=2).double()
    x = torch.randn(2, frames * 25, 8, dtype=torch.float64)
    out = attn(x, grid=(frames, 5, 5))
    idx = [t * 25 + i * 5 + j for t in range(frames) for i in (3, 4) for j in (3, 4)]
    alone = UltraGenLocalAttention(8, num_heads=2, num_windows=1).double()
    alone.load_state_dict(attn.state_dict())
    torch.testing.assert_close(out[:, idx], alone(x[:, idx], grid=(frames, 2, 2)))


def test_hierarchical_padding_does_not_leak() -> None:
    """K' = 2 on a compressed 3×5 grid: 2×3 windows, padded to 4×6, masked.

    The bottom-right window holds the real positions (2, 3), (2, 4) only and must equal attention over
    those positions alone.
    """
    attn = UltraGenHierarchicalAttention(8, num_heads=2, num_windows=2).double()
    alone = UltraGenHierarchicalAttention(8, num_heads=2, num_windows=1).double()
    alone.load_state_dict(attn.state_dict())
    tokens = torch.randn(2, 2, 3, 5, 8, dtype=torch.float64)  # compressed (B, T, h, w, C)
    out = attn._attend_compressed(tokens)
    torch.testing.assert_close(out[:, :, 2:3, 3:5], alone._attend_compressed(tokens[:, :, 2:3, 3:5]))


def test_local_mask_changes_nothing_for_masked_keys() -> None:
    attn = UltraGenLocalAttention(8, num_heads=2, num_windows=2).double()
    x = torch.randn(2, 2 * 4 * 4, 8, dtype=torch.float64)
    valid = torch.rand(2, 32) > 0.3
    changed = x.clone()
    changed[~valid] += 5 * torch.randn_like(changed[~valid])
    a, b = attn(x, grid=(2, 4, 4), mask=valid), attn(changed, grid=(2, 4, 4), mask=valid)
    torch.testing.assert_close(a[valid], b[valid])


def test_local_windows_span_all_frames_and_nothing_else() -> None:
    """Token (t=0, 0, 0) sees (t=1, 1, 1) in its 2×2 window, but not (t=0, 0, 2) in the next window."""
    attn = UltraGenLocalAttention(8, num_heads=2, num_windows=2).double()
    x = torch.randn(1, 2 * 4 * 4, 8, dtype=torch.float64)
    base = attn(x, grid=(2, 4, 4))[0, 0]
    same_window, other_window = x.clone(), x.clone()
    same_window[0, 16 + 5] += 1.0
    other_window[0, 2] += 1.0
    assert not torch.allclose(attn(same_window, grid=(2, 4, 4))[0, 0], base)
    torch.testing.assert_close(attn(other_window, grid=(2, 4, 4))[0, 0], base, atol=0, rtol=0)


def test_window_partition_3d_roundtrip_and_matches_davit_for_one_frame() -> None:
    x = torch.randn(2, 3, 6, 8, 5)
    torch.testing.assert_close(window_reverse_3d(window_partition_3d(x, (2, 4)), (2, 4), 3, 6, 8), x)
    one = torch.randn(2, 1, 6, 9, 5)
    torch.testing.assert_close(window_partition_3d(one, (3, 3)), window_partition(one[:, 0], 3))


def test_num_windows_alternate_with_layer_idx() -> None:
    local = [UltraGenLocalAttention(8, layer_idx=i, num_layers=4).num_windows for i in range(4)]
    hier = [UltraGenHierarchicalAttention(8, layer_idx=i, num_layers=4).num_windows for i in range(4)]
    assert local == [4, 5, 4, 5] and hier == [2, 3, 2, 3]
    fused = UltraGenAttention(8, layer_idx=3, num_layers=4)
    assert fused.local_branch.num_windows == 5 and fused.hierarchical_branch.num_windows == 3
    assert UltraGenLocalAttention(8, num_windows=7, layer_idx=1, num_layers=2).num_windows == 7
    # behaviour: on 10×10, K = 4 gives 3×3 windows (token 2 shares token 0's window), K = 5 gives 2×2
    x = torch.randn(1, 100, 8, dtype=torch.float64)
    y = x.clone()
    y[0, 2] += 1.0
    even = UltraGenLocalAttention(8, num_heads=2, layer_idx=0, num_layers=2).double()
    odd = UltraGenLocalAttention(8, num_heads=2, layer_idx=1, num_layers=2).double()
    odd.load_state_dict(even.state_dict())
    assert not torch.allclose(even(x, grid=(10, 10))[0, 0], even(y, grid=(10, 10))[0, 0])
    torch.testing.assert_close(odd(x, grid=(10, 10))[0, 0], odd(y, grid=(10, 10))[0, 0], atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# contract errors


@pytest.mark.parametrize(
    "make",
    [
        lambda: UltraGenLocalAttention(8, num_heads=2),
        lambda: UltraGenGlobalAttention(8, num_heads=2),
        lambda: UltraGenHierarchicalAttention(8, num_heads=2),
        lambda: UltraGenAttention(8, num_heads=2),
    ],
    ids=["local", "global", "hierarchical", "ultragen"],
)
def test_shape_errors(make) -> None:
    attn = make()
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="needs `grid`"):
        attn(x)
    with pytest.raises(ValueError, match=r"grid \(2, 2\) holds 4 tokens but x has N=6"):
        attn(x, grid=(2, 2))
    with pytest.raises(ValueError, match=r"grid must be \(H, W\) or \(T, H, W\)"):
        attn(x, grid=(6,))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        attn(torch.randn(2, 6, 9), grid=(2, 3))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, grid=(2, 3), is_causal=True)
    if not attn.supports_mask:
        with pytest.raises(ValueError, match="does not support `mask`"):
            attn(x, grid=(2, 3), mask=torch.ones(2, 6, dtype=torch.bool))


def test_local_mask_shape_error_and_constructor_errors() -> None:
    attn = UltraGenLocalAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r"key-padding mask of shape \(2, 6\)"):
        attn(torch.randn(2, 6, 8), grid=(2, 3), mask=torch.ones(2, 6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_windows or window_size"):
        UltraGenLocalAttention(8, num_windows=2, window_size=2)
    with pytest.raises(ValueError, match="num_windows must be >= 1"):
        UltraGenLocalAttention(8, num_windows=0)
    with pytest.raises(ValueError, match="downsample must be >= 1"):
        UltraGenGlobalAttention(8, downsample=0)
    with pytest.raises(ValueError, match="num_windows must be >= 1"):
        UltraGenHierarchicalAttention(8, num_windows=0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        UltraGenAttention(10, num_heads=3)


def test_gated_errors() -> None:
    attn = UltraGenAttention(8, num_heads=2, static_gates=False)
    x = torch.randn(2, 6, 8)
    g = torch.rand(2, 1, 8)
    with pytest.raises(ValueError, match="static_gates=False"):
        attn(x, grid=(2, 3))
    with pytest.raises(ValueError, match=r"gate_global of shape \(2, 1, 8\)"):
        attn.gated(x, grid=(2, 3), gate_global=torch.rand(3, 8), gate_local=g)
    with pytest.raises(ValueError, match="gate_local is required"):
        attn.gated(x, grid=(2, 3), gate_global=g)
    with pytest.raises(ValueError, match=r"grid \(4, 4\) holds 16 tokens"):
        attn.gated(x, grid=(4, 4), gate_global=g, gate_local=g)
    two = UltraGenAttention(8, num_heads=2, use_hierarchical=False, static_gates=False)
    with pytest.raises(ValueError, match="gate_local must be None"):
        two.gated(x, grid=(2, 3), gate_global=g, gate_local=g)
    assert not any("gate" in name for name, _ in attn.named_parameters())


# ----------------------------------------------------------------------------------------------------------
# the timestep-gated block


def test_timestep_embedding_matches_formula() -> None:
    t = torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t, 8)
    for b, tv in enumerate(t.tolist()):
        for i in range(4):
            w = 10000 ** (-i / 4)
            assert emb[b, i].item() == pytest.approx(math.cos(tv * w), abs=1e-12)
            assert emb[b, 4 + i].item() == pytest.approx(math.sin(tv * w), abs=1e-12)
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(t, 7)


def test_timestep_gate_matches_literal_mlp() -> None:
    gate = TimestepGate(8, freq_dim=16).double()
    t = torch.tensor([1.0, 500.0], dtype=torch.float64)
    e = timestep_embedding(t, 16)
    l1, l2, l3 = gate.embed[0], gate.embed[2], gate.project[1]
    silu = torch.nn.functional.silu
    expected = torch.sigmoid(l3(silu(l2(silu(l1(e))))))
    torch.testing.assert_close(gate(t), expected)
    assert ((gate(t) > 0) & (gate(t) < 1)).all()
    assert not torch.allclose(gate(t)[0], gate(t)[1])


def _force(gate: TimestepGate, value: float) -> None:
    with torch.no_grad():
        gate.project[1].weight.zero_()
        gate.project[1].bias.fill_(value)


@pytest.mark.parametrize(
    ("g_global", "g_local", "branch"),
    [(40.0, 40.0, "local"), (-40.0, 40.0, "global"), (40.0, -40.0, "hierarchical"), (-40.0, -40.0, "global")],
)
def test_block_gate_extremes_select_one_branch(g_global: float, g_local: float, branch: str) -> None:
    grid = (2, 4, 6)
    block = UltraGenBlock(8, num_heads=2, mlp_ratio=2.0, freq_dim=16).double()
    _force(block.gate_global, g_global)
    _force(block.gate_local, g_local)
    x = torch.randn(2, 48, 8, dtype=torch.float64)
    out = block(x, grid, torch.tensor([10.0, 700.0]))
    h = block.norm1(x)
    chosen = getattr(block.attn, f"{branch}_branch")(h, grid=grid)
    x1 = x + block.attn.proj(chosen)
    torch.testing.assert_close(out, x1 + block.mlp(block.norm2(x1)))


def test_block_matches_literal_gated_fusion_and_depends_on_timestep() -> None:
    grid = (2, 3, 4)
    block = UltraGenBlock(8, num_heads=2, freq_dim=16, layer_idx=1, num_layers=2).double()
    x = torch.randn(2, 24, 8, dtype=torch.float64)
    t = torch.tensor([5.0, 800.0], dtype=torch.float64)
    out = block(x, grid, t)
    g_global, g_local = block.gate_global(t)[:, None], block.gate_local(t)[:, None]
    x1 = x + literal_ultragen(block.norm1(x), block.attn, grid, g_global, g_local)
    torch.testing.assert_close(out, x1 + block.mlp(block.norm2(x1)))
    # a scalar timestep broadcasts; a different timestep changes the output through the gates only
    torch.testing.assert_close(block(x, grid, 5.0)[0], out[0])
    assert not torch.allclose(block(x, grid, 800.0)[0], out[0])
    out.sum().backward()
    assert (
        block.gate_global.embed[0].weight.grad is not None
        and block.gate_local.embed[0].weight.grad is not None
    )


def test_block_without_hierarchical_and_errors() -> None:
    block = UltraGenBlock(8, num_heads=2, use_hierarchical=False, freq_dim=16)
    assert block.gate_local is None and block.attn.hierarchical_branch is None
    x = torch.randn(2, 6, 8)
    assert block(x, (2, 3), torch.tensor([1.0, 2.0])).shape == x.shape
    with pytest.raises(ValueError, match=r"timestep of shape \(2,\)"):
        block(x, (2, 3), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="grid"):
        block(x, (4, 4), torch.tensor([1.0, 2.0]))
