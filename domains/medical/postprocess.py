"""Choose the post-processing on cross-validation with nnU-Net's rule, from the folds' per-case tables.

* :func:`choose`: a candidate (:data:`domains.medical.postprocessing.CANDIDATES`) is kept only if it raises
  the mean Dice over every cross-validation case; :func:`choose_excluding` makes the choice for each case
  without that case (an honest estimate of the chosen post-processing).

Run ``python -m domains.medical.postprocess runs/.../fold*/test_cases.csv`` to print the choice. The
package does not import this module, so running it with ``-m`` imports it once.
"""

import argparse
import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.utils import InputError

__all__ = ["choose", "choose_excluding", "main", "read_case_tables"]


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
