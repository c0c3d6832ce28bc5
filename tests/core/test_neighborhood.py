"""Neighbourhood attention (NAT / DiNAT / FNA / GNA) against a literal float64 reference.

The reference decides, for every (query, key) pair, whether the key is in the query's neighbourhood by
walking NATTEN's rules axis by axis in plain Python (dilation group, stride-tile leader, window clamped
inside the group, causal window ending at the query), then runs softmax attention query by query. It
shares no code with the implementation. Tolerances as in test_attention.py: forward atol 1e-5 / rtol
1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import itertools
import math
import warnings

import pytest
import torch

from benchmarks import neighborhood_gpu
from core.attention import MultiHeadAttention
from core.attention.neighborhood import (
    NeighborhoodAttention,
    na_geometry,
    neighborhood_attention,
    neighborhood_mask,
)

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def in_window(q: int, k: int, length: int, kernel: int, dil: int, stride: int, causal: bool) -> bool:
    """Is key coordinate ``k`` in the neighbourhood of query ``q`` along one axis (NATTEN's rules)?"""
    if q % dil != k % dil:
        return False
    members = list(range(q % dil, length, dil))  # the query's dilation group
    qi, ki = members.index(q), members.index(k)
    if causal:
        leader = min((qi // stride) * stride + stride - 1, len(members) - 1)  # last query of the tile
        return ki <= qi and leader - ki < kernel
    leader = min((qi // stride) * stride + stride // 2, len(members) - 1)  # centre query of the tile
    start = min(max(leader - kernel // 2, 0), len(members) - kernel)  # shifted inward at the borders
    return start <= ki < start + kernel


def literal_na(x, module: NeighborhoodAttention, grid, causal, mask=None):
    """Query by query: softmax over the keys in its neighbourhood (and allowed by ``mask (B, N, N)``)."""
    b, n, c = x.shape
    heads = module.num_heads
    d = c // heads
    kernel, dil, stride = (
        (v,) * len(grid) if isinstance(v, int) else v
        for v in (module.kernel_size, module.dilation, module.stride)
    )
    causal = (causal,) * len(grid) if isinstance(causal, bool) else causal
    coords = list(itertools.product(*(range(g) for g in grid)))
    neighbours = [
        [
            j
            for j, kc in enumerate(coords)
            if all(
                in_window(qc[a], kc[a], grid[a], kernel[a], dil[a], stride[a], causal[a])
                for a in range(len(grid))
            )
        ]
        for qc in coords
    ]
    q, k, v = module.qkv(x).split(c, dim=-1)
    rows = []
    for bi in range(b):
        outs = []
        for i in range(n):
            keys = [j for j in neighbours[i] if mask is None or bool(mask[bi, i, j])]
            head_outs = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                if not keys:
                    head_outs.append(torch.zeros(d, dtype=x.dtype))
                    continue
                logits = torch.stack([q[bi, i, sl] @ k[bi, j, sl] for j in keys]) / math.sqrt(d)
                weights = torch.softmax(logits, dim=0)
                head_outs.append(sum(w * v[bi, j, sl] for w, j in zip(weights, keys, strict=True)))
            outs.append(torch.cat(head_outs))
        rows.append(torch.stack(outs))
    return module.proj(torch.stack(rows))


CASES = [
    # grid, kernel_size, dilation, stride, causal
    ((9,), 3, 1, 1, False),
    ((10,), 4, 2, 1, False),
    ((11,), 5, 2, 3, False),
    ((9,), 4, 1, 2, True),
    ((10,), 3, 3, 2, True),
    ((5, 7), (3, 5), 1, 1, False),
    ((6, 7), (2, 3), (3, 2), (2, 3), (False, True)),
    ((7, 6), 3, (2, 1), (1, 3), (True, False)),
    ((3, 4, 5), (2, 3, 3), (1, 1, 1), (2, 1, 3), (False, False, True)),
    ((4, 3, 6), (2, 3, 2), (2, 1, 3), (1, 3, 2), (True, False, False)),
]


def _pair(grid, kernel, dil, stride, causal, backend="sdpa", heads=2, dim=8):
    torch.manual_seed(0)
    module = NeighborhoodAttention(
        dim, num_heads=heads, kernel_size=kernel, dilation=dil, stride=stride, causal=causal, backend=backend
    )
    return module, copy.deepcopy(module).double()


def check_against_literal(module: NeighborhoodAttention, grid, causal) -> None:
    """fp32 ``module`` vs :func:`literal_na` on fp64 copies: output, input and parameter gradients."""
    ref = copy.deepcopy(module).double()
    x = torch.randn(2, math.prod(grid), module.dim, dtype=torch.float64, requires_grad=True)
    xf = x.detach().float().requires_grad_(True)
    out = module(xf, grid=grid if len(grid) > 1 else None)
    expected = literal_na(x, ref, grid, causal)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(expected)
    out.backward(grad.float())
    expected.backward(grad)
    torch.testing.assert_close(xf.grad.double(), x.grad, **GRAD)
    for (name, p), p_ref in zip(module.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p_ref.grad, **GRAD, msg=name)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
@pytest.mark.parametrize(("grid", "kernel", "dil", "stride", "causal"), CASES)
def test_matches_literal_reference(grid, kernel, dil, stride, causal, backend) -> None:
    module, _ = _pair(grid, kernel, dil, stride, causal, backend)
    check_against_literal(module, grid, causal)


@pytest.mark.parametrize("tile", [(1, 1), (2, 3), (4, 4), (16, 16)])
def test_blocked_sdpa_tiles_all_agree_with_the_literal_reference(tile) -> None:
    grid, kernel, dil, stride, causal = (7, 9), (3, 4), (2, 2), (1, 3), (False, True)
    _, ref = _pair(grid, kernel, dil, stride, causal)
    geom = na_geometry(grid, kernel, dil, stride, causal)
    x = torch.randn(1, 63, 8, dtype=torch.float64)
    q, k, v = (t.view(1, 63, 2, 4).transpose(1, 2) for t in ref.qkv(x).chunk(3, dim=-1))
    out = neighborhood_attention(q, k, v, geom, backend="sdpa", sdpa_tile=tile)
    out = ref.proj(out.transpose(1, 2).reshape(1, 63, 8))
    torch.testing.assert_close(out, literal_na(x, ref, grid, causal), atol=1e-10, rtol=1e-10)


def test_kernel_equal_to_grid_is_full_attention() -> None:
    torch.manual_seed(0)
    na = NeighborhoodAttention(8, num_heads=2, kernel_size=(3, 4))
    mha = MultiHeadAttention(8, num_heads=2)
    mha.load_state_dict(na.state_dict())
    x = torch.randn(2, 12, 8)
    torch.testing.assert_close(na(x, grid=(3, 4)), mha(x), **FWD)
    # 1-D: a causal window as long as the sequence is plain causal attention.
    na1 = NeighborhoodAttention(8, num_heads=2, kernel_size=12)
    na1.load_state_dict(na.state_dict())
    torch.testing.assert_close(na1(x, is_causal=True), mha(x, is_causal=True), **FWD)
    torch.testing.assert_close(na1(x), mha(x), **FWD)


def test_gradcheck() -> None:
    torch.manual_seed(0)
    module = NeighborhoodAttention(
        4, num_heads=2, kernel_size=(2, 3), dilation=(1, 2), stride=(2, 1), causal=(True, False)
    ).double()
    x = torch.randn(1, 12, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: module(t, grid=(2, 6)), (x,))


@pytest.mark.parametrize(("grid", "kwargs"), [((12,), {"causal": True}), ((12,), {}), ((3, 4), {})])
def test_causal_future_tokens_do_not_change_the_past(grid, kwargs) -> None:
    torch.manual_seed(0)
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3, **kwargs)
    x = torch.randn(2, 12, 8)
    y = x.clone()
    y[:, 7:] += torch.randn_like(y[:, 7:])
    is_causal = not kwargs  # constructor causal=True, or forward is_causal=True on every axis
    g = grid if len(grid) > 1 else None
    a, b = module(x, grid=g, is_causal=is_causal), module(y, grid=g, is_causal=is_causal)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_causal_window_slides_in_1d() -> None:
    """Causal 1-D NA is a sliding window: a token 3 steps back is out of reach of a 3-wide window."""
    torch.manual_seed(0)
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3, causal=True)
    x = torch.randn(1, 10, 8)
    y = x.clone()
    y[:, 2] += 1.0
    a, b = module(x), module(y)
    torch.testing.assert_close(a[:, 5:], b[:, 5:], atol=0, rtol=0)
    assert not torch.allclose(a[:, 2:5], b[:, 2:5])


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_masks_combine_with_the_neighbourhood(backend) -> None:
    grid, kernel, causal = (4, 5), 3, False
    module, ref = _pair(grid, kernel, 1, 1, causal, backend)
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    pad = torch.rand(2, 20) < 0.6
    pad[0, :] = False  # a fully padded sample: finite zeros before the projection
    expected = literal_na(x, ref, grid, causal, mask=pad[:, None, :].expand(2, 20, 20))
    out = module(x.float(), grid=grid, mask=pad)
    torch.testing.assert_close(out.double(), expected, **FWD)
    torch.testing.assert_close(out[0], module.proj.bias.expand(20, 8))
    full = torch.rand(2, 20, 20) < 0.5
    out = module(x.float(), grid=grid, mask=full)
    torch.testing.assert_close(out.double(), literal_na(x, ref, grid, causal, mask=full), **FWD)
    changed = x.float().clone()
    changed[1, ~pad[1]] += 10.0  # padded keys: the real tokens' outputs must not move
    before, after = module(x.float(), grid=grid, mask=pad), module(changed, grid=grid, mask=pad)
    torch.testing.assert_close(before[1, pad[1]], after[1, pad[1]])


def test_shape_and_argument_errors() -> None:
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=5)
    with pytest.raises(ValueError, match=r"kernel_size=\(5, 5\).*grid \(4, 6\)"):
        module(torch.randn(1, 24, 8), grid=(4, 6))
    with pytest.raises(ValueError, match=r"kernel_size=\(5,\).*grid \(4,\)"):
        module(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match=r"grid \(3, 3\) holds 9 tokens but x has N=12"):
        module(torch.randn(1, 12, 8), grid=(3, 3))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        module(torch.randn(1, 12, 9))
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3\) has 2 entries but the grid has 3 axes"):
        NeighborhoodAttention(8, num_heads=2, kernel_size=(3, 3))(torch.randn(1, 27, 8), grid=(3, 3, 3))
    with pytest.raises(ValueError, match=r"dilation=\(2,\)"):
        NeighborhoodAttention(8, num_heads=2, kernel_size=3, dilation=2)(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match=r"stride=\(4,\) must not exceed kernel_size=\(3,\)"):
        NeighborhoodAttention(8, num_heads=2, kernel_size=3, stride=4)(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="mask of shape"):
        module(torch.randn(1, 12, 8), mask=torch.ones(1, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match="kernel_size"):
        NeighborhoodAttention(8, kernel_size=0)
    with pytest.raises(ValueError, match="backend"):
        NeighborhoodAttention(8, backend="fla")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flex_block_size"):
        NeighborhoodAttention(8, flex_block_size=48)
    with pytest.raises(ValueError, match="flex_layout"):
        NeighborhoodAttention(8, flex_layout="morton")  # type: ignore[arg-type]


def test_natten_backend_reports_why_it_cannot_run() -> None:
    """Natten is not a dependency: without it, asking for it names the package and the reason."""
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3, backend="natten")
    try:
        import natten  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"backend='natten' is unavailable: the natten package"):
            module(torch.randn(1, 6, 8))
    else:  # installed: CPU has no NATTEN backward
        with pytest.raises(RuntimeError, match="natten"):
            module(torch.randn(1, 6, 8, requires_grad=True))


def test_flex_refuses_attention_dropout_instead_of_ignoring_it() -> None:
    """Flex has no attention dropout: an explicit request says so (``auto`` runs ``sdpa`` instead)."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3, backend="flex", attn_drop=0.1).train()
    with (
        torch.no_grad(),
        pytest.raises(ValueError, match=r"backend='flex' does not support attention dropout"),
    ):
        module(torch.randn(1, 6, 8))
    with torch.no_grad():  # in eval mode there is no dropout to drop
        module.eval()(torch.randn(1, 6, 8))


def test_auto_backend_trains_on_cpu() -> None:
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3)
    x = torch.randn(1, 16, 8, requires_grad=True)
    module(x, grid=(4, 4)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


FLEX_CASES = [
    ((8, 16), (5, 7), (1, 2), (2, 3), (False, True), "tiled"),  # two 8x8 token tiles (block 64)
    ((8, 16), (3, 4), (2, 1), (1, 2), (True, False), "tiled128"),  # one 8x16 tile (block 128)
    ((5, 6), (3, 4), (1, 1), (1, 2), (True, False), "tiled"),  # not divisible: falls back to row-major
    ((5, 6), (3, 2), (1, 3), (3, 2), (False, False), "row_major"),
    ((4, 4, 8), (3, 3, 3), (1, 1, 2), (1, 3, 2), (False, False, True), "tiled"),  # two 4x4x4 tiles
    ((4, 4, 8), (3, 2, 5), (1, 2, 1), (1, 1, 2), (True, True, False), "tiled128"),  # one 4x4x8 tile
    ((24,), 7, 2, 3, True, "tiled"),
]


@pytest.mark.parametrize(("grid", "kernel", "dil", "stride", "causal", "layout"), FLEX_CASES)
def test_flex_forward_matches_reference_on_cpu(grid, kernel, dil, stride, causal, layout) -> None:
    pytest.importorskip("torch.nn.attention.flex_attention")
    torch.manual_seed(0)
    flex = NeighborhoodAttention(
        8, num_heads=2, kernel_size=kernel, dilation=dil, stride=stride, causal=causal, backend="flex",
        flex_layout=layout.removesuffix("128"), flex_block_size=128 if layout.endswith("128") else None,
    )  # fmt: skip
    ref = NeighborhoodAttention(
        8, num_heads=2, kernel_size=kernel, dilation=dil, stride=stride, causal=causal, backend="reference"
    )
    ref.load_state_dict(flex.state_dict())
    n = math.prod(grid)
    x = torch.randn(2, n, 8)
    pad = torch.rand(2, n) < 0.8
    g = grid if len(grid) > 1 else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager Flex on CPU warns that it materialises the scores
        torch.testing.assert_close(flex(x, grid=g), ref(x, grid=g), **FWD)
        torch.testing.assert_close(flex(x, grid=g, mask=pad), ref(x, grid=g, mask=pad), **FWD)


def test_flex_with_grad_on_cpu_raises() -> None:
    pytest.importorskip("torch.nn.attention.flex_attention")
    module = NeighborhoodAttention(8, num_heads=2, kernel_size=3, backend="flex")
    with pytest.raises(RuntimeError, match=r"backend='flex' is unavailable: FlexAttention does not support"):
        module(torch.randn(1, 6, 8))


def test_benchmark_smoke_runs_on_cpu(capsys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neighborhood_gpu.main(["--smoke"])
    out = capsys.readouterr().out
    assert "| 2-D NA" in out and "| 1-D sliding window" in out and "flex tiled (block 64)" in out
    assert "# Precision vs a float64 reference" in out and "| sdpa blocked |" in out


@pytest.mark.parametrize("part", ["timing", "precision"])
def test_benchmark_parts_run_apart(capsys, part) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neighborhood_gpu.main(["--smoke", "--only", part])
    out = capsys.readouterr().out
    assert ("median ms" in out) == (part == "timing")
    assert ("# Precision vs a float64 reference" in out) == (part == "precision")


@pytest.mark.parametrize(
    ("grid", "kernel", "causal"),
    [((9,), 3, True), ((5, 6), (3, 5), (False, True)), ((3, 4, 5), 3, False)],
)
def test_attention_flops_count_the_neighbourhood_pairs(grid, kernel, causal) -> None:
    mixer = NeighborhoodAttention(8, num_heads=2, kernel_size=kernel, causal=causal)
    pairs = int(neighborhood_mask(na_geometry(grid, kernel, 1, 1, causal)).sum())
    n = math.prod(grid)
    assert mixer.attention_flops(2, n, n, grid=grid) == 4 * 2 * pairs * 8
