"""One task of an embedding run: read a window with its halo, call the model, keep its vectors.

Tasks are module-level functions of picklable arguments (Dask threads,
processes or a cluster) and idempotent: a task's done marker is written after
its output, so a killed run redoes at most the tasks that were running.

- :func:`cell_task` writes a task's cells into the staged Zarr array (one
  chunk per task, so tasks never share a chunk) and then ``c-<i>.done``;
- :func:`segment_task` saves per-segment moments, voxel counts, coordinate
  sums and boxes of its core as ``s-<i>.npz``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.embeddings.plan import EmbedPlan
from blockio.errors import InvalidRequest
from blockio.inference.plan import save_atomic
from blockio.inference.protocol import Model, load_model

__all__ = ["call_cells", "cell_task", "segment_task"]

_MODELS: dict[str, Model] = {}
_ARRAYS: dict[tuple[str, int], Any] = {}


def _model_of(plan: EmbedPlan) -> Any:
    if not isinstance(plan.model, str):
        return plan.model
    found = _MODELS.get(plan.model)
    if found is None:
        found = _MODELS[plan.model] = load_model(plan.model)
    return found


def _window(plan: EmbedPlan, index: int) -> npt.NDArray[np.float32]:
    from blockio.inference.tasks import open_store

    win = plan.window(index)
    block = open_store(plan.root).read_block(plan.dataset, win.start, win.size, mip=plan.mip, boundary="reflect", normalize=plan.normalize, dtype=np.float32)
    return np.ascontiguousarray(block[np.newaxis] if block.ndim == 3 else block)


def call_cells(plan: EmbedPlan, index: int) -> npt.NDArray[np.float32]:
    """The model's ``[D, nz, ny, nx]`` vectors of task ``index``'s cells, checked."""
    assert plan.cell is not None  # noqa: S101 - internal
    block = _window(plan, index)
    out = _model_of(plan)(block, cell=plan.cell, voxel_size=plan.voxel_size)
    arr = np.asarray(out) if not hasattr(out, "detach") else out.detach().cpu().numpy()
    want = tuple(s.stop - s.start for s in plan.cell_slices(index))
    if arr.ndim != 4 or arr.shape[1:] != want or arr.dtype.kind != "f":
        raise InvalidRequest(f"model {plan.model_name!r} returned {arr.dtype} {list(arr.shape)} for a window of {want} cells (z, y, x); it must return float [D, {', '.join(map(str, want))}]")
    if not np.all(np.isfinite(arr)):
        raise InvalidRequest(f"model {plan.model_name!r} returned non-finite vectors (NaN or inf)")
    return arr.astype(np.float32, copy=False)


def _array(plan: EmbedPlan) -> Any:
    import zarr

    key = (plan.staging, os.getpid())
    if key not in _ARRAYS:
        _ARRAYS[key] = zarr.open_array(str(plan.path("array.zarr")), mode="r+")
    return _ARRAYS[key]


def cell_task(job: tuple[EmbedPlan, int]) -> int:
    """Write task ``index``'s cells into the staged array; returns how many cells (0 when done before)."""
    plan, index = job
    marker = plan.path(f"c-{index}.done")
    if marker.exists():
        return 0
    vectors = call_cells(plan, index)
    array = _array(plan)
    array[(slice(None), *plan.cell_slices(index))] = vectors.astype(array.dtype)
    marker.touch()
    return int(np.prod(vectors.shape[1:]))


def segment_task(job: tuple[EmbedPlan, int]) -> int:
    """Save the moments of the segments in task ``index``'s core; returns how many segments."""
    from blockio.inference.tasks import open_store

    plan, index = job
    target = plan.path(f"s-{index}.npz")
    if target.exists():
        return 0
    assert plan.segments is not None  # noqa: S101 - internal
    win, box = plan.window(index), plan.box(index)
    block = _window(plan, index)
    labels = np.asarray(open_store(plan.root).read_block(plan.dataset, win.start, win.size, mip=plan.mip, layer=plan.segments, boundary="zero"))
    core = tuple(slice(h, h + s) for h, s in zip(reversed(plan.halo), reversed(box.size)))
    ids, moments, counts = _model_of(plan)(block, segments=labels, core=core, voxel_size=plan.voxel_size)
    ids = np.asarray(ids, dtype=np.uint64)
    moments = np.asarray(moments, dtype=np.float64)
    if moments.ndim != 2:  # a model may return a flat list for one segment, or nothing for none
        moments = moments.reshape(len(ids), -1) if len(ids) else np.zeros((0, 0))
    counts = np.asarray(counts, dtype=np.int64)
    # where each segment is inside the core: coordinate sums (centroids) and boxes, mip voxels
    inner = labels[core].astype(np.uint64)
    z, y, x = np.nonzero(inner)
    found = inner[z, y, x]
    order = np.searchsorted(ids, found)
    if len(found) and (np.any(order >= len(ids)) or np.any(ids[np.minimum(order, len(ids) - 1)] != found)):
        raise InvalidRequest(f"model {plan.model_name!r} did not return every segment of its core (ids must be sorted and complete)")
    coords = np.stack([x + box.start[0], y + box.start[1], z + box.start[2]], axis=1)
    sums = np.zeros((len(ids), 3))
    lo = np.full((len(ids), 3), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full((len(ids), 3), np.iinfo(np.int64).min, dtype=np.int64)
    for a in range(3):
        sums[:, a] = np.bincount(order, coords[:, a], minlength=len(ids))
        np.minimum.at(lo[:, a], order, coords[:, a])
        np.maximum.at(hi[:, a], order, coords[:, a] + 1)
    save_atomic(target, lambda fh: np.savez(fh, ids=ids, moments=moments, counts=counts, sums=sums, lo=lo, hi=hi))
    return len(ids)
