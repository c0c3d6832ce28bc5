"""Fetch real single-speaker speech, index it by speaker, and (optionally) write the embedded subset.

Sources (``data/speech/README.md`` has their origins and licences):

* Debian packages, fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (nothing is
  installed): ``asterisk-core-sounds-{en,es,fr,it,ru}-wav`` (IVR prompts, native 8 kHz),
  ``codec2-examples`` (about ten 8 kHz speakers), ``pocketsphinx-testdata`` (16 kHz);
* ``../shared/data/speech/clean_utterances_16k`` (two speakers), when present;
* optionally TTS voices (``--tts``): ``espeak-ng`` (voice × variant × pitch × speed) and ``flite``, when the
  programs are on ``PATH`` (or given with ``--espeak`` / ``--flite``).

Everything is written under the cache folder (default ``data/speech/cache/``, git-ignored), never next to
the inputs: ``debs/``, ``extracted/<package>/``, ``converted/`` (headerless PCM turned into wav, and long
recordings cut into ``--chunk-seconds`` pieces so that a held-out utterance exists for each speaker),
``tts/``, and the index ``speakers.csv`` with the columns ``path`` (relative to the CSV), ``speaker``,
``source``, ``licence``, ``duration`` (seconds). ``DynamicMixingDataModule(speaker_index=...)`` reads it.

Usage::

    python data/speech/prepare.py                        # apt-get download into the cache, then index
    python data/speech/prepare.py --from DIR             # use already downloaded .deb files from DIR
    python data/speech/prepare.py --tts                  # add TTS speakers (espeak-ng / flite if installed)
    python data/speech/prepare.py --tts-fetch            # ... unpacking both from Debian packages first
    python data/speech/prepare.py --embedded data/speech/embedded   # also write the committed subset

Speaker identities are what the sources document: one per Asterisk voice (the English and the Mexican
Spanish prompts are both Allison Smith's, so they are one speaker), one per codec2 recording (codec2 does
not name its speakers; recordings of one person under two names would break the different-speaker
constraint, so the known excerpts ``hts1a``/``hts2a`` of ``hts1``/``hts2`` are left out), one per
pocketsphinx test set (the LibriVox reader; the "cards" speaker).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.utils import InputError  # noqa: E402
from domains.speech.audio import audio_info, load_audio, write_audio  # noqa: E402

ASTERISK = {
    # package language: (sounds folder, speaker, licence)
    "en": ("en_US_f_Allison", "asterisk_allison", "CC-BY-SA-3.0 (Allison Smith, Digium)"),
    "es": ("es_MX_f_Allison", "asterisk_allison", "CC-BY-SA-3.0 (Allison Smith, Digium)"),
    "fr": ("fr_CA_f_June", "asterisk_june", "CC-BY-SA-3.0 (June Wallack)"),
    "it": ("it_IT_m_Carlo", "asterisk_carlo", "CC-BY-3.0 (Carlo Flora)"),
    "ru": ("ru_RU_f_IvrvoiceRU", "asterisk_maxim", "CC-BY-3.0 (Maxim, IvrvoiceRU)"),
}
# Tones, beeps, silence and animal noises are not speech.
ASTERISK_SKIP = ("beep", "tone", "tt-monkeys", "tt-weasels")

CODEC2_LICENCE = "LGPL-2.1 (codec2, David Rowe)"
# (path under usr/share/codec2, speaker). Left out: f2400/m2400 (codec-degraded), all.wav (a concatenation),
# hts.raw (a concatenation), hts1a/hts2a (excerpts of hts1/hts2), ve9qrp*, vk5qi, vk2tpm_004, g3plx,
# cq_ref, 700d_end_over, wia_16kHz (radio recordings), sine*/test* (modem signals).
CODEC2 = [
    ("wav/big_dog.wav", "codec2_big_dog"),
    ("wav/cross.wav", "codec2_cross"),
    ("wav/david4.wav", "codec2_david"),
    ("wav/forig.wav", "codec2_forig"),
    ("wav/morig.wav", "codec2_morig"),
    ("wav/mmt1.wav", "codec2_mmt1"),
    ("raw/hts1.raw", "codec2_hts1"),
    ("raw/hts2.raw", "codec2_hts2"),
    ("raw/kristoff.raw", "codec2_kristoff"),
    ("raw/speech_orig_16k.wav", "codec2_speech_orig"),
]
POCKETSPHINX_LICENCE = "BSD-2 (CMU pocketsphinx test data)"
POCKETSPHINX = [("librivox/*.wav", "pocketsphinx_librivox"), ("cards/*.wav", "pocketsphinx_cards")]
PACKAGES = [f"asterisk-core-sounds-{lang}-wav" for lang in ASTERISK] + [
    "codec2-examples",
    "pocketsphinx-testdata",
]

SHARED_CLEAN_LICENCE = "Apache-2.0 (speechbrain tests/samples; origin of the recordings not stated)"

# Harvard sentences (IEEE 1969 recommended practice for speech quality measurements; public domain).
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
]
TTS_LICENCE = "generated by {} (GPL-3 program; synthetic output, Harvard sentences: public domain)"


@dataclass
class Entry:
    """One row of the speaker index."""

    path: Path
    speaker: str
    source: str
    licence: str
    duration: float


def log(message: str) -> None:
    """Progress on stderr (stdout keeps the final counts)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- packages


def fetch_debs(cache: Path, local: Path | None, packages: list[str]) -> dict[str, Path]:
    """The .deb file of every package: from ``local``, else the cache, else ``apt-get download``."""
    debs_dir = cache / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    missing = []
    for package in packages:
        for folder in ([local] if local else []) + [debs_dir]:
            matches = sorted(folder.glob(f"{package}_*.deb"))
            if matches:
                found[package] = matches[-1]
                break
        else:
            missing.append(package)
    if missing:
        if local is not None:
            log(f"--from folder {local} has no .deb file for {missing}; downloading them")
        log(f"apt-get download {' '.join(missing)}")
        result = subprocess.run(
            ["apt-get", "download", *missing], cwd=debs_dir, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"apt-get download failed ({result.stderr.strip()[-400:]}); run `apt-get update` first, or "
                "download the .deb files elsewhere and pass --from DIR"
            )
        for package in missing:
            matches = sorted(debs_dir.glob(f"{package}_*.deb"))
            if not matches:
                raise RuntimeError(f"apt-get download gave no .deb file for {package} in {debs_dir}")
            found[package] = matches[-1]
    return found


def extract(deb: Path, target: Path) -> Path:
    """``dpkg-deb -x`` into ``target`` (once per package), returning ``target/usr/share``."""
    done = target / f".{deb.stem}.extracted"
    if not done.is_file():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        done.write_text(deb.name + "\n")
    return target / "usr" / "share"


# The TTS programs and the libraries they load, unpacked (not installed) into ``cache/tts-root``.
TTS_PACKAGES = [
    "espeak-ng",
    "libespeak-ng1",
    "espeak-ng-data",
    "libpcaudio0",
    "libsonic0",
    "libpulse0",
    "libsndfile1",
    "libasyncns0",
    "libflac12",
    "libvorbis0a",
    "libvorbisenc2",
    "libopus0",
    "libogg0",
    "libmpg123-0",
    "libmp3lame0",
    "flite",
    "libflite1",
]


def fetch_tts(cache: Path, local: Path | None) -> tuple[str, str, dict[str, str]]:
    """Unpack espeak-ng and flite with their libraries; ``(espeak, flite, environment)`` to run them."""
    root = cache / "tts-root"
    for deb in fetch_debs(cache, local, TTS_PACKAGES).values():
        extract(deb, root)
    libs = root / "usr" / "lib" / "x86_64-linux-gnu"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(libs), str(libs / "pulseaudio"), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    )
    env["ESPEAK_DATA_PATH"] = str(libs / "espeak-ng-data")
    return str(root / "usr" / "bin" / "espeak-ng"), str(root / "usr" / "bin" / "flite"), env


# ---------------------------------------------------------------------------------------------- sources


def chunk_or_keep(
    path: Path, speaker: str, source: str, licence: str, out: Path, chunk_seconds: float, raw_rate: int = 0
) -> list[Entry]:
    """Index ``path``; headerless PCM (``raw_rate`` > 0) is written as wav, long files are cut into chunks."""
    if raw_rate:
        data = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0
        rate = raw_rate
    else:
        waveform, rate = load_audio(path)
        data = waveform.numpy()
    if data.size == 0:
        raise InputError(f"audio file {path} holds no samples (zero-length audio)")
    chunk = round(chunk_seconds * rate)
    if not raw_rate and data.size < 2 * chunk:
        return [Entry(path, speaker, source, licence, data.size / rate)]
    entries = []
    pieces = [data] if data.size < 2 * chunk else [data[i : i + chunk] for i in range(0, data.size, chunk)]
    for i, piece in enumerate(pieces):
        if piece.size < rate:  # a tail shorter than 1 s is dropped
            continue
        name = path.stem if len(pieces) == 1 else f"{path.stem}_c{i:02d}"
        target = write_audio(out / speaker / f"{name}.wav", piece, rate, subtype="PCM_16")
        entries.append(Entry(target, speaker, source, licence, piece.size / rate))
    return entries


def asterisk_entries(share: Path, lang: str, min_seconds: float) -> tuple[list[Entry], int]:
    """The Asterisk prompts of one language, without tones, beeps and silence; ``(entries, skipped)``."""
    folder, speaker, licence = ASTERISK[lang]
    entries, skipped = [], 0
    for path in sorted((share / "asterisk" / "sounds" / folder).rglob("*.wav")):
        if "silence" in path.parts or any(word in path.stem for word in ASTERISK_SKIP):
            skipped += 1
            continue
        try:
            info = audio_info(path)
        except InputError as error:
            log(f"skipped: {error}")
            skipped += 1
            continue
        if info.duration < min_seconds:
            skipped += 1
            continue
        entries.append(Entry(path, speaker, f"asterisk_{lang}", licence, info.duration))
    return entries, skipped


def codec2_entries(share: Path, out: Path, chunk_seconds: float) -> list[Entry]:
    """The codec2 speakers (raw files are 8 kHz 16-bit headerless PCM)."""
    entries = []
    for relative, speaker in CODEC2:
        path = share / "codec2" / relative
        raw_rate = 8000 if path.suffix == ".raw" else 0
        entries += chunk_or_keep(path, speaker, "codec2", CODEC2_LICENCE, out, chunk_seconds, raw_rate)
    return entries


def pocketsphinx_entries(share: Path, out: Path, chunk_seconds: float) -> list[Entry]:
    """The LibriVox and "cards" test utterances of pocketsphinx (16 kHz)."""
    entries = []
    for pattern, speaker in POCKETSPHINX:
        for path in sorted((share / "pocketsphinx" / "test" / "data").glob(pattern)):
            entries += chunk_or_keep(path, speaker, "pocketsphinx", POCKETSPHINX_LICENCE, out, chunk_seconds)
    return entries


def shared_entries(folder: Path) -> list[Entry]:
    """``spk<k>_snt<j>.wav`` of ``../shared/data/speech/clean_utterances_16k``."""
    return [
        Entry(
            p, f"shared_{p.stem.split('_')[0]}", "shared_clean", SHARED_CLEAN_LICENCE, audio_info(p).duration
        )
        for p in sorted(folder.glob("*.wav"))
    ]


def render(command: list[str], target: Path, env: dict[str, str] | None, rate: int) -> bool:
    """Run a TTS ``command`` that writes ``target`` (once), stored at ``rate``; False if the program fails.

    espeak-ng writes 22.05 kHz; resampling once here instead of at every crop makes mixing TTS speech as
    cheap as mixing the 8 kHz recordings (3 instead of 25 ms per 4 s mixture on one core).
    """
    if target.is_file():
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_name(f".{target.stem}.raw.wav")
    result = subprocess.run([*command, str(raw)], capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0 or not raw.is_file():
        log(f"skipped: {' '.join(command)} failed: {result.stderr.strip()[-200:]}")
        raw.unlink(missing_ok=True)
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        waveform, _ = load_audio(raw, rate)
    write_audio(target, waveform, rate, subtype="PCM_16")
    raw.unlink()
    return True


def tts_entries(
    out: Path,
    espeak: str | None,
    flite: str | None,
    voices: int,
    sentences: int,
    env: dict[str, str] | None = None,
    rate: int = 8000,
) -> list[Entry]:
    """TTS speakers: espeak-ng voice × variant × pitch × speed combinations, and flite's voices.

    Each speaker reads the first ``sentences`` Harvard sentences; a sentence the program fails on is skipped.
    """
    entries: list[Entry] = []
    texts = SENTENCES[:sentences]
    if espeak:
        languages = ["en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp", "de", "fr-fr", "es", "it", "nl"]
        variants = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]
        rng = np.random.default_rng(0)
        combos = [(lang, var) for var in variants for lang in languages]
        for k in range(min(voices, len(combos))):
            lang, variant = combos[k]
            pitch, speed = int(rng.integers(25, 75)), int(rng.integers(140, 190))
            speaker = f"espeak_{lang}+{variant}_p{pitch}_s{speed}"
            for j, text in enumerate(texts):
                target = out / "espeak" / speaker / f"{speaker}_{j:02d}.wav"
                command = [espeak, "-v", f"{lang}+{variant}", "-p", str(pitch), "-s", str(speed), text, "-w"]
                if render(command, target, env, rate):
                    entries.append(Entry(target, speaker, "tts_espeak", TTS_LICENCE.format("espeak-ng"), 0.0))
    if flite:
        listed = subprocess.run([flite, "-lv"], capture_output=True, text=True, check=False, env=env).stdout
        # kal16 is kal at 16 kHz (the same speaker) and awb_time a limited-domain voice that only tells the
        # time: neither is a further speaker.
        listed = listed.replace("Voices available:", "")
        names = [v for v in listed.split() if v not in ("kal16", "awb_time")]
        for voice in names[:voices]:
            speaker = f"flite_{voice}"
            for j, text in enumerate(texts):
                target = out / "flite" / speaker / f"{speaker}_{j:02d}.wav"
                if render([flite, "-voice", voice, "-t", text, "-o"], target, env, rate):
                    entries.append(Entry(target, speaker, "tts_flite", TTS_LICENCE.format("flite"), 0.0))
    for entry in entries:
        entry.duration = audio_info(entry.path).duration
    return entries


# ---------------------------------------------------------------------------------------------- outputs


def write_index(entries: list[Entry], index: Path) -> None:
    """The speaker index CSV; paths relative to its folder."""
    index.parent.mkdir(parents=True, exist_ok=True)
    temporary = index.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "speaker", "source", "licence", "duration"])
        for e in entries:
            writer.writerow(
                [os.path.relpath(e.path, index.parent), e.speaker, e.source, e.licence, f"{e.duration:.3f}"]
            )
    os.replace(temporary, index)


def summary(entries: list[Entry]) -> str:
    """Speakers, utterances and minutes per source, and in total."""
    by_source: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_source[entry.source].append(entry)
    lines = [f"{'source':<16}{'speakers':>9}{'utterances':>11}{'minutes':>9}"]
    for source, group in sorted(by_source.items()):
        minutes = sum(e.duration for e in group) / 60
        lines.append(f"{source:<16}{len({e.speaker for e in group}):>9}{len(group):>11}{minutes:>9.1f}")
    total = sum(e.duration for e in entries) / 60
    lines.append(f"{'total':<16}{len({e.speaker for e in entries}):>9}{len(entries):>11}{total:>9.1f}")
    return "\n".join(lines)


EMBEDDED_SPEAKERS = [
    "asterisk_allison",
    "asterisk_june",
    "asterisk_carlo",
    "asterisk_maxim",
    "codec2_david",
    "codec2_hts1",
    "codec2_hts2",
    "codec2_kristoff",
    "pocketsphinx_librivox",
]


def write_embedded(entries: list[Entry], out: Path, seconds: float, examples: Path | None) -> None:
    """The committed subset: ~``seconds`` of 8 kHz FLAC per speaker of :data:`EMBEDDED_SPEAKERS`.

    Utterances of 1 to 8 s, spread over the speaker's files in name order (deterministic). With
    ``examples`` (the Libri2Mix ``ex_*`` folders), their mixtures and sources are copied as FLAC under
    ``out/libri2mix_test``.
    """
    # Resampling the 16 kHz sources to 8 kHz is the point here, not a surprise to warn about.
    warnings.filterwarnings("ignore", message=r".*resampling it to 8000 Hz")
    for folder in (out / "speakers", out / "libri2mix_test"):  # this script's own outputs: no stale files
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    by_speaker: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_speaker[entry.speaker].append(entry)
    for speaker in EMBEDDED_SPEAKERS:
        total = 0.0
        # Spread the picks over the speaker's recordings instead of the first prompts in name order.
        candidates = sorted(
            (e for e in by_speaker[speaker] if 1.0 <= e.duration <= 8.0), key=lambda e: str(e.path)
        )
        step = max(1, len(candidates) // 24)
        for entry in candidates[::step]:
            if total >= seconds:
                break
            waveform, _ = load_audio(entry.path, 8000)
            target = write_audio(out / "speakers" / speaker / f"{entry.path.stem}.flac", waveform, 8000)
            total += waveform.numel() / 8000
            rows.append(Entry(target, speaker, entry.source, entry.licence, waveform.numel() / 8000))
    write_index(rows, out / "speakers.csv")
    if examples is not None:
        for folder in sorted(examples.glob("ex_*")):
            for stem in ("mixture", "s0", "s1"):
                waveform, rate = load_audio(folder / f"{stem}.wav")
                write_audio(out / "libri2mix_test" / folder.name / f"{stem}.flac", waveform, rate)
    log(f"embedded subset in {out}:\n{summary(rows)}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "speech" / "cache")
    parser.add_argument("--from", dest="local", type=Path, help="folder of already downloaded .deb files")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "speech")
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--tts", action="store_true", help="add espeak-ng/flite voices if installed")
    parser.add_argument(
        "--tts-fetch",
        action="store_true",
        help="unpack espeak-ng and flite from Debian packages into the cache (implies --tts)",
    )
    parser.add_argument("--espeak", default=shutil.which("espeak-ng"))
    parser.add_argument("--flite", default=shutil.which("flite"))
    parser.add_argument("--tts-voices", type=int, default=40, help="espeak-ng voices (and flite voices)")
    parser.add_argument("--tts-sentences", type=int, default=20)
    parser.add_argument("--tts-rate", type=int, default=8000, help="sample rate the TTS files are stored at")
    parser.add_argument("--embedded", type=Path, help="also write the committed subset to this folder")
    parser.add_argument("--embedded-seconds", type=float, default=24.0)
    args = parser.parse_args(argv)

    cache = args.cache.resolve()
    for root in [args.local, args.shared]:
        if root is not None and root.resolve() in [cache, *cache.parents]:
            raise InputError(f"the cache {cache} may not lie inside the input folder {root}")
    debs = fetch_debs(cache, args.local, PACKAGES)
    shares = {package: extract(deb, cache / "extracted" / deb.stem) for package, deb in debs.items()}
    converted = cache / "converted"
    entries: list[Entry] = []
    skipped = 0
    for lang in ASTERISK:
        found, dropped = asterisk_entries(shares[f"asterisk-core-sounds-{lang}-wav"], lang, args.min_seconds)
        entries += found
        skipped += dropped
    entries += codec2_entries(shares["codec2-examples"], converted / "codec2", args.chunk_seconds)
    entries += pocketsphinx_entries(
        shares["pocketsphinx-testdata"], converted / "pocketsphinx", args.chunk_seconds
    )
    clean = args.shared / "clean_utterances_16k"
    if clean.is_dir():
        entries += shared_entries(clean)
    else:
        log(f"{clean} is absent; its two speakers are not indexed")
    env = None
    if args.tts_fetch:
        args.espeak, args.flite, env = fetch_tts(cache, args.local)
        args.tts = True
    if args.tts:
        if not args.espeak and not args.flite:
            log(
                "--tts: neither espeak-ng nor flite is installed (see data/speech/README.md); no TTS speakers"
            )
        entries += tts_entries(
            cache / "tts", args.espeak, args.flite, args.tts_voices, args.tts_sentences, env, args.tts_rate
        )
    write_index(entries, cache / "speakers.csv")
    print(f"index {cache / 'speakers.csv'} ({skipped} Asterisk files skipped: tones, beeps, silence, < min)")
    print(summary(entries))
    if args.embedded is not None:
        examples = args.shared / "libri2mix_8k_test"
        write_embedded(entries, args.embedded, args.embedded_seconds, examples if examples.is_dir() else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
