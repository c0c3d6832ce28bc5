"""Statlog (Landsat): classical references and a trained network on the same split, in one run.

The split is :class:`~domains.remote_sensing.datamodules.StatlogDataModule`'s (seeded, stratified), so it is
exactly the one a config with the same ``path``, fractions and seed trains and tests on; bands are
normalised with the training split's statistics. k-NN picks ``k`` on the validation split; the random
forest has 500 trees. With ``--ckpt`` a trained ``SceneClassificationTask`` checkpoint is scored on the same
validation and test patches. Prints overall accuracy, average accuracy and Cohen's kappa per model.

Needs scikit-learn. Run: ``python -m benchmarks.statlog_baselines --path ../shared/data/remote_sensing/
statlog_landsat/sat.trn [--ckpt runs/.../best.ckpt]``.
"""

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from domains.remote_sensing.datamodules import StatlogDataModule
from domains.remote_sensing.tasks import SceneClassificationTask


def _arrays(dm: StatlogDataModule, split: str) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    dataset = dm.build_dataset(split)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1024, shuffle=False)
    images, labels = [], []
    for batch in loader:
        images.append(dm.normalize_batch(batch)["image"])
        labels.append(batch["label"])
    x = torch.cat(images)
    return x.flatten(1).numpy(), torch.cat(labels).numpy(), x


def scores(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> tuple[float, float, float]:
    """Overall accuracy, average (macro) accuracy and Cohen's kappa."""
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (truth, pred), 1)
    n = confusion.sum()
    oa = np.trace(confusion) / n
    support = confusion.sum(1)
    aa = float(np.mean(np.diag(confusion)[support > 0] / support[support > 0]))
    expected = (confusion.sum(0) * support).sum() / n**2
    return float(oa), aa, float((oa - expected) / (1 - expected))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), fit the references, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="../shared/data/remote_sensing/statlog_landsat/sat.trn")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt", default=None, help="a SceneClassificationTask checkpoint to score too")
    args = parser.parse_args(argv)
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    dm = StatlogDataModule(
        args.path, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed
    )
    k = dm.num_classes
    x_train, y_train, _ = _arrays(dm, "train")
    x_val, y_val, t_val = _arrays(dm, "val")
    x_test, y_test, t_test = _arrays(dm, "test")
    print(f"# Statlog: train {len(y_train)}, val {len(y_val)}, test {len(y_test)} ({dm.test_source})")
    rows = []
    best = max(
        (1, 3, 5, 7, 9, 11, 15),
        key=lambda n: KNeighborsClassifier(n).fit(x_train, y_train).score(x_val, y_val),
    )
    knn = KNeighborsClassifier(best).fit(x_train, y_train)
    rows.append((f"k-NN (k={best}, chosen on val)", knn.predict(x_val), knn.predict(x_test)))
    forest = RandomForestClassifier(n_estimators=500, random_state=args.seed, n_jobs=1).fit(x_train, y_train)
    rows.append(("random forest (500 trees)", forest.predict(x_val), forest.predict(x_test)))
    if args.ckpt:
        task = SceneClassificationTask.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
        with torch.no_grad():
            preds = [task(t).argmax(-1).numpy() for t in (t_val, t_test)]
        rows.append((f"{type(task.network).__name__} ({args.ckpt})", *preds))
    print("| model | val OA | test OA | test AA | test kappa |")
    print("|---|---|---|---|---|")
    for name, pred_val, pred_test in rows:
        oa_val = scores(pred_val, y_val, k)[0]
        oa, aa, kappa = scores(pred_test, y_test, k)
        print(f"| {name} | {oa_val:.4f} | {oa:.4f} | {aa:.4f} | {kappa:.4f} |")


if __name__ == "__main__":
    main()
