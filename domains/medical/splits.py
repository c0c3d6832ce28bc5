"""Which cases go to train, validation and test: ratio, k-fold and fixed splits of case ids."""

from typing import Any, Literal

import numpy as np

from core.utils import InputError

__all__ = ["SplitKind", "check_split_options", "split_cases"]

SplitKind = Literal["ratio", "kfold", "fixed"]


def split_cases(
    ids: list[str],
    split: SplitKind,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_folds: int = 5,
    fold: int = 0,
    val_offset: int = 1,
    seed: int = 0,
    val_cases: list[str] | None = None,
    test_cases: list[str] | None = None,
) -> dict[str, list[str]]:
    """Split case ids into train / val / test (deterministic for a given seed, whatever the input order).

    Args:
        ids: Case ids.
        split: ``ratio`` (shuffled, then ``round(fraction * n)`` cases, at least 1 for a positive fraction,
            go to val and to test), ``kfold`` (shuffled into ``num_folds`` near-equal folds; fold ``fold`` is
            the test set, fold ``(fold + val_offset) % num_folds`` validation (checkpoints are chosen on it,
            never on the test patients), the others train; over ``fold = 0 .. num_folds - 1`` every case is
            tested exactly once) or ``fixed`` (``val_cases`` / ``test_cases``, which may not
            overlap; the rest train).
        val_fraction: Share of the cases for validation (``ratio``).
        test_fraction: Share of the cases for test (``ratio``).
        num_folds: Folds (``kfold``).
        fold: Held-out fold index (``kfold``).
        val_offset: Which other fold validates (``kfold``, ``1 .. num_folds - 1``). The models of one test
            fold with every offset never see its cases; ensembled, they score a fold ensemble honestly
            (nested cross-validation).
        seed: Shuffling seed (``ratio``, ``kfold``).
        val_cases: Validation ids (``fixed``).
        test_cases: Test ids (``fixed``).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises:
        ValueError: On fractions/folds out of range, unknown ids, or an empty training split.
    """
    ordered = sorted(ids)
    n = len(ordered)
    order = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    if split == "ratio":
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1):
            raise InputError(
                f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1)"
            )
        n_val = max(round(val_fraction * n), 1) if val_fraction > 0 else 0
        n_test = max(round(test_fraction * n), 1) if test_fraction > 0 else 0
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
    elif split == "kfold":
        if num_folds < 3 or not 0 <= fold < num_folds or not 0 < val_offset < num_folds:
            raise InputError(
                f"kfold needs num_folds >= 3 (a test, a validation and a training fold), "
                f"0 <= fold < num_folds and 0 < val_offset < num_folds, "
                f"got {num_folds=}, {fold=}, {val_offset=}"
            )
        if n < num_folds:
            raise InputError(f"kfold with num_folds={num_folds} needs at least that many cases, got {n}")
        folds = [[str(c) for c in f] for f in np.array_split(np.array(order, dtype=object), num_folds)]
        test, val = folds[fold], folds[(fold + val_offset) % num_folds]
        parts = {"val": val, "test": test, "train": [c for c in order if c not in set(test) | set(val)]}
    elif split == "fixed":
        if not val_cases and not test_cases:
            raise InputError("split='fixed' needs val_cases and/or test_cases (case ids)")
        known = set(ordered)
        for name, chosen in (("val_cases", val_cases or []), ("test_cases", test_cases or [])):
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise InputError(f"{name} holds unknown case ids {unknown}; known ids include {ordered[:5]}")
        shared = sorted(set(val_cases or []) & set(test_cases or []))
        if shared:
            raise InputError(
                f"val_cases and test_cases share {shared}: a checkpoint chosen on a case cannot be tested on "
                "it (the score would be optimistic by construction); hold out other cases, or use "
                "split=kfold"
            )
        held = set(val_cases or []) | set(test_cases or [])
        parts = {
            "val": list(val_cases or []),
            "test": list(test_cases or []),
            "train": [c for c in ordered if c not in held],
        }
    else:
        raise InputError(f"split must be ratio, kfold or fixed, got {split!r}")
    if not parts["train"]:
        raise InputError(f"the {split} split of {n} cases leaves no training case: {parts}")
    return {k: sorted(v) for k, v in parts.items()}


def check_split_options(options: dict[str, Any]) -> None:
    """Check split options early, on dummy ids.

    The ids of a ``fixed`` split are checked against the data when the cases are split.

    Args:
        options: Keyword arguments of :func:`split_cases` (everything but ``ids``).

    Raises:
        ValueError: As :func:`split_cases` would for any data set.
    """
    options = dict(options)
    if options["split"] == "fixed":
        options["val_cases"] = ["c0"] if options["val_cases"] else None
        options["test_cases"] = ["c1"] if options["test_cases"] else None
    split_cases([f"c{i}" for i in range(max(options["num_folds"], 3))], **options)
