"""Block writes into segmentation layers (``PUT /api/datasets/<id>/layers/<layer>/block``).

A write takes the layer's file lock (``ROOT/.locks/<id>.<layer>.lock``), so
two writers never interleave: chunk-aligned blocks are written whole, others
by CloudVolume's read-modify-write of the chunks they touch. The pyramid above
the block is recomputed (mode downsampling, chunk-aligned at every mip) under
the same lock, then the layer's version is bumped in the catalog, which
retires every cached chunk of the old version. Segment properties and meshes
are not recomputed per block: the record lists them under ``stale``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
from filelock import FileLock

from blockio.boxes import VoxelBox
from blockio.errors import InvalidRequest, LayerNotFound
from blockio.store import Store

__all__ = ["write_block"]

Xyz = tuple[int, int, int]


def _layer_lock(store: Store, dataset: str, layer: str) -> FileLock:
    locks = store.root / ".locks"
    locks.mkdir(exist_ok=True)
    return FileLock(str(locks / f"{dataset}.{layer}.lock"), timeout=60)


def _aligned(box: VoxelBox, chunk: Xyz, bounds: VoxelBox) -> VoxelBox:
    start = tuple(b0 + ((s - b0) // c) * c for s, c, b0 in zip(box.start, chunk, bounds.start))
    stop = tuple(min(b0 + -(-(e - b0) // c) * c, b1) for e, c, b0, b1 in zip(box.stop, chunk, bounds.start, bounds.stop))
    return VoxelBox(start, stop)  # type: ignore[arg-type]


def write_block(store: Store, dataset: str, layer: str, offset: Xyz, block: npt.NDArray[Any]) -> dict[str, Any]:
    """Write a ``[z, y, x]`` integer block at ``offset`` (x, y, z) into a segmentation layer."""
    from cloudvolume import CloudVolume

    from precomputed.catalog import Catalog, now
    from precomputed.pyramid import downsample_mode

    record = store.info(dataset)
    meta = record["layers"].get(layer)
    if meta is None:
        raise LayerNotFound(f"dataset {dataset!r} has no layer {layer!r}")
    if meta["type"] != "segmentation":
        raise InvalidRequest(f"layer {layer!r} is an {meta['type']} layer: only segmentation layers take writes")
    if block.ndim != 3:
        raise InvalidRequest(f"a block must be 3-D [z, y, x], got shape {list(block.shape)}")
    if block.dtype.kind not in "iu":
        raise InvalidRequest(f"labels must be integers, got {block.dtype.name}")
    path = f"file://{store.root / meta['path']}"
    vol = CloudVolume(path, mip=0, progress=False, fill_missing=True)
    target = np.dtype(vol.dtype)
    if block.size and (block.min() < 0 or int(block.max()) > np.iinfo(target).max):
        raise InvalidRequest(f"label ids must lie in 0..{np.iinfo(target).max} for this {target.name} layer")
    box = VoxelBox.from_offset_size(offset, tuple(reversed(block.shape)))  # type: ignore[arg-type]
    reader = store.reader(dataset, layer)
    bounds = reader.bounds(0)
    if not bounds.contains(box):
        raise InvalidRequest(f"block {box} (x, y, z) leaves the layer, whose bounds are {bounds}")
    # chunks are written as the layer stores them: a .gz twin beside a plain chunk would be read by
    # some readers and not others
    compress = "gzip" if meta.get("compression") == "gzip" else False
    with _layer_lock(store, dataset, layer):
        chunk = reader.chunk_size(0)
        aligned = _aligned(box, chunk, bounds) == box
        vol = CloudVolume(path, mip=0, progress=False, fill_missing=True, non_aligned_writes=not aligned, compress=compress)
        x0, y0, z0 = box.start
        x1, y1, z1 = box.stop
        vol[x0:x1, y0:y1, z0:z1] = np.ascontiguousarray(block.astype(target, copy=False)).T
        region = box
        for mip in range(1, reader.num_mips):
            fx, fy, fz = (int(f) for f in record["mips"][mip]["factor"])
            factor = (fx, fy, fz)
            lower = reader.bounds(mip - 1)
            level_bounds = reader.bounds(mip)
            # the chunk-aligned region of this mip that the write touches, and the mip below it covers
            scaled = VoxelBox(tuple(a // f for a, f in zip(region.start, factor)), tuple(-(-b // f) for b, f in zip(region.stop, factor)))  # type: ignore[arg-type]
            region = _aligned(scaled.intersect(level_bounds), reader.chunk_size(mip), level_bounds)
            src = VoxelBox(tuple(a * f for a, f in zip(region.start, factor)), tuple(min(b * f, n) for b, f, n in zip(region.stop, factor, lower.stop)))  # type: ignore[arg-type]
            below = CloudVolume(path, mip=mip - 1, progress=False, fill_missing=True)
            data = np.asarray(below[src.start[0] : src.stop[0], src.start[1] : src.stop[1], src.start[2] : src.stop[2]]).T
            down = downsample_mode(np.ascontiguousarray(data), factor)
            up = CloudVolume(path, mip=mip, progress=False, fill_missing=True, compress=compress)
            (a0, b0, c0), (a1, b1, c1) = region.start, region.stop
            up[a0:a1, b0:b1, c0:c1] = down[:, : c1 - c0, : b1 - b0, : a1 - a0].T
        version = f"{now()}#{os.getpid()}-{np.random.default_rng().integers(1 << 30)}"

        def bump(old: dict[str, Any] | None) -> dict[str, Any]:
            if old is None or layer not in old["layers"]:
                raise LayerNotFound(f"dataset {dataset!r} lost layer {layer!r} during the write")
            new = dict(old)
            new["layers"] = dict(old["layers"])
            entry = dict(old["layers"][layer])
            entry["version"] = version
            entry["stale"] = sorted(set(entry.get("stale", [])) | {"mesh", "segment_properties"})
            new["layers"][layer] = entry
            new["updated"] = now()
            return new

        Catalog(store.root).update(dataset, bump)
    return {"dataset": dataset, "layer": layer, "offset": list(box.start), "shape_zyx": list(block.shape), "version": version, "aligned": aligned}
