"""One task of blockwise inference: read a window with its halo, call the model, label the core.

See :mod:`blockio.inference.run` for the design. Tasks are module-level
functions of picklable arguments, so they run on Dask threads, processes or a
distributed cluster, and each one is idempotent: its output file is its done
marker.

- :func:`segment_task` pass ``"predict"`` (``blend`` only) saves a window's
  scores; pass ``"segment"`` splits the core's foreground into components and
  saves them with the faces and first voxels that
  :mod:`blockio.inference.stitching` joins;
- :func:`write_task` maps a core's components to their final ids and writes it.

What a task stages goes through the plan (:meth:`RunPlan.save` and
friends): files of a local staging folder, or objects under
``.staging/<id>/<name>-inference/`` of a bucket root, which is all the
workers of a cluster share.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest
from blockio.inference.plan import RunPlan
from blockio.inference.protocol import Model, check_output, load_model

__all__ = ["cosine_ramp", "open_store", "segment_task", "write_task"]

log = logging.getLogger(__name__)

_MODELS: dict[str, Model] = {}


def _model_of(plan: RunPlan) -> Model:
    # a spec string is imported once per process, where the task runs
    if not isinstance(plan.model, str):
        return plan.model  # type: ignore[no-any-return]
    found = _MODELS.get(plan.model)
    if found is None:
        found = _MODELS[plan.model] = load_model(plan.model)
    return found


_STORES: dict[tuple[str, int], Any] = {}


def open_store(root: str) -> Any:
    """This process's reading :class:`~blockio.store.Store` of ``root`` (no chunk cache)."""
    from blockio.store import Store

    key = (root, os.getpid())
    if key not in _STORES:
        _STORES[key] = Store(root, cache_bytes=0)  # every chunk is read by at most a few windows
    return _STORES[key]


def _predict(plan: RunPlan, index: int) -> npt.NDArray[Any]:
    """The model's output on task ``index``'s window, checked."""
    window = plan.window(index)
    block = open_store(plan.root).read_block(plan.dataset, window.start, window.size, mip=plan.mip, boundary="reflect", normalize=plan.normalize, dtype=np.float32)
    if block.ndim == 3:
        block = block[np.newaxis]
    return check_output(_model_of(plan)(np.ascontiguousarray(block)), block.shape[1:], plan.model_name)


def _core_slices(plan: RunPlan, index: int) -> tuple[slice, ...]:
    box = plan.box(index)
    return tuple(slice(h, h + s) for h, s in zip(reversed(plan.halo), reversed(box.size)))


def cosine_ramp(n: int, halo: int) -> npt.NDArray[np.float64]:
    # cosine ramps over 2*halo voxels at both ends, never 0 so an edge window still counts
    w = np.ones(n)
    width = min(2 * halo, n // 2)
    if width > 0:
        t = (np.arange(width) + 0.5) / width
        up = 0.5 - 0.5 * np.cos(np.pi * t)
        w[:width] = up
        w[n - width :] = np.minimum(w[n - width :], up[::-1])
    return w


def _blended(plan: RunPlan, index: int) -> npt.NDArray[np.float32]:
    """Scores of a core: windows of the 3x3x3 neighbourhood, weighted by cosine ramps."""
    box = plan.box(index)
    acc: npt.NDArray[np.float64] | None = None
    total = np.zeros(tuple(reversed(box.size)))
    i0 = plan.ijk(index)
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                j = tuple(a + d for a, d in zip(i0, (dx, dy, dz)))
                if any(v < 0 or v >= c for v, c in zip(j, plan.counts)):
                    continue
                k = plan.index(j)  # type: ignore[arg-type]
                win = plan.window(k)
                part = box.intersect(win)
                if part.empty:
                    continue
                scores = plan.load(f"scores-{k}.npy", mmap=True)
                wz, wy, wx = (cosine_ramp(n, h) for n, h in zip(reversed(win.size), reversed(plan.halo)))
                sz, sy, sx = part.slices_zyx(win.start)
                w = wz[sz, None, None] * wy[None, sy, None] * wx[None, None, sx]
                if acc is None:
                    acc = np.zeros((scores.shape[0], *total.shape))
                dst = part.slices_zyx(box.start)
                acc[(slice(None), *dst)] += np.asarray(scores[:, sz, sy, sx], dtype=np.float64) * w
                total[dst] += w
    if acc is None:
        raise RuntimeError(f"internal: no window covers core {index}")
    return (acc / total).astype(np.float32)


def _foreground(plan: RunPlan, out: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Class map of a core (0 = background) from scores or semantic labels."""
    if out.ndim == 3:
        return out
    if out.shape[0] == 1:
        return np.asarray(out[0] > plan.threshold, dtype=np.uint8)
    cls = np.argmax(out, axis=0)
    return np.asarray(cls, dtype=np.uint8 if out.shape[0] <= 256 else np.uint32)


def _components(plan: RunPlan, out: npt.NDArray[Any], instance: bool) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Component map (0 = background, 1..n) and each component's class."""
    import cc3d

    if instance:
        values, inverse = np.unique(out, return_inverse=True)
        if values[0] != 0:
            values = np.concatenate([[0], values])
            inverse = inverse + 1
        comp = inverse.reshape(out.shape).astype(np.uint32)
        return comp, np.zeros(len(values), dtype=np.int64)
    classes = _foreground(plan, out)
    comp = np.asarray(cc3d.connected_components(np.ascontiguousarray(classes), connectivity=6, out_dtype=np.uint32), dtype=np.uint32)
    n = int(comp.max())
    cls = np.zeros(n + 1, dtype=np.int64)
    flat = comp.ravel()
    starts = _run_starts(flat)
    cls[flat[starts]] = classes.ravel()[starts]  # every voxel of a component has its class
    return comp, cls


def _run_starts(flat: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indices where a new run of equal values begins; a component's first voxel is one of them."""
    change = np.empty(flat.shape, dtype=bool)
    change[:1] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    return np.flatnonzero(change)


def segment_task(job: tuple[RunPlan, int, str]) -> int:
    """Pass "predict" (blend only: save scores) or "segment" (components, faces, first voxels)."""
    plan, index, mode = job
    if mode == "predict":
        target = f"scores-{index}.npy"
        if not plan.has(target):
            scores = _predict(plan, index)
            if scores.ndim != 4:
                raise InvalidRequest(f"model {plan.model_name!r} returned labels: blend=True needs a model that returns scores [K, Z, Y, X]")
            plan.save(target, lambda fh: np.save(fh, scores.astype(np.float32, copy=False)))
        return 0
    marker = f"p1-{index}.npz"
    if plan.has(marker):
        return 0
    instance = bool(getattr(_model_of(plan), "instance", False))
    if plan.blend:
        out: npt.NDArray[Any] = _blended(plan, index)
    else:
        out = _predict(plan, index)
        out = out[(slice(None), *_core_slices(plan, index))] if out.ndim == 4 else out[_core_slices(plan, index)]
    comp, cls = _components(plan, out, instance and out.ndim == 3)
    n = len(cls) - 1
    # first voxel of each component in the raster order of the core is its first in the whole volume's;
    # only run starts can be first voxels, so the sort sees a few percent of the core
    starts = _run_starts(comp.ravel())
    ids, first_start = np.unique(comp.ravel()[starts], return_index=True)
    first = starts[first_start]
    box = plan.box(index)
    z, y, x = np.unravel_index(first, comp.shape)
    nx, ny, _ = plan.shape
    linear = ((z + box.start[2]) * ny + (y + box.start[1])) * nx + (x + box.start[0])
    firsts = np.zeros(n + 1, dtype=np.int64)
    firsts[ids] = linear
    faces = {"x0": comp[:, :, 0], "x1": comp[:, :, -1], "y0": comp[:, 0, :], "y1": comp[:, -1, :], "z0": comp[0], "z1": comp[-1]}
    plan.save(f"labels-{index}.npy", lambda fh: np.save(fh, comp))
    arrays: dict[str, Any] = {"firsts": firsts[1:], "classes": cls, **{k: np.ascontiguousarray(v) for k, v in faces.items()}}
    plan.save(marker, lambda fh: np.savez(fh, **arrays))
    return n


def write_task(job: tuple[RunPlan, int, int, int]) -> None:
    """Map one core's components to final ids and write it."""
    plan, index, lo, hi = job
    marker = f"p2-{index}.done"
    if plan.has(marker):
        return
    comp = plan.load(f"labels-{index}.npy")
    lut = np.asarray(plan.load("lut.npy", mmap=True)[lo:hi])
    writer = _writer(plan)
    writer.write_block(plan.box(index).start, lut[comp])
    plan.touch(marker)


_WRITERS: dict[tuple[str, str, str, int], Any] = {}


def _writer(plan: RunPlan) -> Any:
    from precomputed.segmentation import SegmentationWriter

    if plan.bucket is not None:  # each run's layer has keys of its own (a new tag): reopen it, one GET
        return SegmentationWriter.open(plan.root, plan.dataset, plan.name)
    key = (plan.root, plan.dataset, plan.name, os.getpid())
    if key not in _WRITERS:
        _WRITERS[key] = SegmentationWriter.open(plan.root, plan.dataset, plan.name)
    return _WRITERS[key]
