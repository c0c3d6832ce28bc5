"""Compile the Triton neighbourhood-attention kernels for a GPU architecture without a GPU, and report.

A session without a GPU can still check that the kernels compile for the H100 (``sm_90``) with the
shapes of the benchmark, and read the resources each one needs: registers per thread, spills (local
memory), shared memory (the H100 allows 227 KiB a block), and whether the key/value loads were software
pipelined (``async_copy``) and the products use Hopper's ``wgmma`` (``warp_group_dot``). Triton's
bundled ``ptxas``/``cuobjdump`` do the work; no driver is needed.

Pointer and integer arguments get the 16-divisibility hints that Triton's JIT gives them at launch
when the values allow (without them nothing is pipelined), so the report matches what a GPU compiles.

Run: ``python -m benchmarks.triton_aot`` (the two benchmark problems, a few tile configurations).
"""

import argparse
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from core.attention.kernels import neighborhood_triton as nt
from core.attention.neighborhood import na_geometry

H100_SHARED_BYTES = 232_448  # cudaDevAttrMaxSharedMemoryPerBlockOptin on sm_90 (227 KiB)
POINTERS = ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV_", "LSE", "DELTA")


@dataclass(frozen=True)
class KernelReport:
    """Resources of one compiled kernel."""

    name: str
    registers: int
    spill_bytes: int
    shared_bytes: int
    pipelined_loads: int
    wgmma: int

    @property
    def launchable(self) -> bool:
        """Fits the H100's shared memory per block."""
        return self.shared_bytes <= H100_SHARED_BYTES


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def toolchain_available() -> bool:
    """Whether Triton's bundled ``ptxas`` and ``cuobjdump`` are present."""
    return os.path.exists(_tool("ptxas")) and os.path.exists(_tool("cuobjdump"))


def compile_kernel(
    fn: Any,
    constants: dict,
    ints: dict[str, int],
    dtype: torch.dtype,
    num_warps: int,
    num_stages: int,
    arch: int,
) -> KernelReport:
    """Compile one ``@triton.jit`` kernel for ``sm_<arch>`` and read its resource usage.

    Args:
        fn: The kernel.
        constants: Its ``tl.constexpr`` arguments.
        ints: Its integer arguments (strides, head count), for the divisibility hints.
        dtype: Element type of Q/K/V/O and their gradients (LSE and delta are the accumulator type).
        num_warps: Warps per program.
        num_stages: Software-pipelining stages.
        arch: Compute capability, e.g. ``90`` for the H100.

    Returns:
        The kernel's resources.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    elem = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}[
        dtype
    ]
    acc = "fp64" if dtype == torch.float64 else "fp32"
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name in POINTERS:
            signature[name] = f"*{acc}" if name in ("LSE", "DELTA") else f"*{elem}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in ("qk_scale", "sm_scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if ints[name] % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    options = {"num_warps": num_warps, "num_stages": num_stages}
    kernel = triton.compile(
        ASTSource(fn, signature, constants, attrs), target=GPUTarget("cuda", arch, 32), options=options
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(kernel.asm["cubin"])
        usage = subprocess.run(
            [_tool("cuobjdump"), "-res-usage", path], capture_output=True, text=True, check=True
        )
    found = re.search(r"REG:(\d+).*LOCAL:(\d+)", usage.stdout)
    if found is None:
        raise RuntimeError(f"cuobjdump printed no resource usage for {fn.__name__}: {usage.stdout!r}")
    ttgir = kernel.asm["ttgir"]
    return KernelReport(
        name=fn.__name__,
        registers=int(found[1]),
        spill_bytes=int(found[2]),
        shared_bytes=int(kernel.metadata.shared),
        pipelined_loads=ttgir.count("async_copy_global_to_local"),
        wgmma=ttgir.count("warp_group_dot "),
    )


def compile_na(
    geom_key: tuple,
    config: nt.TritonNAConfig,
    *,
    dtype: torch.dtype = torch.bfloat16,
    batch: int = 1,
    heads: int = 16,
    head_dim: int = 64,
    arch: int = 90,
) -> list[KernelReport]:
    """Compile the forward, ``dQ`` and ``dK/dV`` kernels for contiguous ``(B, H, N, D)`` inputs."""
    n = math.prod(geom_key[0])
    ints = {"H": heads}
    for p in ("q", "k", "v", "o", "gq", "gk", "gv"):
        ints.update({f"s{p}b": heads * n * head_dim, f"s{p}h": n * head_dim, f"s{p}n": head_dim})
    fwd = nt.kernel_constants(geom_key, config, dtype, head_dim, head_dim)
    bwd = {**fwd, **nt.candidate_constants(geom_key, config)}
    return [
        compile_kernel(nt._na_fwd, fwd, ints, dtype, config.num_warps, config.num_stages, arch),
        compile_kernel(nt._na_bwd_dq, fwd, ints, dtype, config.bwd_num_warps, config.bwd_num_stages, arch),
        compile_kernel(nt._na_bwd_dkdv, bwd, ints, dtype, config.bwd_num_warps, config.bwd_num_stages, arch),
    ]


PROBLEMS: dict[str, tuple[tuple, int]] = {
    # name: (geometry key, head dim) — the GPU benchmark's problems (benchmarks/neighborhood_gpu.py)
    "2d_128x128_k15_d128": (((128, 128), (15, 15), (1, 1), (1, 1), (False, False)), 128),
    "1d_causal_16384_w512_d64": (((16384,), (512,), (1,), (1,), (True,)), 64),
}
CANDIDATES: dict[int, list[nt.TritonNAConfig]] = {
    1: [
        nt.TritonNAConfig((128,), (64,)),
        nt.TritonNAConfig((128,), (128,), num_stages=3),
        nt.TritonNAConfig((64,), (64,), num_warps=4),
    ],
    2: [
        nt.TritonNAConfig((8, 16), (8, 8)),
        nt.TritonNAConfig((16, 8), (8, 8)),
        nt.TritonNAConfig((8, 16), (8, 16)),
        nt.TritonNAConfig((8, 8), (8, 8), num_warps=4),
    ],
}


def main(argv: list[str] | None = None) -> int:
    """Print the resource table for each benchmark problem and candidate tile configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability (90 = H100/H200)")
    args = parser.parse_args(argv)
    if not toolchain_available():
        print("Triton's bundled ptxas/cuobjdump are missing; cannot compile ahead of time")
        return 1
    print(
        "| problem | q_tile | k_tile | warps/stages fwd, bwd | kernel | regs | spill B | shared KiB "
        "| pipelined | wgmma |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (key, head_dim) in PROBLEMS.items():
        geom = na_geometry(*key)
        for config in CANDIDATES[len(geom.grid)]:
            for report in compile_na(key, config, head_dim=head_dim, arch=args.arch):
                flag = "" if report.launchable else " (too much)"
                print(
                    f"| {name} | {config.q_tile} | {config.k_tile} | {config.num_warps}/{config.num_stages}, "
                    f"{config.bwd_num_warps}/{config.bwd_num_stages} | {report.name} | {report.registers} | "
                    f"{report.spill_bytes} | {report.shared_bytes / 1024:.0f}{flag} | "
                    f"{report.pipelined_loads} | {report.wgmma} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
