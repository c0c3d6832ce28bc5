"""The recommendation task end to end: objectives, ranking protocol, the CLI commands, robustness.

The CLI tests train on the committed tiny simulated data (``data/recsys/tiny/``) through the smoke config,
where a sequence model learns the item transitions that popularity cannot see: trained networks must beat
the popularity ranking, and evaluation numbers are checked against direct computations.
"""

import functools
import json
from pathlib import Path

import pytest
import torch

from core.attention import MultiHeadAttention, NeighborhoodAttention
from core.cli import main
from domains.recsys import (
    IGRSR,
    BERT4Rec,
    GRU4Rec,
    PopularityRecommender,
    SASRec,
    SeqRecDataModule,
    SequentialRecommendation,
    robustness,
)
from domains.recsys.metrics import RankingMetrics
from domains.recsys.robustness import RobustnessRow, _network_name, relative_drop, report
from tests.recsys.conftest import REPO, SMOKE_CONFIG, TINY_INTER

pytestmark = pytest.mark.filterwarnings("ignore:.*self.log.*:UserWarning")  # steps called by hand


def _datamodule(**kw) -> SeqRecDataModule:
    dm = SeqRecDataModule(path=str(TINY_INTER), format="recbole", max_len=20, batch_size=32, **kw)
    dm.setup()
    return dm


def _task(dm: SeqRecDataModule, network=SASRec, **kw) -> SequentialRecommendation:
    return SequentialRecommendation(
        network=network, num_items=dm.num_items, max_len=dm.max_len, mask_history=dm.mask_history, **kw
    )


def _evaluate(task: SequentialRecommendation, dm: SeqRecDataModule, split: str = "test") -> dict[str, float]:
    """HR@K, NDCG@K, MRR and the count of ``split``, computed outside the Trainer."""
    metrics = RankingMetrics(task.ks)
    task.eval()
    with torch.no_grad():
        for batch in getattr(dm, f"{split}_dataloader")():
            metrics.update(task._ranks(batch))
    return {k: float(v) for k, v in metrics.compute().items()}


def _popularity(split: str) -> dict[str, float]:
    dm = _datamodule()
    task = _task(dm, PopularityRecommender)
    task.network.fit(dm.item_counts)
    return _evaluate(task, dm, split)


def _smoke_args(root: Path, *extra: str) -> list[str]:
    return [
        f"--config={SMOKE_CONFIG}",
        f"--data.path={TINY_INTER}",
        f"--trainer.default_root_dir={root}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The smoke config's SASRec, fitted once: its run folder and best validation NDCG@10."""
    root = tmp_path_factory.mktemp("sasrec_smoke")
    cli = main(["fit", *_smoke_args(root)])
    return root, float(cli.trainer.checkpoint_callback.best_model_score)


# ------------------------------------------------------------------------------------------ objectives


@pytest.mark.parametrize(
    "network",
    [
        functools.partial(SASRec, hidden_dim=32, dropout=0.0),
        functools.partial(BERT4Rec, hidden_dim=32, dropout=0.0),
        functools.partial(GRU4Rec, hidden_dim=32, dropout=0.0),
        functools.partial(IGRSR, hidden_dim=32, dropout=0.0, freeze_encoder=False),  # no SASRec to freeze
    ],
    ids=lambda f: f.func.__name__,
)
@pytest.mark.usefixtures("one_thread")
def test_each_network_overfits_a_tiny_batch_through_the_task(network) -> None:
    torch.manual_seed(0)
    dm = _datamodule()
    batch = {k: v[:8] for k, v in next(iter(dm.train_dataloader())).items()}
    task = _task(dm, network)
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(150):
        optimizer.zero_grad()
        loss = task.training_step(batch, 0)
        first = float(loss.detach()) if first is None else first
        if float(loss) < 0.1 * first:
            break
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.1 * first, f"{type(task.network).__name__}: loss {first:.3f} -> {float(loss):.3f}"


def test_bce_loss_trains_sasrec_and_is_refused_for_cloze() -> None:
    dm = _datamodule()
    task = _task(dm, loss="bce", bce_negatives=4)
    batch = next(iter(dm.train_dataloader()))
    loss = task.training_step(batch, 0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    with pytest.raises(ValueError, match="loss='bce' needs a causal network"):
        _task(dm, BERT4Rec, loss="bce")


def test_cloze_masks_with_the_networks_mask_token() -> None:
    dm = _datamodule()
    task = _task(dm, functools.partial(BERT4Rec, hidden_dim=16, mask_prob=0.5))
    seen: list[torch.Tensor] = []
    task.network.encode = lambda items, encode=task.network.encode: seen.append(items) or encode(items)
    task.training_step(next(iter(dm.train_dataloader())), 0)
    masked = seen[0] == task.network.mask_token
    assert task.network.mask_token == dm.num_items + 1 and bool(masked[:, -1].any())
    assert 0.3 < float(masked.sum() / (seen[0] > 0).sum()) < 0.7


def test_protocol_options_move_the_metrics_the_expected_way() -> None:
    """Masking seen items can only help the target; 100 sampled negatives are easier than all items."""
    full = _datamodule()
    task = _task(full, PopularityRecommender)
    task.network.fit(full.item_counts)
    masked = _evaluate(task, full)
    task.hparams.mask_history = False
    unmasked = _evaluate(task, _datamodule(mask_history=False))
    task.hparams.mask_history = True
    assert masked["hr@10"] > unmasked["hr@10"] and masked["mrr"] > unmasked["mrr"]
    sampled = _evaluate(task, _datamodule(ranking="uni100", num_negatives=30))
    assert sampled["hr@10"] > masked["hr@10"] and sampled["ndcg@10"] > masked["ndcg@10"]
    assert masked["count"] == sampled["count"] == len(full.user_ids)


def test_metrics_are_one_container_per_evaluation_stage() -> None:
    task = _task(_datamodule(), ks=[5, 10])
    assert isinstance(task.val_metrics, RankingMetrics) and isinstance(task.test_metrics, RankingMetrics)
    assert task.val_metrics is not task.test_metrics and not hasattr(task, "train_metrics")
    task.val_metrics.update(torch.tensor([0, 7]))
    assert set(task.val_metrics.compute()) == {"hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"}  # no count


# ------------------------------------------------------------------------------------------ CLI


def test_cli_sasrec_beats_popularity_then_tests_and_predicts(sasrec_run, tmp_path: Path) -> None:
    root, best = sasrec_run
    args = _smoke_args(root)
    popularity = _popularity("val")
    assert best > 1.5 * popularity["ndcg@10"], (best, popularity)
    validate = main(["validate", *args, "--ckpt_path", "best"])
    assert float(validate.trainer.callback_metrics["val_ndcg@10"]) == pytest.approx(best, abs=1e-6)
    test = main(["test", *args, "--ckpt_path", "best"])
    metrics = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
    assert "test_count" not in metrics
    popularity = _popularity("test")
    assert (
        metrics["test_ndcg@10"] > 1.5 * popularity["ndcg@10"] and metrics["test_hr@10"] > popularity["hr@10"]
    )
    expected = _evaluate(test.model, test.datamodule)
    for key in ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"):
        assert metrics[f"test_{key}"] == pytest.approx(expected[key], abs=1e-6), key
    out = tmp_path / "predictions"
    main(["predict", *args, "--ckpt_path", "best", f"--prediction_writer.output_dir={out}"])
    rows = [json.loads(line) for line in (out / "recommendations.jsonl").read_text().splitlines()]
    dm = _datamodule()
    assert [r["user"] for r in rows] == dm.user_ids
    first = rows[0]
    assert len(first["items"]) == 20 and first["scores"] == sorted(first["scores"], reverse=True)
    history = set(dm.decode_items(dm.data.sequence(0)))
    assert set(first["items"]) <= set(dm.item_ids[1:]) - history  # unseen items only


@pytest.mark.parametrize(
    ("network", "extra"),
    [
        ("GRU4Rec", ["--model.network.hidden_dim=16"]),
        (
            "BERT4Rec",
            [
                "--model.network.hidden_dim=16",
                "--model.network.num_layers=1",
                "--model.network.num_heads=1",
                "--model.network.dropout=0.1",
                "--model.network.mask_prob=0.4",
                "--trainer.max_epochs=8",
            ],
        ),
    ],
)
def test_cli_trains_each_network_past_popularity(network: str, extra: list[str], tmp_path: Path) -> None:
    cli = main(["fit", *_smoke_args(tmp_path, f"--model.network={network}", *extra)])
    assert type(cli.model.network).__name__ == network
    best = float(cli.trainer.checkpoint_callback.best_model_score)
    assert best > 1.2 * _popularity("val")["ndcg@10"]


def test_cli_popularity_gives_the_popularity_ranking(tmp_path: Path) -> None:
    cli = main(["fit", *_smoke_args(tmp_path, "--model.network=PopularityRecommender")])
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val_")}
    expected = _popularity("val")
    assert logged == pytest.approx({f"val_{k}": v for k, v in expected.items() if k != "count"}, abs=1e-6)


def test_cli_igrsr_starts_from_its_sasrec_run(sasrec_run, tmp_path: Path) -> None:
    root, best = sasrec_run
    igrsr = [
        "--model.network=IGRSR",
        f"--model.network.encoder_checkpoint={root}",
        "--model.network.hidden_dim=16",
        "--model.network.num_layers=1",
        "--model.network.num_heads=1",
    ]
    # The gate starts at 0: before any training IGR-SR ranks exactly like the SASRec it loaded.
    validate = main(["validate", *_smoke_args(tmp_path, *igrsr)])
    assert float(validate.trainer.callback_metrics["val_ndcg@10"]) == pytest.approx(best, abs=1e-6)
    cli = main(["fit", *_smoke_args(tmp_path, *igrsr, "--trainer.max_epochs=1")])
    encoder = cli.model.network.encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    checkpoint = torch.load(next((root / "checkpoints").glob("epoch=*.ckpt")), weights_only=False)
    torch.testing.assert_close(
        encoder.item_emb.weight.detach(), checkpoint["state_dict"]["network.item_emb.weight"]
    )


def test_cli_swaps_the_attention_mechanism(tmp_path: Path) -> None:
    attention = ["--model.attention=NeighborhoodAttention", "--model.attention.num_heads=1"]
    args = _smoke_args(tmp_path, "--model.network.num_layers=2", "--trainer.fast_dev_run=true", *attention)
    cli = main(["fit", *args, "--model.attention.kernel_size=5"])
    mixers = [m for m in cli.model.modules() if isinstance(m, NeighborhoodAttention)]
    assert [m.layer_idx for m in mixers] == [0, 1] and mixers[0].kernel_size == 5


def test_cli_refuses_attention_for_a_network_without_it(tmp_path: Path) -> None:
    args = _smoke_args(tmp_path, "--model.network=GRU4Rec", "--model.attention=MultiHeadAttention")
    with pytest.raises(ValueError, match="GRU4Rec has no attention to replace"):
        main(["fit", *args, "--model.attention.num_heads=1"])


@pytest.mark.realdata
def test_real_ml100k_popularity_matches_the_documented_row(ml100k_dir: Path, tmp_path: Path) -> None:
    """docs/recsys.md: Popularity on MovieLens-100K, test HR@10 0.0838, NDCG@10 0.0432, MRR 0.0401."""
    args = [
        "--config=configs/recsys/pop_ml100k.yaml",
        f"--data.path={ml100k_dir / 'ml-100k.inter'}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
    ]
    cli = main(["test", *args])
    assert cli.datamodule.num_items == 1682 and cli.model.hparams.num_items == 1682
    metrics = cli.trainer.callback_metrics
    assert round(float(metrics["test_hr@10"]), 4) == 0.0838
    assert round(float(metrics["test_ndcg@10"]), 4) == 0.0432
    assert round(float(metrics["test_mrr"]), 4) == 0.0401


@pytest.mark.realdata
def test_real_ml100k_sasrec_config_links_the_data(ml100k_dir: Path, tmp_path: Path) -> None:
    args = [
        "--config=configs/recsys/sasrec_ml100k.yaml",
        f"--data.path={ml100k_dir / 'ml-100k.inter'}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.fast_dev_run=true",
        "--trainer.enable_progress_bar=false",
    ]
    cli = main(["fit", *args])
    network = cli.model.network
    assert (network.num_items, network.max_len, network.hidden_dim) == (1682, 200, 64)
    assert cli.model.hparams.mask_history is True and torch.isfinite(
        cli.trainer.callback_metrics["train_loss"]
    )


def test_predict_file_recommends_for_new_sequences_and_names_unknown_items(
    sasrec_run, tmp_path: Path
) -> None:
    root, _ = sasrec_run
    args = _smoke_args(root)
    dm = _datamodule()
    known = dm.item_ids[1:6]
    sequences = tmp_path / "in" / "new_users.txt"  # its folder is an input: nothing is written there
    sequences.parent.mkdir()
    sequences.write_text(f"alice {' '.join(known)}\nbob {known[0]}\n")
    out = tmp_path / "out"
    predict = [
        "predict",
        *args,
        "--ckpt_path",
        "best",
        f"--data.predict_file={sequences}",
        f"--prediction_writer.output_dir={out}",
    ]
    main(predict)
    rows = [json.loads(line) for line in (out / "recommendations.jsonl").read_text().splitlines()]
    assert [r["user"] for r in rows] == ["alice", "bob"]
    assert not set(rows[0]["items"]) & set(known)  # seen items are not recommended again
    for inputs in (TINY_INTER.parent, sequences.parent):
        with pytest.raises(ValueError, match="among the input data"):
            main([*predict[:-1], f"--prediction_writer.output_dir={inputs}"])
    sequences.write_text(f"alice {known[0]}\ncarol {known[1]} no-such-item\n")
    with pytest.raises(KeyError, match=r"new_users.txt:2: unknown item id 'no-such-item'"):
        main(predict)


# ------------------------------------------------------------------------------------------ options


def test_task_refuses_bad_options() -> None:
    dm = _datamodule()
    with pytest.raises(ValueError, match="ks must be positive"):
        _task(dm, ks=[0])
    with pytest.raises(ValueError, match="num_items is unknown"):
        SequentialRecommendation(max_len=20)
    with pytest.raises(ValueError, match="GRU4Rec has no attention to replace"):
        _task(dm, GRU4Rec, attention=MultiHeadAttention)
    with pytest.raises(TypeError, match="not a SeqRecNetwork"):
        _task(dm, lambda num_items, max_len: torch.nn.Linear(2, 2))


def test_network_options_live_on_the_network_class() -> None:
    task = _task(_datamodule(), functools.partial(SASRec, hidden_dim=8, num_layers=3))
    assert isinstance(task.network, SASRec) and len(task.network.blocks) == 3
    assert set(task.hparams) == {
        "network",
        "attention",
        "loss",
        "bce_negatives",
        "ks",
        "top_k",
        "num_items",
        "max_len",
        "mask_history",
        "pretrained",
    }


# ------------------------------------------------------------------------------------------ robustness


def test_robustness_report_arithmetic() -> None:
    assert relative_drop(0.2, 0.15) == pytest.approx(0.25)
    assert relative_drop(0.0, 0.1) == 0.0
    rows = [
        RobustnessRow("sasrec_x", "SASRec", 0.0, 0.10, 0.20),
        RobustnessRow("sasrec_x", "SASRec", 0.2, 0.08, 0.15),
    ]
    text = report(rows, [0.2])
    assert "| SASRec | sasrec_x | 0.1000 | 0.2000 | 0.0800 | 20.0 % | 0.1500 | 25.0 % |" in text


def test_robustness_reads_the_network_class_of_a_config(tmp_path: Path) -> None:
    configs = REPO / "configs" / "recsys"
    assert _network_name(configs / "sasrec_ml100k.yaml") == "SASRec"
    assert _network_name(configs / "igrsr_ml100k.yaml") == "IGRSR"
    assert _network_name(configs / "bert4rec_amazon.yaml") == "BERT4Rec"
    bare = tmp_path / "bare.yaml"
    bare.write_text("model:\n  class_path: SequentialRecommendation\n")
    assert _network_name(bare) == "SASRec"  # the task's default network
    full = tmp_path / "full.yaml"
    full.write_text("model:\n  init_args:\n    network: domains.recsys.models.IGRSR\n")
    assert _network_name(full) == "IGRSR"


def test_robustness_sweep_hands_each_sasrec_run_to_igrsr(tmp_path: Path, monkeypatch) -> None:
    """Clean and noisy runs of SASRec, then of IGR-SR on the SASRec run of the same noise level."""
    from domains.recsys.models import igrsr

    monkeypatch.chdir(REPO)  # the smoke config's data path is relative to the repository
    config = tmp_path / "igrsr_smoke.yaml"
    sasrec = (
        "class_path: SASRec\n      init_args: {hidden_dim: 16, num_layers: 1, num_heads: 1, dropout: 0.1}"
    )
    assert sasrec in SMOKE_CONFIG.read_text()
    config.write_text(SMOKE_CONFIG.read_text().replace(sasrec, sasrec.replace("SASRec", "IGRSR")))
    encoders: list[Path] = []
    resolve = igrsr.run_checkpoint
    monkeypatch.setattr(igrsr, "run_checkpoint", lambda path: encoders.append(Path(path)) or resolve(path))
    out = tmp_path / "out"
    extra = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    extra += [
        "--trainer.limit_test_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_model_summary=false",
    ]
    robustness.main(
        ["--configs", str(SMOKE_CONFIG), str(config), "--noise", "0.3", "--out", str(out), "--", *extra]
    )
    rows = json.loads((out / "robustness.json").read_text())
    assert [(r["config"], r["model"], r["noise"]) for r in rows] == [
        ("smoke", "SASRec", 0.0),
        ("smoke", "SASRec", 0.3),
        ("igrsr_smoke", "IGRSR", 0.0),
        ("igrsr_smoke", "IGRSR", 0.3),
    ]
    # fit and test each build IGR-SR from the SASRec run of their own noise level
    assert encoders == [out / "smoke" / "noise0"] * 2 + [out / "smoke" / "noise0.3"] * 2
    assert "| IGRSR | igrsr_smoke |" in (out / "robustness.md").read_text()
