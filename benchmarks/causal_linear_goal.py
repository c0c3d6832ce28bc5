"""Verdict on the GPU goal of the attention-library II issue, from an attention-benchmark run.

Goal: at N = 65,536, causal Lightning attention and causal linear attention run within 2× the time of
non-causal plain linear attention (which the issue measured 44× faster than dense SDPA on an H100).
This reads the ``attention.json`` that ``python -m benchmarks.attention`` wrote (both patterns of
``LinearAttention`` and ``LightningAttention`` at that length) and prints the ratios, forward and
forward + backward, with dense SDPA's ratio alongside, and PASS/FAIL.

Run: ``python -m benchmarks.causal_linear_goal [runs/bench/attention/attention.json] [--n 65536]``.
"""

import argparse
import json
from pathlib import Path

GOAL = 2.0


def ratios(rows: list[dict], n: int) -> dict[tuple[str, str], dict[str, float | None]]:
    """``{(mechanism, pattern): {"fwd_ms": t / t_ref, …}}`` against non-causal linear attention at ``n``."""
    at_n = {(r["mechanism"], r["pattern"]): r for r in rows if r["n"] == n}
    ref = at_n.get(("LinearAttention", "noncausal_self"))
    if ref is None:
        raise SystemExit(f"no non-causal LinearAttention row at N={n} in the benchmark output")
    out: dict[tuple[str, str], dict[str, float | None]] = {}
    for key, row in sorted(at_n.items()):
        out[key] = {
            t: (row[t] / ref[t] if row.get(t) and ref.get(t) else None) for t in ("fwd_ms", "fwdbwd_ms")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the table and verdicts; exit 1 if a causal linear mechanism misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", type=Path, default=Path("runs/bench/attention/attention.json"))
    parser.add_argument("--n", type=int, default=65536)
    args = parser.parse_args(argv)
    table = ratios(json.loads(args.json.read_text()), args.n)
    print(
        f"# time / non-causal LinearAttention time at N = {args.n} (goal for causal linear rows: ≤ {GOAL}×)"
    )
    print("| row | forward | forward + backward |")
    print("|---|---|---|")
    failed = False
    for (mechanism, pattern), values in table.items():
        cells = [f"{v:.2f}×" if v is not None else "—" for v in values.values()]
        print(f"| {mechanism} {pattern} | {' | '.join(cells)} |")
        if pattern == "causal_self" and mechanism in ("LinearAttention", "LightningAttention"):
            measured = [v for v in values.values() if v is not None]
            ok = bool(measured) and all(v <= GOAL for v in measured)
            failed |= not ok
            print(f"| **{'PASS' if ok else 'FAIL'}**: {mechanism} {pattern} | | |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
