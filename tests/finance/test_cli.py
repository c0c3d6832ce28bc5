"""The finance domain end to end through the `attnlab` CLI.

Covers fit, test, predict, attention swap, linked-size checks, resume after a kill, fine-tuning with a
frozen backbone, and 2-process DDP.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.attention import ChannelGroupAttention, MultiHeadAttention
from core.cli import main

REPO = Path(__file__).resolve().parents[2]
ATTNLAB = [sys.executable, "-m", "core.cli"]


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


def _tiny(sim: dict[str, list[str]], root: Path, *extra: str) -> list[str]:
    return [
        "--model=LOBClassifier",
        "--model.hidden_dim=16",
        "--model.num_layers=1",
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


def test_fit_test_predict_end_to_end(sim_lobster, tmp_path: Path) -> None:
    cli = main(["fit", *_tiny(sim_lobster, tmp_path), "--trainer.callbacks+=core.training.EMA"])
    metrics = cli.trainer.callback_metrics
    assert {"val_macro_f1", "val_macro_f1_h5", "val_mcc_h10", "val_f1_up_h5", "val_accuracy_h10"} <= set(
        metrics
    )
    ckpt_dir = tmp_path / "checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file()
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0}).Reload()
    assert "val_confusion_h5" in acc.Tags()["images"]
    assert "val_macro_f1" in acc.Tags()["scalars"]

    # "best" is resolved from last.ckpt, so it works in a later process too (Lightning alone cannot).
    test = main(["test", *_tiny(sim_lobster, tmp_path), "--ckpt_path=best"])
    assert "val_macro_f1=" in Path(test.trainer.ckpt_path).name
    assert 0.0 <= float(test.trainer.callback_metrics["test_macro_f1_h10"]) <= 1.0

    out = tmp_path / "preds"
    main(
        [
            "predict",
            *_tiny(sim_lobster, tmp_path),
            "--ckpt_path=last",
            f"--prediction_writer.output_dir={out}",
        ]
    )
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert rows and {"timestamp", "p_up_h5", "p_down_h10", "pred_h10"} <= set(rows[0])
    probs = [float(rows[0][f"p_{c}_h5"]) for c in ("up", "stationary", "down")]
    assert abs(sum(probs) - 1) < 1e-4
    assert rows[0]["timestamp"].startswith(rows[0]["date"])


def test_best_without_a_run_is_a_clear_error(sim_lobster, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Train first"):
        main(["test", *_tiny(sim_lobster, tmp_path), "--ckpt_path=best"])


def test_prediction_writer_refuses_the_input_folder(sim_lobster, tmp_path: Path) -> None:
    main(["fit", *_tiny(sim_lobster, tmp_path)])
    data_dir = Path(sim_lobster["test"][0]).parent
    with pytest.raises(ValueError, match="among the input data"):
        main(
            [
                "predict",
                *_tiny(sim_lobster, tmp_path),
                "--ckpt_path=last",
                f"--prediction_writer.output_dir={data_dir}",
            ]
        )


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
    assert all(m.num_heads == 1 for m in default.model.modules() if isinstance(m, MultiHeadAttention))


def test_unknown_attention_option_is_rejected(sim_lobster, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                *_tiny(sim_lobster, tmp_path),
                "--model.attention=MultiHeadAttention",
                "--model.attention.kernel_sz=3",
            ]
        )


def test_hand_set_linked_size_that_disagrees_is_an_error(sim_lobster, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"seq_len=7 was set by hand but the data gives seq_len=20"):
        main(["fit", *_tiny(sim_lobster, tmp_path, "--model.seq_len=7")])
    cli = main(["fit", *_tiny(sim_lobster, tmp_path, "--model.seq_len=20", "--trainer.fast_dev_run=true")])
    assert cli.model.hparams.seq_len == 20


def test_help_documents_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "LOBClassifier"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model.attention", "--model.hidden_dim", "--model.pretrained", "Attention factory"):
        assert option in text


def test_attention_list_command(capsys) -> None:
    main(["attention", "list"])
    assert "| MultiHeadAttention |" in capsys.readouterr().out


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
    backbone = [
        k
        for k in after
        if not k.startswith("network.head") and "metrics" not in k and after[k].is_floating_point()
    ]
    head = [k for k in after if k.startswith("network.head") and after[k].is_floating_point()]
    assert backbone and head
    for key in backbone:
        torch.testing.assert_close(after[key], before[key], msg=key)
    assert any(not torch.equal(after[k], before[k]) for k in head)


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*ATTNLAB, *args], cwd=cwd, env=env, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(sim_lobster, tmp_path: Path) -> None:
    args = [
        "fit",
        *_tiny(sim_lobster, tmp_path),
        "--trainer.max_epochs=3",
        "--trainer.limit_train_batches=12",
        "--checkpoint.every_n_train_steps=4",
        "--trainer.callbacks+=core.training.EMA",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*ATTNLAB, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = torch.load(last, weights_only=False)["global_step"]
            except Exception:  # being replaced right now; atomic rename makes the next read succeed
                step = 0
            if 12 < step < 36:
                break
        time.sleep(0.2)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)
    assert 0 < killed_at["global_step"] < 36
    resumed = _run([*args, "--ckpt_path=last"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(last, weights_only=False)
    assert "Restored all states from the checkpoint" in resumed.stderr
    # 3 epochs x 12 steps in all: the resumed run continued the schedule instead of restarting it.
    assert final["global_step"] == 36
    assert "`max_epochs=3` reached" in resumed.stderr
    assert "current_model_state" in final  # EMA state survived the resume


@pytest.mark.slow
def test_ddp_two_processes_match_one(sim_lobster, tmp_path: Path) -> None:
    common = [
        *_tiny(sim_lobster, tmp_path),
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.logger.name=ddp",
    ]
    fit = _run(["fit", *common, "--trainer.strategy=ddp", "--trainer.devices=2"], tmp_path, timeout=400)
    assert fit.returncode == 0, fit.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "ddp" / "version_0" / "metrics.csv").open()))
    ddp_f1 = [float(r["val_macro_f1"]) for r in rows if r.get("val_macro_f1")][-1]
    ddp_loss = [float(r["val_loss"]) for r in rows if r.get("val_loss")][-1]
    single = main(
        [
            "validate",
            *_tiny(sim_lobster, tmp_path / "single"),
            f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    metrics = single.trainer.callback_metrics
    # DDP pads the last batch with at most one repeated window per rank: a tolerance of 1e-2 covers it.
    assert abs(float(metrics["val_macro_f1"]) - ddp_f1) < 1e-2
    assert abs(float(metrics["val_loss"]) - ddp_loss) < 1e-2


def test_chosen_optimizer_gets_only_its_own_defaults(sim_lobster, tmp_path: Path) -> None:
    """No option of a default optimizer leaks into the one a config chooses (was: AdamW weight decay)."""
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")
    adam = main(["fit", *args, "--optimizer=Adam", "--optimizer.lr=0.002"]).trainer.optimizers[0]
    assert type(adam) is torch.optim.Adam
    assert adam.defaults["weight_decay"] == 0 and adam.defaults["lr"] == 0.002
    default = main(["fit", *args]).trainer.optimizers[0]  # no --optimizer: the task's AdamW
    assert type(default) is torch.optim.AdamW and default.defaults["lr"] == 1e-3
    assert default.defaults["weight_decay"] == 0.01
