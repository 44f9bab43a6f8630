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

The steps live by concept: :mod:`~blockio.inference.plan` (the task grid),
:mod:`~blockio.inference.tasks` (one task), :mod:`~blockio.inference.stitching`
(step 4), :mod:`~blockio.inference.options` (:class:`InferenceOptions`); this
module is the run: its plan, its passes and its commit.

Execution: idempotent Dask tasks (:func:`precomputed.execution.run_tasks`)
with markers under ``ROOT/.staging/<id>/<name>-inference/``; a killed run
resumes with the same call and gives the same layer bit for bit. Memory is
bounded by the task (core + halo), never by the volume. On a bucket root
(``s3://``, ``gs://``) that staging folder is a key prefix of the bucket
(workers of a cluster share nothing else), the run's lock is a lease object
beside it (:class:`precomputed.bucket_lock.BucketLock`, renewed while the
run lasts) and the layer is published by one catalog write
(:mod:`precomputed.segmentation_bucket`).

The commit is idempotent too. The layer's provenance carries the plan's
fingerprint; a rerun that finds the staging folder of the same plan and a
catalogued layer with that fingerprint (a run killed after its catalog update)
removes the staging folder and returns the layer, and a run killed while the
segmentation writer was moving the stores into place finishes that move
(:mod:`precomputed.segmentation_commit`). A write that fails for want of disk
space (or any other ``OSError``) is a :class:`precomputed.errors.StoreError`
naming the file; rerun the same call to resume.
"""


from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from blockio.errors import BlockioError, InvalidRequest
from blockio.inference.options import InferenceOptions, with_overrides
from blockio.inference.plan import RunPlan
from blockio.inference.protocol import Model, load_model, model_name, model_parameters, model_version
from blockio.inference.stitching import global_ids
from blockio.inference.tasks import open_store, segment_task, write_task
from precomputed.errors import PrecomputedError
from precomputed.geometry import xyz

__all__ = ["InferenceOptions", "load_model", "model_name", "run_inference"]

log = logging.getLogger(__name__)

Xyz = tuple[int, int, int]

PLAN_VERSION = 1


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
    options: InferenceOptions | None = None,
    **overrides: Any,
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
    options
        An :class:`~blockio.inference.options.InferenceOptions` (default: its defaults).
    **overrides
        Fields of ``options`` to replace (``block=(64, 64, 32)``, ``meshes=False``, ...).

    Returns
    -------
    dict
        The layer's catalog record.

    Raises
    ------
    InvalidRequest
        A bad option, model or name; a layer of that name without ``overwrite``.
    precomputed.errors.StoreError
        Writing failed (a full disk, an I/O error); rerun the same call to resume.
    """
    from precomputed.ingest import STAGING, local_root
    from precomputed.storage import is_remote

    opts = with_overrides(options, overrides)
    started = time.monotonic()
    _check_name(name)
    bucket = str(root) if is_remote(root) else None
    root_text = bucket or str(local_root(root))
    record = open_store(root_text).info(dataset_id)  # DatasetNotFound names the catalogued ids
    model_fn = load_model(model)
    label = model_name(model)
    if not isinstance(model, str) and opts.scheduler not in (None, "threads", "sync"):
        try:
            pickle.dumps(model_fn)
        except Exception as exc:  # pickling user objects fails in many ways
            raise InvalidRequest(f"model {label!r} cannot be pickled for scheduler {opts.scheduler!r} ({exc}); pass it as 'pkg.module:callable'") from exc
    shape: Xyz = xyz(int(v) for v in record["shape"])
    chunk: Xyz = xyz(int(v) for v in record["chunk_size"])
    core: Xyz = xyz(-(-b // c) * c for b, c in zip(opts.block, chunk))
    if core != opts.block:
        log.info("block %s rounded up to %s, a multiple of the chunk size %s", list(opts.block), list(core), list(chunk))

    staging = f"{STAGING}/{dataset_id}/{name}-inference" if bucket else str(Path(root_text) / STAGING / dataset_id / f"{name}-inference")
    plan = RunPlan(root_text, dataset_id, name, model if isinstance(model, str) else model_fn, label, staging, shape, core, opts.overlap, opts.mip, opts.normalize, opts.threshold, opts.blend, bucket)
    content = {
        "version": PLAN_VERSION,
        # the image's own version: writing another layer of the dataset does not void a resumable run
        "input_version": record["layers"].get("image", {}).get("version") or record["updated"],
        "model": label,
        "model_version": model_version(model_fn),
        "model_parameters": model_parameters(model_fn),
        "shape": shape,
        "core": core,
        "halo": opts.overlap,
        "mip": opts.mip,
        "normalize": opts.normalize,
        "threshold": opts.threshold,
        "blend": opts.blend,
    }
    fingerprint = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    lock = _run_lock(plan)
    try:
        lock.acquire()
    except (TimeoutError, OSError) as exc:  # filelock's Timeout is a TimeoutError too
        if isinstance(exc, TimeoutError):
            raise InvalidRequest(f"another inference into layer {name!r} of {dataset_id!r} is running") from exc
        raise _store_error(exc, name, dataset_id) from exc
    try:
        layer = _run(plan, opts, model_fn, content, fingerprint, started)
    except (BlockioError, PrecomputedError):  # OSError subclasses that say what went wrong already
        raise
    except OSError as exc:
        raise _store_error(exc, name, dataset_id) from exc
    finally:
        lock.release()
    log.info("layer %s of %s: %s segments in %.1f s", name, dataset_id, layer.get("segments"), time.monotonic() - started)
    return layer


def _run_lock(plan: RunPlan) -> Any:
    """The lock of one layer's runs: a file beside the staging folder, or a lease object in the bucket."""
    if plan.bucket is not None:
        from precomputed.bucket import root_storage
        from precomputed.bucket_lock import BucketLock

        return BucketLock(root_storage(plan.bucket), f"{plan.staging}.lock", ttl_s=30.0, timeout_s=0.0, renew=True)
    from filelock import FileLock

    staging = Path(plan.staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(staging.parent / f"{plan.name}-inference.lock"), timeout=0)


def _store_error(exc: OSError, name: str, dataset_id: str) -> Exception:
    from precomputed.errors import StoreError

    what = "the disk is full" if _disk_full(exc) else (exc.strerror or str(exc))
    where = getattr(exc, "filename", None) or "while writing the layer"
    return StoreError(f"prediction {name!r} of {dataset_id!r} stopped: {what} ({where}); the layer is not written; rerun the same command to resume")


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC / EDQUOT anywhere in the chain, or NumPy's short write ("N requested and M written")."""
    while exc is not None:
        if isinstance(exc, OSError):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return True
            if exc.errno is None and re.fullmatch(r"\d+ requested and \d+ written", str(exc)):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _run(plan: RunPlan, opts: InferenceOptions, model_fn: Model, content: dict[str, Any], fingerprint: str, started: float) -> dict[str, Any]:
    """Under the run's lock: finish what a killed run left, or run every pass and commit."""
    from precomputed.catalog import Catalog, now
    from precomputed.execution import run_tasks
    from precomputed.segmentation_commit import resume_commit

    if plan.bucket is None:
        _remove_trash(Path(plan.staging))
        resume_commit(Path(plan.root), plan.dataset, plan.name)  # a run killed while moving its stores into place
    existing = Catalog(plan.root).get(plan.dataset)["layers"].get(plan.name)
    if existing is not None and _staged_fingerprint(plan) == fingerprint and existing.get("provenance", {}).get("plan") == fingerprint:
        log.info("layer %s of %s was written by this plan before the run was killed; removing its staging folder", plan.name, plan.dataset)
        _discard(plan)
        return existing  # type: ignore[no-any-return]
    if existing is not None and not opts.overwrite:
        raise InvalidRequest(f"dataset {plan.dataset!r} has a layer {plan.name!r} already; pass overwrite=True (--overwrite) to replace it")
    resuming = _prepare(plan, fingerprint, content)
    writer = _open_or_create(plan, resuming, opts.overwrite)
    if tuple(int(v) for v in writer.shape_xyz) != plan.shape or any(c % w for c, w in zip(plan.core, writer.chunk_size)):
        raise RuntimeError(f"internal: writer grid {writer.shape_xyz} / {writer.chunk_size} does not match the plan {plan.shape} / {plan.core}")
    common: dict[str, Any] = {"scheduler": opts.scheduler, "workers": opts.workers, "progress": opts.progress}
    if opts.blend:
        run_tasks(segment_task, [(plan, i, "predict") for i in range(plan.tasks)], desc=f"{plan.name}: predict", **common)
    run_tasks(segment_task, [(plan, i, "segment") for i in range(plan.tasks)], desc=f"{plan.name}: segment", **common)
    lut, offsets, segments = global_ids(plan)
    if not plan.has("lut.npy"):
        plan.save("lut.npy", lambda fh: np.save(fh, lut))
    run_tasks(write_task, [(plan, i, offsets[i], offsets[i + 1]) for i in range(plan.tasks)], desc=f"{plan.name}: write", **common)
    provenance = {
        "model": plan.model_name,
        "version": model_version(model_fn),
        "parameters": {
            "block": list(plan.core),
            "overlap": list(plan.halo),
            "normalize": plan.normalize,
            "threshold": plan.threshold,
            "blend": plan.blend,
            "instance": bool(getattr(model_fn, "instance", False)),
            "model": model_parameters(model_fn),
        },
        "input": {"layer": "image", "mip": plan.mip},
        "box": {"start": [0, 0, 0], "stop": list(plan.shape)},
        "segments": segments,
        "plan": fingerprint,
        "time": now(),
        "seconds": round(time.monotonic() - started, 3),
        "command": opts.command if opts.command is not None else shlex.join(sys.argv),
    }
    layer = writer.finalize(provenance=provenance, meshes=opts.meshes, workers=opts.workers, scheduler=opts.scheduler, progress=opts.progress)
    _discard(plan)
    return layer  # type: ignore[no-any-return]


def _staged_fingerprint(plan: RunPlan) -> str | None:
    try:
        return json.loads(plan.read("plan.json") or b"null").get("fingerprint")  # type: ignore[no-any-return]
    except (OSError, ValueError, AttributeError):
        return None


def _trash_of(staging: Path) -> Path:
    return staging.with_name(f".{staging.name}.trash")


def _discard(plan: RunPlan) -> None:
    """Remove the staging folder: one rename first, so a kill leaves it whole or gone.

    In a bucket the objects go one by one, ``plan.json`` last: a kill
    meanwhile leaves a plan whose layer the catalog holds already, which the
    next run recognises and removes.
    """
    if plan.bucket is not None:
        from precomputed.bucket import delete_prefix, root_storage

        storage = root_storage(plan.bucket)
        for key in storage.list(plan.staging + "/"):
            if key != plan.key("plan.json"):
                storage.delete(key)
        delete_prefix(storage, plan.staging)
        return
    staging = Path(plan.staging)
    trash = _trash_of(staging)
    if staging.exists():
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_trash(staging: Path) -> None:
    shutil.rmtree(_trash_of(staging), ignore_errors=True)


def _prepare(plan: RunPlan, fingerprint: str, content: dict[str, Any]) -> bool:
    """Reuse the staging folder of the same plan (True: resuming), else empty it and write the plan."""
    if plan.bucket is not None:
        from precomputed.bucket import root_storage
        from precomputed.staging import staged_plan

        if staged_plan(root_storage(plan.bucket), plan.staging, fingerprint, "inference") is not None:
            return True
    else:
        from precomputed.staging import reuse_or_reset

        if reuse_or_reset(Path(plan.staging), fingerprint, "inference"):
            return True
    _write_plan(plan, {"fingerprint": fingerprint, "plan": content, "writer": False})
    return False


def _write_plan(plan: RunPlan, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=1, sort_keys=True, default=str).encode()
    plan.save("plan.json", lambda fh: fh.write(text))


def _open_or_create(plan: RunPlan, resuming: bool, overwrite: bool) -> Any:
    """The staged output layer: reopened when a previous run created it, else created."""
    from precomputed.segmentation import SegmentationWriter

    content = json.loads(plan.read("plan.json") or b"{}")
    if resuming and content.get("writer"):
        try:
            return SegmentationWriter.open(plan.root, plan.dataset, plan.name)
        except (PrecomputedError, OSError, KeyError, ValueError) as exc:
            log.warning("cannot reopen the staged layer (%s): writing it again", exc)
    if plan.bucket is not None:
        from precomputed.bucket import root_storage

        storage = root_storage(plan.bucket)
        for key in list(storage.list(plan.key("p2-"))):
            storage.delete(key)
    else:
        for marker in Path(plan.staging).glob("p2-*.done"):
            marker.unlink()
    writer = SegmentationWriter.create(plan.root, plan.dataset, plan.name, dtype="uint32", overwrite=overwrite)
    _write_plan(plan, {**content, "writer": True})
    return writer
