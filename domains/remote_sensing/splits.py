"""Which sample goes to which split: seeded stratified row splits and spatially disjoint scene blocks.

Pixels of a scene are spatially correlated, so a random pixel or tile split leaks: neighbouring,
near-identical pixels land in training and test. Scene splits here are made of whole blocks, and every
block is shrunk by a buffer on each side so that tiles of two splits never share (or touch) pixels.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.utils import InputError

__all__ = ["Block", "assign_blocks", "block_split", "stratified_split"]


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split row indices into parts holding each class in the given shares.

    Args:
        labels: Class of each row (N,).
        fractions: Share of every part after the first, e.g. ``(0.2,)`` for 80/20 or ``(0.2, 0.2)``;
            the first part gets the rest.
        seed: Seed of the per-class shuffle.

    Returns:
        Sorted row indices of each part (``len(fractions) + 1`` arrays).
    """
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions must be >= 0 and sum to less than 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        rows = rows[rng.permutation(len(rows))]
        start = 0
        for k, fraction in enumerate(fractions, start=1):
            n = round(fraction * len(rows))
            parts[k].append(rows[start : start + n])
            start += n
        parts[0].append(rows[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


@dataclass(frozen=True)
class Block:
    """A rectangle of a scene in pixels: rows ``[row, row + height)``, columns ``[col, col + width)``."""

    row: int
    col: int
    height: int
    width: int

    def overlaps(self, other: "Block") -> bool:
        """Whether the two rectangles share a pixel."""
        return not (
            self.row + self.height <= other.row
            or other.row + other.height <= self.row
            or self.col + self.width <= other.col
            or other.col + other.width <= self.col
        )


def block_split(
    height: int,
    width: int,
    grid: tuple[int, int],
    assignment: dict[str, Sequence[int]],
    buffer: int,
    min_size: int,
    where: str,
) -> dict[str, list[Block]]:
    """Cut a scene into a grid of blocks, assign blocks to splits and shrink each by ``buffer`` pixels.

    Args:
        height: Scene rows.
        width: Scene columns.
        grid: Blocks per column and per row (``(3, 3)``: 9 blocks, numbered row by row from 0).
        assignment: ``{split: block numbers}``; every block number at most once.
        buffer: Pixels removed at each inner edge of every block, so two blocks are ``2 * buffer`` apart.
        min_size: Smallest block side (a tile) that must remain after the buffer.
        where: The scene, for error messages.

    Raises:
        InputError: If a block number is out of range or used twice, or a block is smaller than
            ``min_size`` after the buffer.
    """
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise ValueError(f"block grid must be at least 1×1, got {grid}")
    seen: dict[int, str] = {}
    for split, numbers in assignment.items():
        for n in numbers:
            if not 0 <= n < rows * cols:
                raise InputError(f"{where}: block {n} of the {split} split is outside the {rows}×{cols} grid")
            if n in seen:
                raise InputError(f"{where}: block {n} is assigned to both {seen[n]} and {split}")
            seen[n] = split
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    col_edges = np.linspace(0, width, cols + 1).round().astype(int)
    out: dict[str, list[Block]] = {split: [] for split in assignment}
    for split, numbers in assignment.items():
        for n in numbers:
            r, c = divmod(n, cols)
            top = row_edges[r] + (buffer if r > 0 else 0)
            bottom = row_edges[r + 1] - (buffer if r < rows - 1 else 0)
            left = col_edges[c] + (buffer if c > 0 else 0)
            right = col_edges[c + 1] - (buffer if c < cols - 1 else 0)
            block = Block(int(top), int(left), int(bottom - top), int(right - left))
            if block.height < min_size or block.width < min_size:
                raise InputError(
                    f"{where}: block {n} of the {split} split is {block.height}×{block.width} pixels after a "
                    f"{buffer}-pixel buffer, smaller than a {min_size}-pixel tile; use a coarser block grid "
                    "or smaller tiles"
                )
            out[split].append(block)
    return out


def assign_blocks(
    grid: tuple[int, int],
    val_blocks: Sequence[int] | None,
    test_blocks: Sequence[int] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    where: str,
) -> dict[str, list[int]]:
    """Block numbers of each split: the given ones, else a seeded draw of the fractions; the rest train.

    Raises:
        InputError: If no block is left for training.
    """
    total = grid[0] * grid[1]
    order = [int(n) for n in np.random.default_rng(seed).permutation(total)]
    taken = set(val_blocks or []) | set(test_blocks or [])
    free = [n for n in order if n not in taken]
    if test_blocks is None:
        n = round(test_fraction * total)
        test_blocks, free = free[:n], free[n:]
    if val_blocks is None:
        n = round(val_fraction * total)
        val_blocks, free = free[:n], free[n:]
    used = set(val_blocks) | set(test_blocks)
    train = [n for n in range(total) if n not in used]
    if not train:
        raise InputError(f"{where}: no block is left for training in a {grid[0]}×{grid[1]} grid")
    return {"train": train, "val": sorted(val_blocks), "test": sorted(test_blocks)}
