"""Datamodules: the batch interface of every split, epoch-varying crops, links, inputs never written."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
import torch

from core.utils import InputError
from domains.speech.datamodule import DynamicMixingDataModule, SeparationDataModule
from domains.speech.datasets import EpochSampler, unique_names
from tests.speech.audio_fixtures import (
    CLEAN_16K,
    LIBRI2MIX_EXAMPLES,
    tree_state,
    voiced,
    write_examples,
    write_librimix,
    write_speakers,
    write_wham,
)


def _batches(dm, split: str) -> list[dict]:
    stage = {"train": "fit", "val": "fit", "test": "test", "predict": "predict"}[split]
    dm.setup(stage)
    return list(getattr(dm, f"{split}_dataloader")())


def _check_train(batch: dict, batch_size: int, samples: int, sources: int = 2) -> None:
    assert set(batch) == {"mixture", "sources"}
    assert batch["mixture"].shape == (batch_size, samples) and batch["mixture"].dtype == torch.float32
    assert (
        batch["sources"].shape == (batch_size, sources, samples) and batch["sources"].dtype == torch.float32
    )


def _check_eval(batch: dict) -> None:
    assert set(batch) == {"mixture", "sources", "lengths", "id"}
    assert batch["lengths"].dtype == torch.int64 and isinstance(batch["id"], list)
    b, t = batch["mixture"].shape
    assert batch["sources"].shape == (b, 2, t) and int(batch["lengths"].max()) == t


def test_librimix_datamodule(tmp_path: Path) -> None:
    root = tmp_path / "Libri2Mix" / "wav8k" / "min"
    write_librimix(root, "train-100", count=3)
    write_librimix(root, "dev", count=2)
    write_librimix(root, "test", count=2)
    before = tree_state(tmp_path)
    dm = SeparationDataModule(
        str(root), "librimix", train_split="train-100", segment_seconds=0.5, batch_size=2
    )
    assert dm.link_values() == {"num_sources": 2, "sample_rate": 8000}
    train = _batches(dm, "train")
    assert len(train) == 2
    _check_train(train[0], 2, 4000)
    val = _batches(dm, "val")
    assert [b["id"][0] for b in val] == ["1000-2000-0000_3000-4000-0001", "1001-2001-0000_3001-4001-0001"]
    assert [int(b["lengths"][0]) for b in val] == [8000, 10000]
    for batch in val:
        _check_eval(batch)
        torch.testing.assert_close(batch["mixture"], batch["sources"].sum(1), atol=2 / 2**15, rtol=0)
    test = _batches(dm, "test")
    predict = _batches(dm, "predict")
    assert len(test) == len(predict) == 2
    assert predict[0]["path"] == [str(root / "test" / "mix_clean" / f"{test[0]['id'][0]}.wav")]
    assert predict[0]["id"] == test[0]["id"]
    assert tree_state(tmp_path) == before
    assert root in dm.input_paths()


def test_training_crops_change_with_the_epoch_and_eval_pads(tmp_path: Path) -> None:
    root = write_wham(tmp_path / "wham", "tr", count=3)
    write_wham(root, "cv", count=3)
    dm = SeparationDataModule(
        str(root), "wham", test_split=None, segment_seconds=0.25, batch_size=3, eval_batch_size=2
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = next(iter(loader))["mixture"]
    assert torch.equal(first, next(iter(dm.train_dataloader()))["mixture"])  # same epoch, same crops
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))["mixture"])
    val = list(dm.val_dataloader())
    assert [b["mixture"].shape[0] for b in val] == [2, 1]
    lengths = val[0]["lengths"].tolist()
    assert lengths == [8000, 12000] and val[0]["mixture"].shape == (2, 12000)
    assert float(val[0]["mixture"][0, 8000:].abs().max()) == 0.0  # zero padding after the valid samples
    with pytest.raises(ValueError, match="no test data"):
        dm.setup("test")
        dm.test_dataloader()


class _Recorder(pl.LightningModule):
    """Records the first training mixture of every epoch; one parameter so that the optimiser has one."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if batch_idx == 0:
            self.seen.append(batch["mixture"].clone())
        return (self.weight * batch["mixture"]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_sets_the_epoch_of_dynamic_mixtures(tmp_path: Path) -> None:
    speech = write_speakers(tmp_path / "speech", speakers=3, utterances=2)
    dm = DynamicMixingDataModule(
        speech_roots=[str(speech)], epoch_mixtures=4, val="none", segment_seconds=0.25, batch_size=2
    )
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 2 and not torch.equal(model.seen[0], model.seen[1])
    dataset = dm.dataset("train")
    sampler = EpochSampler(4, seed=0)
    sampler.set_epoch(1)
    keys = list(sampler)[:2]
    assert all(4 <= k < 8 for k in keys)
    expected = torch.stack([dataset[k]["mixture"] for k in keys])
    torch.testing.assert_close(model.seen[1], expected)


def test_dynamic_mixing_datamodule(tmp_path: Path) -> None:
    speech = write_speakers(tmp_path / "speech", speakers=3, utterances=4)
    examples = write_examples(tmp_path / "examples", count=2)
    stereo = tmp_path / "to_separate"
    stereo.mkdir()
    sf.write(stereo / "call.wav", np.stack([voiced(0.5, 16000, 1)] * 2, axis=1), 16000)
    before = tree_state(tmp_path)
    dm = DynamicMixingDataModule(
        speech_roots=[str(speech)],
        epoch_mixtures=6,
        val_mixtures=3,
        val_fraction=0.25,
        eval_root=str(examples),
        predict_root=str(stereo),
        segment_seconds=0.5,
        batch_size=3,
    )
    train = _batches(dm, "train")
    assert len(train) == 2
    _check_train(train[0], 3, 4000)
    kept, held = dm.utterances()
    assert len(held) == 3 and len(kept) == 9
    val = _batches(dm, "val")
    assert len(val) == 3 and [b["id"] for b in val] == [["mix000000"], ["mix000001"], ["mix000002"]]
    for batch in val:
        _check_eval(batch)
    again = list(dm.val_dataloader())
    torch.testing.assert_close(val[1]["mixture"], again[1]["mixture"])
    test = _batches(dm, "test")
    assert [b["id"] for b in test] == [["ex_0"], ["ex_1"]]
    (predict,) = _batches(dm, "predict")
    assert predict["sample_rate"] == [16000] and predict["path"] == [str(stereo / "call.wav")]
    assert predict["id"] == ["call"]
    assert predict["mixture"].shape == (1, 4000) and predict["lengths"].tolist() == [4000]
    assert tree_state(tmp_path) == before
    assert set(dm.input_paths()) >= {speech, examples, stereo}


def test_dynamic_validation_from_a_layout_and_without_held_out(tmp_path: Path) -> None:
    speech = write_speakers(tmp_path / "speech", speakers=2, utterances=1)
    examples = write_examples(tmp_path / "examples", count=2)
    dm = DynamicMixingDataModule(
        speech_roots=[str(speech)], val="layout", eval_root=str(examples), val_split="."
    )
    assert [b["id"] for b in _batches(dm, "val")] == [["ex_0"], ["ex_1"]]
    assert dm.utterances()[1] == []  # nothing held out: validation and test read eval_root
    lonely = DynamicMixingDataModule(speech_roots=[str(speech)], epoch_mixtures=2)
    with pytest.raises(InputError, match="no utterance is held out"):
        lonely.setup("fit")
    with pytest.raises(ValueError, match="speech_roots"):
        DynamicMixingDataModule()


def test_one_speaker_source_folder(tmp_path: Path) -> None:
    speech = write_speakers(tmp_path / "speech", speakers=1, utterances=4)
    dm = DynamicMixingDataModule(speech_roots=[str(speech)], epoch_mixtures=2)
    with pytest.raises(InputError, match=rf"speech folder\(s\) {speech / 'spk0'} hold only 1"):
        dm.setup("fit")


@pytest.mark.realdata
def test_real_shared_speech() -> None:
    if not CLEAN_16K.is_dir() or not LIBRI2MIX_EXAMPLES.is_dir():
        pytest.skip(f"shared speech data {CLEAN_16K.parent} is absent")
    dm = DynamicMixingDataModule(
        speech_roots=[str(CLEAN_16K)],
        speaker_from="prefix",
        eval_root=str(LIBRI2MIX_EXAMPLES),
        epoch_mixtures=4,
        val_mixtures=2,
        val_fraction=0.2,
        batch_size=2,
    )
    with pytest.warns(UserWarning, match="resampling it to 8000 Hz"):
        train = _batches(dm, "train")
    _check_train(train[0], 2, 24000)
    test = _batches(dm, "test")
    assert [int(b["lengths"][0]) for b in test] == [41560, 73680, 59600, 66080, 76041]
    assert [b["id"] for b in _batches(dm, "predict")] == [[f"ex_{i}"] for i in range(5)]
    fixed = SeparationDataModule(str(LIBRI2MIX_EXAMPLES), "examples", train_split=".", segment_seconds=2.0)
    _check_train(_batches(fixed, "train")[0], 4, 16000)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_length(path: Path) -> None:
    sf.write(path, np.zeros(0, np.float32), 8000)


def _shorter(path: Path) -> None:
    sf.write(path, voiced(0.5, 8000, 0), 8000)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "is truncated"),
        (_zero_length, "holds no samples"),
        (_shorter, "must have the same length"),
    ],
    ids=["truncated", "zero-length", "length-mismatch"],
)
def test_bad_files_stop_setup_naming_them_and_inputs_stay_untouched(tmp_path: Path, damage, message) -> None:
    root = write_librimix(tmp_path / "min", "dev", count=2)
    victim = sorted((root / "dev" / "s2").iterdir())[1]
    damage(victim)
    before = tree_state(tmp_path)
    dm = SeparationDataModule(str(root), "librimix", train_split=None, test_split=None)
    with pytest.raises(InputError) as error:
        dm.setup("fit")
    assert message in str(error.value) and str(victim) in str(error.value)
    assert tree_state(tmp_path) == before


def test_missing_librimix_metadata_through_the_datamodule(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "min", "dev", count=1)
    for path in (root / "metadata").iterdir():
        path.unlink()
    (root / "metadata").rmdir()
    dm = SeparationDataModule(str(root), "librimix", train_split=None, test_split=None)
    with pytest.raises(InputError, match=rf"LibriMix folder {root} has no metadata/ folder"):
        dm.setup("validate")


def test_prediction_names_are_unique() -> None:
    assert unique_names([Path("a/x.wav"), Path("a/y.flac")]) == ["x", "y"]
    assert unique_names([Path("ex_0/mixture.wav"), Path("ex_1/mixture.wav")]) == ["ex_0", "ex_1"]
    assert unique_names([Path("p/a.wav"), Path("q/a.wav"), Path("q/b.wav")]) == ["p_a", "q_a", "q_b"]
    assert unique_names([Path("p/a.wav"), Path("p/a.flac"), Path("q/b.wav")]) == ["p_a_1", "p_a_2", "q_b"]
