"""Block arithmetic: boxes, chunk grids, boundary handling.

Boxes are ``[start, stop)`` in (x, y, z) voxels of one mip.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from blockio.errors import InvalidRequest, OutOfBounds

__all__ = ["BOUNDARIES", "VoxelBox", "chunk_grid", "parse_xyz"]

BOUNDARIES = ("error", "zero", "clip", "reflect")
Xyz = tuple[int, int, int]


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
        return int(v.__index__())  # type: ignore[attr-defined]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise TypeError


@dataclass(frozen=True)
class VoxelBox:
    """``[start, stop)`` in (x, y, z) voxels."""

    start: Xyz
    stop: Xyz

    @classmethod
    def from_offset_size(cls, offset: Xyz, size: Xyz) -> VoxelBox:
        return cls(offset, tuple(o + s for o, s in zip(offset, size)))  # type: ignore[arg-type]

    @property
    def size(self) -> Xyz:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def empty(self) -> bool:
        return any(s <= 0 for s in self.size)

    def intersect(self, other: VoxelBox) -> VoxelBox:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(max(s, min(a, b)) for a, b, s in zip(self.stop, other.stop, start))
        return VoxelBox(start, stop)  # type: ignore[arg-type]

    def contains(self, other: VoxelBox) -> bool:
        return all(a <= b for a, b in zip(self.start, other.start)) and all(a >= b for a, b in zip(self.stop, other.stop))

    def slices_zyx(self, origin: Xyz = (0, 0, 0)) -> tuple[slice, slice, slice]:
        """Slices of a C-order ``[z, y, x]`` array whose voxel 0 sits at ``origin``."""
        return tuple(slice(a - o, b - o) for a, b, o in zip(reversed(self.start), reversed(self.stop), reversed(origin)))  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"[{','.join(map(str, self.start))} .. {','.join(map(str, self.stop))})"


def check_bounds(box: VoxelBox, bounds: VoxelBox, boundary: str, mip: int) -> None:
    """Raise for a box that leaves the volume when ``boundary="error"``."""
    if boundary not in BOUNDARIES:
        raise InvalidRequest(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    if boundary == "error" and not bounds.contains(box):
        raise OutOfBounds(
            f"box {box} (x, y, z) leaves the volume at mip {mip}, whose bounds are {bounds}; "
            "pass boundary='zero', 'clip' or 'reflect' to read past the edge"
        )


def chunk_grid(box: VoxelBox, chunk: Xyz, bounds: VoxelBox) -> Iterator[tuple[Xyz, VoxelBox]]:
    """``(chunk index, chunk box clipped to bounds)`` for every chunk that ``box`` touches.

    ``box`` must lie within ``bounds``; chunks are aligned to ``bounds.start``.
    """
    ranges = [
        range((a - o) // c, -(-(b - o) // c)) for a, b, o, c in zip(box.start, box.stop, bounds.start, chunk)
    ]
    for ix, iy, iz in itertools.product(*ranges):
        index = (ix, iy, iz)
        start = tuple(o + i * c for o, i, c in zip(bounds.start, index, chunk))
        stop = tuple(min(s + c, e) for s, c, e in zip(start, chunk, bounds.stop))
        yield index, VoxelBox(start, stop)  # type: ignore[arg-type]
