"""Video decoding throughput: PyAV against torchcodec (when it imports), on the same clips, in the same run.

For every clip of a folder (default ``../shared/data/video``, else the embedded clips) the script times:

* **sequential**: PyAV decoding every frame to RGB in order (the ceiling for a reader, and what
  :func:`~domains.video.decoding.probe_video` pays once per video, without the RGB conversion);
* **clips, PyAV**: :func:`~domains.video.decoding.read_frames` of random 16-frame clips (stride 2), each
  seeking to the keyframe before it and decoding forward, as the datasets do per item;
* **clips, torchcodec**: the same clips (same positions) through ``backend="torchcodec"``.

As in the datasets, PyAV opens the file for every clip, while torchcodec keeps one decoder per file and
process (building one in exact mode scans the file; the warm-up pays for it).

The clip readers alternate in rounds after a warm-up; the table gives decoded frames per second (frames
returned, not frames the decoder walked through) and the ratio torchcodec / PyAV (higher = torchcodec
faster), or ``n/a`` where torchcodec or its FFmpeg libraries are missing.

Run: ``python -m benchmarks.video_decode [--folder DIR --clips 8 --rounds 2 --short-side 0]``.
"""

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from domains.video.datasets import find_videos
from domains.video.decoding import VideoIndex, probe_video, read_frames, torchcodec_available

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "video"
EMBEDDED = REPO / "data" / "video" / "embedded"
CLIP_FRAMES, CLIP_STRIDE = 16, 2


def sequential_fps(path: Path) -> float:
    """Frames per second of a full in-order decode to RGB arrays."""
    start = time.perf_counter()
    with av.open(str(path)) as container:
        count = sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24") is not None)
    return count / (time.perf_counter() - start)


def clip_positions(index: VideoIndex, clips: int, seed: int) -> list[np.ndarray]:
    """``clips`` random clips of 16 frames, 2 apart (shorter videos: their last frame repeats)."""
    rng = np.random.default_rng(seed)
    span = (CLIP_FRAMES - 1) * CLIP_STRIDE + 1
    starts = rng.integers(0, max(index.num_frames - span, 0) + 1, size=clips)
    return [np.minimum(s + CLIP_STRIDE * np.arange(CLIP_FRAMES), index.num_frames - 1) for s in starts]


class ClipReader:
    """Reads a fixed list of clips through one backend and accumulates frames and seconds."""

    def __init__(self, read: Callable[[np.ndarray], object], clips: list[np.ndarray]) -> None:
        self.read, self.clips = read, clips
        self.frames, self.seconds = 0, 0.0

    def run(self) -> None:
        """Read every clip once."""
        start = time.perf_counter()
        for positions in self.clips:
            self.read(positions)
        self.seconds += time.perf_counter() - start
        self.frames += sum(len(p) for p in self.clips)

    @property
    def fps(self) -> float:
        """Frames returned per second so far."""
        return self.frames / self.seconds


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), time every clip of the folder, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=SHARED if SHARED.is_dir() else EMBEDDED)
    parser.add_argument("--clips", type=int, default=8, help="random clips per video and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the backends this many times")
    parser.add_argument("--short-side", type=int, default=0, help="scale while decoding (0: full size)")
    args = parser.parse_args(argv)
    short_side = args.short_side or None
    with_torchcodec = torchcodec_available()
    print(
        f"# Video decoding, frames/s: PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}) vs torchcodec "
        f"({'available' if with_torchcodec else 'not importable'}); {CLIP_FRAMES}-frame clips, stride "
        f"{CLIP_STRIDE}, short side {short_side or 'full'}; {args.folder}"
    )
    columns = ("video", "codec", "size", "frames", "sequential PyAV", "clips PyAV", "clips torchcodec")
    print("| " + " | ".join(columns) + " | torchcodec / PyAV |")
    print("|---|---|---|---|---|---|---|---|")
    for path in find_videos(args.folder):
        index = probe_video(path)
        clips = clip_positions(index, args.clips, seed=0)
        pyav = ClipReader(lambda p, i=index: read_frames(i, p, backend="pyav", short_side=short_side), clips)
        readers = [pyav]
        codec = None
        if with_torchcodec:
            codec = ClipReader(
                lambda p, i=index: read_frames(i, p, backend="torchcodec", short_side=short_side), clips
            )
            readers.append(codec)
        for reader in readers:  # warm-up: the first open of a file pays for the disk and the codec set-up
            reader.read(clips[0])
        for _ in range(args.rounds):
            for reader in readers:
                reader.run()
        codec_fps = f"{codec.fps:.0f}" if codec else "n/a"
        ratio = f"{codec.fps / pyav.fps:.2f}x" if codec else "n/a"
        print(
            f"| {path.name} | {index.codec} | {index.width}x{index.height} | {index.num_frames} "
            f"| {sequential_fps(path):.0f} | {pyav.fps:.0f} | {codec_fps} | {ratio} |"
        )


if __name__ == "__main__":
    main()
