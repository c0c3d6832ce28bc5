"""data/speech/prepare.py from a folder of .deb files built here, and the committed embedded subset."""

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from domains.speech.audio import load_audio
from domains.speech.layouts import check_example, example_list
from domains.speech.mixing import read_speaker_index
from tests.conftest import import_script
from tests.speech.audio_fixtures import LIBRI2MIX_EXAMPLES, REPO, tree_state, voiced, write_wav

EMBEDDED = REPO / "data" / "speech" / "embedded"


@pytest.fixture(scope="module")
def prepare():
    return import_script(REPO / "data" / "speech" / "prepare.py", "speech_prepare")


def _deb(folder: Path, package: str, files: dict[str, np.ndarray | bytes], debs: Path) -> None:
    """A minimal Debian package holding ``files`` (wav arrays at 8 kHz, or raw bytes), built with dpkg-deb."""
    root = folder / package
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: fixture\n"
    )
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_wav(path, content, 8000)
    subprocess.run(
        ["dpkg-deb", "-Znone", "--build", str(root), str(debs / f"{package}_1.0-1_all.deb")],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory, prepare) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    work = tmp_path_factory.mktemp("debs")
    out = work / "debs"
    out.mkdir()
    for k, (lang, (folder, _, _)) in enumerate(prepare.ASTERISK.items()):
        sounds = f"usr/share/asterisk/sounds/{folder}"
        files = {
            f"{sounds}/hello.wav": voiced(1.5, 8000, k),
            f"{sounds}/digits/1.wav": voiced(0.8, 8000, 10 + k),
            f"{sounds}/beep.wav": voiced(0.6, 8000, 20 + k),
            f"{sounds}/silence/1.wav": np.zeros(8000, np.float32),
            f"{sounds}/short.wav": voiced(0.2, 8000, 30 + k),
        }
        _deb(work, f"asterisk-core-sounds-{lang}-wav", files, out)
    codec2 = {}
    for j, (relative, _) in enumerate(prepare.CODEC2):
        seconds = 10.0 if "david" in relative else 2.0
        wave = voiced(seconds, 8000, 40 + j)
        key = f"usr/share/codec2/{relative}"
        codec2[key] = (wave * 32767).astype("<i2").tobytes() if relative.endswith(".raw") else wave
    _deb(work, "codec2-examples", codec2, out)
    data = "usr/share/pocketsphinx/test/data"
    _deb(
        work,
        "pocketsphinx-testdata",
        {f"{data}/librivox/a.wav": voiced(2.0, 8000, 60), f"{data}/cards/001.wav": voiced(1.0, 8000, 61)},
        out,
    )
    return out


def test_prepare_from_local_debs(tmp_path: Path, prepare, debs: Path, capsys) -> None:
    before = tree_state(debs)
    cache = tmp_path / "cache"
    assert prepare.main(["--from", str(debs), "--cache", str(cache), "--shared", str(tmp_path / "none")]) == 0
    assert tree_state(debs) == before
    with (cache / "speakers.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    speakers = {r["speaker"] for r in rows}
    # 4 Asterisk voices (en and es are both Allison Smith), 10 codec2 recordings, 2 pocketsphinx sets.
    assert len(speakers) == 16 and "asterisk_allison" in speakers
    asterisk = [r for r in rows if r["source"].startswith("asterisk")]
    assert sorted({Path(r["path"]).name for r in asterisk}) == ["1.wav", "hello.wav"]  # no beep/silence/short
    assert len(asterisk) == 10
    david = sorted(Path(r["path"]).name for r in rows if r["speaker"] == "codec2_david")
    assert david == ["david4_c00.wav", "david4_c01.wav", "david4_c02.wav"]  # 10 s cut into 4 s (+ 2 s tail)
    raw = next(cache / r["path"] for r in rows if r["speaker"] == "codec2_hts1")
    assert raw.suffix == ".wav" and sf.info(raw).samplerate == 8000
    utterances = read_speaker_index(cache / "speakers.csv")
    assert len(utterances) == len(rows)
    assert re.search(r"^total\s+16\s+24\s", capsys.readouterr().out, re.MULTILINE)
    # A second run reuses the cache (no download, same index).
    first = (cache / "speakers.csv").read_text()
    prepare.main(["--from", str(debs), "--cache", str(cache), "--shared", str(tmp_path / "none")])
    assert (cache / "speakers.csv").read_text() == first


def test_prepare_refuses_a_cache_inside_an_input(tmp_path: Path, prepare, debs: Path) -> None:
    from core.utils import InputError

    with pytest.raises(InputError, match="may not lie inside the input folder"):
        prepare.main(["--from", str(debs), "--cache", str(debs / "cache")])


def test_embedded_subset() -> None:
    if not EMBEDDED.is_dir():
        pytest.skip(f"{EMBEDDED} has not been written (python data/speech/prepare.py --embedded ...)")
    size = sum(p.stat().st_size for p in EMBEDDED.rglob("*") if p.is_file())
    assert size < 4_000_000
    utterances = read_speaker_index(EMBEDDED / "speakers.csv")
    assert len({u.speaker for u in utterances}) >= 8
    assert all(u.sample_rate == 8000 and u.path.is_relative_to(EMBEDDED) for u in utterances)
    examples = example_list(EMBEDDED / "libri2mix_test")
    assert [check_example(e) for e in examples] == [
        (41560, 8000),
        (73680, 8000),
        (59600, 8000),
        (66080, 8000),
        (76041, 8000),
    ]
    if LIBRI2MIX_EXAMPLES.is_dir():  # FLAC keeps the 16-bit samples exactly
        for example in examples:
            shared = LIBRI2MIX_EXAMPLES / example.id / "mixture.wav"
            torch.testing.assert_close(load_audio(example.mixture)[0], load_audio(shared)[0], atol=0, rtol=0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
