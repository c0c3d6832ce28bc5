"""Spatially disjoint blocks and the grid/random tile samplers over them."""

import itertools

import numpy as np
import pytest

from core.utils import InputError
from domains.remote_sensing.samplers import GridTileSampler, RandomTileSampler, Tile, grid_positions
from domains.remote_sensing.splits import Block, block_split, stratified_split


def _pixels(tile: Tile) -> set[tuple[int, int]]:
    return {
        (r, c) for r in range(tile.row, tile.row + tile.size) for c in range(tile.col, tile.col + tile.size)
    }


def test_block_split_buffer_keeps_splits_apart() -> None:
    blocks = block_split(
        100, 90, (3, 3), {"train": [0, 2, 4, 6, 8], "val": [1, 3], "test": [5, 7]}, 5, 16, "s"
    )
    flat = [b for bs in blocks.values() for b in bs]
    assert len(flat) == 9
    for a, b in itertools.combinations(flat, 2):
        assert not a.overlaps(b)
        # Neighbouring blocks are 2 * buffer pixels apart.
        gap_r = max(b.row - (a.row + a.height), a.row - (b.row + b.height))
        gap_c = max(b.col - (a.col + a.width), a.col - (b.col + b.width))
        assert max(gap_r, gap_c) >= 10
    # Outer edges keep their pixels: the scene border is no other block.
    assert blocks["train"][0] == Block(0, 0, 33 - 5, 30 - 5)


def test_block_split_errors() -> None:
    with pytest.raises(InputError, match="s: block 9 of the val split is outside the 3×3 grid"):
        block_split(90, 90, (3, 3), {"val": [9]}, 0, 8, "s")
    with pytest.raises(InputError, match="block 1 is assigned to both train and val"):
        block_split(90, 90, (3, 3), {"train": [1], "val": [1]}, 0, 8, "s")
    with pytest.raises(InputError, match="smaller than a 32-pixel tile"):
        block_split(90, 90, (3, 3), {"train": [4]}, 2, 32, "s")


def test_grid_sampler_covers_blocks_and_stays_inside() -> None:
    block = Block(10, 20, 50, 37)
    tiles = GridTileSampler([block], 16)
    covered = set().union(*(_pixels(t) for t in tiles))
    assert covered == {(r, c) for r in range(10, 60) for c in range(20, 57)}
    assert all(block.row <= t.row and t.row + 16 <= block.row + block.height for t in tiles)
    assert all(block.col <= t.col and t.col + 16 <= block.col + block.width for t in tiles)
    # The tiles' own pixels (after skipping what earlier tiles cover) partition the block.
    owned = [
        (r, c)
        for t in tiles
        for r in range(t.row + t.skip_rows, t.row + t.size)
        for c in range(t.col + t.skip_cols, t.col + t.size)
    ]
    assert len(owned) == len(set(owned)) == 50 * 37
    assert grid_positions(0, 50, 16, 16) == [0, 16, 32, 34]
    assert grid_positions(0, 10, 16, 16) == []
    assert len(GridTileSampler([block], 16, stride=8)) == len(grid_positions(10, 50, 16, 8)) * len(
        grid_positions(20, 37, 16, 8)
    )


def test_random_sampler_is_seeded_inside_and_filters() -> None:
    blocks = [Block(0, 0, 40, 40), Block(100, 100, 20, 80)]
    a = RandomTileSampler(blocks, 16, 200, seed=3)
    b = RandomTileSampler(blocks, 16, 200, seed=3)
    assert len(a) == 200 and [a[i] for i in range(200)] == [b[i] for i in range(200)]
    assert [a[i] for i in range(5)] != [RandomTileSampler(blocks, 16, 200, seed=4)[i] for i in range(5)]
    for t in a:
        assert t.block in blocks
        assert t.block.row <= t.row <= t.block.row + t.block.height - 16
        assert t.block.col <= t.col <= t.block.col + t.block.width - 16
    # Both blocks are drawn, in proportion to their tile positions (25² vs 5 × 65).
    share = np.mean([t.block is blocks[0] for t in a])
    assert 0.5 < share < 0.8
    keep = RandomTileSampler(blocks, 16, 50, seed=0, keep=lambda t: t.block is blocks[1])
    assert len(keep) == 50 and all(t.block is blocks[1] for t in keep) and keep.dropped > 0
    none = RandomTileSampler(blocks, 16, 5, seed=0, keep=lambda t: False)
    assert len(none) == 0 and none.dropped == 50


def test_stratified_split() -> None:
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    train, val, test = stratified_split(labels, (0.2, 0.1), seed=0)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(160))
    assert np.bincount(labels[val]).tolist() == [20, 10, 2]
    assert np.bincount(labels[test]).tolist() == [10, 5, 1]
    again = stratified_split(labels, (0.2, 0.1), seed=0)
    assert all((x == y).all() for x, y in zip((train, val, test), again, strict=True))
    with pytest.raises(ValueError, match="sum to less than 1"):
        stratified_split(labels, (0.6, 0.4), seed=0)
