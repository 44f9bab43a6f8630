"""The plan every task of one embedding run shares: the cell grid, the task grid, the staging folder.

Cells are ``cell`` voxels of the set's mip, numbered x fastest
(``key = i + nx * (j + ny * k)``); the last cell along an axis may reach past
the volume (it is read with reflection, as the halo is). A task owns
``core`` voxels, a whole number of cells, and reads them grown by the model's
``halo``; so a cell's vector never depends on the task grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox
from precomputed.geometry import grid_shape, xyz

__all__ = ["EmbedPlan"]

Xyz = tuple[int, int, int]


@dataclass(frozen=True)
class EmbedPlan:
    """What every task of one run needs (picklable with a spec-string model)."""

    root: str
    dataset: str
    name: str
    model: Any  # "pkg.module:callable" or the callable
    model_name: str
    staging: str
    shape: Xyz  # (x, y, z) voxels of the mip
    cell: Xyz | None  # (x, y, z) voxels; None for segments
    core: Xyz  # (x, y, z) voxels per task (a multiple of the cell)
    halo: Xyz
    mip: int
    normalize: str | None
    segments: str | None  # the segmentation layer, for one vector per segment
    voxel_size: tuple[float, float, float]  # nm at the mip
    to_mip0: tuple[float, float, float]  # voxels of mip 0 per voxel of the mip, (x, y, z)

    @property
    def cells(self) -> Xyz:
        """Cells along x, y, z (cell granularity)."""
        assert self.cell is not None  # noqa: S101 - internal
        return grid_shape(self.shape, self.cell)

    @property
    def counts(self) -> Xyz:
        """Tasks along x, y, z."""
        return grid_shape(self.shape, self.core)

    @property
    def tasks(self) -> int:
        return math.prod(self.counts)

    def ijk(self, index: int) -> Xyz:
        cx, cy, _ = self.counts
        return (index % cx, (index // cx) % cy, index // (cx * cy))

    def box(self, index: int) -> VoxelBox:
        """Task ``index``'s core: whole cells (cells), or clipped to the volume (segments)."""
        start = xyz(i * c for i, c in zip(self.ijk(index), self.core))
        if self.cell is None:
            stop = tuple(min(s + c, n) for s, c, n in zip(start, self.core, self.shape))
        else:
            limit = tuple(n * c for n, c in zip(self.cells, self.cell))  # the last cell may pass the volume
            stop = tuple(min(s + c, m) for s, c, m in zip(start, self.core, limit))
        return VoxelBox(start, stop)  # type: ignore[arg-type]

    def window(self, index: int) -> VoxelBox:
        box = self.box(index)
        return VoxelBox(xyz(a - h for a, h in zip(box.start, self.halo)), xyz(b + h for b, h in zip(box.stop, self.halo)))

    def cell_slices(self, index: int) -> tuple[slice, slice, slice]:
        """The (z, y, x) cell slices task ``index`` fills in the ``[D, nz, ny, nx]`` array."""
        assert self.cell is not None  # noqa: S101 - internal
        box = self.box(index)
        return tuple(slice(a // c, b // c) for a, b, c in zip(reversed(box.start), reversed(box.stop), reversed(self.cell)))  # type: ignore[return-value]

    def path(self, name: str) -> Path:
        return Path(self.staging) / name

    def cell_places(self, keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Centres (float, mip-0 voxels) and boxes (mip-0 voxels, clipped to the volume) of cells ``keys``."""
        assert self.cell is not None  # noqa: S101 - internal
        nx, ny, _ = self.cells
        k = keys.astype(np.int64)
        ijk = np.stack([k % nx, (k // nx) % ny, k // (nx * ny)], axis=1)
        cell = np.asarray(self.cell)
        start = ijk * cell
        stop = np.minimum(start + cell, np.asarray(self.shape))
        scale = np.asarray(self.to_mip0)
        centres = (start + stop) / 2.0 * scale
        boxes = np.concatenate([np.floor(start * scale), np.ceil(stop * scale)], axis=1).astype(np.int64)
        return centres, boxes
