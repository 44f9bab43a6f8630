"""The passes that finish a segmentation layer: counts, meshes and the mode pyramid, as Dask tasks.

Used by :meth:`precomputed.segmentation.SegmentationWriter.finalize` on every
kind of root; the tasks are :func:`precomputed.segmentation_tasks.run_job`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

from . import meshes as mesh_format
from . import segment_properties, sharding
from .execution import run_tasks
from .geometry import xyz
from .ingest_tasks import read_marker
from .segmentation_tasks import SegJob, run_job
from .tasks import plan_passes

if TYPE_CHECKING:
    from .segmentation import SegmentationWriter

__all__ = ["build_passes"]

log = logging.getLogger(__name__)


def build_passes(self: SegmentationWriter, with_meshes: bool, *, workers: int | None, scheduler: str | None, progress: bool | None, task_bytes: int, shard: bool = False) -> tuple[Any, Any, dict[int, list[str]]]:
    """Run every pass; returns the merged ids, voxel counts and mesh fragments per id."""
    mesh_dir = f"{self.layer_path}/{mesh_format.MESH_DIR}" if self.bucket else os.path.join(self.layer_path, mesh_format.MESH_DIR)
    tasks = f"{self.bucket['staging']}/tasks" if self.bucket else str(self.staging / "tasks")
    if self.bucket is None:
        os.makedirs(tasks, exist_ok=True)
        if with_meshes:
            os.makedirs(mesh_dir, exist_ok=True)
    # boxes aligned to both the layer's chunks and the OME-Zarr labels' (the image's)
    grid = xyz(math.lcm(a, b) for a, b in zip(self.chunk_size, self._plan.zarr_chunk_size))
    passes = plan_passes(self.mips, grid, voxel_bytes=self.dtype.itemsize, task_bytes=max(task_bytes, 1))
    if shard:  # boxes that hold shards of many chunks; mips 1 and up: whole shards inside them
        passes = sharding.widen_passes(passes, self.mips, grid, voxel_bytes=self.dtype.itemsize, task_bytes=max(task_bytes, 1))
    if shard and not sharding.is_sharded(self.layer_path, 0):
        sharding.apply_specs(self.layer_path, sharding.pass_specs(self.mips, passes, self.chunk_size, voxel_bytes=self.dtype.itemsize, compress=False, skip=(0,)))
    parts = []
    fragments: dict[int, list[str]] = {}
    for p in passes:
        tag = "m" if p.index == 0 and with_meshes else ""
        jobs = [
            SegJob(box, p.read_mip, p.write_mips, self._plan.mips, self.layer_path, self._zarr_path, f"{tasks}/p{p.index}{tag}-{i}.npz", mesh_dir if tag else None, self.url)
            for i, box in enumerate(p.boxes)
        ]
        log.info("%s pass %d/%d: read mip %d, write mips %s, %d tasks of %s voxels", self.name, p.index + 1, len(passes), p.read_mip, list(p.write_mips), len(jobs), "x".join(map(str, p.box_size)))
        run_tasks(run_job, jobs, scheduler=scheduler, workers=workers, progress=progress, desc=f"{self.name} pass {p.index + 1}/{len(passes)}")
        if p.index == 0:
            for job in jobs:
                with read_marker(job.marker, self.url) as data:
                    parts.append((data["ids"], data["counts"]))
                    for segid in data["mesh_ids"] if with_meshes else ():
                        fragments.setdefault(int(segid), []).append(mesh_format.fragment_name(int(segid), job.box.start, job.box.stop))
    ids, counts = segment_properties.merge_counts(parts)
    return ids, counts, fragments
