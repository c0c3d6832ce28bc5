"""Writers of small audio fixtures in the exact on-disk layouts of the speech readers (tmp_path only)."""

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SHARED_SPEECH = REPO.parent / "shared" / "data" / "speech"
LIBRI2MIX_EXAMPLES = SHARED_SPEECH / "libri2mix_8k_test"
CLEAN_16K = SHARED_SPEECH / "clean_utterances_16k"


def voiced(seconds: float, rate: int, seed: int, f0: float | None = None) -> np.ndarray:
    """A harmonic tone with a random pitch and a syllable-rate envelope plus a little noise, peak ~0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = float(rng.uniform(90, 250)) if f0 is None else f0
    tone = sum(
        np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 6) if f0 * k < rate / 2
    )
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
    signal = tone * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def write_wav(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def write_mixture(mix: Path, sources: list[Path], seconds: float, rate: int, seed: int) -> None:
    """Sources of different pitches, and their sum as the mixture."""
    waves = [voiced(seconds, rate, seed * 10 + k) for k in range(len(sources))]
    for path, wave in zip(sources, waves, strict=True):
        write_wav(path, wave, rate)
    write_wav(mix, np.sum(waves, axis=0), rate)


def write_librimix(
    root: Path, split: str = "test", count: int = 3, rate: int = 8000, absolute: bool = True
) -> Path:
    """``root`` = ``Libri2Mix/wav8k/min`` with ``<split>/{mix_clean,mix_both,s1,s2,noise}`` and metadata CSVs.

    Rows follow the generation scripts: ``mixture_ID,mixture_path,source_1_path,source_2_path[,noise_path],
    length``; with ``absolute=False`` the recorded paths point to a folder that no longer exists (a moved
    dataset).
    """
    folder = root / split
    recorded = folder if absolute else Path("/nonexistent/LibriMix") / split
    rows: dict[str, list[dict[str, object]]] = {"mix_clean": [], "mix_both": []}
    for i in range(count):
        name = f"{1000 + i}-{2000 + i}-0000_{3000 + i}-{4000 + i}-0001"
        seconds = 1.0 + 0.25 * i
        waves = [voiced(seconds, rate, 100 + 10 * i + k) for k in range(2)]
        noise = 0.01 * np.random.default_rng(i).standard_normal(waves[0].size).astype(np.float32)
        write_wav(folder / "s1" / f"{name}.wav", waves[0], rate)
        write_wav(folder / "s2" / f"{name}.wav", waves[1], rate)
        write_wav(folder / "noise" / f"{name}.wav", noise, rate)
        write_wav(folder / "mix_clean" / f"{name}.wav", waves[0] + waves[1], rate)
        write_wav(folder / "mix_both" / f"{name}.wav", waves[0] + waves[1] + noise, rate)
        for kind in rows:
            row: dict[str, object] = {
                "mixture_ID": name,
                "mixture_path": recorded / kind / f"{name}.wav",
                "source_1_path": recorded / "s1" / f"{name}.wav",
                "source_2_path": recorded / "s2" / f"{name}.wav",
            }
            if kind == "mix_both":
                row["noise_path"] = recorded / "noise" / f"{name}.wav"
            row["length"] = waves[0].size
            rows[kind].append(row)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    for kind, table in rows.items():
        with (root / "metadata" / f"mixture_{split}_{kind}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return root


def write_wham(root: Path, split: str = "tt", count: int = 3, rate: int = 8000, mixture: str = "mix") -> Path:
    """``root/<split>/{<mixture>,s1,s2}/<name>.wav`` (wsj0-2mix names: two utterance ids and SNRs)."""
    for i in range(count):
        name = f"01{i}a010{i}_1.{i}_20{i}c020{i}_-1.{i}.wav"
        write_mixture(
            root / split / mixture / name,
            [root / split / "s1" / name, root / split / "s2" / name],
            1.0 + 0.5 * i,
            rate,
            200 + i,
        )
    return root


def write_examples(root: Path, count: int = 3, rate: int = 8000, sources: int = 2) -> Path:
    """``root/ex_<i>/{mixture,s0,s1}.wav`` as in ``../shared/data/speech/libri2mix_8k_test``."""
    for i in range(count):
        folder = root / f"ex_{i}"
        write_mixture(
            folder / "mixture.wav",
            [folder / f"s{k}.wav" for k in range(sources)],
            1.0 + 0.3 * i,
            rate,
            300 + i,
        )
    return root


def write_speakers(root: Path, speakers: int = 3, utterances: int = 4, rate: int = 8000) -> Path:
    """``root/<speaker>/<speaker>_u<j>.wav``: one pitch per speaker, 1-2 s utterances."""
    for s in range(speakers):
        f0 = 100.0 + 40.0 * s
        for j in range(utterances):
            write_wav(
                root / f"spk{s}" / f"spk{s}_u{j}.wav", voiced(1.0 + 0.25 * j, rate, 50 * s + j, f0), rate
            )
    return root


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to show nothing was written)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }
