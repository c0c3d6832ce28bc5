"""Medical metrics against hand-computed values on tiny volumes, edge cases and a simulated 2-rank merge."""

import copy
import math
import warnings

import pytest
import torch

from domains.medical.metrics import (
    PatientDetection,
    SegmentationEvaluation,
    SegmentationMetrics,
    UndefinedMetricWarning,
)

# ----------------------------------------------------------------------------- SegmentationMetrics


def _two_cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 4×4×4 cases, classes 0/1/2, spacing (1, 2, 3) mm and (1, 1, 1) mm.

    Case 0: class 1: GT {(0,0,0), (0,0,1)}, pred {(0,0,0), (0,0,1), (0,0,2)} → Dice 2·2/(2+3) = 0.8;
            surface distances pred→GT {0, 0, 3 mm} (z spacing 3), GT→pred {0, 0}; the 95th percentile
            (linear interpolation, as torch.quantile) of {0, 0, 3} is 0 + 0.9·3 = 2.7 mm.
            class 2: GT {(3,3,3)}, pred {(3,3,1)} → Dice 0, HD95 = 2 voxels × 3 mm = 6 mm.
    Case 1: class 1: predicted at (1,1,1), absent from GT → Dice 0, HD95 undefined (counted).
            class 2: absent from both → excluded (counted in both_empty).
    """
    pred = torch.zeros(2, 4, 4, 4, dtype=torch.long)
    target = torch.zeros_like(pred)
    target[0, 0, 0, 0:2] = 1
    pred[0, 0, 0, 0:3] = 1
    target[0, 3, 3, 3] = 2
    pred[0, 3, 3, 1] = 2
    pred[1, 1, 1, 1] = 1
    spacing = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    return pred, target, spacing


def test_segmentation_hand_computed() -> None:
    metric = SegmentationMetrics(3, class_names=["background", "a", "b"])
    metric.update(*_two_cases())
    out = {k: float(v) for k, v in metric.compute().items()}
    expected = {
        "dice": (0.4 + 0.0) / 2,  # per class: a = (0.8 + 0) / 2, b = 0 / 1 (case 1 excluded)
        "hd95": (2.7 + 6.0) / 2,
        "dice_a": 0.4,
        "hd95_a": 2.7,
        "dice_b": 0.0,
        "hd95_b": 6.0,
        "cases": 2.0,
        "both_empty": 1.0,
        "hd95_undefined": 1.0,
    }
    assert list(out) == list(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [(None, math.sqrt(5.0)), ((1.0, 2.0, 3.0), math.sqrt(8.0)), ((2.0, 1.0, 7.0), math.sqrt(17.0))],
)
def test_hd95_anisotropic_single_voxels(spacing: tuple[float, ...] | None, expected: float) -> None:
    """Pred (0,0,0) vs GT (2,1,0): distance sqrt((2·sx)² + (1·sy)²), every surface distance the same."""
    pred = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target = torch.zeros_like(pred)
    pred[0, 0, 0, 0] = 1
    target[0, 2, 1, 0] = 1
    metric = SegmentationMetrics(2)
    metric.update(pred, target, None if spacing is None else torch.tensor([spacing]))
    assert float(metric.compute()["hd95_class1"]) == pytest.approx(expected, rel=1e-5)


def test_spacing_shared_across_batch_and_include_background() -> None:
    pred, target, _ = _two_cases()
    metric = SegmentationMetrics(3, include_background=True)
    metric.update(pred[:1], target[:1], (1.0, 2.0, 3.0))
    out = metric.compute()
    assert {"dice_class0", "dice_class1", "dice_class2"} <= set(out)
    assert float(out["dice_class1"]) == pytest.approx(0.8)
    assert float(out["hd95_class2"]) == pytest.approx(6.0)


def test_perfect_prediction_2d() -> None:
    target = torch.zeros(1, 5, 5, dtype=torch.long)
    target[0, 1:4, 1:3] = 1
    metric = SegmentationMetrics(2)
    metric.update(target.clone(), target, None)
    out = metric.compute()
    assert float(out["dice"]) == pytest.approx(1.0)
    assert float(out["hd95"]) == pytest.approx(0.0)


@pytest.mark.filterwarnings("ignore::domains.medical.metrics.UndefinedMetricWarning")
def test_segmentation_undefined_is_nan_with_warning() -> None:
    metric = SegmentationMetrics(3)
    pred = torch.zeros(1, 3, 3, 3, dtype=torch.long)
    target = pred.clone()
    target[0, 1, 1, 1] = 1
    pred[0, 1, 1, 1] = 1
    metric.update(pred, target, None)  # class 2 absent everywhere
    with pytest.warns(UndefinedMetricWarning, match="dice_class2"):
        out = metric.compute()
    assert math.isnan(float(out["dice_class2"])) and math.isnan(float(out["hd95_class2"]))
    assert float(out["dice"]) == pytest.approx(1.0)  # the mean skips the undefined class
    empty = SegmentationMetrics(3)
    with pytest.warns(UndefinedMetricWarning), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchmetrics: compute() before update()
        assert math.isnan(float(empty.compute()["dice"]))


def test_segmentation_input_errors() -> None:
    metric = SegmentationMetrics(3)
    x = torch.zeros(1, 3, 3, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="integer class indices"):
        metric.update(x.float(), x, None)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(x, x[:, :2], None)
    with pytest.raises(ValueError, match=r"expected \[0, 2\]"):
        metric.update(x + 3, x, None)
    with pytest.raises(ValueError, match="spacing"):
        metric.update(x, x, torch.ones(1, 2))
    with pytest.raises(ValueError, match="class_names"):
        SegmentationMetrics(3, class_names=["a"])


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.allclose(a[key], b[key], equal_nan=True, atol=1e-6), key


def test_segmentation_two_rank_merge_equals_single() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (4, 6, 6, 6), generator=gen)
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.7, target, torch.zeros_like(target))
    spacing = torch.tensor([[1.0, 1.0, 2.0]] * 4)
    single = SegmentationMetrics(3)
    single.update(pred, target, spacing)
    rank0, rank1 = SegmentationMetrics(3), SegmentationMetrics(3)
    rank0.update(pred[:1], target[:1], spacing[:1])
    rank1.update(pred[1:], target[1:], spacing[1:])
    rank0.merge_state(rank1)  # sum states: what DDP's all-reduce does
    _assert_same(single.compute(), rank0.compute())


# ----------------------------------------------------------------------------- PatientDetection


def _detection_cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Five 4×4×4 cases at 1 ml per voxel, threshold 0.5, overlap 0.1, small < 3 ml.

    Case 0: GT 2×2×2 block (8 ml, large); p = 0.9 on its z = 0 half (4 voxels) and 0.7 at (3,3,3), 0.3 at
            (3,0,0) (below threshold) → 5 predicted voxels, Dice 2·4/13 = 8/13 → detected; 2 components,
            1 touching the GT → instance precision 1/2.
    Case 1: GT (0,0,0) (1 ml, small); p = 0.6 at (0,0,1) → Dice 0 → missed; 1 component, none touching → 0.
    Case 2: GT (3,3,2), (3,3,3) (2 ml, small); p = 0.5 exactly at (3,3,3) (>= threshold) → Dice 2/3 →
            detected; precision 1.
    Case 3: no tumour, p = 0.2 everywhere → no prediction: counts only in ``cases``.
    Case 4: no tumour, p = 0.8 at (1,1,1) → false-positive case, instance precision 0.
    """
    prob = torch.zeros(5, 4, 4, 4)
    target = torch.zeros(5, 4, 4, 4, dtype=torch.bool)
    target[0, 0:2, 0:2, 0:2] = True
    prob[0, 0:2, 0:2, 0] = 0.9
    prob[0, 3, 3, 3] = 0.7
    prob[0, 3, 0, 0] = 0.3
    target[1, 0, 0, 0] = True
    prob[1, 0, 0, 1] = 0.6
    target[2, 3, 3, 2:4] = True
    prob[2, 3, 3, 3] = 0.5
    prob[3] = 0.2
    prob[4, 1, 1, 1] = 0.8
    return prob, target, torch.ones(5, dtype=torch.float64)


def test_detection_hand_computed() -> None:
    metric = PatientDetection()
    metric.update(*_detection_cases())
    out = {k: float(v) for k, v in metric.compute().items()}
    recall, precision = 2 / 3, (0.5 + 0.0 + 1.0 + 0.0) / 4
    expected = {
        "recall": recall,
        "precision": precision,
        "f1": 2 * precision * recall / (precision + recall),  # 0.48
        "dice_tp": (8 / 13 + 2 / 3) / 2,
        "dice_patient": (8 / 13 + 0.0 + 2 / 3) / 3,
        "recall_small": 1 / 2,  # cases 1 (missed) and 2 (detected)
        "recall_large": 1.0,  # case 0
        "volume_ratio": (5 / 8 + 1 / 1 + 1 / 2) / 3,  # predicted / true voxels of cases 0, 1, 2
        "cases": 5,
        "cases_positive": 3,
        "detected": 2,
        "cases_predicted": 4,
        "false_positive_cases": 1,
        "cases_small": 2,
        "detected_small": 1,
        "cases_large": 1,
        "detected_large": 1,
    }
    assert list(out) == list(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key
    assert out["f1"] == pytest.approx(0.48)


def test_detection_volume_split_uses_voxel_ml() -> None:
    """6 GT voxels: 0.25 ml/voxel → 1.5 ml (small); 0.5 → exactly 3 ml (large: ``>=``); 1.0 → 6 ml."""
    target = torch.zeros(3, 4, 4, 4, dtype=torch.long)
    target[:, 0:3, 0:2, 0] = 1
    prob = target.float() * 0.9
    metric = PatientDetection(small_volume_ml=3.0)
    metric.update(prob, target, torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)  # every value is defined here
        out = metric.compute()
    assert (float(out["cases_small"]), float(out["cases_large"])) == (1.0, 2.0)
    assert float(out["recall_small"]) == 1.0 and float(out["recall_large"]) == 1.0


@pytest.mark.filterwarnings("ignore::domains.medical.metrics.UndefinedMetricWarning")
def test_detection_overlap_threshold_is_strict_and_connectivity() -> None:
    # GT 3 voxels, 1 predicted inside: Dice = 2/4 = 0.5, not > 0.5.
    target = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    target[0, 0, 0, 0:3] = True
    prob = torch.zeros(1, 4, 4, 4)
    prob[0, 0, 0, 0] = 1.0
    strict = PatientDetection(overlap_threshold=0.5)
    strict.update(prob, target, 1.0)
    assert float(strict.compute()["detected"]) == 0.0
    # Diagonal neighbours: 2 components with face connectivity, 1 with full (26-) connectivity.
    prob[0, 1, 1, 1] = 1.0
    for connectivity, precision in (("face", 0.5), ("full", 1.0)):
        metric = PatientDetection(connectivity=connectivity)
        metric.update(prob, target, 1.0)
        assert float(metric.compute()["precision"]) == precision, connectivity


def test_detection_undefined_is_nan_with_warning() -> None:
    metric = PatientDetection()
    metric.update(torch.zeros(2, 3, 3, 3), torch.zeros(2, 3, 3, 3, dtype=torch.bool), 1.0)
    with pytest.warns(UndefinedMetricWarning) as record:
        out = metric.compute()
    for key in (
        "recall",
        "precision",
        "f1",
        "dice_tp",
        "dice_patient",
        "recall_small",
        "recall_large",
        "volume_ratio",
    ):
        assert math.isnan(float(out[key])), key
        assert any(repr(key) in str(w.message) for w in record), key
    assert float(out["cases"]) == 2.0 and float(out["cases_positive"]) == 0.0


@pytest.mark.filterwarnings("ignore::domains.medical.metrics.UndefinedMetricWarning")
def test_detection_f1_zero_when_nothing_found() -> None:
    target = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    target[0, 0, 0, 0] = True
    prob = torch.zeros(1, 3, 3, 3)
    prob[0, 2, 2, 2] = 0.9
    metric = PatientDetection()
    metric.update(prob, target, 1.0)
    with pytest.warns(UndefinedMetricWarning, match="dice_tp"):
        out = metric.compute()
    assert float(out["recall"]) == 0.0 and float(out["precision"]) == 0.0 and float(out["f1"]) == 0.0


def test_detection_input_errors() -> None:
    metric = PatientDetection()
    t = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.update(torch.full((1, 3, 3, 3), 2.0), t, 1.0)
    with pytest.raises(ValueError, match="voxel_ml"):
        metric.update(torch.zeros(1, 3, 3, 3), t, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        metric.update(torch.zeros(1, 3, 3, 3), t.float(), 1.0)
    with pytest.raises(ValueError, match="overlap_threshold"):
        PatientDetection(overlap_threshold=1.0)


def test_detection_two_rank_merge_equals_single() -> None:
    prob, target, ml = _detection_cases()
    single = PatientDetection()
    single.update(prob, target, ml)
    rank0, rank1 = PatientDetection(), PatientDetection()
    rank0.update(prob[:2], target[:2], ml[:2])
    rank1.update(prob[2:], target[2:], ml[2:])
    rank0.merge_state(rank1)
    _assert_same(single.compute(), rank0.compute())


# ----------------------------------------------------------------------------- SegmentationEvaluation


def test_evaluation_container_is_both_metrics_on_probabilities() -> None:
    """The task's container: argmax → SegmentationMetrics, 1 - p(background) → PatientDetection."""
    pred, target, spacing = _two_cases()
    probs = torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).double() * 0.8 + 0.2 / 3
    voxel_ml = torch.tensor([0.001, 0.001], dtype=torch.float64)
    template = SegmentationEvaluation(3, class_names=["background", "a", "b"], prob_threshold=0.5)
    evaluation = copy.deepcopy(template)  # what BaseTask does per stage: clones that share no state
    segmentation, detection = SegmentationMetrics(3, class_names=["background", "a", "b"]), PatientDetection()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "The ``compute`` method of metric", UserWarning)
        evaluation.update(probs, target, spacing, voxel_ml)
        segmentation.update(pred, target, spacing)
        detection.update(1.0 - probs[:, 0], target > 0, voxel_ml)
        got = evaluation.compute()
        expected = {**segmentation.compute(), **detection.compute()}
        assert list(got) == list(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, equal_nan=True, msg=key)
        assert float(template.compute()["cases"]) == 0  # the template saw nothing
        evaluation.reset()
        assert float(evaluation.compute()["cases"]) == 0
