"""Connected-component post-processing, per-case scores and the nnU-Net rule to choose it on cross-validation.

* :class:`PostProcessing`: restrict the foreground to a mask (e.g. BraTS ``brainmask.nii.gz``), remove
  connected components below a volume (ml, from the voxel spacing), keep the largest component; components are
  6-connected (:func:`scipy.ndimage.label`, as in the detection metrics; MONAI's ``RemoveSmallObjects`` and
  ``KeepLargestConnectedComponent`` need scikit-image, which the medical extra does not install). It works
  on the foreground as a whole (all classes > 0 together, nnU-Net's first post-processing step): removed
  voxels become background.
* :func:`case_scores`: one case's foreground Dice, HD95, patient-wise precision (fraction of predicted
  components touching the truth) and predicted / true volume, for the per-case tables of ``attnlab test``.
* :func:`choose`: nnU-Net's rule on the per-case tables of all folds: a candidate is kept only if it raises
  the mean Dice over every cross-validation case; :func:`choose_excluding` makes the choice for each case
  without that case (an honest estimate of the chosen post-processing).

Run ``python -m domains.medical.postprocess runs/.../fold*/test_cases.csv`` to print the choice.
"""

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from core.utils import InputError

__all__ = [
    "CANDIDATES",
    "PostProcessing",
    "case_scores",
    "choose",
    "choose_excluding",
    "main",
    "read_case_tables",
]


@dataclass(frozen=True)
class PostProcessing:
    """Which foreground components survive, applied in this order: mask, small components, largest only.

    Attributes:
        restrict_to_mask: Set the foreground outside the case's mask to background (needs a mask).
        min_component_ml: Remove connected components smaller than this volume (ml); 0 keeps all.
        keep_largest: Keep only the largest connected component.
    """

    restrict_to_mask: bool = False
    min_component_ml: float = 0.0
    keep_largest: bool = False

    def __post_init__(self) -> None:
        if not self.min_component_ml >= 0:
            raise InputError(f"min_component_ml must be >= 0 ml, got {self.min_component_ml}")

    @property
    def name(self) -> str:
        """A short label: ``none``, or the steps joined by ``+`` (``mask+min0.5ml+largest``)."""
        steps = ["mask"] * self.restrict_to_mask
        steps += [f"min{self.min_component_ml:g}ml"] * (self.min_component_ml > 0)
        steps += ["largest"] * self.keep_largest
        return "+".join(steps) or "none"

    @property
    def active(self) -> bool:
        """Whether anything is changed."""
        return self.name != "none"

    def keep(self, foreground: Tensor, spacing: Sequence[float] | None, mask: Tensor | None = None) -> Tensor:
        """The surviving foreground of one case.

        Args:
            foreground: ``(*S)`` bool foreground of the prediction (2-D or 3-D).
            spacing: Voxel size in mm per axis (None: 1 mm), for ``min_component_ml``.
            mask: ``(*S)`` mask (non-zero inside), required when ``restrict_to_mask``.

        Returns:
            ``(*S)`` bool, a subset of ``foreground``.

        Raises:
            InputError: If ``restrict_to_mask`` is set and no mask (or one of another shape) is given.
        """
        fg = foreground.bool()
        if self.restrict_to_mask:
            if mask is None or tuple(mask.shape) != tuple(fg.shape):
                got = "no mask" if mask is None else f"a mask of shape {tuple(mask.shape)}"
                raise InputError(
                    f"post-processing restrict_to_mask needs the case's mask of shape {tuple(fg.shape)}, "
                    f"got {got}: give the datamodule a mask (e.g. --data.mask brainmask.nii.gz)"
                )
            fg = fg & (mask.to(fg.device) != 0)
        if (self.min_component_ml > 0 or self.keep_largest) and bool(fg.any()):
            labels, count = ndimage.label(
                fg.cpu().numpy(), structure=ndimage.generate_binary_structure(fg.ndim, 1)
            )
            sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # voxels per component 1..count
            keep = np.ones(count, dtype=bool)
            if self.min_component_ml > 0:
                voxel_ml = float(np.prod([1.0] * fg.ndim if spacing is None else list(spacing))) / 1000.0
                keep &= sizes * voxel_ml >= self.min_component_ml
            if self.keep_largest:
                keep &= np.arange(count) == int(np.argmax(sizes))
            fg = torch.from_numpy(np.concatenate([[False], keep])[labels]).to(fg.device)
        return fg

    def apply_probs(
        self, probs: Tensor, spacing: Sequence[float] | None, mask: Tensor | None = None
    ) -> Tensor:
        """Softmax probabilities ``(C, *S)`` whose removed foreground voxels become certain background.

        Components are those of the argmax label map; the detection metrics (thresholded foreground
        probability) and the Dice (argmax) then see the same removal.
        """
        if not self.active:
            return probs
        fg = probs.argmax(dim=0) > 0
        removed = fg & ~self.keep(fg, spacing, mask)
        if not bool(removed.any()):
            return probs
        out = probs.clone()
        out[:, removed] = 0
        out[0, removed] = 1
        return out


CANDIDATES: tuple[PostProcessing, ...] = (
    PostProcessing(),
    PostProcessing(keep_largest=True),
    PostProcessing(min_component_ml=0.1),
    PostProcessing(min_component_ml=0.5),
    PostProcessing(min_component_ml=2.0),
    PostProcessing(restrict_to_mask=True),
    PostProcessing(restrict_to_mask=True, keep_largest=True),
    PostProcessing(restrict_to_mask=True, min_component_ml=0.5),
)
"""What ``attnlab test`` scores per case (the mask rows only with a mask): no post-processing, the largest
component, small components removed at 0.1 / 0.5 / 2 ml, and with the mask."""


def case_scores(
    pred: Tensor, target: Tensor, spacing: Sequence[float] | None, voxel_ml: float
) -> dict[str, float]:
    """One case's foreground scores (all classes > 0 together).

    Args:
        pred: ``(*S)`` bool predicted foreground.
        target: ``(*S)`` bool true foreground.
        spacing: Voxel size in mm per axis (None: voxels).
        voxel_ml: Volume of one voxel in ml.

    Returns:
        ``dice`` (1 when both are empty), ``hd95`` (mm; NaN unless both are non-empty), ``precision``
        (fraction of the predicted 6-connected components that touch the truth; NaN without a prediction),
        ``components``, ``pred_ml``, ``true_ml``, ``volume_ratio`` (pred / true; NaN without a true lesion).
    """
    from monai.metrics import compute_hausdorff_distance

    pred, target = pred.bool().cpu(), target.bool().cpu()
    n_pred, n_true = int(pred.sum()), int(target.sum())
    inter = int((pred & target).sum())
    dice = 1.0 if n_pred + n_true == 0 else 2.0 * inter / (n_pred + n_true)
    hd95 = math.nan
    if n_pred and n_true:
        hd95 = float(
            compute_hausdorff_distance(
                pred[None, None].float(),
                target[None, None].float(),
                percentile=95,
                spacing=None if spacing is None else [float(s) for s in spacing],
            ).item()
        )
    structure = ndimage.generate_binary_structure(pred.ndim, 1)
    labels, n_components = ndimage.label(pred.numpy(), structure=structure)
    precision = math.nan
    if n_components:
        precision = len(np.unique(labels[target.numpy() & (labels > 0)])) / n_components
    return {
        "dice": dice,
        "hd95": hd95,
        "precision": precision,
        "components": float(n_components),
        "pred_ml": n_pred * voxel_ml,
        "true_ml": n_true * voxel_ml,
        "volume_ratio": n_pred / n_true if n_true else math.nan,
    }


# ------------------------------------------------------------------------------------------- choosing


def read_case_tables(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """The rows of the per-case CSV files of ``attnlab test`` (one per fold).

    Raises:
        InputError: If a file is missing, or lacks the ``case``, ``postprocessing`` and ``dice`` columns.
    """
    rows: list[dict[str, str]] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"per-case table {path} does not exist (written by attnlab test as test_cases.csv)"
            )
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"case", "postprocessing", "dice"} - set(reader.fieldnames or [])
            if missing:
                raise InputError(f"{path} lacks the columns {sorted(missing)}; is it a test_cases.csv?")
            rows += [dict(row, source=str(path)) for row in reader]
    if not rows:
        raise InputError(f"the per-case tables {[str(p) for p in paths]} hold no case")
    return rows


def _mean_dice(rows: list[dict[str, str]], cases: set[str]) -> dict[str, float]:
    """Mean Dice per post-processing over ``cases`` (only candidates scored on every one of them)."""
    by_name: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["case"] in cases:
            by_name.setdefault(row["postprocessing"], {})[row["case"]] = float(row["dice"])
    return {name: float(np.mean(list(d.values()))) for name, d in by_name.items() if set(d) == cases}


def choose(
    rows: list[dict[str, str]], cases: set[str] | None = None, min_gain: float = 0.0
) -> tuple[str, dict]:
    """nnU-Net's rule: the best mean Dice, kept only if it beats ``none`` by more than ``min_gain``.

    Args:
        rows: Per-case rows (``case``, ``postprocessing``, ``dice``) of every fold.
        cases: The cases to decide on (default: all).
        min_gain: Improvement of the mean Dice a candidate needs over no post-processing.

    Returns:
        The chosen candidate's name (``none`` when nothing improves) and the mean Dice of every candidate.

    Raises:
        InputError: If ``none`` was not scored on every case.
    """
    cases = {r["case"] for r in rows} if cases is None else set(cases)
    means = _mean_dice(rows, cases)
    if "none" not in means:
        raise InputError(f"the per-case tables lack the 'none' rows of some of the cases {sorted(cases)}")
    best = max(means, key=lambda name: (means[name], name == "none"))
    return (best if means[best] > means["none"] + min_gain else "none"), means


def choose_excluding(rows: list[dict[str, str]], min_gain: float = 0.0) -> dict[str, str]:
    """For each case, :func:`choose` on the other cases: the post-processing it gets without its own label."""
    cases = sorted({r["case"] for r in rows})
    return {case: choose(rows, set(cases) - {case}, min_gain)[0] for case in cases}


def _summary(rows: list[dict[str, str]], picks: dict[str, str]) -> dict[str, float]:
    """Mean and sample std over cases (= folds of a one-case-per-fold cross-validation) of the picked rows."""
    chosen = [r for r in rows if picks.get(r["case"]) == r["postprocessing"]]
    out = {}
    for key in ("dice", "hd95", "precision", "volume_ratio"):
        values = np.array([float(r[key]) for r in chosen if r.get(key) not in (None, "", "nan")])
        out[key] = float(values.mean()) if len(values) else math.nan
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Print the post-processing chosen on the per-case tables of all folds, and the honest estimate.

    Returns:
        ``{"chosen": name, "means": {...}, "per_case": {case: name}, "none": {...}, "honest": {...}}``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m domains.medical.postprocess",
        description="Choose the post-processing on the folds' test_cases.csv files (nnU-Net's rule).",
    )
    parser.add_argument("tables", nargs="+", help="test_cases.csv of every fold")
    parser.add_argument("--min_gain", type=float, default=0.0, help="Dice gain a candidate needs over none")
    args = parser.parse_args(argv)
    rows = read_case_tables(args.tables)
    chosen, means = choose(rows, min_gain=args.min_gain)
    per_case = choose_excluding(rows, min_gain=args.min_gain)
    cases = sorted({r["case"] for r in rows})
    plain = _summary(rows, dict.fromkeys(cases, "none"))
    honest = _summary(rows, per_case)
    print(f"{len(cases)} cases; mean Dice per post-processing (all folds):")
    for name, value in sorted(means.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {value:.4f}")
    print(f"chosen on all folds (nnU-Net's rule): {chosen}")
    print("chosen for each case without it: " + ", ".join(f"{c}: {p}" for c, p in per_case.items()))
    print("| case | post-processing | Dice | HD95 (mm) | precision | components | volume ratio |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        for name in dict.fromkeys(["none", per_case[case]]):
            row = next(r for r in rows if r["case"] == case and r["postprocessing"] == name)
            print(
                f"| {case} | {name} | {float(row['dice']):.3f} | {float(row.get('hd95', 'nan')):.1f} | "
                f"{float(row.get('precision', 'nan')):.3f} | {row.get('components', '')} | "
                f"{float(row.get('volume_ratio', 'nan')):.2f} |"
            )
    for label, stats in (("none", plain), ("chosen without the case", honest)):
        print(
            f"{label}: Dice {stats['dice']:.3f} ± {stats['dice_std']:.3f}, HD95 {stats['hd95']:.1f} ± "
            f"{stats['hd95_std']:.1f} mm, precision {stats['precision']:.3f} ± {stats['precision_std']:.3f}, "
            f"volume ratio {stats['volume_ratio']:.2f} ± {stats['volume_ratio_std']:.2f}"
        )
    return {"chosen": chosen, "means": means, "per_case": per_case, "none": plain, "honest": honest}


if __name__ == "__main__":
    main()
