"""``attnlab bench``: its help, its errors, and which sweep ``attnlab bench attention`` runs by default."""

import argparse

import pytest

from benchmarks import attention
from benchmarks.cli import BENCHES
from core.attention import list_mechanisms
from core.cli import main


def test_bench_help_lists_the_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: attnlab bench <benchmark> [options]")
    assert "\n  attention  attention mechanisms against dense SDPA" in out
    assert list(BENCHES) == ["attention"]


@pytest.mark.parametrize("argv", [["bench"], ["bench", "attentoin"]])
def test_bench_without_a_known_benchmark_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: attnlab bench <benchmark>" in err
    assert ("unknown benchmark 'attentoin'" in err) == (len(argv) == 2)


def _sweep(monkeypatch: pytest.MonkeyPatch, tmp_path, *argv: str) -> argparse.Namespace:
    """The options ``attnlab bench attention <argv>`` hands to the sweep (which is not run)."""
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(attention, "run", lambda args: seen.append(args) or [])
    monkeypatch.setattr(attention, "plot", lambda rows, path, title: None)
    assert main(["bench", "attention", *argv, "--out", str(tmp_path)]) == 0
    return seen[0]


def test_default_is_the_quick_set_at_small_lengths(monkeypatch, tmp_path) -> None:
    args = _sweep(monkeypatch, tmp_path)
    assert args.mechanisms == [
        "MultiHeadAttention",
        "CrossAttention",
        "LinearAttention",
        "GatedDeltaNet",
        "NeighborhoodAttention",
        "WindowAttention",
        "BiLevelRoutingAttention",
        "DifferentialAttention",
        "ChannelGroupAttention",
        "PositionAttention",
        "CBAM",
    ]
    assert args.lengths == [256, 1024]


def test_all_runs_every_mechanism_at_the_full_lengths(monkeypatch, tmp_path) -> None:
    args = _sweep(monkeypatch, tmp_path, "--all")
    assert args.mechanisms is None and args.lengths == [256, 1024, 4096]
    args = _sweep(monkeypatch, tmp_path, "--all", "--lengths", "64")
    assert args.mechanisms is None and args.lengths == [64]
    args = _sweep(monkeypatch, tmp_path, "--mechanisms", "CBAM")
    assert args.mechanisms == ["CBAM"] and args.lengths == [256, 1024]


def test_all_and_mechanisms_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        attention.build_parser().parse_args(["--all", "--mechanisms", "CBAM"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_quick_set_is_registered_and_covers_every_pattern() -> None:
    """Every quick mechanism is benchmarkable, and together they run every CAB pattern and feature maps."""
    infos = {info.name: info for info in list_mechanisms() if info.kind in ("token", "spatial")}
    assert set(attention.QUICK_MECHANISMS) <= set(infos)
    patterns = {p for name in attention.QUICK_MECHANISMS for p in infos[name].patterns}
    assert patterns == {"noncausal_self", "causal_self", "noncausal_cross", "causal_cross", "spatial"}
