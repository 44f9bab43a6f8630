"""The plan every task of one inference run shares: the task grid and the staging folder.

The volume is cut into chunk-aligned *cores* of ``core`` voxels, numbered in
x-fastest order; a task reads its core grown by ``halo`` on every side (its
*window*) and writes only the core. Everything a task leaves behind lives in
the run's staging folder, written with :func:`save_atomic`, or, when
``bucket`` names a bucket root (``s3://``, ``gs://``), under the key prefix
``staging`` of that root: the workers of a cluster share nothing else, and
each object PUT is whole, as a rename is locally. Tasks go through
:meth:`RunPlan.save`, :meth:`RunPlan.has`, :meth:`RunPlan.load` and
:meth:`RunPlan.touch`, never through paths.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockio.boxes import VoxelBox
from precomputed.geometry import grid_shape, xyz

__all__ = ["RunPlan", "save_atomic"]

Xyz = tuple[int, int, int]


@dataclass(frozen=True)
class RunPlan:
    """What every task of one run needs (picklable with a spec-string model)."""

    root: str
    dataset: str
    name: str
    model: Any  # "pkg.module:callable" or the callable itself
    model_name: str
    staging: str
    shape: Xyz  # (x, y, z) of the mip
    core: Xyz  # (x, y, z) core size, a multiple of the chunk size
    halo: Xyz
    mip: int
    normalize: str | None
    threshold: float
    blend: bool
    bucket: str | None = None  # a bucket root's URL: ``staging`` is then a key prefix under it

    @property
    def counts(self) -> Xyz:
        """Tasks along x, y and z."""
        return grid_shape(self.shape, self.core)

    @property
    def tasks(self) -> int:
        """How many tasks (cores) the run has."""
        return math.prod(self.counts)

    def index(self, ijk: Xyz) -> int:
        """The task number of grid position ``ijk`` (x, y, z)."""
        cx, cy, _ = self.counts
        return ijk[0] + cx * (ijk[1] + cy * ijk[2])

    def ijk(self, index: int) -> Xyz:
        """The grid position (x, y, z) of task ``index``."""
        cx, cy, _ = self.counts
        return (index % cx, (index // cx) % cy, index // (cx * cy))

    def box(self, index: int) -> VoxelBox:
        """Task ``index``'s core, clipped to the volume."""
        start = xyz(i * c for i, c in zip(self.ijk(index), self.core))
        stop = xyz(min(s + c, n) for s, c, n in zip(start, self.core, self.shape))
        return VoxelBox(start, stop)

    def window(self, index: int) -> VoxelBox:
        """Task ``index``'s core grown by the halo (it may leave the volume: read with reflection)."""
        box = self.box(index)
        return VoxelBox(xyz(a - h for a, h in zip(box.start, self.halo)), xyz(b + h for b, h in zip(box.stop, self.halo)))

    def path(self, name: str) -> Path:
        """A file of the local staging folder."""
        if self.bucket is not None:
            raise RuntimeError(f"internal: {name!r} of a run staged in a bucket has no local path")
        return Path(self.staging) / name

    def key(self, name: str) -> str:
        """The object of a run staged in a bucket."""
        return f"{self.staging}/{name}"

    def _storage(self) -> Any:
        from precomputed.bucket import root_storage

        return root_storage(str(self.bucket))

    def has(self, name: str) -> bool:
        """Whether the staged file or object ``name`` exists (a task's done marker)."""
        return self.path(name).exists() if self.bucket is None else bool(self._storage().exists(self.key(name)))

    def save(self, name: str, write: Callable[[Any], None]) -> None:
        """Stage ``name`` whole: ``write(fh)`` into a temp file renamed into place, or into one object PUT."""
        if self.bucket is None:
            save_atomic(self.path(name), write)
            return
        buffer = io.BytesIO()
        write(buffer)
        self._storage().put(self.key(name), buffer.getvalue(), durable=False)

    def touch(self, name: str) -> None:
        """An empty done marker."""
        self.save(name, lambda fh: fh.write(b""))

    def read(self, name: str) -> bytes | None:
        """The bytes of a staged file or object; None when missing."""
        if self.bucket is None:
            try:
                return self.path(name).read_bytes()
            except FileNotFoundError:
                return None
        return self._storage().get(self.key(name))  # type: ignore[no-any-return]

    def load(self, name: str, *, mmap: bool = False) -> Any:
        """``numpy.load`` of a staged ``.npy`` / ``.npz`` (memory-mapped locally with ``mmap``)."""
        import numpy as np

        if self.bucket is None:
            return np.load(self.path(name), mmap_mode="r" if mmap else None)
        data = self.read(name)
        if data is None:
            raise FileNotFoundError(self._storage().url_for(self.key(name)))
        return np.load(io.BytesIO(data))


def save_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, then rename it there; a failed write leaves nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk should not keep the half-written file
        raise
