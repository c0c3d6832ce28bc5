"""CAB-style benchmark of every registered attention mechanism, against dense SDPA in the same run.

Follows the taxonomy of CAB (Zhang et al., "CAB: Comprehensive Attention Benchmarking on Long Sequence
Modeling", ICML 2023): each mechanism is timed on every pattern it supports — non-causal self, causal
self, non-causal cross, causal cross — over a range of sequence lengths N at fixed batch, width and
heads. Feature-map mechanisms (``SpatialMixer``) run on a square ``(B, C, √N, √N)`` map under the pattern
``spatial``; mechanisms that need a grid get the square grid ``(√N, √N)``.

For each (mechanism, pattern, N) it reports the median forward and forward+backward time, the peak
memory of a forward+backward step (CUDA: ``max_memory_allocated``; Linux CPU: the peak resident set,
reset through ``/proc/self/clear_refs``), and the ratio to dense SDPA (``MultiHeadAttention`` or
``CrossAttention``) measured on the same inputs in the same process: ``speedup = t_dense / t``. On CUDA it
adds useful TFLOP/s (the mechanism's sparsity-aware FLOPs, from ``attention_flops``) and the FLOP-bound
speedup ``flops_dense / flops``. Per mechanism and pattern it fits the growth exponent ``a`` of
``t ∝ N^a`` (least squares on log-log), ~1 for linear mechanisms and ~2 for dense attention at large N.

Output: a Markdown table (stdout and ``<out>/attention.md``), a PNG of time and memory against N
(``<out>/attention.png``) and the raw rows (``<out>/attention.json``).

``--check-linear`` adds a pass/fail check for every mechanism whose registered complexity is linear in N
(``O(N d^2)``, ``O(N w d)``, ...): between the two largest lengths (4× apart) its time and memory may grow
by at most ``--linear-ratio`` (4.5×, i.e. linear with 12 % slack), while dense SDPA's ratio is printed
beside it for contrast. The script then exits with status 1 if any mechanism fails. The issue's goal run:
``python -m benchmarks.attention --all --check-linear --patterns noncausal_self causal_self spatial``
``--lengths 4096 16384 65536`` (dense SDPA is only timed up to ``--dense-max-n``, 16,384 by default,
since it grows quadratically).

By default it runs a quick, representative set (:data:`QUICK_MECHANISMS`: dense, cross, linear,
recurrent, local, windowed, routed, head-structured, channel and feature-map attention) at the small
lengths :data:`QUICK_LENGTHS`; ``--all`` runs every registered token and feature-map mixer at
:data:`ALL_LENGTHS`. ``--mechanisms`` and ``--lengths`` choose either explicitly. Measured run times are
in docs/attention.md.

Run: ``python -m benchmarks.attention`` or ``attnlab bench attention`` (``--help`` for options).
"""

import argparse
import inspect
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.memory import peak_rss_mib
from benchmarks.timing import median_ms
from core.attention import CrossAttention, MultiHeadAttention, TokenMixer, list_mechanisms
from core.attention.registry import MechanismInfo

__all__ = [
    "ALL_LENGTHS",
    "QUICK_LENGTHS",
    "QUICK_MECHANISMS",
    "BenchRow",
    "fit_exponent",
    "linear_check",
    "linear_in_n",
    "main",
    "run",
]

SELF_PATTERNS = ("noncausal_self", "causal_self")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# One mechanism per family, chosen among the cheap ones so the default run stays short on a laptop CPU;
# together they cover every CAB pattern and both growth regimes (quadratic and linear in N).
QUICK_MECHANISMS = (
    "MultiHeadAttention",  # dense SDPA, the reference: non-causal and causal self
    "CrossAttention",  # dense cross-attention: non-causal and causal cross
    "LinearAttention",  # kernelised linear attention, chunked causal form
    "GatedDeltaNet",  # gated recurrent (delta rule), causal only
    "NeighborhoodAttention",  # local sliding neighbourhood, blocked SDPA
    "WindowAttention",  # windows on a grid
    "BiLevelRoutingAttention",  # routed sparse attention
    "DifferentialAttention",  # head-structured
    "ChannelGroupAttention",  # channels as tokens
    "PositionAttention",  # quadratic attention over feature-map positions
    "CBAM",  # convolutional feature-map attention
)
QUICK_LENGTHS = (256, 1024)
ALL_LENGTHS = (256, 1024, 4096)


@dataclass
class BenchRow:
    """One measurement: a mechanism on one pattern at one length."""

    mechanism: str
    pattern: str
    n: int
    fwd_ms: float | None
    fwdbwd_ms: float | None
    peak_mib: float | None
    speedup_fwd: float | None = None
    speedup_fwdbwd: float | None = None
    tflops_fwd: float | None = None
    flop_bound: float | None = None
    note: str = ""


def fit_exponent(ns: Sequence[int], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``log(value)`` against ``log(N)``: the ``a`` in ``value ∝ N^a``."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    var = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else None


def linear_in_n(complexity: str) -> bool:
    """Whether a registry complexity string such as ``O(N w d)`` is linear in the token count N.

    Exactly one bare ``N`` factor and nothing else that grows with the input: ``N^2``, ``N^{3/2}``,
    ``N log N``, ``sqrt(N)``, a context length ``M`` (the benchmark's cross patterns use ``M = N``) or the
    grid sides ``H``, ``W`` (``√N`` each on a square grid) make it non-linear.
    """
    factors = re.findall(r"(?<![A-Za-z_])N(?![A-Za-z_])(\^\S+|²)?", complexity)
    growing = re.search(r"(?<![A-Za-z_])[MHW](?![A-Za-z_])|log|sqrt", complexity, flags=re.IGNORECASE)
    return len(factors) == 1 and not factors[0] and growing is None


def linear_check(rows: Sequence["BenchRow"], linear: set[str], max_ratio: float) -> tuple[list[str], bool]:
    """Growth of time and memory between the two largest lengths, per linear mechanism and pattern.

    Returns:
        Report lines, and whether every linear mechanism stayed within ``max_ratio``.
    """
    groups: dict[tuple[str, str], list[BenchRow]] = {}
    largest: dict[tuple[str, str], BenchRow] = {}
    for r in rows:
        key = (r.mechanism, r.pattern)
        if key not in largest or r.n > largest[key].n:
            largest[key] = r
        if r.fwd_ms is not None:
            groups.setdefault(key, []).append(r)
    lines = [
        "| mechanism | pattern | N → 4N | time ratio | memory ratio | check |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for key, top in sorted(largest.items()):
        # A linear mechanism that was skipped at the largest length (too slow, out of memory) has not
        # shown linear growth there: that fails the check instead of passing it silently.
        if key[0] in linear and top.fwd_ms is None and len(groups.get(key, [])) >= 1:
            ok = False
            lines.append(f"| {key[0]} | {key[1]} | — → {top.n} | — | — | FAIL (not measured: {top.note}) |")
    for (mech, pattern), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.n)
        pairs = [(a, b) for a, b in itertools.pairwise(rs) if b.n == 4 * a.n]
        if not pairs or (mech in linear and largest[(mech, pattern)].fwd_ms is None):
            continue
        a, b = pairs[-1]
        t_a, t_b = (a.fwdbwd_ms or a.fwd_ms), (b.fwdbwd_ms or b.fwd_ms)
        t_ratio = t_b / t_a
        m_ratio = b.peak_mib / a.peak_mib if a.peak_mib and b.peak_mib else None
        if mech in linear:
            passed = t_ratio <= max_ratio and (m_ratio is None or m_ratio <= max_ratio)
            ok &= passed
            verdict = "PASS" if passed else "FAIL"
        else:
            verdict = "reference" if mech == "MultiHeadAttention" else "not linear"
            if mech != "MultiHeadAttention":
                continue
        lines.append(f"| {mech} | {pattern} | {a.n} → {b.n} | {t_ratio:.2f} | {_fmt(m_ratio)} | {verdict} |")
    return lines, ok


class _PeakMemory:
    """Peak memory of a callable: CUDA allocator stats, or Linux peak RSS (``None`` elsewhere)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], None]) -> float | None:
        if self.device.type != "cuda":
            return peak_rss_mib(fn)[1]
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        fn()
        torch.cuda.synchronize(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - base) / 2**20


def _square_grid(n: int) -> tuple[int, int]:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"grid mechanisms need square N; {n} is not a square (use powers of 4)")
    return side, side


def _build(info: MechanismInfo, dim: int, args: argparse.Namespace) -> nn.Module:
    kwargs = dict(args.kwargs.get(info.name, {}))
    if "num_heads" in inspect.signature(info.cls.__init__).parameters:
        kwargs.setdefault("num_heads", args.heads)  # same heads as the dense reference: a fair ratio
    if info.kind == "spatial":
        return info.cls(dim, spatial_dims=2, **kwargs)
    return info.cls(dim, **kwargs)


def _dense(pattern: str, dim: int, heads: int) -> TokenMixer:
    if pattern.endswith("cross"):
        return CrossAttention(dim, num_heads=heads)
    return MultiHeadAttention(dim, num_heads=heads)


def _make_step(
    module: nn.Module, info_kind: str, pattern: str, n: int, m: int, args: argparse.Namespace, backward: bool
) -> tuple[Callable[[], None], dict]:
    device, dtype, b, c = args.device_, args.dtype_, args.batch, args.dim
    causal = pattern.startswith("causal")
    if info_kind == "spatial":
        h, w = _square_grid(n)
        x = torch.randn(b, c, h, w, device=device, dtype=dtype, requires_grad=backward)
        kwargs: dict = {}
    else:
        x = torch.randn(b, n, c, device=device, dtype=dtype, requires_grad=backward)
        kwargs = {"is_causal": causal} if causal else {}
        if pattern.endswith("cross"):
            kwargs["context"] = torch.randn(b, m, c, device=device, dtype=dtype)
        if getattr(module, "needs_grid", False):
            kwargs["grid"] = _square_grid(n)

    def run() -> None:
        if backward:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x, **kwargs).float().sum().backward()
        else:
            with torch.no_grad():
                module(x, **kwargs)

    return run, kwargs


def _measure(module: nn.Module, kind: str, pattern: str, n: int, args: argparse.Namespace) -> tuple:
    m = n  # cross patterns use a context as long as the queries
    fwd, _ = _make_step(module, kind, pattern, n, m, args, backward=False)
    t_fwd = median_ms(fwd, args.device_, args.repeats, args.warmup, min_total_ms=200.0)
    if args.forward_only:
        return t_fwd, None, None
    step, _ = _make_step(module, kind, pattern, n, m, args, backward=True)
    t_bwd = median_ms(step, args.device_, args.repeats, args.warmup, min_total_ms=200.0)
    peak = args.peak_(step)
    return t_fwd, t_bwd, peak


def _flops(module: nn.Module, pattern: str, n: int, args: argparse.Namespace) -> float | None:
    """Useful FLOPs of one call; cross patterns use a context of ``m = n`` tokens (see :func:`_measure`)."""
    method = getattr(module, "attention_flops", None)
    if method is None:
        return None
    grid = _square_grid(n) if getattr(module, "needs_grid", False) else None
    keys = n
    if pattern.endswith("cross") and getattr(module, "context_extends_keys", False):
        keys = n + n  # own tokens and the context (DCAL's pair-wise cross-attention)
    return method(args.batch, n, keys, is_causal=pattern.startswith("causal"), grid=grid)


def run(args: argparse.Namespace) -> list[BenchRow]:
    """Run the sweep described by parsed ``args`` and return one row per measurement."""
    torch.manual_seed(0)
    rows: list[BenchRow] = []
    infos = [i for i in list_mechanisms() if i.kind in ("token", "spatial")]
    if args.mechanisms:
        known = {i.name for i in infos}
        unknown = sorted(set(args.mechanisms) - known)
        if unknown:
            raise SystemExit(f"unknown or unbenchmarkable mechanisms {unknown}; choose from {sorted(known)}")
        infos = [i for i in infos if i.name in args.mechanisms]
    dense_cache: dict[tuple[str, int], tuple] = {}
    for info in infos:
        patterns = [p for p in info.patterns if not args.patterns or p in args.patterns]
        for pattern in patterns:
            too_slow = False
            for n in args.lengths:
                if too_slow:
                    rows.append(BenchRow(info.name, pattern, n, None, None, None, note="skipped: too slow"))
                    continue
                dense_pattern = "noncausal_self" if pattern == "spatial" else pattern
                try:
                    module = _build(info, args.dim, args).to(args.device_, args.dtype_)
                    t_fwd, t_bwd, peak = _measure(module, info.kind, pattern, n, args)
                except (RuntimeError, ValueError) as err:  # a mechanism that cannot run this size
                    rows.append(BenchRow(info.name, pattern, n, None, None, None, note=str(err)[:80]))
                    continue
                key = (dense_pattern, n)
                if n > args.dense_max_n:
                    row = BenchRow(info.name, pattern, n, t_fwd, t_bwd, peak, note="dense not timed")
                    rows.append(row)
                    too_slow = (t_bwd or t_fwd) > args.max_ms
                    print(_format_row(row), file=sys.stderr, flush=True)
                    continue
                if key not in dense_cache:
                    dense = _dense(dense_pattern, args.dim, args.heads).to(args.device_, args.dtype_)
                    dense_cache[key] = (*_measure(dense, "token", dense_pattern, n, args), dense)
                d_fwd, d_bwd, _, dense = dense_cache[key]
                row = BenchRow(info.name, pattern, n, t_fwd, t_bwd, peak)
                row.speedup_fwd = d_fwd / t_fwd
                row.speedup_fwdbwd = d_bwd / t_bwd if t_bwd and d_bwd else None
                flops = _flops(module, pattern, n, args)
                dense_flops = _flops(dense, dense_pattern, n, args)
                if flops:
                    if args.device_.type == "cuda":
                        row.tflops_fwd = flops / (t_fwd * 1e-3) / 1e12
                    row.flop_bound = dense_flops / flops if dense_flops else None
                rows.append(row)
                if (t_bwd or t_fwd) > args.max_ms:
                    too_slow = True
                print(_format_row(row), file=sys.stderr, flush=True)
    return rows


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _format_row(r: BenchRow) -> str:
    return (
        f"| {r.mechanism} | {r.pattern} | {r.n} | {_fmt(r.fwd_ms)} | {_fmt(r.fwdbwd_ms)} | "
        f"{_fmt(r.peak_mib, '.1f')} | {_fmt(r.speedup_fwd, '.2f', '×')} | "
        f"{_fmt(r.speedup_fwdbwd, '.2f', '×')} | "
        f"{_fmt(r.tflops_fwd, '.1f')} | {_fmt(r.flop_bound, '.1f', '×')} | {r.note} |"
    )


def exponents(rows: Sequence[BenchRow]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """Fitted growth exponents of forward+backward (or forward) time and of memory per mechanism/pattern."""
    groups: dict[tuple[str, str], list[BenchRow]] = {}
    for r in rows:
        groups.setdefault((r.mechanism, r.pattern), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.fwd_ms is not None]
        times = [r.fwdbwd_ms if r.fwdbwd_ms is not None else r.fwd_ms for r in ok]
        t_exp = fit_exponent([r.n for r in ok], times) if ok else None
        mem = [r for r in ok if r.peak_mib]
        m_exp = fit_exponent([r.n for r in mem], [r.peak_mib for r in mem]) if len(mem) > 1 else None
        out[key] = (t_exp, m_exp)
    return out


def markdown(rows: Sequence[BenchRow], header: str) -> str:
    """The Markdown report: the per-length table, then the fitted exponents."""
    lines = [
        header,
        "",
        "| mechanism | pattern | N | fwd ms | fwd+bwd ms | peak MiB | speedup fwd | speedup fwd+bwd "
        "| useful TFLOP/s | FLOP bound | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_format_row(r) for r in rows]
    lines += ["", "Growth exponents a in t ∝ N^a (time: fwd+bwd, or fwd with --forward-only):", ""]
    lines += ["| mechanism | pattern | time exponent | memory exponent |", "|---|---|---|---|"]
    for (mech, pattern), (t_exp, m_exp) in sorted(exponents(rows).items()):
        lines.append(f"| {mech} | {pattern} | {_fmt(t_exp)} | {_fmt(m_exp)} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[BenchRow], path: Path, title: str) -> None:
    """Time and memory against N on log-log axes, one line per mechanism and pattern."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(14, 6))
    groups: dict[tuple[str, str], list[BenchRow]] = {}
    for r in rows:
        if r.fwd_ms is not None:
            groups.setdefault((r.mechanism, r.pattern), []).append(r)
    for (mech, pattern), rs in sorted(groups.items()):
        label = f"{mech} ({pattern})"
        ax_t.plot([r.n for r in rs], [r.fwdbwd_ms or r.fwd_ms for r in rs], marker="o", label=label)
        mem = [r for r in rs if r.peak_mib]
        if mem:
            ax_m.plot([r.n for r in mem], [r.peak_mib for r in mem], marker="o", label=label)
    for ax, ylabel in ((ax_t, "time per step (ms)"), (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (shared by ``python -m benchmarks.attention`` and ``attnlab bench``)."""
    parser = argparse.ArgumentParser(
        prog="attnlab bench attention", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=2, help="batch size B (2: BatchNorm layers need it)")
    parser.add_argument("--dim", type=int, default=64, help="channels C (dense SDPA uses C / heads per head)")
    parser.add_argument(
        "--heads",
        type=int,
        default=4,
        help="heads of the dense reference and of every mechanism with num_heads",
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help=f"token counts N, squares for grids (default: {' '.join(map(str, QUICK_LENGTHS))}; with --all "
        f"{' '.join(map(str, ALL_LENGTHS))})",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--mechanisms",
        nargs="+",
        default=None,
        help=f"registry names (default: the quick set {' '.join(QUICK_MECHANISMS)})",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="every registered token and feature-map mixer (the full sweep; takes many minutes on a CPU)",
    )
    parser.add_argument("--patterns", nargs="*", default=None, help="CAB patterns to keep (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls")
    parser.add_argument("--forward-only", action="store_true", help="skip forward+backward and memory")
    parser.add_argument(
        "--max-ms", type=float, default=3000.0, help="skip larger N for a mechanism once a step exceeds this"
    )
    parser.add_argument(
        "--dense-max-n",
        type=int,
        default=16384,
        help="largest N at which dense SDPA is timed as the reference (it grows quadratically)",
    )
    parser.add_argument(
        "--check-linear",
        action="store_true",
        help="exit 1 if a mechanism of linear registered complexity grows faster than --linear-ratio",
    )
    parser.add_argument(
        "--linear-ratio", type=float, default=4.5, help="allowed t(4N)/t(N) and memory ratio for the check"
    )
    parser.add_argument(
        "--kwargs",
        type=json.loads,
        default={},
        help='constructor kwargs per mechanism as JSON, e.g. \'{"WindowAttention": {"window_size": 8}}\'',
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/attention"), help="output folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the sweep, write the table, JSON and plot; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.lengths is None:
        args.lengths = list(ALL_LENGTHS if args.all else QUICK_LENGTHS)
    if args.mechanisms is None and not args.all:
        args.mechanisms = list(QUICK_MECHANISMS)
    args.device_ = torch.device(args.device)
    args.dtype_ = DTYPES[args.dtype]
    torch.set_num_threads(args.threads)
    args.peak_ = _PeakMemory(args.device_)
    if args.device_.type == "cuda":
        device_name = torch.cuda.get_device_name(args.device_)
    else:
        device_name = f"CPU, {args.threads} threads"
    header = (
        f"# Attention benchmark: B={args.batch}, C={args.dim}, dense reference heads={args.heads}, "
        f"{args.dtype}, {device_name}, torch {torch.__version__}"
    )
    print(header, file=sys.stderr)
    rows = run(args)
    report = markdown(rows, header)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention.md").write_text(report)
    (args.out / "attention.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, args.out / "attention.png", header.lstrip("# "))
    status = 0
    if args.check_linear:
        linear = {i.name for i in list_mechanisms() if linear_in_n(i.complexity)}
        lines, ok = linear_check(rows, linear, args.linear_ratio)
        verdict = "PASS" if ok else "FAIL"
        text = "\n".join(
            [
                "",
                f"Linear-growth check (t(4N)/t(N) and memory ratio <= {args.linear_ratio}): {verdict}",
                "",
                *lines,
            ]
        )
        print(text)
        with (args.out / "attention.md").open("a") as handle:
            handle.write(text + "\n")
        status = 0 if ok else 1
    print(f"wrote {args.out / 'attention.md'}, attention.json and attention.png", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
