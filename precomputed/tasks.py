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

from dataclasses import dataclass

from .geometry import VoxelBox, Xyz, tile_boxes, xyz
from .pyramid import Mip

__all__ = ["Box", "Pass", "plan_passes"]

Box = VoxelBox
"""A task's box, ``[start, stop)`` in (x, y, z) voxels of some mip (a :class:`~precomputed.geometry.VoxelBox`)."""


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
    return xyz(out)


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
        box_size = xyz(c * f if c * f < n else n for c, f, n in zip(chunk_size, best, mips[read].shape))
        passes.append(
            Pass(len(passes), read, tuple(range(first_write, last + 1)), box_size, tile_boxes(mips[read].shape, box_size))
        )
        read = last
        first_write = last + 1
    return passes
