"""Landsat cloud mask: per-pixel references on the tiles and blocks of a segmentation config, in one run.

The datamodule is built from the config's ``data`` section (same scene, bands, blocks, tiles, seed), so the
references see exactly the training tiles and are scored on exactly the test tiles that ``attnlab test
--config <config>`` scores a network on. References: "all clear" (the majority class), logistic regression
and a random forest (100 trees) on the normalised band values of single pixels (a subsample of the
training pixels). Prints mIoU, per-class IoU, overall accuracy and kappa on the test split (and validation).

Needs scikit-learn. Run:
``python -m benchmarks.cloud_baselines --config configs/remote_sensing/lwganet_cloud.yaml``.
"""

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import yaml

from domains.remote_sensing.datamodules import SceneSegmentationDataModule
from domains.remote_sensing.metrics import ClassMetrics


def _pixels(dm: SceneSegmentationDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    loader = torch.utils.data.DataLoader(dm.build_dataset(split), batch_size=32, shuffle=False)
    images, masks = [], []
    for batch in loader:
        batch = dm.normalize_batch(batch)
        images.append(batch["image"].permute(0, 2, 3, 1).reshape(-1, batch["image"].shape[1]))
        masks.append(batch["mask"].reshape(-1))
    x, y = torch.cat(images).numpy(), torch.cat(masks).numpy()
    keep = y >= 0
    return x[keep], y[keep]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), fit the references, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/remote_sensing/lwganet_cloud.yaml")
    parser.add_argument("--train-pixels", type=int, default=200_000, help="training pixels subsampled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    options = yaml.safe_load(open(args.config))["data"]["init_args"]
    options = {k: v for k, v in options.items() if k not in ("pan", "context_scale")}
    dm = SceneSegmentationDataModule(**options)
    dm.setup("fit")
    dm.setup("test")
    x_train, y_train = _pixels(dm, "train")
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(y_train), size=min(args.train_pixels, len(y_train)), replace=False)
    x_train, y_train = x_train[pick], y_train[pick]
    evaluation = {split: _pixels(dm, split) for split in ("val", "test")}
    k, names = dm.num_classes, dm.class_names
    models = {
        "all clear (majority class)": None,
        "logistic regression (per pixel)": LogisticRegression(max_iter=500),
        "random forest, 100 trees (per pixel)": RandomForestClassifier(100, random_state=args.seed, n_jobs=1),
    }
    print(f"# {args.config}: {len(y_train):,} training pixels; classes {names}")
    print(
        "| model | val mIoU | test mIoU | "
        + " | ".join(f"test IoU {n}" for n in names)
        + " | test OA | test kappa |"
    )
    print("|---|---|---|" + "---|" * len(names) + "---|---|")
    for name, model in models.items():
        if model is not None:
            model.fit(x_train, y_train)
        row = []
        for split in ("val", "test"):
            x, y = evaluation[split]
            pred = np.zeros_like(y) if model is None else model.predict(x)
            metric = ClassMetrics(k, names, iou=True)
            metric.update(torch.as_tensor(pred), torch.as_tensor(y))
            row.append(metric.compute())
        val, test = row
        ious = " | ".join(f"{float(test[f'iou_{n}']):.4f}" for n in metric.names)
        print(
            f"| {name} | {float(val['miou']):.4f} | {float(test['miou']):.4f} | {ious} "
            f"| {float(test['oa']):.4f} | {float(test['kappa']):.4f} |"
        )


if __name__ == "__main__":
    main()
