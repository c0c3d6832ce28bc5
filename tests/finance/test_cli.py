"""The finance domain end to end through the `attnlab` CLI.

Covers fit, test and predict on a learnable simulated sample (the trained model beats the majority class,
and the logged test metrics are exactly those of the written predictions), the confusion-matrix images,
choosing the network and swapping its attention from the command line, and fine-tuning with a frozen
backbone. The generic CLI behaviour (checkpoints, resume, DDP, optimizers, linked sizes) is tested once
for every domain in ``tests/core/test_cli.py`` and ``tests/domains/test_contract.py``.
"""

import csv
from pathlib import Path

import pytest
import torch

from core.attention import CBAM, ChannelGroupAttention, MultiHeadAttention
from core.cli import main
from domains.finance.labels import CLASS_NAMES
from domains.finance.models import MLPLOB, TLOB, DeepLOB, LogisticRegressionLOB
from domains.finance.module import LOBClassifier

TINY_TLOB = ("--model.network=TLOB", "--model.network.hidden_dim=16", "--model.network.num_layers=1")


def _data_args(sim: dict[str, list[str]]) -> list[str]:
    return [
        "--data=LOBSTERDataModule",
        f"--data.train_files={sim['train']}",
        f"--data.val_files={sim['val']}",
        f"--data.test_files={sim['test']}",
        "--data.seq_len=20",
        "--data.horizons=[5, 10]",
        "--data.batch_size=64",
        "--data.num_workers=0",
    ]


def _tiny(
    sim: dict[str, list[str]], root: Path, *extra: str, network: tuple[str, ...] = TINY_TLOB
) -> list[str]:
    """A one-pair TLOB (or ``network``) on the simulated days, 6 training batches, on the CPU."""
    return [
        "--model=LOBClassifier",
        *network,
        *_data_args(sim),
        f"--trainer.default_root_dir={root}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=6",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


def _macro_f1(pred: list[int], true: list[int], num_classes: int = 3) -> float:
    """Macro-F1 over the classes that occur in ``pred`` or ``true`` (torchmetrics' convention)."""
    scores = []
    for c in range(num_classes):
        tp = sum(p == c and t == c for p, t in zip(pred, true, strict=True))
        fp = sum(p == c and t != c for p, t in zip(pred, true, strict=True))
        fn = sum(p != c and t == c for p, t in zip(pred, true, strict=True))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def test_fit_test_predict_end_to_end(sim_lobster, tmp_path: Path) -> None:
    # Two full epochs: enough for the one-pair TLOB to learn the simulator's order-flow regimes.
    args = _tiny(
        sim_lobster,
        tmp_path,
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=1.0",
        "--optimizer=Adam",
        "--optimizer.lr=0.003",
    )
    cli = main(["fit", *args, "--trainer.callbacks+=core.training.EMA", "--trainer.callbacks.decay=0.9"])
    assert isinstance(cli.model.network, TLOB) and cli.model.network.hidden_dim == 16
    metrics = cli.trainer.callback_metrics
    assert {"val_macro_f1", "val_macro_f1_h5", "val_mcc_h10", "val_f1_up_h5", "val_accuracy_h10"} <= set(
        metrics
    )
    assert float(metrics["val_macro_f1"]) == pytest.approx(
        (float(metrics["val_macro_f1_h5"]) + float(metrics["val_macro_f1_h10"])) / 2, abs=1e-6
    )
    # A checkpoint rebuilds the injected network outside the CLI too.
    restored = LOBClassifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(restored.network, TLOB) and restored.network.hidden_dim == 16
    assert len(restored.network.layers) == 2
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0}).Reload()
    images = set(acc.Tags()["images"])
    assert {"val_confusion_h5", "val_confusion_h10"} <= images
    assert not any(tag.startswith("train_") for tag in images)  # confusion images for val and test only
    assert {"val_macro_f1", "train_macro_f1", "train_loss_epoch"} <= set(acc.Tags()["scalars"])
    assert not any("confusion" in tag for tag in acc.Tags()["scalars"])

    test = main(["test", *args, "--ckpt_path=best"])
    assert "val_macro_f1=" in Path(test.trainer.ckpt_path).name
    test_logs = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")} - {events[0].parent}
    assert len(test_logs) == 1
    test_images = (
        EventAccumulator(str(test_logs.pop()), size_guidance={"images": 0}).Reload().Tags()["images"]
    )
    assert set(test_images) == {"test_confusion_h5", "test_confusion_h10"}
    scores = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
    dataset = test.datamodule.datasets["test"]
    labels = dataset.labels[torch.as_tensor(dataset.ends)]
    for k, h in enumerate((5, 10)):
        share = float(torch.bincount(labels[:, k], minlength=3).max()) / len(labels)
        majority = 2 * share / (1 + share) / 3  # macro-F1 of always predicting the most frequent class
        assert scores[f"test_macro_f1_h{h}"] > majority + 0.1, (h, scores, majority)
        assert scores[f"test_mcc_h{h}"] > 0.1, (h, scores)

    out = tmp_path / "preds"
    predict = main(["predict", *args, "--ckpt_path=best", f"--prediction_writer.output_dir={out}"])
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    windows = predict.datamodule.datasets["predict"]
    assert len(rows) == len(windows)
    assert {"timestamp", "p_up_h5", "p_down_h10", "pred_h10"} <= set(rows[0])
    probs = [float(rows[0][f"p_{c}_h5"]) for c in CLASS_NAMES]
    assert abs(sum(probs) - 1) < 1e-4
    assert rows[0]["timestamp"].startswith(rows[0]["date"]) and rows[0]["date"] == "2024-01-04"
    assert [int(r["event_index"]) for r in rows] == windows.event_index[windows.ends].tolist()
    # The prediction split is the test day plus the windows whose future lies beyond it (label -1 at
    # some horizon, dropped from the test split): on the others, the written predictions give exactly
    # the logged test metrics.
    truth = windows.labels[torch.as_tensor(windows.ends)]
    labelled = [i for i, t in enumerate(truth.tolist()) if min(t) >= 0]
    assert len(labelled) == len(labels) == len(rows) - 10  # the largest horizon: 10 events
    for k, h in enumerate((5, 10)):
        pred = [CLASS_NAMES.index(rows[i][f"pred_h{h}"]) for i in labelled]
        true = [int(truth[i, k]) for i in labelled]
        assert _macro_f1(pred, true) == pytest.approx(scores[f"test_macro_f1_h{h}"], abs=1e-5)
        accuracy = sum(p == t for p, t in zip(pred, true, strict=True)) / len(true)
        assert accuracy == pytest.approx(scores[f"test_accuracy_h{h}"], abs=1e-6)


def test_network_is_chosen_from_the_command_line(sim_lobster, tmp_path: Path) -> None:
    def fit(*network: str) -> torch.nn.Module:
        args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true", network=network)
        return main(["fit", *args]).model.network

    assert isinstance(fit(), TLOB)  # no --model.network: the default TLOB
    mixer = fit("--model.network=MLPLOB", "--model.network.hidden_dim=8", "--model.network.num_layers=1")
    assert isinstance(mixer, MLPLOB) and mixer.embed.weight.shape == (8, 48) and len(mixer.feature_mlps) == 1
    deeplob = fit("--model.network=DeepLOB", "--model.network.spatial_attention=CBAM")
    assert isinstance(deeplob, DeepLOB) and deeplob.num_lob_features == 40  # the book columns only
    assert all(isinstance(m, CBAM) for m in deeplob.attention)
    logreg = fit("--model.network=LogisticRegressionLOB")
    assert isinstance(logreg, LogisticRegressionLOB) and logreg.head.in_features == 20 * 48


def test_attention_is_swapped_from_the_command_line(sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")
    cli = main(["fit", *args, "--model.attention=MultiHeadAttention", "--model.attention.num_heads=2"])
    mixers = [m for m in cli.model.modules() if isinstance(m, MultiHeadAttention)]
    assert len(mixers) == 2 and all(m.num_heads == 2 for m in mixers)
    assert sorted(m.layer_idx for m in mixers) == [0, 1]
    channel = main(
        ["fit", *args, "--model.attention=ChannelGroupAttention", "--model.attention.num_groups=4"]
    )
    groups = [m for m in channel.model.modules() if isinstance(m, ChannelGroupAttention)]
    assert len(groups) == 2 and all(m.num_groups == 4 for m in groups)
    default = main(["fit", *args])
    heads = [m.num_heads for m in default.model.modules() if isinstance(m, MultiHeadAttention)]
    assert heads == [1, 1]  # TLOB's own default: one head


def test_attention_is_refused_by_a_network_without_one(sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true", network=("--model.network=DeepLOB",))
    with pytest.raises(ValueError, match="DeepLOB has no attention to replace"):
        main(["fit", *args, "--model.attention=MultiHeadAttention", "--model.attention.num_heads=1"])


def test_help_documents_the_task_and_the_network_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "LOBClassifier"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model.network", "--model.attention", "--model.pretrained", "Attention factory"):
        assert option in text
    assert "--model.hidden_dim" not in text  # network options belong to the network classes
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=LOBClassifier", "--model.network.help", "TLOB"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("hidden_dim", "num_layers", "num_heads", "dropout", "Width ``H`` after the input"):
        assert option in text
    with pytest.raises(SystemExit):
        main(["fit", "--model=LOBClassifier", "--model.network.help", "DeepLOB"])
    assert "spatial_attention" in capsys.readouterr().out


def test_finetune_from_checkpoint_with_frozen_backbone(sim_lobster, tmp_path: Path) -> None:
    first = main(["fit", *_tiny(sim_lobster, tmp_path / "a")])
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    second = main(
        [
            "fit",
            *_tiny(sim_lobster, tmp_path / "b"),
            f"--model.pretrained={ckpt}",
            "--trainer.callbacks+=FreezeBackbone",
            "--trainer.callbacks.strategy=freeze",
        ]
    )
    after = second.model.state_dict()
    assert set(after) == set(before)
    backbone = [k for k in after if not k.startswith("network.head") and after[k].is_floating_point()]
    head = [k for k in after if k.startswith("network.head") and after[k].is_floating_point()]
    assert {k.split(".")[1] for k in backbone} == {"bin", "embed", "layers"}
    assert head
    for key in backbone:
        torch.testing.assert_close(after[key], before[key], msg=key)
    assert any(not torch.equal(after[k], before[k]) for k in head)
