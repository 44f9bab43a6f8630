"""Where the items of a :class:`~blockio.data.dataset.BlockDataset` come from.

Two samplers over a tuple of :class:`Volume`:

- the **grid** sampler walks the boxes of
  :meth:`blockio.store.Store.iter_blocks` of every volume in turn (x fastest,
  then y, then z), found in O(1) from per-axis starts;
- the **random** sampler draws item ``i`` from
  ``numpy.random.default_rng([seed, epoch, i])``: a volume in proportion to
  its weight, then an offset where the patch fits, so an item is a pure
  function of ``(seed, epoch, i)``.

Offsets and sizes are (x, y, z) voxels at the dataset's mip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox, Xyz
from blockio.errors import InvalidRequest
from precomputed.geometry import block_starts, xyz

__all__ = ["SAMPLERS", "Volume", "centred_offset", "cumulative_weights", "grid_item", "random_offset", "random_volume"]

SAMPLERS = ("random", "grid")


@dataclass(frozen=True)
class Volume:
    """What the dataset needs of one catalogued dataset, fixed at construction."""

    id: str
    bounds: VoxelBox
    voxel_size: tuple[float, float, float]
    grid: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]  # (x, y, z) box starts

    @classmethod
    def of(cls, dataset: str, bounds: VoxelBox, voxel_size: tuple[float, float, float], patch_size: Xyz, overlap: Xyz) -> Volume:
        """A volume whose grid is the boxes of ``Store.iter_blocks(dataset, patch_size, overlap)``."""
        grid = tuple(np.array(block_starts(lo, hi, p, o), dtype=np.int64) for lo, hi, p, o in zip(bounds.start, bounds.stop, patch_size, overlap))
        return cls(dataset, bounds, voxel_size, grid)  # type: ignore[arg-type]

    @property
    def grid_count(self) -> int:
        """How many grid boxes the volume has."""
        return len(self.grid[0]) * len(self.grid[1]) * len(self.grid[2])

    def grid_offset(self, j: int) -> Xyz:
        """The (x, y, z) start of grid box ``j``, in the order of ``Store.iter_blocks``."""
        xs, ys, zs = self.grid
        return (int(xs[j % len(xs)]), int(ys[(j // len(xs)) % len(ys)]), int(zs[j // (len(xs) * len(ys))]))


def grid_item(volumes: Sequence[Volume], ends: npt.NDArray[np.int64], i: int) -> tuple[Volume, Xyz]:
    """The volume and offset of item ``i`` of the grids concatenated (``ends``: cumulative grid counts)."""
    k = int(np.searchsorted(ends, i, side="right"))
    start = 0 if k == 0 else int(ends[k - 1])
    return volumes[k], volumes[k].grid_offset(i - start)


def cumulative_weights(volumes: Sequence[Volume], weights: str | Sequence[float]) -> npt.NDArray[np.float64]:
    """Cumulative probabilities of picking each volume: ``"size"`` (voxels), ``"equal"``, or one weight each."""
    n = len(volumes)
    if isinstance(weights, str):
        if weights == "size":
            values = np.array([math.prod(v.bounds.size) for v in volumes], dtype=np.float64)
        elif weights == "equal":
            values = np.ones(n)
        else:
            raise InvalidRequest(f"weights must be 'size', 'equal' or one number per dataset, got {weights!r}")
    else:
        try:
            values = np.array([float(w) for w in weights], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidRequest(f"weights must be 'size', 'equal' or one number per dataset, got {weights!r}") from None
        if len(values) != n:
            raise InvalidRequest(f"weights has {len(values)} numbers for {n} datasets")
        if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
            raise InvalidRequest(f"weights must be finite, >= 0 and not all 0, got {list(values)}")
    cumulative = np.cumsum(values / values.sum())
    cumulative[-1] = 1.0
    return cumulative


def random_volume(rng: np.random.Generator, volumes: Sequence[Volume], cumulative: npt.NDArray[np.float64]) -> Volume:
    """One volume, drawn in proportion to its weight."""
    k = int(np.searchsorted(cumulative, rng.random(), side="right"))
    return volumes[min(k, len(volumes) - 1)]


def random_offset(rng: np.random.Generator, volume: Volume, patch_size: Xyz) -> Xyz:
    """A uniform (x, y, z) offset where the patch fits (the volume's start on an axis where it does not)."""
    bounds = volume.bounds
    return xyz(int(lo + rng.integers(0, max(0, s - p) + 1)) for lo, s, p in zip(bounds.start, bounds.size, patch_size))


def centred_offset(volume: Volume, centre_nm: tuple[float, float, float], patch_size: Xyz) -> Xyz:
    """The (x, y, z) offset of the patch centred on a point in nm, moved back inside the volume where it must be."""
    bounds = volume.bounds
    out = []
    for c, v, p, lo, hi in zip(centre_nm, volume.voxel_size, patch_size, bounds.start, bounds.stop):
        start = math.floor(c / v - p / 2 + 0.5)
        out.append(int(min(max(start, lo), max(lo, hi - p))))
    return xyz(out)
