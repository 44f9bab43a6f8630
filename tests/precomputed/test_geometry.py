"""Voxel geometry: chunk grids cover a box exactly once, projections round-trip, scaling between mips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from precomputed.errors import InvalidOption
from precomputed.geometry import (
    VoxelBox,
    block_starts,
    ceil_div,
    chunk_grid,
    grid_shape,
    overlapping_blocks,
    projection,
    tile_boxes,
)

small = st.integers(min_value=1, max_value=9)
xyz_pos = st.tuples(small, small, small)


@st.composite
def volume_and_box(draw: Any) -> tuple[VoxelBox, VoxelBox, tuple[int, int, int]]:
    """Bounds (anywhere, possibly not at 0), a chunk size and a box that may leave the bounds."""
    origin = draw(st.tuples(*[st.integers(-5, 5)] * 3))
    size = draw(st.tuples(*[st.integers(1, 20)] * 3))
    bounds = VoxelBox.from_offset_size(origin, size)
    start = tuple(draw(st.integers(o - 4, o + n + 2)) for o, n in zip(origin, size))
    extent = draw(st.tuples(*[st.integers(0, 24)] * 3))
    box = VoxelBox.from_offset_size(start, extent)  # type: ignore[arg-type]
    return bounds, box, draw(xyz_pos)


def _coverage(bounds: VoxelBox, cells: list[VoxelBox]) -> np.ndarray:
    count = np.zeros(tuple(reversed(bounds.size)), dtype=np.int64)
    for cell in cells:
        count[cell.slices_zyx(bounds.start)] += 1
    return count


@given(volume_and_box())
def test_chunk_grid_covers_the_box_exactly_once_within_bounds(case: Any) -> None:
    bounds, box, chunk = case
    cells = list(chunk_grid(box, chunk, bounds))
    inner = box.intersect(bounds)
    count = _coverage(bounds, [c for _, c in cells])
    expected = np.zeros_like(count)
    expected[inner.slices_zyx(bounds.start)] = 1
    # every voxel of the box inside the bounds is in exactly one chunk; chunks stay inside the bounds
    assert np.all(count[expected == 1] == 1) and count.max() <= 1
    assert all(bounds.contains(c) and not c.empty for _, c in cells)
    assert all(not c.intersect(inner).empty for _, c in cells)  # no chunk that the box does not touch
    assert len({index for index, _ in cells}) == len(cells)
    for index, cell in cells:
        # a chunk is aligned to the bounds' start and whole unless the bounds cut it
        assert all(a == o + i * c for a, o, i, c in zip(cell.start, bounds.start, index, chunk))
        assert all(s == c or b == e for s, c, b, e in zip(cell.size, chunk, cell.stop, bounds.stop))


@given(volume_and_box())
def test_chunks_of_the_whole_volume_partition_it(case: Any) -> None:
    bounds, _, chunk = case
    cells = [c for _, c in chunk_grid(bounds, chunk, bounds)]
    assert np.all(_coverage(bounds, cells) == 1)
    assert len(cells) == np.prod(grid_shape(bounds.size, chunk))


@given(volume_and_box(), st.integers(0, 2**32 - 1))
def test_projections_reassemble_any_block(case: Any, seed: int) -> None:
    bounds, box, chunk = case
    inner = box.intersect(bounds)
    volume = np.random.default_rng(seed).integers(0, 1000, tuple(reversed(bounds.size)))
    out = np.full(tuple(reversed(inner.size)), -1)
    for _, cell in chunk_grid(inner, chunk, bounds):
        data = volume[cell.slices_zyx(bounds.start)]  # a chunk as storage holds it
        dst, src = projection(inner, cell)
        out[dst] = data[src]
    np.testing.assert_array_equal(out, volume[inner.slices_zyx(bounds.start)])


@given(volume_and_box(), xyz_pos)
def test_scaling_round_trips(case: Any, factor: tuple[int, int, int]) -> None:
    _, box, _ = case
    if box.empty:
        return
    assert box.upscaled(factor).scaled(factor) == box
    assert box.scaled(factor).upscaled(factor).contains(box)
    shape = tuple(ceil_div(b, f) for b, f in zip(box.stop, factor))
    assert box.scaled(factor, shape) == box.scaled(factor)


def test_scaling_clips_to_the_limit() -> None:
    box = VoxelBox((2, 0, 1), (9, 5, 3))
    assert box.scaled((2, 2, 1)) == VoxelBox((1, 0, 1), (5, 3, 3))
    assert box.scaled((2, 2, 1), (4, 4, 4)) == VoxelBox((1, 0, 1), (4, 3, 3))
    assert VoxelBox((1, 0, 1), (5, 3, 3)).upscaled((2, 2, 1), (9, 5, 3)) == VoxelBox((2, 0, 1), (9, 5, 3))


@given(volume_and_box())
def test_aligned_is_the_smallest_box_of_whole_chunks(case: Any) -> None:
    bounds, box, chunk = case
    inner = box.intersect(bounds)
    if inner.empty:
        return
    aligned = inner.aligned(chunk, bounds)
    cells = [c for _, c in chunk_grid(inner, chunk, bounds)]
    assert aligned.start == tuple(min(c.start[i] for c in cells) for i in range(3))
    assert aligned.stop == tuple(max(c.stop[i] for c in cells) for i in range(3))


@given(st.integers(-10, 10), st.integers(1, 60), small, st.data())
def test_overlapping_blocks_cover_the_axis(lo: int, length: int, block: int, data: Any) -> None:
    overlap = data.draw(st.integers(0, block - 1))
    starts = block_starts(lo, lo + length, block, overlap)
    assert starts[0] == lo and starts == sorted(set(starts))
    if length <= block:
        assert starts == [lo]
        return
    assert starts[-1] + block == lo + length  # the last block ends at the edge
    assert all(b - a <= block - overlap for a, b in zip(starts, starts[1:]))  # no gaps, overlap kept


def test_overlapping_blocks_are_x_fastest() -> None:
    blocks = list(overlapping_blocks(VoxelBox((0, 0, 0), (10, 6, 2)), (6, 6, 2), (2, 0, 0)))
    assert [b.start for b in blocks] == [(0, 0, 0), (4, 0, 0)]
    grid = tile_boxes((4, 4, 4), (2, 2, 2))
    assert [b.start for b in grid[:3]] == [(0, 0, 0), (2, 0, 0), (0, 2, 0)]


def test_tile_boxes_within_a_part() -> None:
    tiles = tile_boxes((10, 10, 3), (4, 4, 4), within=VoxelBox((5, 0, 0), (6, 3, 1)))
    assert tiles == (VoxelBox((4, 0, 0), (8, 4, 3)),)
    assert tile_boxes((10, 10, 3), (4, 4, 4), within=VoxelBox((5, 0, 0), (5, 3, 1))) == ()


def test_grown_box_adds_a_halo() -> None:
    assert VoxelBox((4, 4, 4), (8, 8, 6)).grown((2, 1, 0)) == VoxelBox((2, 3, 4), (10, 9, 6))


@pytest.mark.parametrize(
    "call",
    [
        lambda: list(chunk_grid(VoxelBox((0, 0, 0), (4, 4, 4)), (0, 4, 4), VoxelBox((0, 0, 0), (4, 4, 4)))),
        lambda: grid_shape((4, 4, 4), (4, -1, 4)),
        lambda: block_starts(0, 10, 4, 4),
        lambda: VoxelBox((0, 0, 0), (4, 4, 4)).scaled((0, 1, 1)),
    ],
)
def test_bad_sizes_are_errors(call: Any) -> None:
    with pytest.raises(InvalidOption):
        call()


def test_blockio_keeps_the_names() -> None:
    import blockio
    from blockio.boxes import VoxelBox as Reexported
    from blockio.boxes import chunk_grid as reexported_grid

    assert Reexported is VoxelBox and blockio.VoxelBox is VoxelBox and reexported_grid is chunk_grid
