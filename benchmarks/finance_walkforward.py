"""LOBSTER walk-forward: neural LOB models and classical baselines on the same windows and labels, one run.

Every fold of :class:`~domains.finance.datamodule.LOBSTERDataModule`'s walk-forward protocol (``folds``
consecutive train/val/test blocks, α and normalisation from each training block) is scored by:

* the neural configs ``configs/finance/<name>_lobster.yaml`` (TLOB, MLPLOB, DeepLOB, the logistic
  regression), trained with ``attnlab fit`` and tested with ``attnlab test --ckpt_path best`` in this
  process, once per seed;
* ``majority``: the training block's most frequent class per horizon (the level a collapsed model scores);
* ``sk-logreg``: scikit-learn's multinomial logistic regression on the last ``--snapshots`` book snapshots
  of each window, prices in ticks from the window's last mid and log sizes, standardised, ``C`` chosen on
  the validation block;
* ``sk-hgb``: ``HistGradientBoostingClassifier`` on the last event's handcrafted microstructure features
  (spread, queue/depth imbalance, order-flow imbalance and mid returns over several lags), its book
  relative to the mid and its order features.

The baselines read their windows from datamodules with the same files, fold, ``seq_len``, horizons and
labels as the neural runs (only the input options differ, which change neither windows nor labels; the
script checks that the window ends and labels agree). ``--ablation`` adds TLOB runs with other input
options. Prints test macro-F1 per horizon, the mean over folds ± the std over seeds of that mean, and the
macro-F1 of each fold; writes every run's scores to ``<out>/results.json`` (``--merge`` prints several
such files as one table, e.g. folds run as separate processes with ``--only-folds``).

Needs scikit-learn (the ``dev`` extra). Run (the command of the table in docs/finance.md is there):
``python -m benchmarks.finance_walkforward --files ../shared/data/finance/lobster/AMZN_..._message_1.csv``.
"""

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domains.finance.datamodule import LOBSTERDataModule

NEURAL = ("tlob", "mlplob", "deeplob", "logreg")
CLASSICAL = ("majority", "sk-logreg", "sk-hgb")
# TLOB input ablation: name → datamodule overrides (the config's own options are the default row).
ABLATION = {
    "tlob raw prices, global": {
        "price_features": "raw",
        "sizes": "raw",
        "handcrafted": False,
        "normalization": "global",
    },
    "tlob last_mid, log sizes, global": {"handcrafted": False},
    "tlob + handcrafted, rolling": {"normalization": "rolling"},
    "tlob + handcrafted, window": {"normalization": "window"},
}


def macro_f1(pred: np.ndarray, truth: np.ndarray, num_classes: int = 3) -> float:
    """Macro-F1 over the classes present in ``truth`` or ``pred`` (as torchmetrics' multiclass macro-F1)."""
    scores = []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (truth == c))
        fp, fn = np.sum((pred == c) & (truth != c)), np.sum((pred != c) & (truth == c))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def window_arrays(dm: LOBSTERDataModule, split: str, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features of the last `last` events of each window, flattened; labels (N, H); window ends)``."""
    dataset = dm.datasets[split]
    x = np.stack([dataset.window(int(t))[-last:].reshape(-1).numpy() for t in dataset.ends])
    return x, dataset.labels[dataset.ends].numpy(), dataset.ends.copy()


def classical(data: dict[str, Any], seed: int) -> dict[str, list[float]]:
    """Test macro-F1 per horizon of the majority class, scikit-learn's logreg and gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out: dict[str, list[float]] = {name: [] for name in CLASSICAL}
    (xs_tr, y_tr), (xs_va, y_va), (xs_te, y_te) = data["snap"]
    (xh_tr, _), _, (xh_te, _) = data["hand"]  # HGB stops early on a share of its training windows
    for k in range(y_tr.shape[1]):
        majority = np.bincount(y_tr[:, k], minlength=3).argmax()
        out["majority"].append(macro_f1(np.full(len(y_te), majority), y_te[:, k]))
        best = None
        for c in (0.001, 0.01, 0.1, 1.0):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300, random_state=seed))
            model.fit(xs_tr, y_tr[:, k])
            score = macro_f1(model.predict(xs_va), y_va[:, k])
            if best is None or score > best[0]:
                best = (score, model)
        out["sk-logreg"].append(macro_f1(best[1].predict(xs_te), y_te[:, k]))
        hgb = HistGradientBoostingClassifier(
            learning_rate=0.05, max_iter=200, max_leaf_nodes=15, l2_regularization=1.0, random_state=seed
        )
        hgb.set_params(early_stopping=True, validation_fraction=0.15, n_iter_no_change=20)
        hgb.fit(xh_tr, y_tr[:, k])
        out["sk-hgb"].append(macro_f1(hgb.predict(xh_te), y_te[:, k]))
    return out


def baseline_data(common: dict[str, Any], snapshots: int) -> dict[str, Any]:
    """Windows of one fold for the baselines: last snapshots (stationary book) and last-event features."""
    views = {
        "snap": LOBSTERDataModule(
            **common, order_features=False, price_features="last_mid", sizes="log", normalization="global"
        ),
        "hand": LOBSTERDataModule(
            **common, price_features="mid", sizes="log", handcrafted=True, normalization="global"
        ),
    }
    out: dict[str, Any] = {}
    reference = None
    for name, dm in views.items():
        dm.setup("fit")
        dm.setup("test")
        arrays = [
            window_arrays(dm, split, snapshots if name == "snap" else 1) for split in ("train", "val", "test")
        ]
        labels = [(a[1], a[2]) for a in arrays]
        if reference is None:
            reference = labels
        for (y, ends), (y_ref, ends_ref) in zip(labels, reference, strict=True):
            if not (np.array_equal(ends, ends_ref) and np.array_equal(y, y_ref)):
                raise RuntimeError("the baseline views disagree on the windows or labels")
        out[name] = [(a[0], a[1]) for a in arrays]
    out["ends"] = [ends for _, ends in reference]
    return out


def ema_override(ema: str) -> list[str]:
    """The ``--trainer.callbacks`` override that replaces the configs' EMA (``--ema``).

    ``config`` keeps it, ``none`` drops it, ``0.9`` uses that decay, ``0.99,warmup`` that decay with the
    warm-up ``min(decay, (1 + n) / (10 + n))``.
    """
    if ema == "config":
        return []
    if ema == "none":
        return ["--trainer.callbacks=[]"]
    decay, _, warmup = ema.partition(",")
    if warmup not in ("", "warmup") or not 0.0 < float(decay) < 1.0:
        raise ValueError(f"--ema: expected config, none, <decay> or <decay>,warmup; got {ema!r}")
    init = {"decay": float(decay), "warmup": warmup == "warmup"}
    return ["--trainer.callbacks=" + json.dumps([{"class_path": "core.training.EMA", "init_args": init}])]


def fold_options(
    config: str, args: argparse.Namespace, fold: int, folds: int, seed: int, root: Path
) -> list[str]:
    """``attnlab`` options training ``configs/finance/<config>_lobster.yaml`` on one walk-forward fold.

    ``args`` carries ``files``, ``split``, ``seq_len``, ``horizons`` and ``epochs``.
    """
    return [
        f"--config=configs/finance/{config}_lobster.yaml",
        "--data.train_files=null",
        "--data.val_files=null",
        "--data.test_files=null",
        f"--data.files=[{','.join(args.files)}]",
        f"--data.split=[{','.join(str(f) for f in args.split)}]",
        f"--data.folds={folds}",
        f"--data.fold={fold}",
        f"--data.seq_len={args.seq_len}",
        f"--data.horizons=[{','.join(str(h) for h in args.horizons)}]",
        f"--seed_everything={seed}",
        f"--trainer.max_epochs={args.epochs}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


def neural(
    config: str, fold: int, seed: int, args: argparse.Namespace, root: Path, data_overrides: dict[str, Any]
) -> tuple[list[float], list[np.ndarray], float]:
    """Train a config on one fold and seed.

    Returns:
        Test macro-F1 per horizon, ``[test window ends]`` and the best validation macro-F1 (mean over
        horizons; the checkpoint's selection score, what ``--ema`` and other settings are chosen on).
    """
    from core.cli import main as attnlab

    common = [
        *fold_options(config, args, fold, args.folds, seed, root),
        *(f"--data.{key}={_cli(value)}" for key, value in data_overrides.items()),
        f"--trainer.limit_train_batches={args.train_batches}",
        *ema_override(args.ema),
    ]
    fit = attnlab(["fit", *common])
    val = float(fit.trainer.checkpoint_callback.best_model_score)
    cli = attnlab(["test", *common, "--ckpt_path=best"])
    metrics = cli.trainer.callback_metrics
    ends = cli.datamodule.datasets["test"].ends
    return [float(metrics[f"test_macro_f1_h{h}"]) for h in args.horizons], [ends], val


def _cli(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def summary(scores: dict[str, dict[int, list[list[float]]]], horizons: Sequence[int]) -> str:
    """One markdown table: per horizon the mean over folds ± the std over seeds, then per fold.

    The std is that of each seed's mean over the folds (how much a re-run with another seed moves the
    number); a model run with one seed shows its mean only. The last column gives each fold's macro-F1
    (mean over horizons and seeds), to show how much the later blocks differ.
    """
    folds = sorted({f for per_fold in scores.values() for f in per_fold})
    head = (
        "| model | "
        + " | ".join(f"h={h}" for h in horizons)
        + " | mean | per fold ("
        + " / ".join(str(f) for f in folds)
        + ") |"
    )
    lines = [head, "|---" * (len(horizons) + 3) + "|"]
    for name, per_fold in scores.items():
        if sorted(per_fold) != folds:
            continue
        seeds = min(len(per_fold[f]) for f in folds)
        runs = np.array([per_fold[f][:seeds] for f in folds])  # (folds, seeds, H)
        over_folds = runs.mean(axis=0)  # (seeds, H): each seed's mean over folds
        mean = over_folds.mean(1)
        cells = [_cell(over_folds[:, k]) for k in range(len(horizons))] + [_cell(mean)]
        fold_means = " / ".join(f"{runs[i].mean():.3f}" for i in range(len(folds)))
        label = name if seeds > 1 else f"{name} (1 seed)"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {fold_means} |")
    return "\n".join(lines)


def _cell(values: np.ndarray) -> str:
    """Mean ± std of one value per seed (the mean alone for one seed)."""
    return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def merge(paths: list[Path], horizons: Sequence[int]) -> dict[str, Any]:
    """Combine the ``results.json`` of runs over other folds or models into one table (printed)."""
    scores: dict[str, dict[int, list[list[float]]]] = {}
    for path in paths:
        for name, per_fold in json.loads(path.read_text())["scores"].items():
            for fold, runs in per_fold.items():
                scores.setdefault(name, {}).setdefault(int(fold), []).extend(runs)
    print(summary(scores, horizons))
    return {"scores": scores}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options (``argv``, default the command line), run every fold, print and save the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", required=True, help="LOBSTER message files")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3])
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--train-batches", type=float, default=1.0, help="share of the training batches per epoch (random)"
    )
    parser.add_argument(
        "--ema",
        default="config",
        help="EMA of the neural runs: config (the configs' own), none, <decay> or <decay>,warmup",
    )
    parser.add_argument("--no-classical", action="store_true", help="neural runs only")
    parser.add_argument("--snapshots", type=int, default=20, help="snapshots fed to sk-logreg")
    parser.add_argument("--models", nargs="*", default=list(NEURAL), choices=NEURAL)
    parser.add_argument("--ablation", nargs="*", default=[], choices=list(ABLATION))
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=None)
    parser.add_argument("--only-folds", type=int, nargs="+", default=None, help="run these folds only")
    parser.add_argument(
        "--merge", nargs="+", default=None, help="print the tables of these results.json files together"
    )
    parser.add_argument("--out", default="runs/finance/walkforward")
    args = parser.parse_args(argv)
    if args.merge:
        return merge([Path(p) for p in args.merge], args.horizons)
    out = Path(args.out)
    ema_override(args.ema)  # fails early on a bad value
    scores: dict[str, dict[int, list[list[float]]]] = {}
    val_scores: dict[str, dict[int, list[float]]] = {}
    timings: dict[str, float] = {}

    def save() -> dict[str, Any]:
        result = {"args": vars(args), "scores": scores, "val_macro_f1": val_scores, "seconds": timings}
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=1))
        return result

    for fold in args.only_folds if args.only_folds is not None else range(args.folds):
        common = {
            "files": args.files,
            "split": tuple(args.split),
            "folds": args.folds,
            "fold": fold,
            "seq_len": args.seq_len,
            "horizons": args.horizons,
        }
        start = time.perf_counter()
        data = baseline_data(common, args.snapshots)
        for seed in [] if args.no_classical else args.seeds:
            for name, values in classical(data, seed).items():
                scores.setdefault(name, {}).setdefault(fold, []).append(values)
        timings["classical"] = timings.get("classical", 0.0) + time.perf_counter() - start
        runs = [(m, m, {}, args.seeds) for m in args.models]
        runs += [(a, "tlob", ABLATION[a], args.ablation_seeds or args.seeds) for a in args.ablation]
        for name, config, overrides, seeds in runs:
            for seed in seeds:
                start = time.perf_counter()
                root = out / name.replace(" ", "_").replace(",", "") / f"fold{fold}_seed{seed}"
                values, (ends,), val = neural(config, fold, seed, args, root, overrides)
                if not np.array_equal(ends, data["ends"][2]):
                    raise RuntimeError(f"{name}: its test windows differ from the baselines'")
                scores.setdefault(name, {}).setdefault(fold, []).append(values)
                val_scores.setdefault(name, {}).setdefault(fold, []).append(val)
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
                save()
        print(summary(scores, args.horizons), flush=True)
    result = save()
    print(
        "\nbest validation macro-F1 (mean over horizons), mean over folds and seeds: "
        + ", ".join(
            f"{name} {np.mean([v for runs in per_fold.values() for v in runs]):.4f}"
            for name, per_fold in val_scores.items()
        )
    )
    print(
        "\nwall seconds per model (all folds and seeds): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
    )
    return result


if __name__ == "__main__":
    main()
