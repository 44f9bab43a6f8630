"""The tasks of blockwise inference and the face union that joins their components.

See :mod:`blockio.inference.run` for the design. Everything here is a module-level
function of picklable arguments, so the same tasks run on Dask threads,
processes or a distributed cluster.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox
from blockio.errors import InvalidRequest

__all__ = ["Model", "load_model", "model_name"]

log = logging.getLogger(__name__)

Xyz = tuple[int, int, int]
Model = Callable[[npt.NDArray[np.float32]], Any]
_FACES = ("x0", "x1", "y0", "y1", "z0", "z1")
_MAX_ID = np.iinfo(np.uint32).max


def _writer_class() -> Any:
    # a seam for tests: the writer lives in precomputed, which blockio may import
    from precomputed.segmentation import SegmentationWriter

    return SegmentationWriter


# -- the model -------------------------------------------------------------
def load_model(spec: str | Model) -> Model:
    """The callable named by ``"pkg.module:callable"`` (or ``spec`` itself if callable)."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise InvalidRequest(f"model must be a callable or 'pkg.module:callable', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is the user's to see
        raise InvalidRequest(f"model {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidRequest(f"model {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidRequest(f"model {spec!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def model_name(model: str | Model) -> str:
    """``module:qualname`` of a model, as recorded in the layer's provenance."""
    if isinstance(model, str):
        return model
    target = model if hasattr(model, "__qualname__") else type(model)
    module = getattr(target, "__module__", None) or "?"
    name = getattr(model, "name", None) if not hasattr(model, "__qualname__") else None
    return f"{module}:{name or target.__qualname__}"


def _parameters(model: Model) -> Any:
    params = getattr(model, "parameters", None)
    return params() if callable(params) else params


_MODELS: dict[str, Model] = {}


def _model_of(run: _Run) -> Model:
    if not isinstance(run.model, str):
        return run.model
    found = _MODELS.get(run.model)
    if found is None:
        found = _MODELS[run.model] = load_model(run.model)
    return found


def _check_output(out: Any, shape_zyx: tuple[int, ...], name: str) -> npt.NDArray[Any]:
    arr = np.asarray(out) if not hasattr(out, "detach") else out.detach().cpu().numpy()
    if arr.dtype.kind in "iub" and arr.ndim == 3 and arr.shape == shape_zyx:
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise InvalidRequest(f"model {name!r} returned negative labels; labels must be >= 0")
        return arr
    if arr.dtype.kind == "f" and arr.ndim == 4 and arr.shape[1:] == shape_zyx and arr.shape[0] >= 1:
        if not np.all(np.isfinite(arr)):
            raise InvalidRequest(f"model {name!r} returned non-finite scores (NaN or inf)")
        return arr
    raise InvalidRequest(
        f"model {name!r} returned {arr.dtype} {list(arr.shape)} for an input block [C, Z, Y, X] of spatial shape {list(shape_zyx)}; "
        f"it must return integer labels [Z, Y, X] = {list(shape_zyx)} or float scores [K, Z, Y, X] = [K, {', '.join(map(str, shape_zyx))}]"
    )


# -- the plan ----------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
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

    @property
    def counts(self) -> Xyz:
        return tuple(-(-n // c) for n, c in zip(self.shape, self.core))  # type: ignore[return-value]

    def index(self, ijk: Xyz) -> int:
        cx, cy, _ = self.counts
        return ijk[0] + cx * (ijk[1] + cy * ijk[2])

    def ijk(self, index: int) -> Xyz:
        cx, cy, _ = self.counts
        return (index % cx, (index // cx) % cy, index // (cx * cy))

    def box(self, index: int) -> VoxelBox:
        start = tuple(i * c for i, c in zip(self.ijk(index), self.core))
        stop = tuple(min(s + c, n) for s, c, n in zip(start, self.core, self.shape))
        return VoxelBox(start, stop)  # type: ignore[arg-type]

    def window(self, index: int) -> VoxelBox:
        box = self.box(index)
        return VoxelBox(tuple(a - h for a, h in zip(box.start, self.halo)), tuple(b + h for b, h in zip(box.stop, self.halo)))  # type: ignore[arg-type]

    def path(self, name: str) -> Path:
        return Path(self.staging) / name

    @property
    def tasks(self) -> int:
        return math.prod(self.counts)


def _save_atomic(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


_STORES: dict[tuple[str, int], Any] = {}


def _store(root: str) -> Any:
    from blockio.store import Store

    key = (root, os.getpid())
    if key not in _STORES:
        _STORES[key] = Store(root, cache_bytes=0)  # every chunk is read by at most a few windows
    return _STORES[key]


def _predict(run: _Run, index: int) -> npt.NDArray[Any]:
    """The model's output on task ``index``'s window, checked."""
    window = run.window(index)
    block = _store(run.root).read_block(run.dataset, window.start, window.size, mip=run.mip, boundary="reflect", normalize=run.normalize, dtype=np.float32)
    if block.ndim == 3:
        block = block[np.newaxis]
    return _check_output(_model_of(run)(np.ascontiguousarray(block)), block.shape[1:], run.model_name)


def _core_slices(run: _Run, index: int) -> tuple[slice, ...]:
    box = run.box(index)
    return tuple(slice(h, h + s) for h, s in zip(reversed(run.halo), reversed(box.size)))


def _ramp(n: int, halo: int) -> npt.NDArray[np.float64]:
    # cosine ramps over 2*halo voxels at both ends, never 0 so an edge window still counts
    w = np.ones(n)
    width = min(2 * halo, n // 2)
    if width > 0:
        t = (np.arange(width) + 0.5) / width
        up = 0.5 - 0.5 * np.cos(np.pi * t)
        w[:width] = up
        w[n - width :] = np.minimum(w[n - width :], up[::-1])
    return w


def _blended(run: _Run, index: int) -> npt.NDArray[np.float32]:
    """Scores of a core: windows of the 3x3x3 neighbourhood, weighted by cosine ramps."""
    box = run.box(index)
    acc: npt.NDArray[np.float64] | None = None
    total = np.zeros(tuple(reversed(box.size)))
    i0 = run.ijk(index)
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                j = tuple(a + d for a, d in zip(i0, (dx, dy, dz)))
                if any(v < 0 or v >= c for v, c in zip(j, run.counts)):
                    continue
                k = run.index(j)  # type: ignore[arg-type]
                win = run.window(k)
                part = box.intersect(win)
                if part.empty:
                    continue
                scores = np.load(run.path(f"scores-{k}.npy"), mmap_mode="r")
                wz, wy, wx = (_ramp(n, h) for n, h in zip(reversed(win.size), reversed(run.halo)))
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


def _foreground(run: _Run, out: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Class map of a core (0 = background) from scores or semantic labels."""
    if out.ndim == 3:
        return out
    if out.shape[0] == 1:
        return (out[0] > run.threshold).astype(np.uint8)
    cls = np.argmax(out, axis=0)
    return cls.astype(np.uint8 if out.shape[0] <= 256 else np.uint32)


def _components(run: _Run, out: npt.NDArray[Any], instance: bool) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Component map (0 = background, 1..n) and each component's class."""
    import cc3d

    if instance:
        values, inverse = np.unique(out, return_inverse=True)
        if values[0] != 0:
            values = np.concatenate([[0], values])
            inverse = inverse + 1
        comp = inverse.reshape(out.shape).astype(np.uint32)
        return comp, np.zeros(len(values), dtype=np.int64)
    classes = _foreground(run, out)
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


def _segment_task(job: tuple[_Run, int, str]) -> int:
    """Pass "predict" (blend only: save scores) or "segment" (components, faces, first voxels)."""
    run, index, mode = job
    if mode == "predict":
        target = run.path(f"scores-{index}.npy")
        if not target.exists():
            scores = _predict(run, index)
            if scores.ndim != 4:
                raise InvalidRequest(f"model {run.model_name!r} returned labels: blend=True needs a model that returns scores [K, Z, Y, X]")
            _save_atomic(target, lambda fh: np.save(fh, scores.astype(np.float32, copy=False)))
        return 0
    marker = run.path(f"p1-{index}.npz")
    if marker.exists():
        return 0
    instance = bool(getattr(_model_of(run), "instance", False))
    if run.blend:
        out: npt.NDArray[Any] = _blended(run, index)
    else:
        out = _predict(run, index)
        out = out[(slice(None), *_core_slices(run, index))] if out.ndim == 4 else out[_core_slices(run, index)]
    comp, cls = _components(run, out, instance and out.ndim == 3)
    n = len(cls) - 1
    # first voxel of each component in the raster order of the core is its first in the whole volume's;
    # only run starts can be first voxels, so the sort sees a few percent of the core
    starts = _run_starts(comp.ravel())
    ids, first_start = np.unique(comp.ravel()[starts], return_index=True)
    first = starts[first_start]
    box = run.box(index)
    z, y, x = np.unravel_index(first, comp.shape)
    nx, ny, _ = run.shape
    linear = ((z + box.start[2]) * ny + (y + box.start[1])) * nx + (x + box.start[0])
    firsts = np.zeros(n + 1, dtype=np.int64)
    firsts[ids] = linear
    faces = {"x0": comp[:, :, 0], "x1": comp[:, :, -1], "y0": comp[:, 0, :], "y1": comp[:, -1, :], "z0": comp[0], "z1": comp[-1]}
    _save_atomic(run.path(f"labels-{index}.npy"), lambda fh: np.save(fh, comp))
    arrays: dict[str, Any] = {"firsts": firsts[1:], "classes": cls, **{k: np.ascontiguousarray(v) for k, v in faces.items()}}
    _save_atomic(marker, lambda fh: np.savez(fh, **arrays))
    return n


def _write_task(job: tuple[_Run, int, int, int]) -> None:
    """Map one core's components to final ids and write it."""
    run, index, lo, hi = job
    marker = run.path(f"p2-{index}.done")
    if marker.exists():
        return
    comp = np.load(run.path(f"labels-{index}.npy"))
    lut = np.asarray(np.load(run.path("lut.npy"), mmap_mode="r")[lo:hi])
    writer = _writer(run)
    writer.write_block(run.box(index).start, lut[comp])
    marker.touch()


_WRITERS: dict[tuple[str, str, str, int], Any] = {}


def _writer(run: _Run) -> Any:
    key = (run.root, run.dataset, run.name, os.getpid())
    if key not in _WRITERS:
        _WRITERS[key] = _writer_class().open(run.root, run.dataset, run.name)
    return _WRITERS[key]


# -- union-find ----------------------------------------------------------------
def _find(parent: npt.NDArray[np.int64], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = int(parent[a])
    return a


def _face(run: _Run, index: int, face: str) -> npt.NDArray[np.int64]:
    with np.load(run.path(f"p1-{index}.npz")) as m:
        return m[face].astype(np.int64).ravel()


def _global_ids(run: _Run) -> tuple[npt.NDArray[np.uint32], list[int], int]:
    """Final ids of every (task, local id), as one table with a slice per task."""
    per_task = []
    for i in range(run.tasks):
        with np.load(run.path(f"p1-{i}.npz")) as m:
            per_task.append((m["firsts"], m["classes"]))
    offsets = np.concatenate([[0], np.cumsum([len(c) for _, c in per_task])]).astype(np.int64)
    total = int(offsets[-1])
    parent = np.arange(total, dtype=np.int64)
    firsts = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
    classes = np.zeros(total, dtype=np.int64)
    for i, (f, c) in enumerate(per_task):
        firsts[offsets[i] + 1 : offsets[i + 1]] = f
        classes[offsets[i] : offsets[i + 1]] = c
    del per_task
    for i in range(run.tasks):
        ijk = run.ijk(i)
        for axis, (hi_face, lo_face) in enumerate((("x1", "x0"), ("y1", "y0"), ("z1", "z0"))):
            nb = list(ijk)
            nb[axis] += 1
            if nb[axis] >= run.counts[axis]:
                continue
            j = run.index(tuple(nb))  # type: ignore[arg-type]
            a, b = _face(run, i, hi_face), _face(run, j, lo_face)
            keep = (a > 0) & (b > 0)
            a = a[keep] + offsets[i]
            b = b[keep] + offsets[j]
            keep = classes[a] == classes[b]
            pairs = np.unique(np.stack([a[keep], b[keep]]), axis=1)
            for u, v in pairs.T.tolist():
                ru, rv = _find(parent, u), _find(parent, v)
                if ru != rv:
                    parent[max(ru, rv)] = min(ru, rv)
    roots = parent
    while True:  # pointer jumping: every root is its set's smallest index
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            break
        roots = jumped
    background = np.zeros(total, dtype=bool)
    background[offsets[:-1]] = True
    first_of_root = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_of_root, roots[~background], firsts[~background])
    live = np.flatnonzero(first_of_root < np.iinfo(np.int64).max)
    order = live[np.argsort(first_of_root[live], kind="stable")]
    if len(order) > _MAX_ID:
        raise InvalidRequest(f"the prediction has {len(order)} segments, more than a uint32 layer holds")
    rank = np.zeros(total, dtype=np.uint32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    lut = rank[roots]
    lut[background] = 0
    return lut, offsets.tolist(), len(order)
