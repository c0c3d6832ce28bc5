"""The recommendation task end to end: objectives, ranking protocol, CLI fit/test/predict, robustness.

The CLI tests run on the embedded simulator's data (and on real ml-100k when ../shared is present), with
tiny budgets: they check wiring and protocol effects, not final quality.
"""

import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from domains.recsys import SeqRecDataModule, SequentialRecommendation
from domains.recsys.robustness import RobustnessRow, relative_drop, report

MODELS = ["sasrec", "bert4rec", "gru4rec", "igrsr", "pop"]


def _datamodule(path: Path, **kw) -> SeqRecDataModule:
    dm = SeqRecDataModule(path=str(path), format="recbole", max_len=20, batch_size=64, **kw)
    dm.setup("fit")
    return dm


def _task(dm: SeqRecDataModule, model: str, **kw) -> SequentialRecommendation:
    kw.setdefault("dropout", 0.0)
    if model == "pop":
        kw.pop("dropout")
    return SequentialRecommendation(
        model=model, num_items=dm.num_items, max_len=dm.max_len, mask_history=dm.mask_history, **kw
    )


def _cli_args(path: Path, root: Path, model: str, *extra: str) -> list[str]:
    return [
        "--model=SequentialRecommendation",
        f"--model.model={model}",
        "--model.hidden_dim=16",
        "--data=SeqRecDataModule",
        f"--data.path={path}",
        "--data.format=recbole",
        "--data.max_len=20",
        "--data.batch_size=64",
        f"--trainer.default_root_dir={root}",
        "--trainer.max_epochs=2",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec", "igrsr"])
def test_each_model_overfits_a_tiny_batch_through_the_task(model: str, sim_inter: Path) -> None:
    torch.manual_seed(0)
    dm = _datamodule(sim_inter)
    batch = next(iter(dm.train_dataloader()))
    batch = {k: v[:8] for k, v in batch.items()}
    extra = {"freeze_encoder": False} if model == "igrsr" else {}  # no SASRec checkpoint to freeze here
    task = _task(dm, model, hidden_dim=32, **extra)
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    first = None
    for _ in range(150):
        optimizer.zero_grad()
        loss = task.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss) < 0.25 * first, f"{model}: loss {first:.3f} -> {float(loss):.3f}"


def test_bce_loss_trains_sasrec_and_is_refused_for_cloze(sim_inter: Path) -> None:
    dm = _datamodule(sim_inter)
    task = _task(dm, "sasrec", loss="bce", bce_negatives=4)
    batch = next(iter(dm.train_dataloader()))
    loss = task.training_step(batch, 0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    with pytest.raises(ValueError, match="loss='bce' needs a causal model"):
        _task(dm, "bert4rec", loss="bce")


def _evaluate(task: SequentialRecommendation, dm: SeqRecDataModule) -> dict[str, float]:
    task.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            task._rank_step(batch, task.test_metrics)
    values = {k: float(v) for k, v in task.test_metrics.compute().items()}
    task.test_metrics.reset()
    return values


def test_protocol_options_move_the_metrics_the_expected_way(sim_inter: Path) -> None:
    """Masking seen items can only help the target; 100 sampled negatives are easier than all items."""
    torch.manual_seed(0)
    full = _datamodule(sim_inter)
    task = _task(full, "pop")
    task.network.fit(full.item_counts)
    masked = _evaluate(task, full)
    unmasked_dm = _datamodule(sim_inter, mask_history=False)
    task.hparams.mask_history = False
    unmasked = _evaluate(task, unmasked_dm)
    task.hparams.mask_history = True
    assert masked["hr@10"] > unmasked["hr@10"] and masked["mrr"] > unmasked["mrr"]
    sampled = _evaluate(task, _datamodule(sim_inter, ranking="uni100", num_negatives=30))
    assert sampled["hr@10"] > masked["hr@10"] and sampled["ndcg@10"] > masked["ndcg@10"]
    assert masked["count"] == sampled["count"] == len(full.user_ids)


def test_cli_fit_test_predict_end_to_end(sim_inter: Path, tmp_path: Path, monkeypatch) -> None:
    logged: list[str] = []
    monkeypatch.setattr("domains.recsys.module.rank_zero_info", logged.append)
    args = _cli_args(sim_inter, tmp_path, "sasrec")
    cli = main(["fit", *args])
    metrics = cli.trainer.callback_metrics
    assert {"val_hr@10", "val_ndcg@10", "val_hr@20", "val_ndcg@20", "val_mrr"} <= set(metrics)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    test = main(["test", *args, "--ckpt_path", "best"])
    assert 0 <= float(test.trainer.callback_metrics["test_ndcg@10"]) <= 1
    out = tmp_path / "predictions"
    main(["predict", *args, "--ckpt_path", "best", f"--prediction_writer.output_dir={out}"])
    rows = [json.loads(line) for line in (out / "recommendations.jsonl").read_text().splitlines()]
    dm = _datamodule(sim_inter)
    assert len(rows) == len(dm.user_ids)
    first = rows[0]
    assert len(first["items"]) == 20 and first["scores"] == sorted(first["scores"], reverse=True)
    assert set(first["items"]) <= set(dm.item_ids[1:])
    protocol = [m for m in logged if m.startswith("recsys protocol: [fit]")]
    assert protocol and "split=leave_one_out" in protocol[0] and "ranking=full" in protocol[0]


@pytest.mark.parametrize("model", ["bert4rec", "gru4rec", "pop"])
def test_cli_trains_every_model(model: str, sim_inter: Path, tmp_path: Path) -> None:
    cli = main(["fit", *_cli_args(sim_inter, tmp_path, model, "--trainer.max_epochs=1")])
    assert float(cli.trainer.callback_metrics["val_ndcg@10"]) >= 0


def test_cli_igrsr_uses_a_sasrec_run_as_its_frozen_encoder(sim_inter: Path, tmp_path: Path) -> None:
    sasrec_root = tmp_path / "sasrec"
    main(["fit", *_cli_args(sim_inter, sasrec_root, "sasrec", "--trainer.max_epochs=1")])
    args = _cli_args(sim_inter, tmp_path / "igrsr", "igrsr", "--trainer.max_epochs=1")
    cli = main(["fit", *args, f"--model.encoder_checkpoint={sasrec_root}"])
    encoder = cli.model.network.encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    best = torch.load(next((sasrec_root / "checkpoints").glob("epoch=*.ckpt")), weights_only=False)
    loaded = best["state_dict"]["network.item_emb.weight"]
    torch.testing.assert_close(encoder.item_emb.weight.detach(), loaded)


def test_cli_swaps_the_attention_mechanism(sim_inter: Path, tmp_path: Path) -> None:
    args = _cli_args(sim_inter, tmp_path, "sasrec", "--trainer.max_epochs=1")
    cli = main(
        [
            "fit",
            *args,
            "--model.attention=NeighborhoodAttention",
            "--model.attention.num_heads=1",
            "--model.attention.kernel_size=5",
        ]
    )
    from core.attention import NeighborhoodAttention

    assert sum(isinstance(m, NeighborhoodAttention) for m in cli.model.modules()) == 2


def test_real_ml100k_trains_through_the_cli(ml100k_dir: Path, tmp_path: Path) -> None:
    args = [
        "--config",
        "configs/recsys/sasrec_ml100k.yaml",
        f"--data.path={ml100k_dir / 'ml-100k.inter'}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.enable_progress_bar=false",
    ]
    cli = main(["fit", *args])
    assert cli.datamodule.num_items == 1682 and cli.model.hparams.num_items == 1682
    assert cli.trainer.callback_metrics["val_ndcg@10"] >= 0


def test_robustness_report_arithmetic() -> None:
    assert relative_drop(0.2, 0.15) == pytest.approx(0.25)
    assert relative_drop(0.0, 0.1) == 0.0
    rows = [
        RobustnessRow("sasrec_x", "sasrec", 0.0, 0.10, 0.20),
        RobustnessRow("sasrec_x", "sasrec", 0.2, 0.08, 0.15),
    ]
    text = report(rows, [0.2])
    assert "| sasrec | sasrec_x | 0.1000 | 0.2000 | 0.0800 | 20.0 % | 0.1500 | 25.0 % |" in text


def test_task_refuses_bad_options(sim_inter: Path) -> None:
    dm = _datamodule(sim_inter)
    with pytest.raises(ValueError, match="ks must be positive"):
        _task(dm, "sasrec", ks=[0])
    with pytest.raises(ValueError, match="num_items is unknown"):
        SequentialRecommendation(model="sasrec", max_len=20)
    from core.attention import MultiHeadAttention

    with pytest.raises(ValueError, match="has no attention"):
        SequentialRecommendation(
            model="gru4rec", num_items=dm.num_items, max_len=20, attention=MultiHeadAttention
        )


def test_predict_file_recommends_for_new_sequences_and_names_unknown_items(
    sim_inter: Path, tmp_path: Path
) -> None:
    args = _cli_args(sim_inter, tmp_path, "sasrec", "--trainer.max_epochs=1")
    main(["fit", *args])
    dm = _datamodule(sim_inter)
    known = dm.item_ids[1:6]
    sequences = tmp_path / "new_users.txt"
    sequences.write_text(f"alice {' '.join(known)}\nbob {known[0]}\n")
    out = tmp_path / "out"
    main(
        [
            "predict",
            *args,
            "--ckpt_path",
            "best",
            f"--data.predict_file={sequences}",
            f"--prediction_writer.output_dir={out}",
        ]
    )
    rows = [json.loads(line) for line in (out / "recommendations.jsonl").read_text().splitlines()]
    assert [r["user"] for r in rows] == ["alice", "bob"]
    assert not set(rows[0]["items"]) & set(known)  # seen items are not recommended again
    sequences.write_text(f"alice {known[0]}\ncarol {known[1]} no-such-item\n")
    with pytest.raises(KeyError, match=r"new_users.txt:2: unknown item id 'no-such-item'"):
        main(["predict", *args, "--ckpt_path", "best", f"--data.predict_file={sequences}"])


@pytest.mark.parametrize("residual", [True, False])
def test_igrsr_user_vector_form_is_a_task_option(residual: bool) -> None:
    task = SequentialRecommendation(
        model="igrsr", residual=residual, freeze_encoder=False, num_items=12, max_len=6, hidden_dim=8
    )
    assert (task.network.gate is None) != residual
