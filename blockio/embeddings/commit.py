"""The end of an embedding run: vectors into the index, the array into place, the catalog entry.

Each step can be repeated: the index set is dropped and filled again from
the staged array, the array is moved with renames, and ``committed.json``
in the staging folder holds the entry once both copies are in place, so a
rerun after a kill only writes the catalog entry and removes the staging
folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.embeddings.index import choose_engine, index_location, open_index
from blockio.embeddings.plan import EmbedPlan
from blockio.embeddings.rows import Rows
from blockio.inference.plan import save_atomic

__all__ = ["LANCE_ANN_ROWS", "finish", "set_folder"]

LANCE_ANN_ROWS = 100_000
"""A LanceDB set this large gets an IVF index; smaller ones are scanned exactly."""
_ROWS_PER_ADD = 50_000


def set_folder(root: Path, dataset: str, name: str) -> Path:
    """``ROOT/embeddings/<id>/<name>``: the set's Zarr array (cells) or group (segments)."""
    return root / "embeddings" / dataset / name


def _cell_rows(plan: EmbedPlan, array: Any, model: str) -> Any:
    """Rows of the staged ``[D, nz, ny, nx]`` array, a slab of cells at a time."""
    d, nz, ny, nx = array.shape
    for z in range(nz):
        slab = np.asarray(array[:, z], dtype=np.float32).reshape(d, ny * nx).T
        keys = np.arange(z * ny * nx, (z + 1) * ny * nx, dtype=np.uint64)
        centres, boxes = plan.cell_places(keys)
        yield Rows.build(keys, slab, centres=centres, boxes=boxes, layer="image", model=model)


def _segment_vectors(plan: EmbedPlan, finalize: Any) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Ids, vectors, centroids and boxes (mip voxels) of every segment, merged over the tasks."""
    parts = [np.load(plan.path(f"s-{i}.npz")) for i in range(plan.tasks)]
    parts = [p for p in parts if p["ids"].size]
    ids = np.concatenate([p["ids"] for p in parts]).astype(np.uint64) if parts else np.zeros(0, np.uint64)
    if not len(ids):
        return ids, np.zeros((0, 1), np.float32), np.zeros((0, 3)), np.zeros((0, 6), np.int64)
    counts = np.concatenate([p["counts"] for p in parts]).astype(np.float64)
    moments = np.concatenate([p["moments"] for p in parts])
    sums = np.concatenate([p["sums"] for p in parts])
    lo = np.concatenate([p["lo"] for p in parts])
    hi = np.concatenate([p["hi"] for p in parts])
    unique, inverse = np.unique(ids, return_inverse=True)
    total = np.bincount(inverse, counts, minlength=len(unique))
    merged = np.stack([np.bincount(inverse, moments[:, j] * counts, minlength=len(unique)) for j in range(moments.shape[1])], axis=1) / total[:, None]
    centroid = np.stack([np.bincount(inverse, sums[:, a], minlength=len(unique)) for a in range(3)], axis=1) / total[:, None]
    box_lo = np.full((len(unique), 3), np.iinfo(np.int64).max, dtype=np.int64)
    box_hi = np.full((len(unique), 3), np.iinfo(np.int64).min, dtype=np.int64)
    for a in range(3):
        np.minimum.at(box_lo[:, a], inverse, lo[:, a])
        np.maximum.at(box_hi[:, a], inverse, hi[:, a])
    vectors = np.asarray(finalize(merged) if finalize is not None else merged, dtype=np.float32)
    return unique, vectors, centroid, np.concatenate([box_lo, box_hi], axis=1)


def _write_segments(path: Path, ids: npt.NDArray[np.uint64], vectors: npt.NDArray[np.float32], centroids: npt.NDArray[np.float64], boxes: npt.NDArray[np.int64], dtype: str) -> Any:
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    codecs = (ZstdCodec(level=3), Crc32cCodec())
    n = max(1, len(ids))
    for key, data, dt in (("vectors", vectors, dtype), ("ids", ids, "uint64"), ("centroids", centroids, "float64"), ("boxes", boxes, "int64")):
        arr = group.create_array(key, shape=data.shape, chunks=(min(n, 65536), *data.shape[1:]), dtype=dt, compressors=codecs, fill_value=0)
        if len(ids):
            arr[...] = data.astype(dt)
    return group


def finish(plan: EmbedPlan, content: dict[str, Any], opts: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    """Index, then note the entry (``committed.json``), move the array into place, catalog; returns the entry."""
    from blockio.embeddings.records import with_entry
    from precomputed.catalog import Catalog

    staging = Path(plan.staging)
    done = staging / "committed.json"
    if done.exists():
        entry: dict[str, Any] = json.loads(done.read_text())
    else:
        entry = _index(plan, content, opts, provenance)
        text = json.dumps(entry, sort_keys=True).encode()
        save_atomic(done, lambda fh: fh.write(text))
    staged = staging / "array.zarr"
    if staged.exists():  # not yet moved (a rerun after a kill between the two renames finds it moved)
        final = set_folder(Path(plan.root), plan.dataset, plan.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    Catalog(plan.root).update(plan.dataset, with_entry(plan.name, entry))
    trash = staging.with_name(f".{staging.name}.trash")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return entry


def _index(plan: EmbedPlan, content: dict[str, Any], opts: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    import zarr

    from blockio.embeddings.tasks import _model_of

    staging = Path(plan.staging)
    staged = staging / "array.zarr"
    model = _model_of(plan)
    if plan.segments is not None:
        ids, vectors, centroids, boxes = _segment_vectors(plan, getattr(model, "finalize", None))
        scale = np.asarray(plan.to_mip0)
        places = (centroids + 0.5) * scale  # a voxel's centre, in mip-0 voxels
        boxes0 = np.concatenate([np.floor(boxes[:, :3] * scale), np.ceil(boxes[:, 3:] * scale)], axis=1).astype(np.int64)
        holder = _write_segments(staged, ids, vectors, centroids, boxes, opts.dtype)
        stored = np.asarray(holder["vectors"][...], dtype=np.float32) if len(ids) else vectors
        dim = int(vectors.shape[1])
        batches: Any = [Rows.build(ids, stored, centres=places, boxes=boxes0, layer=plan.segments, model=plan.model_name)]
        count = len(ids)
    else:
        holder = zarr.open_array(str(staged), mode="r+")
        dim = int(holder.shape[0])
        batches = _cell_rows(plan, holder, plan.model_name)
        count = int(np.prod(holder.shape[1:]))
    engine = choose_engine(plan.root, count, opts.engine)
    index = open_index(plan.root, plan.dataset, plan.name, dim=dim, metric=opts.metric, engine=engine)
    index.drop()
    index = open_index(plan.root, plan.dataset, plan.name, dim=dim, metric=opts.metric, engine=engine)
    for rows in batches:
        for lo in range(0, len(rows), _ROWS_PER_ADD):
            index.add(rows.take(np.arange(lo, min(lo + _ROWS_PER_ADD, len(rows)))))
    build_ann = getattr(index, "build_ann", None)
    if build_ann is not None and count > LANCE_ANN_ROWS:
        build_ann()
    vs = plan.voxel_size
    entry = {
        "kind": "embedding",
        "granularity": "segment" if plan.segments else "cell",
        "dimension": dim,
        "dtype": opts.dtype,
        "metric": opts.metric,
        "count": count,
        "array": f"embeddings/{plan.dataset}/{plan.name}",
        "axes": "nc (group: vectors [n, D], ids, centroids, boxes)" if plan.segments else "czyx",
        "index": {"engine": engine, "version": index.version(), "location": index_location(plan.root, plan.dataset, engine), "table": plan.name},
        "model": {"name": plan.model_name, "version": content["model_version"], "weights_hash": content["weights_hash"]},
        "input": {"layer": "image", "mip": plan.mip, "segments": plan.segments, "normalize": plan.normalize, "signature": content["signature"]},
        "cell": None if plan.cell is None else {"voxels": list(plan.cell), "nm": [c * v for c, v in zip(plan.cell, vs)]},
        "grid": None if plan.cell is None else list(plan.cells),
        "voxel_size": list(vs),
        "halo": list(plan.halo),
        "provenance": provenance,
    }
    index.close()
    holder.attrs.update({"blockio_embedding": {k: v for k, v in entry.items() if k != "index"}})
    return entry
