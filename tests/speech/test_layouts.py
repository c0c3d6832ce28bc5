"""Layout readers on fixtures in the exact LibriMix, WHAM!/wsj0-2mix and example-list layouts; real files."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.utils import InputError, InputFileNotFoundError
from domains.speech.layouts import (
    check_example,
    example_list,
    librimix_examples,
    read_layout,
    wham_examples,
)
from tests.speech.audio_fixtures import (
    LIBRI2MIX_EXAMPLES,
    voiced,
    write_examples,
    write_librimix,
    write_wav,
    write_wham,
)


def test_librimix_reads_metadata(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "Libri2Mix" / "wav8k" / "min", "dev", count=3)
    examples = librimix_examples(root, "dev", "mix_clean")
    assert [e.id for e in examples] == [
        "1000-2000-0000_3000-4000-0001",
        "1001-2001-0000_3001-4001-0001",
        "1002-2002-0000_3002-4002-0001",
    ]
    first = examples[0]
    assert first.mixture == root / "dev" / "mix_clean" / f"{first.id}.wav"
    assert first.sources == (root / "dev" / "s1" / f"{first.id}.wav", root / "dev" / "s2" / f"{first.id}.wav")
    assert [check_example(e) for e in examples] == [(8000, 8000), (10000, 8000), (12000, 8000)]
    noisy = librimix_examples(root, "dev", "mix_both")
    assert noisy[0].mixture.parent.name == "mix_both" and len(noisy[0].sources) == 2


def test_librimix_moved_dataset_uses_the_given_root(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "min", "test", count=2, absolute=False)
    examples = read_layout("librimix", root, "test")
    assert all(e.mixture.is_relative_to(root) for e in examples)


def test_librimix_only_metadata_rows_are_examples(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "min", "test", count=2)
    write_wav(root / "test" / "mix_clean" / "stray.wav", voiced(0.5, 8000, 1), 8000)
    assert len(librimix_examples(root, "test")) == 2


def test_librimix_missing_metadata_names_the_folder(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "min", "test", count=1)
    with pytest.raises(InputFileNotFoundError, match=r"mixture_dev_mix_clean\.csv does not exist"):
        librimix_examples(root, "dev")
    shutil.rmtree(root / "metadata")
    with pytest.raises(InputFileNotFoundError, match=rf"LibriMix folder {root} has no metadata/ folder"):
        librimix_examples(root, "test")


def test_librimix_missing_audio_and_bad_columns(tmp_path: Path) -> None:
    root = write_librimix(tmp_path / "min", "test", count=2)
    victim = sorted((root / "test" / "s2").iterdir())[1]
    victim.unlink()
    with pytest.raises(InputFileNotFoundError, match=rf"{victim.name} does not exist"):
        librimix_examples(root, "test")
    (root / "metadata" / "mixture_test_mix_clean.csv").write_text("id,path\na,b\n")
    with pytest.raises(InputError, match="must have the columns mixture_ID"):
        librimix_examples(root, "test")


def test_wham_layout(tmp_path: Path) -> None:
    root = write_wham(tmp_path / "wav8k" / "min", "cv", count=3)
    examples = wham_examples(root, "cv")
    assert len(examples) == 3
    for example in examples:
        assert [p.parent.name for p in example.sources] == ["s1", "s2"]
        assert all(p.name == example.mixture.name for p in example.sources)
        check_example(example)
    write_wham(tmp_path / "wham", "tt", count=1, mixture="mix_both")
    assert len(read_layout("wham", tmp_path / "wham", "tt", "mix_both")) == 1


def test_wham_missing_source_is_named(tmp_path: Path) -> None:
    root = write_wham(tmp_path / "w", "tt", count=2)
    victim = sorted((root / "tt" / "s1").iterdir())[0]
    victim.unlink()
    with pytest.raises(InputFileNotFoundError, match=rf"source file .*{victim.name} of mixture"):
        wham_examples(root, "tt")
    with pytest.raises(InputFileNotFoundError, match="split folder"):
        wham_examples(root, "tr")


def test_example_list(tmp_path: Path) -> None:
    write_examples(tmp_path / "ex", count=3)
    examples = example_list(tmp_path / "ex")
    assert [e.id for e in examples] == ["ex_0", "ex_1", "ex_2"]
    assert [p.name for p in examples[0].sources] == ["s0.wav", "s1.wav"]
    with pytest.raises(InputFileNotFoundError, match=r"ex_0 has 2 source files .* 3 are expected"):
        read_layout("examples", tmp_path / "ex", ".", num_sources=3)


def test_example_list_errors_name_the_folder(tmp_path: Path) -> None:
    write_examples(tmp_path / "ex", count=2)
    (tmp_path / "ex" / "ex_1" / "s1.wav").unlink()
    with pytest.raises(InputFileNotFoundError, match=r"ex_1 has 1 source files .* \(missing s1\.wav\)"):
        example_list(tmp_path / "ex")
    with pytest.raises(InputError, match="holds no ex_"):
        example_list(tmp_path)


def test_length_mismatch_names_both_files(tmp_path: Path) -> None:
    write_examples(tmp_path / "ex", count=1)
    source = tmp_path / "ex" / "ex_0" / "s1.wav"
    write_wav(source, voiced(0.7, 8000, 9), 8000)
    (example,) = example_list(tmp_path / "ex")
    with pytest.raises(
        InputError, match=r"mixture .*ex_0/mixture\.wav has 8000 samples but its source .*s1\.wav"
    ):
        check_example(example)
    write_wav(source, np.zeros(8000, np.float32), 16000)
    with pytest.raises(InputError, match=r"s1\.wav is at 16000 Hz"):
        check_example(example)


@pytest.mark.realdata
def test_real_libri2mix_examples() -> None:
    if not LIBRI2MIX_EXAMPLES.is_dir():
        pytest.skip(f"shared Libri2Mix examples {LIBRI2MIX_EXAMPLES} are absent")
    examples = read_layout("examples", LIBRI2MIX_EXAMPLES)
    assert [e.id for e in examples] == [f"ex_{i}" for i in range(5)]
    assert [check_example(e) for e in examples] == [
        (41560, 8000),
        (73680, 8000),
        (59600, 8000),
        (66080, 8000),
        (76041, 8000),
    ]
