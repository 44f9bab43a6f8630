"""Chunk-aligned task plans for building a pyramid in passes.

A *pass* reads one mip (the source for pass 0, the OME-Zarr level written by
the previous pass otherwise) in boxes and writes that mip (pass 0 only) and
the next few mips. A box is the chunk size times the product of the factors
of the mips the pass computes, so every mip it writes is written in whole
chunks (partial only at the volume's edge) and no two tasks write the same
chunk: tasks are independent and idempotent. Boxes are as large as the byte
budget allows, which bounds memory by the task size, never the volume size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .pyramid import Mip

__all__ = ["Box", "Pass", "plan_passes"]

Xyz = tuple[int, int, int]


@dataclass(frozen=True)
class Box:
    """``[start, stop)`` in (x, y, z) voxels of some mip."""

    start: Xyz
    stop: Xyz

    @property
    def shape(self) -> Xyz:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def scaled(self, factor: Xyz, limit: Xyz) -> Box:
        """The box this one covers at a coarser mip (ceil division, clipped to ``limit``)."""
        start = tuple(a // f for a, f in zip(self.start, factor))
        stop = tuple(min(-(-b // f), n) for b, f, n in zip(self.stop, factor, limit))
        return Box(start, stop)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Pass:
    """Read mip ``read_mip`` in ``boxes``; write ``write_mips`` (ascending)."""

    index: int
    read_mip: int
    write_mips: tuple[int, ...]
    box_size: Xyz
    boxes: tuple[Box, ...]


def _cumulative(mips: list[Mip], first: int, last: int) -> Xyz:
    out = [1, 1, 1]
    for mip in mips[first + 1 : last + 1]:
        out = [o * f for o, f in zip(out, mip.factor)]
    return tuple(out)  # type: ignore[return-value]


def _grid(shape: Xyz, box: Xyz) -> tuple[Box, ...]:
    ranges = [range(0, n, b) for n, b in zip(shape, box)]
    out = []
    # z outermost so consecutive tasks read consecutive slices of a stack
    for z, y, x in itertools.product(ranges[2], ranges[1], ranges[0]):
        start = (x, y, z)
        stop = tuple(min(s + b, n) for s, b, n in zip(start, box, shape))
        out.append(Box(start, stop))  # type: ignore[arg-type]
    return tuple(out)


def plan_passes(mips: list[Mip], chunk_size: Xyz, *, voxel_bytes: int, task_bytes: int) -> list[Pass]:
    """Split the pyramid into passes of chunk-aligned boxes.

    Parameters
    ----------
    mips
        The planned pyramid, mip 0 first.
    chunk_size
        (x, y, z) chunk size shared by every mip.
    voxel_bytes
        Bytes per voxel including channels.
    task_bytes
        Upper bound on a task's input box in bytes (one chunk is always allowed).
    """
    passes: list[Pass] = []
    read = 0
    first_write = 0
    while first_write < len(mips):
        last = first_write
        best = _cumulative(mips, read, last)
        # extend the pass while the box still fits the byte budget
        while last + 1 < len(mips):
            factor = _cumulative(mips, read, last + 1)
            box = tuple(c * f for c, f in zip(chunk_size, factor))
            if box[0] * box[1] * box[2] * voxel_bytes > task_bytes and last >= max(first_write, read + 1):
                break
            last += 1
            best = factor
        # a box smaller than the whole mip must stay aligned to the coarsest mip's chunks
        box_size = tuple(c * f if c * f < n else n for c, f, n in zip(chunk_size, best, mips[read].shape))
        passes.append(
            Pass(len(passes), read, tuple(range(first_write, last + 1)), box_size, _grid(mips[read].shape, box_size))  # type: ignore[arg-type]
        )
        read = last
        first_write = last + 1
    return passes
