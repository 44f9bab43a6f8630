"""Blockwise inference: run a model over a dataset, write a segmentation layer.

>>> record = run_inference("blockio-data", "demo", "blockio.inference.models:membrane_watershed", "pred")

The model is any callable ``model(block) -> array``. ``block`` is float32
``[C, Z, Y, X]``: one task's *core* grown by ``overlap`` on every side
(reflect-padded at the volume's edge), normalised with the catalog's
statistics. It returns integer labels ``[Z, Y, X]`` or float scores
``[K, Z, Y, X]`` of the same spatial shape.

Seam-free instance ids, whatever the block size
------------------------------------------------
1. The volume is cut into chunk-aligned *cores* (``block`` rounded up to the
   output chunk size); each task owns one core and writes only it.
2. A task reads core + halo, runs the model and **crops the core**; the scores
   of a voxel are then the model's answer on a window centred on it, the same
   for any block size as long as ``overlap`` is at least the model's
   receptive radius. ``blend=True`` instead averages the overlapping
   predictions of neighbouring windows with cosine ramps (for models with
   border artefacts; the result then depends on the block size).
3. Foreground (argmax != 0 for K > 1, score > ``threshold`` for K == 1) is
   split into 6-connected components per class inside the core (cc3d); the
   task keeps its component map, the six face slices and, per component,
   its first voxel in the (z, y, x) raster order of the whole volume.
4. Union-find over touching face voxels of neighbouring cores (same class,
   both non-zero) joins components into segments; segment ids are numbered
   1, 2, ... by their first voxel in raster order, which does not depend on
   the task grid.
5. A second pass maps every core through that table and writes it.

Integer labels from a model are semantic classes (each class split into
connected components) unless the model has ``instance = True``: then its ids
are instances within the block, joined across faces wherever two non-zero
voxels touch (so instances must be separated by background).

Execution: idempotent Dask tasks (:func:`precomputed.execution.run_tasks`)
with markers under ``ROOT/.staging/<id>/<name>-inference/``; a killed run
resumes with the same call and gives the same layer bit for bit. Memory is
bounded by the task (core + halo), never by the volume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import pickle
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blockio.boxes import parse_xyz
from blockio.errors import BlockioError, InvalidRequest
from blockio.inference.tasks import (
    Model,
    _global_ids,
    _parameters,
    _Run,
    _save_atomic,
    _segment_task,
    _store,
    _write_task,
    _writer_class,
    load_model,
    model_name,
)
from blockio.normalize import NORMALIZATIONS

__all__ = ["add_predict_arguments", "cmd_predict", "load_model", "model_name", "run_inference"]

log = logging.getLogger(__name__)

Xyz = tuple[int, int, int]

PLAN_VERSION = 1


# -- the run ------------------------------------------------------------------
def _check_name(name: str) -> str:
    from precomputed.ingest import ID_PATTERN

    if not isinstance(name, str) or not ID_PATTERN.match(name) or name in (".", "..", "image"):
        raise InvalidRequest(f"invalid layer name {name!r}: use 1-128 characters of A-Z a-z 0-9 . _ - (not 'image')")
    return name


def run_inference(
    root: str | os.PathLike[str],
    dataset_id: str,
    model: str | Model,
    name: str,
    *,
    block: Sequence[int] | str = (128, 128, 128),
    overlap: Sequence[int] | str = (16, 16, 16),
    mip: int = 0,
    normalize: str | None = "percentile",
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    threshold: float = 0.5,
    blend: bool = False,
    meshes: bool = True,
    progress: bool | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run ``model`` over a dataset blockwise and write segmentation layer ``name``.

    Parameters
    ----------
    root
        The store root.
    dataset_id
        A catalogued dataset; its ``image`` layer is the input.
    model
        A callable or ``"pkg.module:callable"``; see the module docstring. A
        spec string is imported in every worker (needed by ``processes`` and
        ``tcp://`` schedulers, which pickle the plan).
    name
        The new layer's name, ``[A-Za-z0-9._-]``, not ``image``.
    block
        (x, y, z) core size of a task, rounded up to the output chunk size.
    overlap
        (x, y, z) halo added on each side of the core,
        ``0 <= overlap < block``; at least the model's receptive radius for
        results independent of the block size.
    mip
        Input mip; only 0 is supported.
    normalize
        ``"percentile"`` (default), ``"zscore"``, ``"minmax"`` or ``None``.
    threshold
        Foreground threshold of a single-channel score map.
    blend
        Average overlapping windows with cosine ramps instead of cropping.
    meshes
        Mesh the segments when the layer is finalised.
    scheduler, workers, progress
        As for :func:`precomputed.execution.run_tasks`.
    command
        The command line recorded in the provenance (default ``sys.argv``).

    Returns
    -------
    dict
        The layer's catalog record, from the segmentation writer's ``finalize``.
    """
    from filelock import FileLock, Timeout

    from precomputed.catalog import now
    from precomputed.execution import run_tasks
    from precomputed.ingest import STAGING, local_root

    started = time.monotonic()
    _check_name(name)
    core = parse_xyz(block, "block", positive=True)
    halo = parse_xyz(overlap, "overlap")
    if any(h < 0 or h >= b for h, b in zip(halo, core)):
        raise InvalidRequest(f"overlap must be >= 0 and smaller than the block on every axis, got {list(halo)} for block {list(core)}")
    if mip != 0:
        raise InvalidRequest(f"inference reads mip 0 only for now (the prediction layer is written at mip 0), got mip={mip}")
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or None, got {normalize!r}")
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidRequest(f"threshold must be a finite number, got {threshold!r}")
    root_path = local_root(root)
    store = _store(str(root_path))
    record = store.info(dataset_id)  # DatasetNotFound names the catalogued ids
    if name in record["layers"] and not overwrite:
        raise InvalidRequest(f"dataset {dataset_id!r} has a layer {name!r} already; pass overwrite=True (--overwrite) to replace it")
    model_fn = load_model(model)
    label = model_name(model)
    if not isinstance(model, str) and scheduler not in (None, "threads", "sync"):
        try:
            pickle.dumps(model_fn)
        except Exception as exc:  # pickling user objects fails in many ways
            raise InvalidRequest(f"model {label!r} cannot be pickled for scheduler {scheduler!r} ({exc}); pass it as 'pkg.module:callable'") from exc
    shape: Xyz = tuple(int(v) for v in record["shape"])  # type: ignore[assignment]
    chunk: Xyz = tuple(int(v) for v in record["chunk_size"])  # type: ignore[assignment]
    core = tuple(-(-b // c) * c for b, c in zip(core, chunk))  # type: ignore[assignment]
    if core != parse_xyz(block, "block"):
        log.info("block %s rounded up to %s, a multiple of the chunk size %s", list(parse_xyz(block, "block")), list(core), list(chunk))

    staging = root_path / STAGING / dataset_id / f"{name}-inference"
    staging.mkdir(parents=True, exist_ok=True)
    run = _Run(str(root_path), dataset_id, name, model if isinstance(model, str) else model_fn, label, str(staging), shape, core, halo, mip, normalize, float(threshold), bool(blend))
    plan = {
        "version": PLAN_VERSION,
        "dataset_updated": record["updated"],
        "model": label,
        "model_version": _version(model_fn),
        "model_parameters": _parameters(model_fn),
        "shape": shape,
        "core": core,
        "halo": halo,
        "mip": mip,
        "normalize": normalize,
        "threshold": float(threshold),
        "blend": bool(blend),
    }
    fingerprint = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    lock = FileLock(str(staging.parent / f"{name}-inference.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise InvalidRequest(f"another inference into layer {name!r} of {dataset_id!r} is running") from exc
    try:
        resuming = _prepare(staging, fingerprint, plan)
        writer = _open_or_create(run, resuming, overwrite)
        if tuple(int(v) for v in writer.shape_xyz) != shape or any(c % w for c, w in zip(core, writer.chunk_size)):
            raise RuntimeError(f"internal: writer grid {writer.shape_xyz} / {writer.chunk_size} does not match the plan {shape} / {core}")
        common: dict[str, Any] = {"scheduler": scheduler, "workers": workers, "progress": progress}
        if blend:
            run_tasks(_segment_task, [(run, i, "predict") for i in range(run.tasks)], desc=f"{name}: predict", **common)
        run_tasks(_segment_task, [(run, i, "segment") for i in range(run.tasks)], desc=f"{name}: segment", **common)
        lut_path = run.path("lut.npy")
        lut, offsets, segments = _global_ids(run)
        if not lut_path.exists():
            _save_atomic(lut_path, lambda fh: np.save(fh, lut))
        run_tasks(_write_task, [(run, i, offsets[i], offsets[i + 1]) for i in range(run.tasks)], desc=f"{name}: write", **common)
        provenance = {
            "model": label,
            "version": _version(model_fn),
            "parameters": {
                "block": list(core),
                "overlap": list(halo),
                "normalize": normalize,
                "threshold": float(threshold),
                "blend": bool(blend),
                "instance": bool(getattr(model_fn, "instance", False)),
                "model": _parameters(model_fn),
            },
            "input": {"layer": "image", "mip": mip},
            "box": {"start": [0, 0, 0], "stop": list(shape)},
            "segments": segments,
            "time": now(),
            "seconds": round(time.monotonic() - started, 3),
            "command": command if command is not None else shlex.join(sys.argv),
        }
        layer = writer.finalize(provenance=provenance, meshes=meshes, workers=workers, scheduler=scheduler, progress=progress)
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    log.info("layer %s of %s: %d segments in %.1f s", name, dataset_id, segments, time.monotonic() - started)
    return layer  # type: ignore[no-any-return]


def _version(model: Model) -> Any:
    version = getattr(model, "__version__", None)
    return None if version is None else str(version)


def _prepare(staging: Path, fingerprint: str, plan: dict[str, Any]) -> bool:
    """Reuse the staging folder of the same plan (True: resuming), else empty it and write the plan."""
    from precomputed.staging import reuse_or_reset

    if reuse_or_reset(staging, fingerprint, "inference"):
        return True
    _write_plan(staging / "plan.json", {"fingerprint": fingerprint, "plan": plan, "writer": False})
    return False


def _write_plan(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=1, sort_keys=True, default=str).encode()
    _save_atomic(path, lambda fh: fh.write(text))


def _open_or_create(run: _Run, resuming: bool, overwrite: bool) -> Any:
    """The staged output layer: reopened when a previous run created it, else created."""
    cls = _writer_class()
    plan_file = run.path("plan.json")
    content = json.loads(plan_file.read_text())
    if resuming and content.get("writer"):
        try:
            return cls.open(run.root, run.dataset, run.name)
        except (BlockioError, OSError, KeyError, ValueError) as exc:
            log.warning("cannot reopen the staged layer (%s): writing it again", exc)
    for marker in Path(run.staging).glob("p2-*.done"):
        marker.unlink()
    writer = cls.create(run.root, run.dataset, run.name, dtype="uint32", overwrite=overwrite)
    _write_plan(plan_file, {**content, "writer": True})
    return writer


# -- command line ---------------------------------------------------------------
def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``blockio predict`` (after ``--root``)."""
    p.add_argument("dataset_id", metavar="ID", help="dataset id")
    p.add_argument("--model", required=True, help="the model, pkg.module:callable (e.g. blockio.inference.models:membrane_watershed)")
    p.add_argument("--name", required=True, help="name of the new segmentation layer")
    p.add_argument("--block", default="128,128,128", help="x,y,z core of a task, rounded up to the chunk size (default 128,128,128)")
    p.add_argument("--overlap", default="16,16,16", help="x,y,z halo on each side, >= the model's receptive radius (default 16,16,16)")
    p.add_argument("--mip", type=int, default=0, help="input mip (only 0 for now)")
    p.add_argument("--normalize", default="percentile", choices=[*NORMALIZATIONS, "none"], help="input normalisation (default percentile)")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold of a one-channel score map (default 0.5)")
    p.add_argument("--blend", action="store_true", help="blend overlapping windows with cosine ramps instead of cropping the core")
    p.add_argument("--scheduler", help="threads (default), processes, sync, or tcp://HOST:PORT of a dask.distributed scheduler")
    p.add_argument("--workers", type=int, help="local Dask workers (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace a layer with the same name")
    p.add_argument("--no-meshes", action="store_true", help="do not mesh the segments")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_predict(args: argparse.Namespace, argv: Sequence[str], root: str) -> int:
    """``blockio predict``: returns the exit status; user errors print one line."""
    from precomputed.errors import PrecomputedError

    try:
        layer = run_inference(
            root,
            args.dataset_id,
            args.model,
            args.name,
            block=args.block,
            overlap=args.overlap,
            mip=args.mip,
            normalize=None if args.normalize == "none" else args.normalize,
            threshold=args.threshold,
            blend=args.blend,
            scheduler=args.scheduler,
            workers=args.workers,
            overwrite=args.overwrite,
            meshes=not args.no_meshes,
            progress=False if args.quiet else None,
            command="blockio " + shlex.join(argv),
        )
    except (BlockioError, PrecomputedError) as exc:
        print(f"blockio: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote layer {args.name!r} of {args.dataset_id}: {layer.get('segments', '?')} segments from {args.model} ({layer['path']})")
    return 0

