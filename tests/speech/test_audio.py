"""Audio reading and writing: rates, channels, bad files named in the error, atomic writes."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from core.utils import InputError, InputFileNotFoundError
from domains.speech import audio
from domains.speech.audio import audio_info, load_audio, resample, write_audio
from tests.speech.audio_fixtures import CLEAN_16K, LIBRI2MIX_EXAMPLES, voiced, write_wav


@pytest.fixture
def tone(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = voiced(0.5, 8000, 0)
    return write_wav(tmp_path / "tone.wav", data, 8000, subtype="FLOAT"), data


def test_load_keeps_samples_and_rate(tone: tuple[Path, np.ndarray]) -> None:
    path, data = tone
    waveform, rate = load_audio(path)
    assert rate == 8000 and waveform.dtype == torch.float32
    torch.testing.assert_close(waveform, torch.from_numpy(data))
    crop, _ = load_audio(path, start=100, frames=50)
    torch.testing.assert_close(crop, torch.from_numpy(data[100:150]))


def test_flac_is_read(tmp_path: Path) -> None:
    data = voiced(0.3, 16000, 1)
    sf.write(tmp_path / "a.flac", data, 16000)
    waveform, rate = load_audio(tmp_path / "a.flac")
    assert rate == 16000
    assert torch.allclose(waveform, torch.from_numpy(data), atol=1 / 2**14)


def test_resample_matches_torchaudio_and_warns_once_naming_the_file(tmp_path: Path) -> None:
    data = voiced(0.5, 16000, 2)
    path = write_wav(tmp_path / "wide.wav", data, 16000, subtype="FLOAT")
    audio._WARNED.clear()
    with pytest.warns(UserWarning, match=r"wide\.wav is at 16000 Hz; resampling it to 8000 Hz"):
        waveform, rate = load_audio(path, sample_rate=8000)
    assert rate == 8000 and waveform.shape == (4000,)
    torch.testing.assert_close(waveform, AF.resample(torch.from_numpy(data), 16000, 8000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(path, sample_rate=8000)  # the same file again: no second warning


def test_stereo_downmix_or_error(tmp_path: Path) -> None:
    left, right = voiced(0.2, 8000, 3), voiced(0.2, 8000, 4)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    waveform, _ = load_audio(path, channels="downmix")
    torch.testing.assert_close(waveform, torch.from_numpy((left + right) / 2))
    with pytest.raises(InputError, match=r"stereo\.wav has 2 channels"):
        load_audio(path, channels="error")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda good: good[: len(good) // 2], r"bad\.wav is truncated"),
        (lambda good: good[:44], r"bad\.wav holds no samples"),
        (lambda good: b"", r"bad\.wav is empty"),
        (lambda good: b"not audio at all" * 8, r"bad\.wav cannot be read"),
    ],
    ids=["truncated", "header-only", "empty", "garbage"],
)
def test_bad_files_name_the_file(tmp_path: Path, content, message: str) -> None:
    good = write_wav(tmp_path / "good.wav", voiced(0.5, 8000, 5), 8000).read_bytes()
    (tmp_path / "bad.wav").write_bytes(content(good))
    with pytest.raises(InputError, match=message):
        load_audio(tmp_path / "bad.wav")


def test_truncated_flac_and_zero_length_written_file(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.flac", voiced(1.0, 8000, 6), 8000)
    (tmp_path / "cut.flac").write_bytes((tmp_path / "a.flac").read_bytes()[:2000])
    with pytest.raises(InputError, match=r"cut\.flac"):
        load_audio(tmp_path / "cut.flac")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(InputError, match=r"zero\.wav holds no samples"):
        audio_info(tmp_path / "zero.wav")
    with pytest.raises(InputFileNotFoundError, match=r"missing\.wav does not exist"):
        load_audio(tmp_path / "missing.wav")


def test_non_finite_samples_are_refused(tmp_path: Path) -> None:
    data = voiced(0.1, 8000, 7)
    data[10] = np.nan
    path = write_wav(tmp_path / "nan.wav", data, 8000, subtype="FLOAT")
    with pytest.raises(InputError, match=r"nan\.wav holds NaN"):
        load_audio(path)


def test_write_audio_is_atomic_and_round_trips(tmp_path: Path) -> None:
    data = torch.from_numpy(voiced(0.25, 8000, 8))
    target = write_audio(tmp_path / "out" / "a_s1.wav", data.unsqueeze(0), 8000)
    assert sorted(p.name for p in target.parent.iterdir()) == ["a_s1.wav"]
    torch.testing.assert_close(load_audio(target)[0], data)
    flac = write_audio(tmp_path / "out" / "a_s2.flac", data, 16000)
    assert sf.info(flac).samplerate == 16000 and sf.info(flac).subtype == "PCM_16"


def test_write_audio_failure_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mono waveform"):
        write_audio(tmp_path / "x.wav", torch.zeros(2, 10), 8000)
    with pytest.raises(ValueError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / "x.mp3", torch.zeros(10), 8000)
    with pytest.raises(RuntimeError):  # libsndfile refuses the rate; the temporary file must not stay behind
        write_audio(tmp_path / "y.wav", torch.zeros(10), 0)
    assert list(tmp_path.iterdir()) == []


def test_resample_validates_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(torch.zeros(10), 0, 8000)
    x = torch.randn(100)
    assert resample(x, 8000, 8000) is x


@pytest.mark.realdata
def test_real_shared_files() -> None:
    if not LIBRI2MIX_EXAMPLES.is_dir() or not CLEAN_16K.is_dir():
        pytest.skip(f"shared speech data {LIBRI2MIX_EXAMPLES.parent} is absent")
    mixture, rate = load_audio(LIBRI2MIX_EXAMPLES / "ex_0" / "mixture.wav")
    s0, _ = load_audio(LIBRI2MIX_EXAMPLES / "ex_0" / "s0.wav")
    s1, _ = load_audio(LIBRI2MIX_EXAMPLES / "ex_0" / "s1.wav")
    assert rate == 8000 and mixture.shape == (41560,)
    # The shared Libri2Mix mixtures are the sum of their sources (up to 16-bit rounding).
    assert float((mixture - s0 - s1).abs().max()) < 3 / 2**15
    audio._WARNED.clear()
    with pytest.warns(UserWarning, match=r"spk1_snt1\.wav is at 16000 Hz"):
        utterance, rate = load_audio(CLEAN_16K / "spk1_snt1.wav", sample_rate=8000)
    assert rate == 8000 and utterance.shape == (45920 // 2,)
