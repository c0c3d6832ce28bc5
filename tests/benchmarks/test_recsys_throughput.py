"""The SASRec throughput benchmark: options, our timing loop, the plain reference and the RecBole patches.

Everything here runs without RecBole (the RecBole-only check skips with a reason) on a tiny simulated
``.inter`` file, one short epoch per side.
"""

import importlib.util
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks.recsys_throughput import (
    _NUMPY_ALIASES,
    EpochRecord,
    SideResult,
    _Budget,
    _spec,
    build_parser,
    main,
    patch_recbole_compat,
    recbole_config,
    report,
    resolve_data,
    run_ours,
    run_plain,
    subset_inter_file,
)

SIMULATOR = Path(__file__).resolve().parents[2] / "data" / "recsys" / "simulate_sequences.py"


@pytest.fixture(scope="module")
def sim_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RecBole dataset folder ``<dir>/bench-sim/bench-sim.inter``: 40 users, 60 items, ~15 items each."""
    name = "attnlab_simulate_sequences"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, SIMULATOR)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    params = module.SequenceSimParams(mean_len=15.0, num_clusters=6)
    folder = tmp_path_factory.mktemp("bench") / "bench-sim"
    module.simulate_inter_file(folder, name="bench-sim", num_users=40, num_items=60, seed=0, params=params)
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny models run faster without it on a shared 2-core machine (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _small_spec(inter: Path, tmp_path: Path, **overrides: object) -> dict:
    args = build_parser().parse_args(["--data", str(inter), "--epochs", "1", "--threads", "1"])
    args.max_len = 20
    spec = _spec(args, inter)
    spec |= {"workdir": str(tmp_path), "batch": 16, "recbole_batch": 64, "eval_batch": 64, **overrides}
    return spec


def test_parser_defaults_match_the_issue() -> None:
    args = build_parser().parse_args([])
    assert args.data == "../shared/data/recsys/ml-100k"
    assert (args.hidden, args.layers, args.heads, args.dropout, args.lr) == (64, 2, 1, 0.2, 1e-3)
    assert (args.batch, args.recbole_batch, args.reference, args.device) == (128, 2048, "auto", "cpu")
    assert args.max_len is None and not args.smoke  # 200, or 50 under --smoke (resolved in main)
    args = build_parser().parse_args(
        ["--smoke", "--epochs", "3", "--max-minutes", "5", "--reference", "plain"]
    )
    assert args.smoke and args.epochs == 3 and args.max_minutes == 5.0 and args.reference == "plain"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--reference", "tensorflow"])


@pytest.mark.filterwarnings("ignore:In the future `np:FutureWarning")
def test_numpy_patch_is_a_no_op_when_the_aliases_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinels = {alias: object() for alias in _NUMPY_ALIASES}
    for alias, value in sentinels.items():
        monkeypatch.setattr(np, alias, value, raising=False)
    assert patch_recbole_compat() == []
    assert all(getattr(np, alias) is value for alias, value in sentinels.items())


@pytest.mark.filterwarnings("ignore:In the future `np:FutureWarning")
def test_numpy_patch_adds_only_missing_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    for alias in _NUMPY_ALIASES:
        monkeypatch.setattr(np, alias, getattr(np, _NUMPY_ALIASES[alias]), raising=False)
    monkeypatch.delattr(np, "float_")  # undone afterwards: numpy is left as it was
    assert patch_recbole_compat() == ["float_"]
    assert np.float_ is np.float64
    assert patch_recbole_compat() == []  # idempotent


def test_resolve_and_subset(sim_dataset: Path, tmp_path: Path) -> None:
    inter = resolve_data(sim_dataset)
    assert inter == sim_dataset / "bench-sim.inter" and resolve_data(inter) == inter
    with pytest.raises(FileNotFoundError, match="expected a RecBole dataset folder"):
        resolve_data(tmp_path)
    sub = subset_inter_file(inter, 5, tmp_path / "data")
    assert sub == tmp_path / "data" / "bench-sim-u5" / "bench-sim-u5.inter"  # RecBole's layout
    lines = sub.read_text().splitlines()
    assert lines[0] == inter.read_text().splitlines()[0]
    assert len({line.split("\t")[0] for line in lines[1:]}) == 5


def test_budget_stops_at_target_patience_and_epochs() -> None:
    spec = {"target": 0.3, "patience": 2, "epochs": 10, "max_minutes": 60}
    budget = _Budget(spec, SideResult("x"), start=time.perf_counter())
    assert budget.record(1.0, 0.5, 0.1) == ""
    assert budget.record(1.0, 0.5, 0.3).startswith("target")
    budget = _Budget(dict(spec, target=None), SideResult("x"), start=time.perf_counter())
    assert [budget.record(1.0, 0.5, v) for v in (0.2, 0.1, 0.1)][-1].startswith("no improvement")
    budget = _Budget(dict(spec, target=None, epochs=1), SideResult("x"), start=time.perf_counter())
    assert budget.record(1.0, 0.5, 0.2).startswith("epoch budget")


def test_report_ratios_and_goal(capsys: pytest.CaptureFixture[str]) -> None:
    ref = SideResult("recbole", setup_s=10.0, peak_rss_mib=1000.0)
    ref.epochs = [EpochRecord(i, 100.0, 5.0, 10.0 + 105.0 * (i + 1), v) for i, v in enumerate([0.05, 0.07])]
    ours = SideResult("ours", setup_s=1.0, peak_rss_mib=500.0)
    ours.epochs = [EpochRecord(i, 3.0, 1.0, 1.0 + 4.0 * (i + 1), v) for i, v in enumerate([0.06, 0.071])]
    assert ref.time_to(ref.best) == (220.0, 1) and ours.time_to(0.07) == (9.0, 1)
    assert SideResult.from_dict(json.loads(json.dumps(asdict(ours)))) == ours
    summary = report(ours, ref, ref.best)
    assert summary["ratios"]["time_to_target"] == pytest.approx(9.0 / 220.0)
    assert summary["ratios"]["train_epoch"] == pytest.approx(0.03)
    assert summary["ratios"]["peak_rss"] == pytest.approx(0.5)
    assert summary["goal"].startswith("MET")
    assert "time to NDCG@10 >= 0.0700" in capsys.readouterr().out
    ours.epochs = ours.epochs[:1]
    assert report(ours, ref, ref.best)["goal"].startswith("NOT met")


def test_our_side_times_one_epoch(sim_dataset: Path, tmp_path: Path) -> None:
    result = run_ours(_small_spec(resolve_data(sim_dataset), tmp_path))
    assert len(result.epochs) == 1 and result.stopped.startswith("epoch budget")
    epoch = result.epochs[0]
    assert epoch.train_s > 0 and epoch.eval_s > 0 and epoch.elapsed_s >= epoch.train_s + epoch.eval_s
    assert 0.0 <= epoch.val_ndcg10 <= 1.0
    assert result.info["users"] == 40 and result.info["steps_per_epoch"] == math.ceil(40 / 16)


def test_plain_reference_expands_every_prefix(sim_dataset: Path, tmp_path: Path) -> None:
    spec = _small_spec(resolve_data(sim_dataset), tmp_path, target=0.0)
    plain = run_plain(spec)
    assert plain.stopped.startswith("target") and 0.0 <= plain.best <= 1.0
    # Leave-one-out keeps 2 items per user for evaluation; every training item but a user's first is a
    # target, exactly once per epoch.
    lines = resolve_data(sim_dataset).read_text().splitlines()[1:]
    assert plain.info["train_samples"] == len(lines) - 3 * 40
    assert plain.info["parameters"] == sum(p.numel() for p in _our_network(spec).parameters())


def _our_network(spec: dict):
    from benchmarks.recsys_throughput import _build_task

    return _build_task(spec, num_items=60).network


def test_recbole_config_matches_our_protocol(sim_dataset: Path, tmp_path: Path) -> None:
    config = recbole_config(_small_spec(resolve_data(sim_dataset), tmp_path))
    assert config["dataset"] == "bench-sim" and Path(config["data_path"]) == sim_dataset.parent.resolve()
    assert config["eval_args"] == {
        "split": {"LS": "valid_and_test"},
        "order": "TO",
        "mode": "full",
        "group_by": "user",
    }
    assert (config["n_heads"], config["inner_size"], config["hidden_act"]) == (1, 64, "relu")
    assert config["valid_metric"] == "NDCG@10" and config["MAX_ITEM_LIST_LENGTH"] == 20
    assert config["checkpoint_dir"].startswith(str(tmp_path))  # nothing written beside the data


def test_main_with_a_given_target_runs_ours_in_a_subprocess(sim_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--data", str(sim_dataset), "--out", str(out), "--target", "0.0", "--epochs", "2"]
    assert main([*argv, "--max-len", "20", "--batch", "16", "--threads", "1"]) == 0
    payload = json.loads((out / "recsys_throughput.json").read_text())
    assert payload["target"] == 0.0 and payload["reference"] is None
    assert len(payload["ours"]["epochs"]) == 1  # NDCG >= 0 after the first epoch: target reached
    assert payload["ours"]["peak_rss_mib"] > 0


@pytest.mark.filterwarnings("ignore:In the future `np:FutureWarning")
def test_recbole_imports_after_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("RecBole is not installed in this environment (see benchmarks/recsys_setup.md)")
    from benchmarks.recsys_throughput import patch_recbole_fill_nan

    for alias, target in _NUMPY_ALIASES.items():  # the aliases RecBole needs, undone after the test
        monkeypatch.setattr(np, alias, getattr(np, target), raising=False)
    from recbole.data.dataset import Dataset

    monkeypatch.setattr(Dataset, "_fill_nan", Dataset._fill_nan)
    patch_recbole_fill_nan()
    assert Dataset._fill_nan.__module__ == "benchmarks.recsys_throughput"
