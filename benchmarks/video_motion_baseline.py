"""Converged logistic regression on the motion features of the self-supervised video tasks' clips.

``MotionBaseline`` (``domains/video/models/baseline.py``) is a logistic regression on motion statistics
trained by the same optimizer and epochs as the TimeSformer runs. This script fits the same model to
convergence (scikit-learn's L-BFGS, L2 penalty ``C``) on the same clips, so a weak result can be told
apart: features that do not separate the classes, or a budget that did not fit them.

The clips come from :class:`~domains.video.datamodules.SelfSupervisedVideoDataModule` built from a
config's ``data`` section (``--config``) with the options given here replacing its values: the training
split with one random clip per item (the draw of epoch 0: item ``i`` seeded with ``i``, no flip), the
test split's fixed clips. Features: :func:`~domains.video.models.baseline.motion_features`, then either
per-feature standardisation (statistics of the training clips) or the per-clip normalisation over the
features that ``MotionBaseline`` applies (``LayerNorm`` without its affine part).

Run: ``python -m benchmarks.video_motion_baseline --config configs/video/playback_speed_motion.yaml
[--data-root DIR --image-size 64 --frame-stride 1 --clip-step 4 --C 0.01 0.1 1]``; prints a Markdown
table of train and test top-1 and test macro-F1 per normalisation and ``C``.
"""

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from domains.video.datamodules import SelfSupervisedVideoDataModule
from domains.video.datasets import ClipDataset, reseed_clips
from domains.video.models.baseline import motion_features

REPO = Path(__file__).resolve().parents[1]


def clip_features(dataset: ClipDataset, seeded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Motion features ``[N, F]`` and labels ``[N]`` of one clip (the first view) per item."""
    features, labels = [], []
    for item in range(len(dataset)):
        if seeded:
            reseed_clips(dataset, item)
        sample = dataset[item]
        video = sample["video"]
        video = video[0] if video.ndim == 5 else video
        features.append(motion_features(video[None])[0].numpy())
        labels.append(int(sample["label"]))
    return np.asarray(features, dtype=np.float64), np.asarray(labels)


def per_clip_norm(x: np.ndarray) -> np.ndarray:
    """``MotionBaseline``'s normalisation: each clip's features to zero mean and unit variance."""
    return (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5)


def fit_logistic(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    c: float,
) -> tuple[float, float, float, float]:
    """Train, validation and test top-1 and test macro-F1 of L2 logistic regression (standardised inputs)."""
    mean, std = train[0].mean(axis=0), train[0].std(axis=0) + 1e-12
    model = LogisticRegression(C=c, max_iter=10000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's FutureWarnings about its defaults
        model.fit((train[0] - mean) / std, train[1])
    train_top1 = float((model.predict((train[0] - mean) / std) == train[1]).mean())
    val_top1 = float((model.predict((val[0] - mean) / std) == val[1]).mean())
    predicted = model.predict((test[0] - mean) / std)
    macro_f1 = float(f1_score(test[1], predicted, average="macro", labels=np.unique(train[1])))
    return train_top1, val_top1, float((predicted == test[1]).mean()), macro_f1


def main(argv: Sequence[str] | None = None) -> list[dict[str, float | str]]:
    """Build the clips, fit per normalisation and ``C``, print the table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/video/playback_speed_motion.yaml")
    parser.add_argument("--data-root", help="folder of videos (replaces the config's)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--frame-stride", type=int)
    parser.add_argument("--clip-step", type=int)
    parser.add_argument("--C", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="inverse L2 strengths")
    args = parser.parse_args(argv)
    options = dict(yaml.safe_load(args.config.read_text())["data"]["init_args"])
    for key, value in (
        ("data_root", args.data_root),
        ("image_size", args.image_size),
        ("frame_stride", args.frame_stride),
        ("clip_step", args.clip_step),
    ):
        if value is not None:
            options[key] = value
    options["flip"] = 0.0
    data = SelfSupervisedVideoDataModule(**options)
    sets = {split: data.build_dataset(split) for split in ("train", "val", "test")}
    if not all(isinstance(dataset, ClipDataset) for dataset in sets.values()):
        raise SystemExit(f"{args.config}: no training, validation or test clips fit these videos")
    train = clip_features(sets["train"], seeded=True)
    val, test = clip_features(sets["val"], seeded=False), clip_features(sets["test"], seeded=False)
    print(
        f"# Logistic regression on motion features, {data.task}, {len(train[1])} train / {len(test[1])} "
        f"test clips, chance {1 / data.num_classes:.3f}; C chosen on the {len(val[1])} validation clips (*)"
    )
    print("| normalisation | C | train top-1 | val top-1 | test top-1 | test macro-F1 |")
    print("|---|---|---|---|---|---|")
    rows: list[dict[str, float | str]] = []
    for name, transform in (("per feature", lambda x: x), ("per clip (MotionBaseline)", per_clip_norm)):
        fitted = []
        for c in args.C:
            train_top1, val_top1, test_top1, macro_f1 = fit_logistic(
                (transform(train[0]), train[1]), (transform(val[0]), val[1]), (transform(test[0]), test[1]), c
            )
            fitted.append(
                {
                    "norm": name,
                    "C": c,
                    "train": train_top1,
                    "val": val_top1,
                    "test": test_top1,
                    "f1": macro_f1,
                }
            )
        best = max(range(len(fitted)), key=lambda i: (fitted[i]["val"], -i))
        for i, row in enumerate(fitted):
            row["chosen"] = i == best
            mark = " (*)" if i == best else ""
            scores = " | ".join(f"{row[key]:.3f}" for key in ("train", "val", "test", "f1"))
            print(f"| {name} | {row['C']:g}{mark} | {scores} |")
        rows += fitted
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
