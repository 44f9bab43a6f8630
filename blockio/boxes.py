"""Block requests: parsing (x, y, z) triples and checking boxes against bounds.

Boxes are ``[start, stop)`` in (x, y, z) voxels of one mip. The geometry
itself (:class:`VoxelBox`, :func:`chunk_grid`, ``Xyz``) lives in
:mod:`precomputed.geometry` and is re-exported here; this module adds what
raises blockio's errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from blockio.errors import InvalidRequest, OutOfBounds
from precomputed.geometry import VoxelBox, Xyz, chunk_grid, overlapping_blocks

__all__ = ["BOUNDARIES", "VoxelBox", "Xyz", "check_bounds", "check_overlap", "chunk_grid", "grid_boxes", "parse_xyz"]

BOUNDARIES = ("error", "zero", "clip", "reflect")


def parse_xyz(value: Sequence[int] | str, name: str, *, positive: bool = False) -> Xyz:
    """Three integers (x, y, z) from a sequence or ``"x,y,z"``; a clear error otherwise."""
    if isinstance(value, str):
        parts: Sequence[object] = value.split(",")
    else:
        parts = list(value)
    try:
        if len(parts) != 3:
            raise ValueError
        out = tuple(int(str(p).strip()) if isinstance(p, str) else _as_int(p) for p in parts)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be three integers x,y,z, got {value!r}") from None
    if positive and any(v <= 0 for v in out):
        raise InvalidRequest(f"{name} must be positive, got {list(out)}")
    return out  # type: ignore[return-value]


def _as_int(v: object) -> int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):
        return v
    if hasattr(v, "__index__"):
        return int(v.__index__())
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise TypeError


def check_bounds(box: VoxelBox, bounds: VoxelBox, boundary: str, mip: int) -> None:
    """Raise for a box that leaves the volume when ``boundary="error"``."""
    if boundary not in BOUNDARIES:
        raise InvalidRequest(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    if boundary == "error" and not bounds.contains(box):
        raise OutOfBounds(
            f"box {box} (x, y, z) leaves the volume at mip {mip}, whose bounds are {bounds}; "
            "pass boundary='zero', 'clip' or 'reflect' to read past the edge"
        )



def check_overlap(block: Xyz, overlap: Xyz, *, block_name: str = "the block") -> None:
    """Raise unless ``0 <= overlap < block`` on every axis (x, y, z)."""
    if any(o < 0 or o >= b for o, b in zip(overlap, block)):
        raise InvalidRequest(
            f"overlap must be >= 0 and smaller than {block_name} on every axis, got {list(overlap)} for {block_name} {list(block)}"
        )


def grid_boxes(bounds: VoxelBox, block: Xyz, overlap: Xyz) -> Iterator[VoxelBox]:
    """Blocks covering ``bounds`` (see :meth:`blockio.store.Store.iter_blocks`); a blockio error for a bad overlap."""
    check_overlap(block, overlap)
    return overlapping_blocks(bounds, block, overlap)
