"""``run_embedding``: a model's vectors over a dataset, stored twice and catalogued.

>>> entry = run_embedding("blockio-data", "demo", name="features", cell=(32, 32, 32))

1. The plan (:mod:`~blockio.embeddings.plan`): cells of ``cell`` voxels (or
   the segments of a segmentation layer), tasks of whole cells, the model's
   halo. Its fingerprint covers the input layers' versions, the model (name,
   version, parameters, weights hash) and every option.
2. Tasks on Dask (:mod:`~blockio.embeddings.tasks`) with done markers under
   ``ROOT/.staging/<id>/<name>-embed/``; a killed run resumes with the same
   call and writes the same vectors.
3. The commit (:mod:`~blockio.embeddings.commit`): the vectors into the
   index, the Zarr array (or group, for segments) moved to
   ``ROOT/embeddings/<id>/<name>``, the catalog entry written with a pure
   change, the staging folder removed. A rerun after a kill during the commit
   does the remaining steps.

Runs write to a local root (as ``blockio predict`` does); the LanceDB index
of a set can live in a bucket (:func:`blockio.embeddings.index.open_index`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from blockio.boxes import parse_xyz
from blockio.embeddings.index import check_name
from blockio.embeddings.models import model_halo, weights_hash
from blockio.embeddings.plan import EmbedPlan
from blockio.errors import InvalidRequest
from blockio.inference.protocol import Model, load_model, model_name, model_parameters, model_version
from precomputed.geometry import xyz

__all__ = ["DEFAULT_MODEL", "EmbedOptions", "run_embedding"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "blockio.embeddings.models:multiscale_features"
PLAN_VERSION = 1
Xyz = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class EmbedOptions:
    """How an embedding run cuts, computes and stores.

    Attributes
    ----------
    cell
        (x, y, z) voxels of one cell (ignored with ``segments``).
    segments
        A segmentation layer: one vector per segment id instead of per cell.
    mip
        The input mip.
    block
        (x, y, z) voxels per task, rounded up to whole cells (chunks for segments).
    normalize
        Input normalisation from the catalog statistics (``None`` for raw values).
    metric, dtype, engine
        Distance (``l2``, ``cosine``), the array's dtype, the index engine (default: by the root).
    """

    cell: Xyz = (32, 32, 32)
    segments: str | None = None
    mip: int = 0
    block: Xyz = (128, 128, 128)
    normalize: str | None = "zscore"
    metric: str = "l2"
    dtype: str = "float16"
    engine: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    progress: bool | None = None
    overwrite: bool = False
    command: str | None = None


def _options(options: EmbedOptions | None, overrides: dict[str, Any]) -> EmbedOptions:
    opts = options or EmbedOptions()
    names = {f.name for f in fields(EmbedOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InvalidRequest(f"unknown embedding options {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    opts = replace(opts, **overrides)
    if opts.dtype not in ("float16", "float32"):
        raise InvalidRequest(f"dtype must be float16 or float32, got {opts.dtype!r}")
    return replace(opts, cell=parse_xyz(opts.cell, "cell", positive=True), block=parse_xyz(opts.block, "block", positive=True))


def run_embedding(
    root: str | os.PathLike[str],
    dataset_id: str,
    model: str | Model = DEFAULT_MODEL,
    name: str = "features",
    *,
    options: EmbedOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Compute set ``name`` of ``dataset_id`` with ``model`` blockwise; store, index and catalog it.

    Parameters
    ----------
    model
        A callable or ``"pkg.module:callable"`` following the protocol of
        :mod:`blockio.embeddings.models` (default: the multi-scale feature model).
    options, **overrides
        An :class:`EmbedOptions` and fields of it to replace (``cell=(16, 16, 8)``, ...).

    Returns
    -------
    dict
        The set's catalog entry.

    Raises
    ------
    InvalidRequest
        A bad option, model or name; a set of that name without ``overwrite``.
    """
    from filelock import FileLock, Timeout

    from blockio.embeddings.commit import finish
    from blockio.inference.tasks import open_store
    from precomputed.ingest import STAGING, local_root

    opts = _options(options, overrides)
    started = time.monotonic()
    check_name(name)
    root_path = local_root(root)
    record = open_store(str(root_path)).info(dataset_id)
    if opts.segments is not None:
        meta = record["layers"].get(opts.segments)
        if meta is None or meta.get("type") != "segmentation":
            segs = sorted(n for n, m in record["layers"].items() if m.get("type") == "segmentation")
            raise InvalidRequest(f"dataset {dataset_id!r} has no segmentation layer {opts.segments!r} (segmentation layers: {', '.join(segs) or 'none'})")
    if not 0 <= opts.mip < len(record["mips"]):
        raise InvalidRequest(f"mip must be in 0..{len(record['mips']) - 1} for dataset {dataset_id!r}, got {opts.mip}")
    model_fn = load_model(model)
    label = model_name(model)
    plan, content = _plan(root_path, record, dataset_id, name, model, model_fn, label, opts, root_path / STAGING / dataset_id / f"{name}-embed")
    fingerprint = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    staging = Path(plan.staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(staging.parent / f"{name}-embed.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise InvalidRequest(f"another embedding run into set {name!r} of {dataset_id!r} is running") from exc
    try:
        existing = (record.get("embeddings") or {}).get(name)
        if existing is not None and existing.get("provenance", {}).get("plan") == fingerprint and not staging.exists():
            return dict(existing)  # the same run finished before
        if existing is not None and not opts.overwrite and existing.get("provenance", {}).get("plan") != fingerprint:
            raise InvalidRequest(f"dataset {dataset_id!r} has an embedding set {name!r} already; pass overwrite=True (--overwrite) to replace it")
        _stage(plan, model_fn, fingerprint, content, opts)
        provenance = {
            "plan": fingerprint,
            "time": _now(),
            "seconds": round(time.monotonic() - started, 3),
            "command": opts.command if opts.command is not None else shlex.join(sys.argv),
            "model_parameters": model_parameters(model_fn),
        }
        entry = finish(plan, content, opts, provenance)
    finally:
        lock.release()
    log.info("embedding set %s of %s: %s vectors in %.1f s", name, dataset_id, entry.get("count"), time.monotonic() - started)
    return entry


def _now() -> str:
    from precomputed.catalog import now

    return now()


def _plan(root: Path, record: dict[str, Any], dataset: str, name: str, model: Any, model_fn: Model, label: str, opts: EmbedOptions, staging: Path) -> tuple[EmbedPlan, dict[str, Any]]:
    from blockio.embeddings.records import input_signature

    mip = record["mips"][opts.mip]
    shape: Xyz = xyz(int(v) for v in mip["shape"])
    vs = tuple(float(v) for v in mip["voxel_size"])
    vs0 = tuple(float(v) for v in record["mips"][0]["voxel_size"])
    halo = model_halo(model_fn)
    if opts.segments is None:
        cell: Xyz | None = opts.cell
        core: Xyz = xyz(-(-b // c) * c for b, c in zip(opts.block, opts.cell))
    else:
        cell = None
        chunk = tuple(int(v) for v in record["chunk_size"])
        core = xyz(-(-b // c) * c for b, c in zip(opts.block, chunk))
    layers = ["image"] + ([opts.segments] if opts.segments else [])
    plan = EmbedPlan(
        str(root), dataset, name, model if isinstance(model, str) else model_fn, label, str(staging), shape, cell, core, halo, opts.mip, opts.normalize, opts.segments,
        vs, tuple(a / b for a, b in zip(vs, vs0)),  # type: ignore[arg-type]
    )
    content = {
        "version": PLAN_VERSION,
        "signature": input_signature(record, layers),
        "model": label,
        "model_version": model_version(model_fn),
        "model_parameters": model_parameters(model_fn),
        "weights_hash": weights_hash(model_fn),
        "shape": shape,
        "cell": cell,
        "core": core,
        "halo": halo,
        "mip": opts.mip,
        "normalize": opts.normalize,
        "segments": opts.segments,
        "dtype": opts.dtype,
        "metric": opts.metric,
    }
    return plan, content


def _dimension(plan: EmbedPlan, model_fn: Model) -> int:
    declared = getattr(model_fn, "dimension", None)
    if isinstance(declared, int) and declared > 0:
        return declared
    from blockio.embeddings.tasks import call_cells

    return int(call_cells(plan, 0).shape[0])  # one window, once: the model says its D by answering


def _stage(plan: EmbedPlan, model_fn: Model, fingerprint: str, content: dict[str, Any], opts: EmbedOptions) -> None:
    """Every task of the run, resumed from the staging folder's markers when it is the same plan."""
    from blockio.embeddings.tasks import cell_task, segment_task
    from blockio.inference.plan import save_atomic
    from precomputed.execution import run_tasks
    from precomputed.staging import reuse_or_reset

    staging = Path(plan.staging)
    if not reuse_or_reset(staging, fingerprint, "embedding run"):
        text = json.dumps({"fingerprint": fingerprint, "plan": content}, indent=1, sort_keys=True, default=str).encode()
        save_atomic(staging / "plan.json", lambda fh: fh.write(text))
    common: dict[str, Any] = {"scheduler": opts.scheduler, "workers": opts.workers, "progress": opts.progress}
    if plan.segments is not None:
        run_tasks(segment_task, [(plan, i) for i in range(plan.tasks)], desc=f"{plan.name}: segments", **common)
        return
    array_path = staging / "array.zarr"
    if not (array_path / "zarr.json").exists() and not (staging / "committed.json").exists():
        import zarr
        from zarr.codecs import Crc32cCodec, ZstdCodec

        dim = _dimension(plan, model_fn)
        cx, cy, cz = plan.cells
        per = tuple(c // s for c, s in zip(plan.core, plan.cell))  # type: ignore[arg-type]
        zarr.create_array(
            str(array_path), shape=(dim, cz, cy, cx), chunks=(dim, per[2], per[1], per[0]), dtype=opts.dtype,
            compressors=(ZstdCodec(level=3), Crc32cCodec()), dimension_names=("c", "z", "y", "x"), fill_value=0,
        )
    if array_path.exists():
        run_tasks(cell_task, [(plan, i) for i in range(plan.tasks)], desc=f"{plan.name}: cells", **common)
