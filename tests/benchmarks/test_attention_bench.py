"""The attention benchmark runs end to end on CPU and its arithmetic is right."""

import json
import math

import pytest

from benchmarks.attention import BenchRow, exponents, fit_exponent, linear_check, main
from core.attention.functional import dense_attention_flops


def test_fit_exponent_recovers_power_laws() -> None:
    ns = [256, 1024, 4096]
    assert fit_exponent(ns, [3 * n for n in ns]) == pytest.approx(1.0)
    assert fit_exponent(ns, [0.5 * n**2 for n in ns]) == pytest.approx(2.0)
    assert fit_exponent([256], [1.0]) is None
    rows = [BenchRow("X", "noncausal_self", n, 1.0, n * 1e-3, n**2 * 1e-6) for n in ns]
    t_exp, m_exp = exponents(rows)["X", "noncausal_self"]
    assert t_exp == pytest.approx(1.0) and m_exp == pytest.approx(2.0)


def test_dense_flops_count_causal_pairs() -> None:
    assert dense_attention_flops(2, 4, 4, 8) == 4 * 2 * 16 * 8
    assert dense_attention_flops(1, 4, 4, 8, is_causal=True) == 4 * (1 + 2 + 3 + 4) * 8
    assert dense_attention_flops(1, 3, 2, 1, is_causal=True) == 4 * (1 + 2 + 2)


def test_benchmark_writes_table_json_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["--lengths", "16", "64", "--mechanisms", "MultiHeadAttention", "WindowAttention"]
    assert main([*argv, "--repeats", "1", "--warmup", "0", "--dim", "16", "--out", str(out)]) == 0
    rows = json.loads((out / "attention.json").read_text())
    seen = {(r["mechanism"], r["pattern"], r["n"]) for r in rows}
    assert ("MultiHeadAttention", "causal_self", 64) in seen
    assert ("WindowAttention", "noncausal_self", 16) in seen
    mha = [r for r in rows if r["mechanism"] == "MultiHeadAttention"]
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in mha)
    # The dense reference is MultiHeadAttention with the same heads, so the FLOP bound is exactly 1.
    assert all(math.isclose(r["flop_bound"], 1.0) for r in mha)
    window = next(r for r in rows if r["mechanism"] == "WindowAttention" and r["n"] == 64)
    # 8x8 grid in 7x7 windows: windows of 49, 7, 7 and 1 tokens attend within themselves.
    assert window["flop_bound"] == pytest.approx(64**2 / (49**2 + 7**2 + 7**2 + 1))
    report = (out / "attention.md").read_text()
    assert "Growth exponents" in report and "| WindowAttention | noncausal_self |" in report
    assert (out / "attention.png").stat().st_size > 1000
    assert "Attention benchmark" in capsys.readouterr().out


def test_benchmark_rejects_unknown_mechanism(tmp_path) -> None:
    with pytest.raises(SystemExit, match="NoSuchAttention"):
        main(["--mechanisms", "NoSuchAttention", "--out", str(tmp_path)])


def _row(mech: str, n: int, ms: float | None, mib: float | None = 10.0, note: str = "") -> BenchRow:
    return BenchRow(mech, "causal_self", n, ms, ms, mib if ms is not None else None, note=note)


def test_linear_check_passes_linear_and_fails_superlinear_or_unmeasured() -> None:
    linear = {"Lin", "Slow", "Skipped"}
    rows = [
        _row("Lin", 1024, 10.0, 10.0),
        _row("Lin", 4096, 41.0, 40.0),
        _row("Dense", 1024, 10.0),
        _row("Dense", 4096, 160.0),  # not linear: printed, never fails
    ]
    lines, ok = linear_check(rows, linear, 4.5)
    assert ok and any("| Lin |" in line and "PASS" in line for line in lines)
    _, ok = linear_check([*rows, _row("Slow", 1024, 10.0), _row("Slow", 4096, 50.0)], linear, 4.5)
    assert not ok  # time ratio 5.0
    skipped = [_row("Skipped", 1024, 10.0), _row("Skipped", 4096, None, note="skipped: too slow")]
    lines, ok = linear_check([*rows, *skipped], linear, 4.5)
    assert not ok and any("not measured: skipped: too slow" in line for line in lines)


def test_cross_flops_count_the_keys_each_mechanism_attends() -> None:
    """DCAL's pair-wise attention attends its own tokens and the context: N + M keys, not M."""
    import argparse

    from benchmarks.attention import _flops
    from core.attention import CrossAttention
    from core.attention.dcal import PairwiseCrossAttention

    args = argparse.Namespace(batch=2)
    pairwise = PairwiseCrossAttention(16, num_heads=2)
    assert _flops(pairwise, "noncausal_cross", 8, args) == dense_attention_flops(2, 8, 16, 16)
    assert _flops(pairwise, "noncausal_self", 8, args) == dense_attention_flops(2, 8, 8, 16)
    cross = CrossAttention(16, num_heads=2)
    assert _flops(cross, "noncausal_cross", 8, args) == dense_attention_flops(2, 8, 8, 16)
