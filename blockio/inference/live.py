"""Live model layers: a model's output served as a precomputed layer, computed on request.

>>> live = parse_live_model("cells=blockio.inference.models:membrane_watershed?output=segmentation")
>>> layer = LiveLayer(store, live)
>>> layer.info("demo")                          # a precomputed ``info``
>>> payload, hit = layer.chunk("demo", "0-64_0-64_0-16")

A live layer has one scale, the image's mip 0 in the image's chunk grid.
Its chunks are computed with the same plan as :func:`blockio.inference.run_inference`
(the same task cores, halo, normalisation and threshold), so
``blockio predict`` with the same options writes exactly what the live layer
shows:

- **image** (a model that returns scores ``[K, Z, Y, X]``): a chunk is
  computed with the predict task that owns it (core + halo, core cropped);
  the whole core's chunks are encoded (raw float32, ``K`` channels) and cached.
- **segmentation** (a model that returns labels, or any model with
  ``output=segmentation``): ids are numbered by the first voxel of each
  segment in the raster order of the whole volume after the face union, which
  no region smaller than the volume determines. The first chunk asked for
  therefore runs predict's segment pass over every task, its stitching
  (:func:`~blockio.inference.stitching.global_ids`) and relabelling, and caches
  every chunk of the layer (``compressed_segmentation`` uint32); every later
  chunk is a cache hit. A volume of more voxels than a block read may ask
  for (``BLOCKIO_MAX_BLOCK_VOXELS``) is refused (413): write it with ``blockio predict``.

Chunks are kept as their encoded bytes in the store's cache tiers (memory,
then Redis) under keys whose version carries the model's spec, version and
parameters, the image layer's version and the plan's options; rewriting the
image or changing the model makes the old entries unreachable.

The kind comes from ``output`` in the spec, else the model's ``output``
attribute (``"labels"`` or ``"scores"``), else one call of the model on a
block of one chunk at the volume's origin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.cache.memory import ChunkKey
from blockio.errors import InvalidRequest, LayerNotFound, TooLarge
from blockio.inference.options import InferenceOptions
from blockio.inference.plan import RunPlan
from blockio.inference.protocol import Model, check_output, load_model, model_name, model_parameters, model_version
from precomputed.geometry import xyz

__all__ = ["KINDS", "LiveLayer", "LiveModel", "parse_live_model", "parse_live_models"]

log = logging.getLogger(__name__)

Xyz = tuple[int, int, int]

#: the layer types a live layer can be
KINDS = ("segmentation", "image")
#: bumped when the way chunks are computed or encoded changes (voids cached chunks)
LIVE_VERSION = 1
SEGMENTATION_BLOCK = (8, 8, 8)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)$")
_OPTIONS = ("block", "overlap", "normalize", "threshold", "output", "workers")


@dataclass(frozen=True, kw_only=True)
class LiveModel:
    """One live layer's model and plan: ``NAME=pkg.mod:fn[?option=value&...]``.

    Attributes
    ----------
    name
        The layer is served as ``live/<name>``.
    model
        ``"pkg.module:callable"`` or the callable itself.
    output
        ``"segmentation"``, ``"image"`` or ``None`` (the model's declared output).
    options
        The plan (``block``, ``overlap``, ``normalize``, ``threshold``; ``workers``
        for the segment pass), as for ``blockio predict``: the same options give the same voxels.
    """

    name: str
    model: str | Model
    output: str | None = None
    options: InferenceOptions = field(default_factory=lambda: InferenceOptions(meshes=False, progress=False))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidRequest(f"invalid live layer name {self.name!r}: use 1-128 characters of A-Z a-z 0-9 . _ -")
        if self.output is not None and self.output not in KINDS:
            raise InvalidRequest(f"output of live layer {self.name!r} must be one of {', '.join(KINDS)}, got {self.output!r}")
        if self.options.blend:
            raise InvalidRequest(f"live layer {self.name!r}: blend is not supported (a chunk would depend on its neighbours' windows)")


def parse_live_model(text: str) -> LiveModel:
    """A :class:`LiveModel` from ``NAME=pkg.mod:fn[?block=x,y,z&overlap=x,y,z&normalize=..&threshold=..&output=..&workers=..]``.

    Raises
    ------
    InvalidRequest
        A malformed text or option value (the model itself is loaded by :class:`LiveLayer`).
    """
    name, eq, rest = text.strip().partition("=")
    if not eq or not rest:
        raise InvalidRequest(f"a live model is NAME=pkg.module:callable, got {text!r}")
    spec, _, query = rest.partition("?")
    values: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, has_value, value = part.partition("=")
        if not has_value or key not in _OPTIONS:
            raise InvalidRequest(f"live model {name!r}: unknown option {part!r}; options are {', '.join(_OPTIONS)}")
        values[key] = value
    changes: dict[str, Any] = {k: values[k] for k in ("block", "overlap") if k in values}
    if "normalize" in values:
        changes["normalize"] = None if values["normalize"] in ("", "none") else values["normalize"]
    try:
        if "threshold" in values:
            changes["threshold"] = float(values["threshold"])
        if "workers" in values:
            changes["workers"] = int(values["workers"])
    except ValueError as exc:
        raise InvalidRequest(f"live model {name!r}: {exc}") from None
    if changes.get("workers", 1) < 1:
        raise InvalidRequest(f"live model {name!r}: workers must be at least 1")
    options = replace(InferenceOptions(meshes=False, progress=False), **changes)
    return LiveModel(name=name, model=spec, output=values.get("output") or None, options=options)


def parse_live_models(texts: tuple[str, ...] | list[str]) -> tuple[LiveModel, ...]:
    """Every live model of a list of texts; a name given twice is an error."""
    models = tuple(parse_live_model(t) for t in texts)
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidRequest(f"live layer names must differ, {', '.join(twice)} given twice")
    return models


@dataclass(frozen=True)
class _Geometry:
    """One dataset's live layer: its grid, its plan and the version its cache keys carry."""

    dataset: str
    kind: str
    channels: int
    shape: Xyz
    chunk: Xyz
    core: Xyz
    resolution: tuple[float, float, float]
    version: str

    @property
    def key(self) -> str:
        return "_".join(f"{v:g}" for v in self.resolution)

    def chunks_of(self, box_start: Xyz, box_stop: Xyz) -> Iterator[tuple[Xyz, Xyz, Xyz]]:
        """(index, start, stop) of every chunk of a chunk-aligned box, (x, y, z)."""
        ranges = [range(a, b, c) for a, b, c in zip(box_start, box_stop, self.chunk)]
        for z0 in ranges[2]:
            for y0 in ranges[1]:
                for x0 in ranges[0]:
                    start = (x0, y0, z0)
                    stop = tuple(min(s + c, n) for s, c, n in zip(start, self.chunk, self.shape))
                    yield tuple(s // c for s, c in zip(start, self.chunk)), start, stop  # type: ignore[misc]


class LiveLayer:
    """A live model layer over every dataset of a store; thread safe.

    Parameters
    ----------
    store
        The :class:`~blockio.store.Store` whose image layers are the input and
        whose cache tiers hold the encoded chunks.
    live
        The model and its plan.
    """

    def __init__(self, store: Any, live: LiveModel) -> None:
        self.store = store
        self.live = live
        self.model: Model = load_model(live.model)  # a mistyped spec fails when the service starts
        self.label = model_name(live.model)
        self.layer = f"live/{live.name}"
        self._geometries: dict[tuple[str, str], _Geometry] = {}
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    # -- what the layer is ------------------------------------------------------
    def geometry(self, dataset: str) -> _Geometry:
        """The dataset's grid and cache version (the output kind is found once per image version)."""
        from precomputed.catalog import layer_version

        record = self.store.info(dataset)  # DatasetNotFound names the catalogued ids
        if "image" not in record["layers"]:
            raise LayerNotFound(f"dataset {dataset!r} has no image layer for live layer {self.layer!r}")
        image_version = layer_version(record, "image")
        held = self._geometries.get((dataset, image_version))
        if held is not None:
            return held
        opts = self.live.options
        shape: Xyz = xyz(int(v) for v in record["shape"])
        chunk: Xyz = xyz(int(v) for v in record["chunk_size"])
        core: Xyz = xyz(-(-b // c) * c for b, c in zip(opts.block, chunk))
        kind, channels = self._kind(dataset, shape, chunk)
        content = {
            "live": LIVE_VERSION,
            "model": self.label,
            "model_version": model_version(self.model),
            "model_parameters": model_parameters(self.model),
            "image": image_version,
            "kind": kind,
            "core": core,
            "halo": opts.overlap,
            "normalize": opts.normalize,
            "threshold": opts.threshold,
        }
        version = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:20]
        resolution = tuple(float(v) for v in record["voxel_size"])
        geometry = _Geometry(dataset, kind, channels, shape, chunk, core, resolution, version)  # type: ignore[arg-type]
        with self._guard:
            self._geometries = {k: v for k, v in self._geometries.items() if k[0] != dataset}  # an old image version goes
            self._geometries[(dataset, image_version)] = geometry
        return geometry

    def _kind(self, dataset: str, shape: Xyz, chunk: Xyz) -> tuple[str, int]:
        declared = self.live.output or {"labels": "segmentation", "scores": "image"}.get(str(getattr(self.model, "output", "")))
        if declared == "segmentation":
            return "segmentation", 1
        # one call on a block of one chunk tells labels from scores, and how many score channels
        size = tuple(min(c, n) for c, n in zip(chunk, shape))
        out = self._call(dataset, (0, 0, 0), size)  # type: ignore[arg-type]
        if out.ndim == 3:
            if declared == "image":
                raise InvalidRequest(f"live layer {self.layer!r}: model {self.label!r} returns labels; output=image needs scores [K, Z, Y, X]")
            return "segmentation", 1
        return "image", int(out.shape[0])

    def info(self, dataset: str) -> dict[str, Any]:
        """The layer's precomputed ``info`` for ``dataset`` (one scale, the image's mip 0 grid)."""
        g = self.geometry(dataset)
        scale: dict[str, Any] = {
            "key": g.key,
            "resolution": list(g.resolution),
            "size": list(g.shape),
            "voxel_offset": [0, 0, 0],
            "chunk_sizes": [list(g.chunk)],
            "encoding": "compressed_segmentation" if g.kind == "segmentation" else "raw",
        }
        if g.kind == "segmentation":
            scale["compressed_segmentation_block_size"] = list(SEGMENTATION_BLOCK)
        return {
            "@type": "neuroglancer_multiscale_volume",
            "type": g.kind,
            "data_type": "uint32" if g.kind == "segmentation" else "float32",
            "num_channels": g.channels,
            "scales": [scale],
        }

    # -- chunks -------------------------------------------------------------------
    def chunk(self, dataset: str, key: str, name: str) -> tuple[bytes, bool]:
        """The encoded chunk ``name`` (``x0-x1_y0-y1_z0-z1``) of scale ``key``, and whether the cache had it.

        Raises
        ------
        LayerNotFound
            Another scale key, or a name that is not a chunk of the grid.
        """
        g = self.geometry(dataset)
        index = self._index(g, key, name)
        if g.kind == "segmentation" and math.prod(g.shape) > self.store.max_block_voxels:
            # the first chunk segments the whole volume: no more voxels than the largest block a read may ask for
            raise TooLarge(
                f"live segmentation layer {self.layer!r} of {dataset!r} needs the whole volume ({math.prod(g.shape)} voxels), "
                f"more than the {self.store.max_block_voxels} voxels a read may ask for (BLOCKIO_MAX_BLOCK_VOXELS); write it with blockio predict"
            )
        wanted = self._key(g, index)
        cached = self.store.cache.get(wanted)
        if cached is not None:
            return cached.tobytes(), True
        # one computation per region: requests for its other chunks wait for it, then read the cache
        region: tuple[Any, ...] = (g.dataset, g.version) if g.kind == "segmentation" else (g.dataset, g.version, self._task(g, index))
        with self._lock(region):
            cached = self.store.cache.get(wanted)
            if cached is not None:
                return cached.tobytes(), False
            payloads = self._segment_all(g) if g.kind == "segmentation" else self._score_task(g, self._task(g, index))
            # the encoded bytes as a [1, 1, 1, n] uint8 "chunk": the tiers hold [c, z, y, x] arrays
            self.store.cache.put_many({k: np.frombuffer(v, dtype=np.uint8).reshape(1, 1, 1, -1) for k, v in payloads.items()})
        return payloads[wanted], False

    def _index(self, g: _Geometry, key: str, name: str) -> Xyz:
        match = _CHUNK.match(name)
        if key != g.key or match is None:
            raise LayerNotFound(f"live layer {self.layer!r} has no chunk {key}/{name}")
        values = [int(v) for v in match.groups()]
        index = []
        for axis, (a, b) in enumerate(zip(values[0::2], values[1::2])):
            c, n = g.chunk[axis], g.shape[axis]
            if a % c or a >= n or b != min(a + c, n):
                raise LayerNotFound(f"live layer {self.layer!r} has no chunk {key}/{name} (chunks of {list(g.chunk)} in {list(g.shape)}, x, y, z)")
            index.append(a // c)
        return xyz(index)

    def _key(self, g: _Geometry, index: Xyz) -> ChunkKey:
        return ChunkKey(g.dataset, self.layer, g.version, "live", 0, index)

    def _task(self, g: _Geometry, index: Xyz) -> int:
        plan = self._plan(g, "")
        ijk = tuple(i * c // k for i, c, k in zip(index, g.chunk, g.core))
        return plan.index(ijk)  # type: ignore[arg-type]

    def _lock(self, region: tuple[Any, ...]) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(region)
            if lock is None:
                lock = self._locks[region] = threading.Lock()
            return lock

    def _plan(self, g: _Geometry, staging: str) -> RunPlan:
        opts = self.live.options
        model = self.live.model if isinstance(self.live.model, str) else self.model
        return RunPlan(str(self.store.root), g.dataset, f"live-{self.live.name}", model, self.label, staging, g.shape, g.core, opts.overlap, 0, opts.normalize, opts.threshold, False)

    def _call(self, dataset: str, start: Xyz, size: Xyz) -> npt.NDArray[Any]:
        """The model's checked output on the window ``[start, start + size)``, read as predict reads it."""
        block = self.store.read_block(dataset, start, size, boundary="reflect", normalize=self.live.options.normalize, dtype=np.float32)
        if block.ndim == 3:
            block = block[np.newaxis]
        return check_output(self.model(np.ascontiguousarray(block)), block.shape[1:], self.label)

    def _score_task(self, g: _Geometry, index: int) -> dict[ChunkKey, bytes]:
        """Every chunk of task ``index``'s core, from the model's scores on its window (core cropped)."""
        plan = self._plan(g, "")
        box, window = plan.box(index), plan.window(index)
        out = self._call(g.dataset, window.start, window.size)
        if out.ndim != 4:
            raise InvalidRequest(f"live layer {self.layer!r}: model {self.label!r} returned labels where it returned scores before")
        crop = tuple(slice(h, h + s) for h, s in zip(reversed(plan.halo), reversed(box.size)))
        scores = np.ascontiguousarray(out[(slice(None), *crop)], dtype=np.float32)
        if scores.shape[0] != g.channels:
            raise InvalidRequest(f"live layer {self.layer!r}: model {self.label!r} returned {scores.shape[0]} channels, {g.channels} before")
        payloads = {}
        for index_xyz, start, stop in g.chunks_of(box.start, box.stop):
            part = scores[(slice(None), *(slice(a - o, b - o) for a, b, o in zip(reversed(start), reversed(stop), reversed(box.start))))]
            # raw encoding: C-order [c, z, y, x] bytes are the Fortran (x, y, z, c) bytes precomputed stores
            payloads[self._key(g, index_xyz)] = np.ascontiguousarray(part).tobytes()
        return payloads

    def _segment_all(self, g: _Geometry) -> dict[ChunkKey, bytes]:
        """Every chunk of the layer: predict's segment pass, stitching and relabelling over the whole volume."""
        from cloudvolume import chunks as cv_chunks

        from blockio.inference.stitching import global_ids
        from blockio.inference.tasks import segment_task
        from precomputed.execution import run_tasks

        opts = self.live.options
        payloads: dict[ChunkKey, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="blockio-live-") as staging:
            plan = self._plan(g, staging)
            log.info("live layer %s of %s: segmenting %d tasks", self.layer, g.dataset, plan.tasks)
            jobs = [(plan, i, "segment") for i in range(plan.tasks)]
            run_tasks(segment_task, jobs, scheduler=opts.scheduler or "threads", workers=opts.workers, progress=False, desc=self.layer)
            lut, offsets, _segments = global_ids(plan)
            for i in range(plan.tasks):
                box = plan.box(i)
                labels = lut[offsets[i] : offsets[i + 1]][np.load(plan.path(f"labels-{i}.npy"))]
                for index_xyz, start, stop in g.chunks_of(box.start, box.stop):
                    part = labels[tuple(slice(a - o, b - o) for a, b, o in zip(reversed(start), reversed(stop), reversed(box.start)))]
                    payloads[self._key(g, index_xyz)] = bytes(cv_chunks.encode(np.ascontiguousarray(part)[np.newaxis].T, "compressed_segmentation", SEGMENTATION_BLOCK))
        return payloads
