"""Reading and writing audio files: checked, mono, at the model's sample rate.

Every reader of the speech domain goes through :func:`load_audio`, so a bad file gives one kind of error
(:class:`~core.utils.InputError` naming the file) wherever it is read, and a file at another rate is
resampled with ``torchaudio.functional.resample`` after a warning that names it (once per file and rate, so
an epoch over a folder of 16 kHz speech does not print the same line thousands of times).
"""

import os
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from core.utils import InputError, InputFileNotFoundError

__all__ = [
    "AUDIO_SUFFIXES",
    "ChannelMode",
    "audio_info",
    "load_audio",
    "resample",
    "write_audio",
]

AUDIO_SUFFIXES = (".wav", ".flac")
ChannelMode = Literal["downmix", "error"]

_WARNED: set[tuple[str, int, int]] = set()


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """The header of ``path`` (rate, frames, channels), checked to describe a non-empty readable file.

    Raises:
        InputFileNotFoundError: If the file does not exist.
        InputError: If it is not a readable wav/flac file or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"audio file {path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"audio file {path} is empty (0 bytes, zero-length audio)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise InputError(f"audio file {path} cannot be read as wav/flac: {error}") from error
    if info.frames <= 0:
        raise InputError(f"audio file {path} holds no samples (zero-length audio)")
    if info.format in ("WAV", "WAVEX"):
        _check_wav_complete(path)
    return info


def _check_wav_complete(path: Path) -> None:
    """Compare the byte count a RIFF/WAVE header declares for its ``data`` chunk with what the file holds.

    libsndfile silently shortens a truncated wav to the bytes present, so a file cut off in a copy would
    otherwise be read as a shorter utterance. Headers of streamed files (size 0 or 0xFFFFFFFF) are left
    alone.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return
                available = size - offset - 8
                if chunk_size > available:
                    raise InputError(
                        f"audio file {path} is truncated: its header declares {chunk_size} bytes of samples, "
                        f"but the file holds only {available}"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: ChannelMode = "downmix",
    start: int = 0,
    frames: int = -1,
) -> tuple[torch.Tensor, int]:
    """Read a wav/flac file as a mono float32 waveform.

    Args:
        path: The file.
        sample_rate: The rate to return; a file at another rate is resampled (with a one-time warning naming
            it). None keeps the file's rate.
        channels: What to do with a multi-channel file: ``downmix`` (mean of the channels) or ``error``.
        start: First frame to read, at the file's own rate.
        frames: Frames to read from ``start`` at the file's own rate (-1: to the end). Reading a crop
            instead of the whole file keeps dynamic mixing cheap on long recordings.

    Returns:
        ``(waveform (T,) float32, rate)`` where ``rate`` is ``sample_rate`` or, when that is None, the
        file's rate.

    Raises:
        InputFileNotFoundError: If the file does not exist.
        InputError: If the file is unreadable, truncated, empty, multi-channel with ``channels='error'``,
            or the requested frames lie outside it.
    """
    path = Path(path)
    if channels not in ("downmix", "error"):
        raise ValueError(f"channels must be 'downmix' or 'error', got {channels!r}")
    info = audio_info(path)
    if start < 0 or start >= info.frames:
        raise InputError(f"audio file {path}: start frame {start} is outside its {info.frames} frames")
    try:
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise InputError(f"audio file {path} is unreadable or truncated: {error}") from error
    expected = info.frames - start if frames < 0 else min(frames, info.frames - start)
    if data.shape[0] == 0:
        raise InputError(f"audio file {path} holds no samples (zero-length audio)")
    if data.shape[0] < expected:
        # libsndfile reads a file cut short of its header's length without complaint; the header is the
        # only record of what the file should hold.
        raise InputError(
            f"audio file {path} is truncated: its header declares {info.frames} frames, but only "
            f"{start + data.shape[0]} could be read"
        )
    if not np.isfinite(data).all():
        raise InputError(f"audio file {path} holds NaN or infinite samples")
    if data.shape[1] > 1:
        if channels == "error":
            raise InputError(
                f"audio file {path} has {data.shape[1]} channels; a mono file is expected "
                "(set channels='downmix' to average them)"
            )
        data = data.mean(axis=1, keepdims=True)
    waveform = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if sample_rate is None or sample_rate == rate:
        return waveform, int(rate)
    return resample(waveform, int(rate), int(sample_rate), name=str(path)), int(sample_rate)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, name: str | None = None) -> torch.Tensor:
    """Resample along the last axis with ``torchaudio.functional.resample``.

    Args:
        waveform: ``(..., T)`` float tensor.
        orig_rate: Its rate.
        new_rate: The rate wanted.
        name: The file it came from; a warning naming it is issued once per (file, rates).
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return waveform
    if name is not None:
        key = (name, orig_rate, new_rate)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(
                f"audio file {name} is at {orig_rate} Hz; resampling it to {new_rate} Hz",
                UserWarning,
                stacklevel=3,
            )
    return AF.resample(waveform, orig_rate, new_rate)


def write_audio(
    path: str | Path,
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
) -> Path:
    """Write a mono waveform atomically: to a temporary file in the target folder, then renamed.

    A reader never sees a half-written file, and an interrupted run leaves no partial file under the
    final name.

    Args:
        path: The target (``.wav`` or ``.flac``); its folder is created.
        waveform: ``(T,)`` or ``(1, T)`` samples in [-1, 1] (clipped when written as integer PCM).
        sample_rate: The rate to record in the header.
        subtype: libsndfile subtype (default ``FLOAT`` for wav, ``PCM_16`` for flac).

    Returns:
        ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise ValueError(f"write_audio writes {' or '.join(AUDIO_SUFFIXES)} files, got {path}")
    data = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if data.ndim == 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 1:
        raise ValueError(f"write_audio expects a mono waveform (T,) or (1, T), got shape {data.shape}")
    if subtype is None:
        subtype = "FLOAT" if suffix == ".wav" else "PCM_16"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sf.write(temporary, data.astype(np.float32), int(sample_rate), subtype=subtype, format=suffix[1:])
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
