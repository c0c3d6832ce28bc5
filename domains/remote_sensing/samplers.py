"""Tile positions over the blocks of a scene: a regular grid (evaluation) and seeded random draws (training).

Both are map-style sequences of :class:`Tile` with ``__len__``: the dataset reads tile ``i`` window by window,
and the DataLoader's sampler (shuffled for training, every tile once per process for evaluation) indexes
them, so no state has to travel to DataLoader workers. A tile always lies inside one block, so tiles of two
splits never share pixels (the blocks are disjoint and apart by their buffer).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from domains.remote_sensing.splits import Block

__all__ = ["GridTileSampler", "RandomTileSampler", "Tile", "grid_positions"]


@dataclass(frozen=True)
class Tile:
    """A ``size × size`` window at ``(row, col)`` inside ``block``.

    ``skip_rows`` and ``skip_cols`` count the tile's first rows and columns that earlier tiles of a grid
    already cover; evaluation ignores them so that every pixel is scored once.
    """

    row: int
    col: int
    size: int
    block: Block
    skip_rows: int = 0
    skip_cols: int = 0


def grid_positions(start: int, length: int, size: int, stride: int) -> list[int]:
    """Offsets of windows of ``size`` every ``stride`` pixels covering ``[start, start + length)``.

    The last window is moved back to end at the edge, so the whole range is covered without reading past it.
    """
    if length < size:
        return []
    last = start + length - size
    positions = list(range(start, last + 1, stride))
    if positions[-1] != last:
        positions.append(last)
    return positions


class GridTileSampler(Sequence[Tile]):
    """Tiles on a regular grid over every block, covering each block completely.

    Each tile records the rows and columns that earlier tiles cover (the last tile of a row or column is
    moved back to end at the block's edge, and ``stride < size`` overlaps), so a dataset can score every
    pixel once.

    Args:
        blocks: The blocks of one split.
        size: Tile side in pixels.
        stride: Step between tiles; default ``size`` (no overlap, except the last row/column of a block).
        keep: Optional predicate: tiles for which it is False are dropped (e.g. nodata-only tiles); the
            number dropped is :attr:`dropped`.
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        size: int,
        stride: int | None = None,
        keep: Callable[[Tile], bool] | None = None,
    ) -> None:
        stride = size if stride is None else stride
        if size < 1 or stride < 1:
            raise ValueError(f"tile size and stride must be >= 1, got {size} and {stride}")
        tiles = []
        for block in blocks:
            rows = grid_positions(block.row, block.height, size, stride)
            cols = grid_positions(block.col, block.width, size, stride)
            for i, r in enumerate(rows):
                for j, c in enumerate(cols):
                    skip_r = max(0, rows[i - 1] + size - r) if i else 0
                    skip_c = max(0, cols[j - 1] + size - c) if j else 0
                    tiles.append(Tile(r, c, size, block, skip_r, skip_c))
        kept = [t for t in tiles if keep is None or keep(t)]
        self.dropped = len(tiles) - len(kept)
        self._tiles = kept

    def __len__(self) -> int:
        return len(self._tiles)

    def __getitem__(self, index: int) -> Tile:  # type: ignore[override]
        return self._tiles[index]


class RandomTileSampler(Sequence[Tile]):
    """``length`` tiles at seeded random positions, each block chosen with probability ∝ its tile positions.

    The positions are drawn once from ``seed``: runs are reproducible for any number of workers or
    processes, and epochs visit the same tiles in a new order (draw more tiles with a larger ``length``).

    Args:
        blocks: The blocks of one split.
        size: Tile side in pixels.
        length: Number of tiles.
        seed: Seed of the draws.
        keep: Optional predicate: drawn tiles for which it is False (e.g. nodata-only) are drawn again, at
            most ``10 * length`` draws in all; the number rejected is :attr:`dropped`.
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        size: int,
        length: int,
        seed: int = 0,
        keep: Callable[[Tile], bool] | None = None,
    ) -> None:
        if length < 1:
            raise ValueError(f"the number of random tiles must be >= 1, got {length}")
        usable = [b for b in blocks if b.height >= size and b.width >= size]
        weights = np.array([(b.height - size + 1) * (b.width - size + 1) for b in usable], dtype=np.float64)
        self._tiles: list[Tile] = []
        self.dropped = 0
        if not usable:
            return
        rng = np.random.default_rng(seed)
        for _ in range(10 * length):
            block = usable[rng.choice(len(usable), p=weights / weights.sum())]
            row = int(block.row + rng.integers(0, block.height - size + 1))
            col = int(block.col + rng.integers(0, block.width - size + 1))
            tile = Tile(row, col, size, block)
            if keep is not None and not keep(tile):
                self.dropped += 1
                continue
            self._tiles.append(tile)
            if len(self._tiles) == length:
                break

    def __len__(self) -> int:
        return len(self._tiles)

    def __getitem__(self, index: int) -> Tile:  # type: ignore[override]
        return self._tiles[index]
