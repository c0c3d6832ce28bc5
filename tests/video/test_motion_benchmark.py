"""The converged motion-feature logistic regression (benchmarks/video_motion_baseline.py)."""

import numpy as np
import pytest

from benchmarks.video_motion_baseline import REPO, fit_logistic, main, per_clip_norm


def test_per_clip_norm_values() -> None:
    x = np.array([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(per_clip_norm(x), [[-1 / np.sqrt(1 + 1e-5), 1 / np.sqrt(1 + 1e-5)], [0, 0]])


def test_fit_logistic_separates_separable_features() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    x = np.stack([labels * 10.0, rng.normal(size=60)], axis=1)  # feature 0 gives the class
    half = (x[::2], labels[::2])
    assert fit_logistic((x, labels), half, half, c=1.0) == (1.0, 1.0, 1.0, 1.0)
    shifted = (x[::2], (labels[::2] + 1) % 3)  # every label wrong
    assert fit_logistic((x, labels), shifted, half, c=1.0)[1:] == (0.0, 1.0, 1.0)
    assert fit_logistic((x, labels), half, shifted, c=1.0)[1:] == (1.0, 0.0, 0.0)


def test_main_on_the_embedded_clips(capsys: pytest.CaptureFixture[str]) -> None:
    rows = main(["--config", str(REPO / "configs/video/smoke.yaml"), "--clip-step", "48", "--C", "0.1", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0].startswith("# Logistic regression on motion features, arrow_of_time")
        and "chance 0.500" in lines[0]
        and "C chosen on the" in lines[0]
    )
    assert len(rows) == 4 and len(lines) == 3 + 4
    assert [r["norm"] for r in rows] == ["per feature"] * 2 + ["per clip (MotionBaseline)"] * 2
    assert all(0 <= r["train"] <= 1 and 0 <= r["val"] <= 1 and 0 <= r["test"] <= 1 for r in rows)
    # One C per normalisation is chosen, the first of those with the best validation top-1.
    for group in (rows[:2], rows[2:]):
        chosen = [r for r in group if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["val"] == max(r["val"] for r in group)
        assert chosen[0] is group[0] or group[0]["val"] < chosen[0]["val"]
