"""The task ``LOBClassifier`` without the CLI: its injected network, losses, metrics and figures."""

import functools
import math

import pytest
import torch
from matplotlib.figure import Figure

from core.attention import MultiHeadAttention
from core.training.plots import close
from domains.finance.metrics import HorizonMetrics
from domains.finance.models import MLPLOB, TLOB, DeepLOB
from domains.finance.module import LOBClassifier

SIZES = {"num_features": 12, "seq_len": 16, "horizons": [5, 10]}


def _mcc(confusion: list[list[int]]) -> float:
    """The multi-class Matthews correlation coefficient (Gorodkin 2004) from a confusion matrix."""
    n = sum(map(sum, confusion))
    correct = sum(confusion[k][k] for k in range(len(confusion)))
    true = [sum(row) for row in confusion]
    pred = [sum(col) for col in zip(*confusion, strict=True)]
    cov = correct * n - sum(t * p for t, p in zip(true, pred, strict=True))
    return cov / math.sqrt((n * n - sum(p * p for p in pred)) * (n * n - sum(t * t for t in true)))


def test_default_network_and_injected_factories() -> None:
    task = LOBClassifier(**SIZES)
    assert type(task.network) is TLOB and task.network.hidden_dim == 40 and len(task.network.layers) == 8
    assert task.network.num_horizons == 2 and task.network.num_classes == 3
    assert task(torch.randn(4, 16, 12)).shape == (4, 2, 3)

    mlplob = LOBClassifier(network=functools.partial(MLPLOB, hidden_dim=8, num_layers=1), **SIZES)
    assert type(mlplob.network) is MLPLOB and mlplob.network.hidden_dim == 8

    heads = functools.partial(MultiHeadAttention, num_heads=2)
    tlob = LOBClassifier(network=functools.partial(TLOB, num_layers=1), attention=heads, **SIZES)
    assert [layer.attn.mixer.num_heads for layer in tlob.network.layers] == [2, 2]

    # DeepLOB reads the book columns, which default to every feature when the data does not say.
    deeplob = LOBClassifier(network=DeepLOB, num_features=44, num_lob_features=40, seq_len=20, horizons=[5])
    assert deeplob.network.num_lob_features == 40
    assert (
        LOBClassifier(network=DeepLOB, num_features=8, seq_len=20, horizons=[5]).network.num_lob_features == 8
    )


def test_task_errors() -> None:
    with pytest.raises(ValueError, match="num_features is unknown"):
        LOBClassifier(seq_len=16, horizons=[5])
    with pytest.raises(ValueError, match="DeepLOB has no attention to replace"):
        LOBClassifier(network=DeepLOB, attention=MultiHeadAttention, num_features=8, seq_len=20, horizons=[5])
    with pytest.raises(ValueError, match="class_weights has 2 values, expected 3"):
        LOBClassifier(class_weights=[1.0, 2.0], **SIZES)
    task = LOBClassifier(network=functools.partial(TLOB, num_layers=1), **SIZES)
    batch = {"x": torch.randn(2, 16, 12), "y": torch.zeros(2, 3, dtype=torch.int64)}
    with pytest.raises(ValueError, match=r"labels of shape \(2, 3\) do not match logits \(2, 2, 3\)"):
        task.training_step(batch, 0)


def test_class_weights_and_undefined_labels_in_the_loss() -> None:
    task = LOBClassifier(
        network=functools.partial(TLOB, num_layers=1), class_weights=[1.0, 0.5, 2.0], **SIZES
    )
    torch.testing.assert_close(task.criterion.weight, torch.tensor([1.0, 0.5, 2.0]))
    logits = torch.randn(6, 3)
    target = torch.tensor([0, 1, 2, -1, 2, -1])
    keep = target >= 0
    weights = task.criterion.weight[target[keep]]
    expected = (
        torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="none") * weights
    ).sum()
    torch.testing.assert_close(task.criterion(logits, target), expected / weights.sum())


def test_stage_metrics_backbone_and_figures() -> None:
    task = LOBClassifier(network=functools.partial(TLOB, num_layers=1), **SIZES)
    stages = [task.train_metrics, task.val_metrics, task.test_metrics]
    assert all(isinstance(m, HorizonMetrics) and m.horizons == [5, 10] for m in stages)
    assert len({id(m) for m in stages}) == 3  # one independent copy per stage
    assert task.class_names == ["up", "stationary", "down"]
    assert task.backbone_modules() == [task.network.bin, task.network.embed, task.network.layers]
    figure = task.metric_figure("val_confusion_h10", torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 4]]))
    assert isinstance(figure, Figure)
    close(figure)
    assert task.metric_figure("val_macro_f1_h10", torch.tensor([0.5, 0.5])) is None


def test_horizon_metrics_exact_values() -> None:
    metrics = HorizonMetrics([5, 10], ["up", "stationary", "down"])
    preds = torch.tensor([[0, 0], [1, 2], [2, 2], [1, 1]])
    target = torch.tensor([[0, 1], [1, 2], [1, -1], [1, 1]])  # -1: undefined, skipped
    metrics.update(preds[:2], target[:2])  # two batches accumulate as one
    metrics.update(preds[2:], target[2:])
    values = {k: v.tolist() for k, v in metrics.compute().items()}
    # h=5: true [0, 1, 1, 1], predicted [0, 1, 2, 1]; h=10 (3 defined): true [1, 2, 1], predicted [0, 2, 1].
    confusion_h5 = [[1, 0, 0], [0, 2, 1], [0, 0, 0]]
    confusion_h10 = [[0, 0, 0], [1, 1, 0], [0, 0, 1]]
    expected = {
        "macro_f1_h5": (1.0 + 0.8 + 0.0) / 3,  # "down" is predicted once and never true: F1 0
        "accuracy_h5": 3 / 4,
        "mcc_h5": _mcc(confusion_h5),
        "f1_up_h5": 1.0,
        "f1_stationary_h5": 0.8,
        "f1_down_h5": 0.0,
        "macro_f1_h10": (0.0 + 2 / 3 + 1.0) / 3,
        "accuracy_h10": 2 / 3,
        "mcc_h10": _mcc(confusion_h10),
        "f1_up_h10": 0.0,
        "f1_stationary_h10": 2 / 3,
        "f1_down_h10": 1.0,
    }
    expected["macro_f1"] = (expected["macro_f1_h5"] + expected["macro_f1_h10"]) / 2
    assert set(values) == {*expected, "confusion_h5", "confusion_h10"}
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, abs=1e-6), name
    assert values["confusion_h5"] == confusion_h5 and values["confusion_h10"] == confusion_h10
    metrics.reset()
    metrics.update(preds[:1], target[:1])
    assert metrics.compute()["confusion_h5"].sum() == 1
