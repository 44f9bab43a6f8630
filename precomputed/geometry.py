"""Voxel geometry, written once for every package: boxes, chunk grids, projections.

Coordinates and sizes are (x, y, z) voxels of one mip; a box is ``[start,
stop)``. Arrays are C-order ``[z, y, x]`` (``[c, z, y, x]`` with channels), so
every slice this module hands out is in that order.

- :class:`VoxelBox`: a box, its intersection, containment, scaling between
  mips and alignment to a chunk grid.
- :func:`chunk_grid`: the chunks a box touches, clipped to the volume;
  :func:`tile_boxes`: the whole volume (or a part of it) in tiles.
- :func:`block_starts` / :func:`overlapping_blocks`: fixed-size blocks that
  overlap and end at the volume's edge (blockwise inference, grid sampling).
- :func:`projection`: where a chunk's voxels land in an output block.

Each grid yields x fastest, then y, then z (consecutive tasks read
consecutive sections of a stack).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from .errors import InvalidOption

__all__ = [
    "VoxelBox",
    "Xyz",
    "XyzFloat",
    "block_starts",
    "ceil_div",
    "chunk_box",
    "chunk_grid",
    "grid_shape",
    "overlapping_blocks",
    "projection",
    "tile_boxes",
    "xyz",
    "xyz_float",
]

Xyz = tuple[int, int, int]
XyzFloat = tuple[float, float, float]
ZyxSlices = tuple[slice, slice, slice]


def xyz(values: Iterable[int]) -> Xyz:
    """``tuple(values)`` typed as (x, y, z): the values are neither converted nor counted."""
    return cast(Xyz, tuple(values))


def xyz_float(values: Iterable[float]) -> XyzFloat:
    """``tuple(values)`` typed as (x, y, z) floats: the values are neither converted nor counted."""
    return cast(XyzFloat, tuple(values))


def _zyx_slices(values: Iterable[slice]) -> ZyxSlices:
    return cast(ZyxSlices, tuple(values))


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers, exact for any size (no float rounding)."""
    return -(-a // b)


def _positive(sizes: Xyz, name: str) -> None:
    if any(s <= 0 for s in sizes):
        raise InvalidOption(f"{name} must be positive on every axis (x, y, z), got {list(sizes)}")


@dataclass(frozen=True)
class VoxelBox:
    """``[start, stop)`` in (x, y, z) voxels."""

    start: Xyz
    stop: Xyz

    @classmethod
    def from_offset_size(cls, offset: Xyz, size: Xyz) -> VoxelBox:
        """The box of ``size`` voxels whose first voxel is ``offset`` (both x, y, z)."""
        return cls(offset, xyz(o + s for o, s in zip(offset, size)))

    @property
    def size(self) -> Xyz:
        """(x, y, z) voxels along each axis (negative for an inverted box)."""
        return xyz(b - a for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> Xyz:
        """The same as :attr:`size`, (x, y, z): the name the task plans use."""
        return self.size

    @property
    def empty(self) -> bool:
        """True when the box holds no voxel."""
        return any(s <= 0 for s in self.size)

    def intersect(self, other: VoxelBox) -> VoxelBox:
        """The common part (an empty box with ``start <= stop`` when they do not meet)."""
        start = xyz(max(a, b) for a, b in zip(self.start, other.start))
        stop = xyz(max(s, min(a, b)) for a, b, s in zip(self.stop, other.stop, start))
        return VoxelBox(start, stop)

    def contains(self, other: VoxelBox) -> bool:
        """True when every voxel of ``other`` lies in this box."""
        return all(a <= b for a, b in zip(self.start, other.start)) and all(a >= b for a, b in zip(self.stop, other.stop))

    def grown(self, margin: Xyz) -> VoxelBox:
        """This box widened by ``margin`` voxels on both sides of each axis (a halo)."""
        return VoxelBox(xyz(a - m for a, m in zip(self.start, margin)), xyz(b + m for b, m in zip(self.stop, margin)))

    def scaled(self, factor: Xyz, limit: Xyz | None = None) -> VoxelBox:
        """The box this one covers at a coarser mip, ``factor`` (x, y, z) times coarser.

        The start rounds down and the stop up, so every coarse voxel that
        averages a voxel of this box is inside; ``limit`` (the coarse mip's
        shape) clips the stop.
        """
        _positive(factor, "factor")
        stop = xyz(ceil_div(b, f) for b, f in zip(self.stop, factor))
        if limit is not None:
            stop = xyz(min(b, n) for b, n in zip(stop, limit))
        return VoxelBox(xyz(a // f for a, f in zip(self.start, factor)), stop)

    def upscaled(self, factor: Xyz, limit: Xyz | None = None) -> VoxelBox:
        """The voxels of a finer mip, ``factor`` (x, y, z) times finer, that this box covers.

        ``limit`` (the fine mip's shape) clips the stop: odd edges have fewer
        fine voxels than ``factor``.
        """
        _positive(factor, "factor")
        stop = xyz(b * f for b, f in zip(self.stop, factor))
        if limit is not None:
            stop = xyz(min(b, n) for b, n in zip(stop, limit))
        return VoxelBox(xyz(a * f for a, f in zip(self.start, factor)), stop)

    def aligned(self, chunk: Xyz, bounds: VoxelBox) -> VoxelBox:
        """The smallest box of whole chunks (aligned to ``bounds.start``, clipped to ``bounds``) holding this one."""
        _positive(chunk, "chunk size")
        start = xyz(o + ((a - o) // c) * c for a, c, o in zip(self.start, chunk, bounds.start))
        stop = xyz(min(o + ceil_div(b - o, c) * c, e) for b, c, o, e in zip(self.stop, chunk, bounds.start, bounds.stop))
        return VoxelBox(start, stop)

    def slices_zyx(self, origin: Xyz = (0, 0, 0)) -> ZyxSlices:
        """Slices of a C-order ``[z, y, x]`` array whose voxel 0 sits at ``origin`` (x, y, z)."""
        return _zyx_slices(slice(a - o, b - o) for a, b, o in zip(reversed(self.start), reversed(self.stop), reversed(origin)))

    def __str__(self) -> str:
        return f"[{','.join(map(str, self.start))} .. {','.join(map(str, self.stop))})"


def grid_shape(size: Xyz, chunk: Xyz) -> Xyz:
    """How many chunks (x, y, z) cover ``size`` voxels, the last ones partial."""
    _positive(chunk, "chunk size")
    return xyz(ceil_div(n, c) for n, c in zip(size, chunk))


def chunk_box(index: Xyz, chunk: Xyz, bounds: VoxelBox) -> VoxelBox:
    """Chunk ``index`` (x, y, z) of the grid aligned to ``bounds.start``, clipped to ``bounds``."""
    start = xyz(o + i * c for o, i, c in zip(bounds.start, index, chunk))
    stop = xyz(min(s + c, e) for s, c, e in zip(start, chunk, bounds.stop))
    return VoxelBox(start, stop)


def chunk_grid(box: VoxelBox, chunk: Xyz, bounds: VoxelBox) -> Iterator[tuple[Xyz, VoxelBox]]:
    """``(chunk index, chunk box clipped to bounds)`` for every chunk that ``box`` touches.

    Chunks are aligned to ``bounds.start``; the part of ``box`` outside
    ``bounds`` is ignored. Together the chunk boxes cover
    ``box.intersect(bounds)`` and do not overlap. Indices are (x, y, z), x
    fastest.
    """
    _positive(chunk, "chunk size")
    inner = box.intersect(bounds)
    if inner.empty:
        return
    ranges = [range((a - o) // c, ceil_div(b - o, c)) for a, b, o, c in zip(inner.start, inner.stop, bounds.start, chunk)]
    for iz, iy, ix in itertools.product(ranges[2], ranges[1], ranges[0]):
        yield (ix, iy, iz), chunk_box((ix, iy, iz), chunk, bounds)


def tile_boxes(shape: Xyz, tile: Xyz, *, within: VoxelBox | None = None) -> tuple[VoxelBox, ...]:
    """Tiles of ``tile`` voxels aligned to 0 that cover a volume of ``shape`` (x, y, z).

    With ``within``, only the tiles that touch that box. Edge tiles are
    clipped to the volume.
    """
    bounds = VoxelBox((0, 0, 0), shape)
    return tuple(b for _, b in chunk_grid(within if within is not None else bounds, tile, bounds))


def block_starts(lo: int, hi: int, block: int, overlap: int) -> list[int]:
    """Starts along one axis of ``block``-voxel blocks overlapping by ``overlap`` over ``[lo, hi)``.

    Consecutive starts are ``block - overlap`` apart; the last block is moved
    back to end at ``hi``, so every block has the full size (one block at
    ``lo`` when the axis is no longer than a block).
    """
    if block <= 0 or not 0 <= overlap < block:
        raise InvalidOption(f"block must be positive and 0 <= overlap < block, got block {block}, overlap {overlap}")
    if hi - lo <= block:
        return [lo]
    return sorted(set(range(lo, hi - block, block - overlap)) | {hi - block})


def overlapping_blocks(bounds: VoxelBox, block: Xyz, overlap: Xyz) -> Iterator[VoxelBox]:
    """Blocks of ``block`` voxels covering ``bounds``, overlapping by ``overlap`` (see :func:`block_starts`); x fastest."""
    axes = [block_starts(lo, hi, b, o) for lo, hi, b, o in zip(bounds.start, bounds.stop, block, overlap)]
    return (VoxelBox.from_offset_size((x, y, z), block) for z in axes[2] for y in axes[1] for x in axes[0])


def projection(out_box: VoxelBox, chunk_box: VoxelBox) -> tuple[ZyxSlices, ZyxSlices]:
    """Where a chunk's voxels land in an output block: ``(output slices, chunk slices)``, both ``[z, y, x]``.

    ``out[out_slices] = chunk[chunk_slices]`` copies the voxels the two boxes
    share (empty slices when they share none).
    """
    part = out_box.intersect(chunk_box)
    return part.slices_zyx(out_box.start), part.slices_zyx(chunk_box.start)
