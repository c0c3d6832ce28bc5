r"""Build the embedded video clips from local copies of their public sources.

The clips are small enough to commit (under 1 MB in all) and feed ``configs/video/smoke.yaml`` and
``make demo-video``. Every source is read from disk; nothing is downloaded::

    apt-get download python3-imageio            # Debian 12: python3-imageio_2.4.1-5_all.deb
    python data/video/prepare.py \
        --shared ../shared/data/video \
        --imageio python3-imageio_2.4.1-5_all.deb \
        --out data/video/embedded

``--imageio`` takes the Debian package, a folder it was extracted to (``dpkg-deb -x``), or any folder
holding its ``cockatoo.mp4``. Each clip is decoded with PyAV, scaled with FFmpeg's area filter to a
``--short-side`` of 96 pixels (the longer side cut to an even length), and written as h264 (yuv420p,
CRF 23) at the source's frame rate by :func:`domains.video.decoding.write_video`. What each output is, and
its licence, is in ``data/video/README.md``.
"""

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domains.video.decoding import probe_video, read_frames, write_video


@dataclass(frozen=True)
class Source:
    """One embedded clip: which file, which frames, and the name it is written under."""

    origin: str  # "shared" or "imageio"
    name: str
    out: str
    first: int = 0
    frames: int | None = None  # None: to the end


SOURCES = [
    Source("shared", "bigbuckbunny.mp4", "bigbuckbunny.mp4"),
    Source("shared", "bikes.mp4", "bikes.mp4"),
    Source("shared", "vtest.avi", "vtest_pedestrians.mp4", first=0, frames=300),
    Source("imageio", "cockatoo.mp4", "cockatoo.mp4"),
]


def imageio_folder(path: Path, scratch: Path) -> Path:
    """The folder of imageio's sample videos: in ``path``, or in its ``.deb`` extracted to ``scratch``."""
    if path.suffix == ".deb":
        subprocess.run(["dpkg-deb", "-x", str(path), str(scratch)], check=True)
        path = scratch
    found = sorted(path.rglob("cockatoo.mp4"))
    if not found:
        raise SystemExit(
            f"{path}: no cockatoo.mp4 inside (give python3-imageio's .deb or its extracted folder)"
        )
    return found[0].parent


def convert(src: Path, dst: Path, source: Source, short_side: int, crf: int) -> str:
    """Re-encode the frames of ``source`` from ``src`` into ``dst``; returns a one-line summary."""
    index = probe_video(src)
    stop = index.num_frames if source.frames is None else min(index.num_frames, source.first + source.frames)
    positions = np.arange(source.first, stop)
    frames = read_frames(index, positions, short_side=short_side).frames
    height, width = frames.shape[1:3]
    frames = frames[:, : height - height % 2, : width - width % 2]
    fps = round(index.fps, 3)
    write_video(dst, frames, fps=fps, crf=crf)
    written = probe_video(dst)
    return (
        f"{dst.name}: {written.num_frames} frames {written.width}x{written.height} at {fps} fps from "
        f"{src.name} frames {source.first}-{stop - 1} ({dst.stat().st_size / 1024:.0f} KiB)"
    )


def main() -> None:
    """Parse the arguments and write every clip."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, required=True, help="../shared/data/video")
    parser.add_argument(
        "--imageio", type=Path, required=True, help="python3-imageio .deb or extracted folder"
    )
    parser.add_argument("--out", type=Path, default=Path("data/video/embedded"))
    parser.add_argument("--short-side", type=int, default=96)
    parser.add_argument("--crf", type=int, default=23)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folders = {"shared": args.shared, "imageio": imageio_folder(args.imageio, Path(scratch))}
        for source in SOURCES:
            src = folders[source.origin] / source.name
            if not src.is_file():
                raise SystemExit(f"source clip not found: {src}")
            print(convert(src, args.out / source.out, source, args.short_side, args.crf))


if __name__ == "__main__":
    main()
