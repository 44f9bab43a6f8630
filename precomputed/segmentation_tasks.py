"""The tasks that finish a segmentation layer: counts, meshes and the mode pyramid.

Module-level functions of picklable jobs, for any Dask scheduler. A pass-0
task reads a chunk-aligned box of the staged mip 0, counts its ids, meshes it
and writes the mips above; later passes read the highest mip written so far.
Each task records its chunks' checksums in a manifest fragment, then ends
with a done marker holding its counts and mesh ids. On a bucket root
(``root`` set) the paths are keys under it, and a task's mesh fragments are
made in a temporary folder and uploaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from cloudvolume import CloudVolume

from . import checksum_writes, image_layer, omezarr, segment_properties
from . import meshes as mesh_format
from .bucket import root_storage, upload_folder
from .geometry import projection, xyz
from .ingest_tasks import marker_exists, thread_handle, write_marker
from .pyramid import Mip, downsample_mode
from .tasks import Box

__all__ = ["SegJob", "run_job", "write_region"]

Xyz = tuple[int, int, int]


def _reader(layer_path: str, mip: int, root: str | None = None) -> CloudVolume:
    # fill_missing: a chunk never written is background; an unreadable one still raises
    url = f"file://{layer_path}" if root is None else root_storage(root).url_for(layer_path)
    return CloudVolume(url, mip=mip, fill_missing=True, progress=False, parallel=1, cache=False)


def _read(layer_path: str, mip: int, start: Xyz, stop: Xyz, root: str | None = None) -> npt.NDArray[Any]:
    if root is not None:  # a bucket layer's prefix is never made anew: it is versioned
        vol = thread_handle("seg-read", (root, layer_path, mip), partial(_reader, layer_path, mip, root))
        cut = vol[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
        return np.asarray(cut)[..., 0].T
    # keyed by the info file too: a handle cached per thread must not read a layer made anew (or sharded) at its path
    info = os.stat(os.path.join(layer_path, "info"))
    vol = thread_handle("seg-read", (layer_path, mip, info.st_ino, info.st_mtime_ns), partial(_reader, layer_path, mip))
    cut = vol[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
    return np.asarray(cut)[..., 0].T  # Fortran (x, y, z) -> C-order [z, y, x], no copy


@dataclass(frozen=True)
class SegJob:
    """Read ``box`` of ``read_mip`` from the staged layer, write ``write_mips`` to both stores."""

    box: Box
    read_mip: int
    write_mips: tuple[int, ...]
    mips: tuple[Mip, ...]
    layer_path: str
    zarr_path: str
    marker: str
    mesh_dir: str | None
    root: str | None = None  # a bucket root's URL: the paths above are keys under it


def _mesh(job: SegJob, data: npt.NDArray[Any], **kwargs: Any) -> list[int]:
    if job.root is None or job.mesh_dir is None:
        return mesh_format.mesh_box(job.mesh_dir or "", data, **kwargs)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="blockio-mesh-") as tmp:
        ids = mesh_format.mesh_box(tmp, data, **kwargs)
        upload_folder(root_storage(job.root), tmp, job.mesh_dir)
    return ids


def run_job(job: SegJob) -> None:
    """One task; skipped when its marker exists. Counts and mesh ids go to the marker."""
    if marker_exists(job.marker, job.root):
        return
    box = job.box
    shape0 = job.mips[0].shape
    arrays: dict[str, Any] = {}
    first: npt.NDArray[Any] | None = None  # mip 1 of the box, when meshing made it already
    if job.read_mip == 0:
        # meshes are made at mip 1 (mip 0 when there is none) from the box plus one mip-1 voxel
        # on its high sides, so this box's meshes meet its neighbours'
        mesh_mip = min(1, len(job.mips) - 1)
        overlap = job.mips[mesh_mip].factor if job.mesh_dir else (0, 0, 0)
        stop = xyz(min(b + o, n) for b, o, n in zip(box.stop, overlap, shape0))
        data = _read(job.layer_path, 0, box.start, stop, job.root)
        block = np.ascontiguousarray(data[: box.shape[2], : box.shape[1], : box.shape[0]])
        arrays["ids"], arrays["counts"] = segment_properties.count_labels(block)
        if job.mesh_dir:
            mip = job.mips[mesh_mip]
            mesh_box = box.scaled(mip.factor, mip.shape)
            mesh_data = downsample_mode(data[None], mip.factor)[0] if mesh_mip else data
            ids = _mesh(
                job, mesh_data, start=mesh_box.start, stop=mesh_box.stop, volume_shape=mip.shape, voxel_size=mip.voxel_size, name_box=(box.start, box.stop)
            )
            arrays["mesh_ids"] = np.array(ids, dtype=np.uint64)
            if mesh_mip:
                first = np.ascontiguousarray(mesh_data[: mesh_box.shape[2], : mesh_box.shape[1], : mesh_box.shape[0]])
    else:
        block = _read(job.layer_path, job.read_mip, box.start, box.stop, job.root)
    digests: dict[str, dict[str, str]] = {}
    for level in job.write_mips:
        mip = job.mips[level]
        if level != job.read_mip:
            block = first if level == 1 and first is not None else downsample_mode(block[None], mip.factor)[0]
            box = box.scaled(mip.factor, mip.shape)
        if block.shape != box.shape[::-1]:
            raise RuntimeError(f"internal: mip {level} block {block.shape} does not fill box {box}")
        zarr_array = thread_handle("seg-zarr", (job.root, job.zarr_path, level), partial(omezarr.open_level, job.zarr_path, level, root=job.root))
        omezarr.write_box(zarr_array, box.start, block[None])
        if level != 0:  # mip 0 is the staged layer itself
            vol = thread_handle("seg-write", (job.root, job.layer_path, level), partial(image_layer.open_layer, job.layer_path, level, root=job.root))
            digests[vol.key] = image_layer.write_box(vol, box.start, block[None])
    # the fragment before the marker: a task with a marker has its checksums recorded
    checksum_writes.write_fragment(job.layer_path, os.path.basename(job.marker).removesuffix(".npz"), digests, root=job.root)
    write_marker(job.marker, arrays, job.root)


def write_region(writer: Any, labels: npt.NDArray[Any], offset: Xyz, box: Box) -> None:
    """Write the aligned ``box`` from ``labels`` placed at ``offset``; outside it, background."""
    placed = Box.from_offset_size(offset, labels.shape[::-1])
    dst, src = projection(box, placed)
    if placed.contains(box):
        block = labels[src]
    else:
        block = np.zeros(box.shape[::-1], dtype=labels.dtype)
        block[dst] = labels[src]
    writer.write_block(box.start, block)
