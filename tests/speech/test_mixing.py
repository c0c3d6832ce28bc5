"""Dynamic mixing: determinism, speaker constraint, SNR range, lengths, silence, speed, speaker indexes."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.utils import InputError, InputFileNotFoundError
from domains.speech.datasets import EpochSampler
from domains.speech.mixing import (
    MAX_AMPLITUDE,
    DynamicMixingDataset,
    collate_mixtures,
    index_utterances,
    read_speaker_index,
    split_utterances,
)
from tests.speech.audio_fixtures import CLEAN_16K, voiced, write_speakers, write_wav


@pytest.fixture
def speakers(tmp_path: Path) -> Path:
    return write_speakers(tmp_path / "speech", speakers=4, utterances=3)


def _dataset(root: Path, **options) -> DynamicMixingDataset:
    defaults = {"length": 16, "segment_seconds": 1.0, "seed": 3}
    return DynamicMixingDataset(index_utterances(root), **{**defaults, **options})


def _snr(sources: torch.Tensor) -> float:
    return float(10 * torch.log10(sources[0].pow(2).sum() / sources[1].pow(2).sum()))


def test_items_are_fixed_length_sums_of_different_speakers(speakers: Path) -> None:
    dataset = _dataset(speakers, num_sources=3)
    for key in range(len(dataset)):
        item = dataset[key]
        assert item["mixture"].shape == (8000,) and item["sources"].shape == (3, 8000)
        assert item["mixture"].dtype == torch.float32 and item["length"] == 8000
        assert len(set(item["speakers"])) == 3
        torch.testing.assert_close(item["mixture"], item["sources"].sum(0))
        assert float(item["mixture"].abs().max()) <= MAX_AMPLITUDE + 1e-6
        assert float(item["sources"].abs().max()) <= MAX_AMPLITUDE + 1e-6


def test_snr_between_sources_is_uniform_in_range(speakers: Path) -> None:
    dataset = _dataset(speakers, length=64, snr_range=(-5.0, 5.0))
    snrs = np.array([_snr(dataset[k]["sources"]) for k in range(len(dataset))])
    assert snrs.min() >= -5.0 - 1e-3 and snrs.max() <= 5.0 + 1e-3
    assert snrs.min() < -3 and snrs.max() > 3  # spread over the range, not one value
    narrow = _dataset(speakers, snr_range=(2.0, 2.0))
    assert all(abs(_snr(narrow[k]["sources"]) - 2.0) < 1e-3 for k in range(8))


def test_validation_mixtures_repeat_every_epoch_training_ones_do_not(speakers: Path) -> None:
    train, val = _dataset(speakers), _dataset(speakers, fixed=True)
    n = len(train)
    torch.testing.assert_close(val[5]["mixture"], val[n + 5]["mixture"])  # epoch 1, same index
    torch.testing.assert_close(train[5]["mixture"], _dataset(speakers)[5]["mixture"])  # same seed, same key
    assert not torch.equal(train[5]["mixture"], train[n + 5]["mixture"])
    assert not torch.equal(train[5]["mixture"], _dataset(speakers, seed=4)[5]["mixture"])


def test_worker_processes_draw_the_same_mixtures(speakers: Path) -> None:
    dataset = _dataset(speakers, length=6)
    sampler = EpochSampler(len(dataset), seed=0)
    sampler.set_epoch(2)
    serial = [b["mixture"] for b in DataLoader(dataset, 2, sampler=sampler, collate_fn=collate_mixtures)]
    parallel = DataLoader(dataset, 2, sampler=sampler, collate_fn=collate_mixtures, num_workers=2)
    for a, b in zip(serial, [b["mixture"] for b in parallel], strict=True):
        torch.testing.assert_close(a, b)
    keys = list(sampler)
    assert sorted(keys) == list(range(12, 18))
    sampler.skip(2)  # a run resumed after one batch of this epoch continues with the same keys
    assert list(sampler) == keys[2:]


def _active(source: torch.Tensor) -> float:
    """Share of 10 ms frames with signal."""
    frames = source[: source.numel() // 80 * 80].reshape(-1, 80)
    return float((frames.abs().max(-1).values > 0).float().mean())


def test_fill_continues_short_utterances_of_the_same_speaker(speakers: Path) -> None:
    # Utterances of 1-1.5 s in 3 s segments: one crop covers at most half; filled, nearly all of it.
    single = _dataset(speakers, segment_seconds=3.0, fill=False)
    filled = _dataset(speakers, segment_seconds=3.0, max_gap_seconds=0.3)
    for key in range(8):
        assert max(_active(s) for s in single[key]["sources"]) <= 1.5 / 3 + 0.01
        assert min(_active(s) for s in filled[key]["sources"]) >= 0.8
        torch.testing.assert_close(filled[key]["mixture"], filled[key]["sources"].sum(0))
        assert filled[key]["sources"].shape == (2, 24000)


def test_one_speaker_folder_is_refused_naming_it(tmp_path: Path) -> None:
    root = write_speakers(tmp_path / "solo", speakers=1, utterances=3)
    with pytest.raises(InputError, match=rf"{root / 'spk0'} hold only 1 \(\['spk0'\]\)"):
        _dataset(root)
    with pytest.raises(InputError, match="at least 3 different speakers"):
        _dataset(write_speakers(tmp_path / "duo", speakers=2), num_sources=3)


def test_all_silent_source_gives_zeros_without_nan(tmp_path: Path) -> None:
    root = write_speakers(tmp_path / "speech", speakers=1, utterances=2)
    write_wav(root / "mute" / "mute_u0.wav", np.zeros(8000, np.float32), 8000)
    dataset = _dataset(root, length=4)
    for key in range(4):
        item = dataset[key]
        assert torch.isfinite(item["sources"]).all() and item["silent_sources"] == 1
        silent = item["speakers"].index("mute")
        assert float(item["sources"][silent].abs().max()) == 0.0
        assert float(item["sources"][1 - silent].abs().max()) > 0.01


def test_silent_crops_are_redrawn(tmp_path: Path) -> None:
    root = write_speakers(tmp_path / "speech", speakers=1, utterances=2)
    # Mostly silence with 0.5 s of speech: a crop landing in the silence is replaced by another one.
    gappy = np.concatenate([np.zeros(16000, np.float32), voiced(0.5, 8000, 1)])
    write_wav(root / "gap" / "gap_u0.wav", gappy, 8000)
    dataset = _dataset(root, length=12, segment_seconds=0.25)
    for key in range(len(dataset)):
        item = dataset[key]
        assert item["silent_sources"] == 0
        assert float(item["sources"].pow(2).mean(-1).min()) > 0


def test_speed_perturbation_scales_pitch(tmp_path: Path) -> None:
    t = np.arange(16000) / 8000
    for name in ("a", "b"):
        write_wav(
            tmp_path / name / f"{name}_u0.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 8000
        )
    dataset = _dataset(tmp_path, segment_seconds=1.0, speed_factors=[0.8])
    spectrum = torch.fft.rfft(dataset[0]["sources"][0]).abs()
    assert int(spectrum.argmax()) == 250  # 200 Hz played 1/0.8 times faster; 1 Hz bins for 1 s
    assert dataset[0]["sources"].shape == (2, 8000)


def test_speaker_index_and_split(tmp_path: Path, speakers: Path) -> None:
    index = tmp_path / "index.csv"
    with index.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "speaker", "source", "licence", "duration"])
        for path in sorted(speakers.rglob("*.wav")):
            source = "a" if path.parent.name in ("spk0", "spk1") else "b"
            writer.writerow([path.relative_to(tmp_path), f"x{path.parent.name}", source, "CC0", 1.0])
    utterances = read_speaker_index(index)
    assert len(utterances) == 12 and utterances[0].speaker == "xspk0"
    assert {u.speaker for u in read_speaker_index(index, sources=["a"])} == {"xspk0", "xspk1"}
    assert len(read_speaker_index(index, min_seconds=1.1)) == 8  # the 1.0 s utterances left out
    kept, held = split_utterances(utterances, 0.34, seed=0)
    assert len(held) == 4 and len(kept) == 8 and not {u.path for u in kept} & {u.path for u in held}
    assert {u.speaker for u in held} == {u.speaker for u in kept}
    (speakers / "spk3" / "spk3_u0.wav").unlink()
    with pytest.raises(
        InputFileNotFoundError, match=r"spk3_u0\.wav does not exist \(listed in speaker index"
    ):
        read_speaker_index(index)


def test_speaker_from_prefix_and_folder(speakers: Path) -> None:
    by_folder = index_utterances(speakers, "folder")
    by_prefix = index_utterances(speakers, "prefix")
    assert [u.speaker for u in by_folder] == [u.speaker for u in by_prefix]
    assert len({u.speaker for u in by_folder}) == 4


def test_bad_utterance_is_named(tmp_path: Path) -> None:
    root = write_speakers(tmp_path / "speech", speakers=2, utterances=1)
    (root / "spk1" / "spk1_u9.wav").write_bytes(b"")
    with pytest.raises(InputError, match=r"spk1_u9\.wav is empty"):
        index_utterances(root)


@pytest.mark.realdata
def test_real_clean_utterances() -> None:
    if not CLEAN_16K.is_dir():
        pytest.skip(f"shared clean utterances {CLEAN_16K} are absent")
    utterances = index_utterances(CLEAN_16K, "prefix")
    assert sorted({u.speaker for u in utterances}) == ["spk1", "spk2"]
    dataset = DynamicMixingDataset(utterances, length=4, segment_seconds=2.0, speed_factors=[0.95, 1.0, 1.05])
    with pytest.warns(UserWarning, match="16000 Hz"):
        items = [dataset[k] for k in range(4)]
    for item in items:
        assert sorted(item["speakers"]) == ["spk1", "spk2"] and item["sources"].shape == (2, 16000)
        assert -5.001 <= _snr(item["sources"]) <= 5.001
