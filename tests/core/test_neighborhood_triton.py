"""The fused Triton neighbourhood-attention kernels, without a GPU.

* Correctness: the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set in
  ``tests/conftest.py`` where there is no GPU) and are compared with the literal per-query fp64
  reference of ``test_neighborhood.py``: fp32 forward to atol 1e-5 / rtol 1e-4, gradients to atol
  1e-4 / rtol 1e-3 (the attention tests' tolerances), fp64 to 1e-12, and ``gradcheck``. Small
  tiles make every case cross several query and key tiles, tiles that overhang the grid, and both
  full and partial tiles.
* Compilation: the kernels are compiled for the H100 (``sm_90``) by Triton's bundled ``ptxas`` in a
  subprocess, at the GPU benchmark's shapes, and must fit its registers and shared memory and be
  software-pipelined; the interpreter cannot catch those failures.
"""

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from core.attention.backends import backend_unavailable_reason
from core.attention.neighborhood import (
    NeighborhoodAttention,
    axis_neighborhood,
    na_geometry,
    neighborhood_attention,
)
from tests.core.reference_check import FWD, GRAD
from tests.core.test_neighborhood import CASES, check_against_literal

triton = pytest.importorskip("triton")

EXACT = {"atol": 1e-12, "rtol": 1e-10}
# Tiles of 16 tokens (the least tl.dot takes), shaped per rank so the CASES grids span several tiles.
SMALL_TILES = {1: ((16,), (16,)), 2: ((4, 4), (2, 8)), 3: ((2, 2, 4), (1, 4, 4))}


@pytest.fixture(scope="module")
def kernels():
    """The kernel module, whose kernels run in Triton's CPU interpreter (``tests/conftest.py``)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip(
            "needs TRITON_INTERPRET=1 from the start (tests/conftest.py sets it where there is no GPU)"
        )
    module = importlib.import_module("core.attention.kernels.neighborhood_triton")
    if type(module._na_fwd).__name__ != "InterpretedFunction":
        pytest.skip("triton.language was imported before TRITON_INTERPRET=1 was set")
    return module


@pytest.mark.parametrize(("grid", "kernel", "dil", "stride", "causal"), CASES)
def test_matches_literal_reference(kernels, monkeypatch, grid, kernel, dil, stride, causal) -> None:
    monkeypatch.setitem(kernels.DEFAULT_CONFIGS, len(grid), kernels.TritonNAConfig(*SMALL_TILES[len(grid)]))
    torch.manual_seed(0)
    module = NeighborhoodAttention(
        32, num_heads=2, kernel_size=kernel, dilation=dil, stride=stride, causal=causal, backend="triton"
    )
    check_against_literal(module, grid, causal)


@pytest.mark.parametrize(
    ("grid", "kernel", "dil", "stride", "causal", "tiles"),
    [
        ((40,), 5, 1, 1, False, None),
        ((37,), 5, 3, 2, True, ((16,), (32,))),
        ((9, 11), 3, 1, 1, False, ((4, 4), (4, 4))),  # interior tiles are full: no mask evaluated
        ((8, 8), 8, 1, 1, False, ((4, 4), (4, 4))),  # kernel == grid: full attention
        ((3, 5, 6), (3, 2, 5), (1, 2, 1), (1, 2, 1), (False, False, True), None),
    ],
)
def test_float64_is_exact(kernels, grid, kernel, dil, stride, causal, tiles) -> None:
    """In fp64 the kernels compute the equation exactly (same sums, other order)."""
    geom = na_geometry(grid, kernel, dil, stride, causal)
    key = (geom.grid, geom.kernel_size, geom.dilation, geom.stride, geom.causal)
    q_tile, k_tile = tiles or SMALL_TILES[len(grid)]
    config = kernels.TritonNAConfig(q_tile, k_tile)
    torch.manual_seed(1)
    q, k = (torch.randn(1, 2, geom.num_tokens, 24, dtype=torch.float64, requires_grad=True) for _ in range(2))
    v = torch.randn(1, 2, geom.num_tokens, 40, dtype=torch.float64, requires_grad=True)  # Dv != D, not 2^k
    out = kernels.na_triton(q, k, v, key, config)
    expected = neighborhood_attention(q, k, v, geom, backend="reference")
    torch.testing.assert_close(out, expected, **EXACT)
    grad = torch.randn_like(out)
    for got, want in zip(
        torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(expected, (q, k, v), grad), strict=True
    ):
        torch.testing.assert_close(got, want, **EXACT)


@pytest.mark.parametrize(("grid", "kernel", "causal"), [((16,), 5, True), ((4, 4), 3, False)])
def test_gradcheck(kernels, grid, kernel, causal) -> None:
    geom = na_geometry(grid, kernel, causal=causal)
    key = (geom.grid, geom.kernel_size, geom.dilation, geom.stride, geom.causal)
    config = kernels.TritonNAConfig(*SMALL_TILES[len(grid)])
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 1, 16, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(
        lambda a, b, c: kernels.na_triton(a, b, c, key, config), (q, k, v), fast_mode=True
    )


def test_causal_future_tokens_do_not_change_the_past(kernels) -> None:
    module = NeighborhoodAttention(32, num_heads=2, kernel_size=6, backend="triton").eval()
    x = torch.randn(1, 40, 32)
    y = x.clone()
    y[:, 25:] = torch.randn(1, 15, 32)
    with torch.no_grad():
        a, b = module(x, is_causal=True), module(y, is_causal=True)
    torch.testing.assert_close(a[:, :25], b[:, :25], **FWD)
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_module_backend_matches_sdpa_on_non_contiguous_heads(kernels) -> None:
    """Through the module, q/k/v are strided views of one projection; gradients reach every weight."""
    torch.manual_seed(3)
    fast = NeighborhoodAttention(32, num_heads=4, kernel_size=(3, 5), dilation=(1, 2), backend="triton")
    plain = NeighborhoodAttention(32, num_heads=4, kernel_size=(3, 5), dilation=(1, 2), backend="sdpa")
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 7 * 12, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, expected = fast(x, grid=(7, 12)), plain(x2, grid=(7, 12))
    torch.testing.assert_close(out, expected, **FWD)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, **GRAD)
    for (name, p), p2 in zip(fast.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p2.grad, **GRAD, msg=name)


def test_unsupported_arguments_raise(kernels) -> None:
    module = NeighborhoodAttention(32, num_heads=2, kernel_size=3, backend="triton")
    x = torch.randn(1, 12, 32)
    with pytest.raises(ValueError, match=r"backend='triton' does not support `mask`"):
        module(x, mask=torch.ones(1, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="attention dropout"):
        NeighborhoodAttention(32, num_heads=2, kernel_size=3, backend="triton", attn_drop=0.1).train()(x)
    with pytest.raises(ValueError, match="powers of two"):
        kernels.TritonNAConfig((12,), (16,))
    with pytest.raises(ValueError, match="at least 16 tokens"):
        kernels.TritonNAConfig((2, 4), (4, 4))
    geom = na_geometry((12,), 3)
    key = (geom.grid, geom.kernel_size, geom.dilation, geom.stride, geom.causal)
    q = torch.randn(1, 2, 12, 16)
    with pytest.raises(ValueError, match="one entry per axis"):
        kernels.na_triton(q, q, q, key, kernels.TritonNAConfig((4, 4), (4, 4)))
    with pytest.raises(ValueError, match=r"N = prod\(12,\) = 12"):
        kernels.na_triton(q[:, :, :10], q[:, :, :10], q[:, :, :10], key)


def test_cpu_without_the_interpreter_says_why(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = backend_unavailable_reason("triton", torch.device("cpu"), needs_grad=False)
    assert reason is not None and "CUDA" in reason and "TRITON_INTERPRET=1" in reason
    module = NeighborhoodAttention(32, num_heads=2, kernel_size=3, backend="triton")
    with pytest.raises(RuntimeError, match=r"backend='triton' is unavailable: Triton kernels run on CUDA"):
        module(torch.randn(1, 12, 32))
    assert backend_unavailable_reason("triton", torch.device("cuda"), needs_grad=True) is None


@pytest.mark.parametrize("length", [7, 12, 20])
def test_inverse_bound_holds_for_every_pair(length) -> None:
    """Every key of a query's window lies within ``(k + s - 2) · d`` of it (the dK/dV candidate range)."""
    from core.attention.kernels.neighborhood_triton import inverse_bound

    for kernel in range(1, length + 1):
        for dil in range(1, length // kernel + 1):
            for stride in range(1, kernel + 1):
                for causal in (False, True):
                    keys, valid = axis_neighborhood(length, kernel, dil, stride, causal)
                    dist = (keys - torch.arange(length)[:, None]).abs()[valid]
                    assert int(dist.max()) <= inverse_bound(kernel, dil, stride), (
                        kernel,
                        dil,
                        stride,
                        causal,
                    )


COMPILE_SCRIPT = """
import json
from benchmarks.triton_aot import PROBLEMS, compile_na
from core.attention.kernels.neighborhood_triton import default_config
problems = dict(PROBLEMS)
problems["3d_8x16x16_k3"] = (((8, 16, 16), (3, 3, 3), (1, 1, 1), (1, 1, 1), (False, False, True)), 64)
out = {}
for name, (key, head_dim) in problems.items():
    reports = compile_na(key, default_config(len(key[0])), head_dim=head_dim, arch=90)
    out[name] = [
        [r.name, r.registers, r.spill_bytes, r.shared_bytes, r.launchable, r.pipelined_loads, r.wgmma]
        for r in reports
    ]
print(json.dumps(out))
"""


def test_default_configs_compile_for_the_h100() -> None:
    from benchmarks.triton_aot import toolchain_available

    if not toolchain_available():
        pytest.skip("Triton's bundled ptxas/cuobjdump are missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for problem, reports in json.loads(done.stdout.strip().splitlines()[-1]).items():
        for name, regs, spill, shared, launchable, pipelined, wgmma in reports:
            where = f"{problem}/{name}: {regs} registers, {spill} B spilled, {shared} B shared"
            assert spill == 0 and launchable, where
            assert pipelined > 0 and wgmma > 0, f"{where}: loads not pipelined or no wgmma"


def test_importing_the_library_imports_no_accelerated_backend() -> None:
    """Triton, NATTEN and FlexAttention load only when a forward pass asks for them."""
    code = (
        "import sys, core.attention; "
        "print([m for m in ('triton', 'natten', 'torch.nn.attention.flex_attention', "
        "'core.attention.kernels.neighborhood_triton') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip() == "[]", done.stdout
