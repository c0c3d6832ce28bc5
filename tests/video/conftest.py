"""Video fixtures: the real shared clips (skipped when ``../shared`` is absent) and broken copies of them.

Broken files are written under pytest's temporary folders only; the shared clips are only read.
"""

import shutil
from pathlib import Path

import av
import pytest

from tests.conftest import SHARED_DATA

SHARED_VIDEO = SHARED_DATA / "video"
# Frames each shared clip decodes to (the containers of tree.avi declares 444).
SHARED_FRAMES = {
    "bigbuckbunny.mp4": 132,
    "bikes.mp4": 250,
    "carphone_distorted.mp4": 120,
    "carphone_pristine.mp4": 120,
    "tree.avi": 68,
    "vtest.avi": 795,
}


@pytest.fixture(scope="session")
def shared_video() -> Path:
    """``../shared/data/video``; skips with a reason when it is absent."""
    if not all((SHARED_VIDEO / name).is_file() for name in SHARED_FRAMES):
        pytest.skip(f"the real clips of {SHARED_VIDEO} are absent (they ship beside the repo, not in it)")
    return SHARED_VIDEO


@pytest.fixture
def truncated_avi(shared_video: Path, tmp_path: Path) -> Path:
    """The first half of ``tree.avi``: its last packet is cut short."""
    data = (shared_video / "tree.avi").read_bytes()
    path = tmp_path / "inputs" / "tree_truncated.avi"
    path.parent.mkdir()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def unknown_codec_avi(shared_video: Path, tmp_path: Path) -> Path:
    """``tree.avi`` with its cinepak fourcc replaced by one no decoder knows."""
    path = tmp_path / "inputs" / "tree_unknown_codec.avi"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes((shared_video / "tree.avi").read_bytes().replace(b"cvid", b"zzzz"))
    return path


@pytest.fixture
def zero_frame_avi(tmp_path: Path) -> Path:
    """An AVI whose h264 video stream holds no frame."""
    path = tmp_path / "inputs" / "empty.avi"
    path.parent.mkdir(exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def copy_clips(shared_video: Path, folder: Path, names: list[str]) -> list[Path]:
    """Copy shared clips into ``folder`` (a test's own input folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(shared_video / name, folder / name)) for name in names]


@pytest.fixture(scope="session")
def class_folders(shared_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """UCF101-style ``<label>/<video>.mp4``: 6 clips of 12 frames per class, cut from two real videos.

    ``bikes/`` clips are 1 s apart in ``bikes.mp4``, ``carphone/`` clips 0.5 s apart in
    ``carphone_pristine.mp4``; frames are scaled to a 36-pixel short side and written at 25 fps.
    """
    from domains.video.decoding import read_frames, write_video

    root = tmp_path_factory.mktemp("ucf_layout")
    for label, name, step in (("bikes", "bikes.mp4", 25), ("carphone", "carphone_pristine.mp4", 15)):
        frames = read_frames(shared_video / name, range(6 * step), short_side=36).frames
        for k in range(6):
            write_video(root / label / f"v_{label}_g{k:02d}.mp4", frames[k * step : k * step + 12], fps=25)
    return root
