"""Ingest: a raw dataset into OME-Zarr + precomputed, recorded in the catalog.

The stores are built in a staging folder, ``ROOT/.staging/<id>/``, by
chunk-aligned Dask tasks (see :mod:`precomputed.tasks`). Only when every task
is done are they moved into place and the catalog record written, under the
catalog lock. A killed or failed run leaves the catalog untouched; running
the same command again resumes from the tasks' done markers. On a bucket root
the stores are written under prefixes no record names yet and published by
one conditional catalog write (:mod:`precomputed.ingest_bucket`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from . import sharding
from .catalog import Catalog, record_errors
from .errors import (
    DatasetExists,
    InvalidDatasetId,
    InvalidOption,
    InvalidSource,
    PrecomputedError,
    StoreError,
)
from .imputation import resolve_voxel_size
from .ingest_run import Layout, Run, write_stores
from .pyramid import plan_pyramid
from .readers import make_spec, open_reader
from .readers.base import Sourced, VolumeReader
from .staging import reuse_or_reset
from .storage import is_remote
from .tasks import plan_passes

__all__ = ["DEFAULT_CHUNK_SIZE", "IngestOptions", "ingest", "local_root", "validate_id"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = (64, 64, 64)
DEFAULT_TASK_BYTES = 64 << 20
ID_PATTERN = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")  # \Z: "$" would let a trailing newline through
SUPPORTED_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32")
STAGING = ".staging"


@dataclass(frozen=True)
class IngestOptions:
    """Options of :func:`ingest`; every one has a sensible default.

    ``voxel_size`` is (x, y, z) in ``unit``; ``chunk_size`` (x, y, z) voxels.
    ``scheduler`` is ``threads``, ``processes``, ``sync`` or ``tcp://HOST:PORT``.
    ``series`` picks an image series of a multi-series TIFF, ``timepoint`` one
    timepoint of a time series; ``cast`` converts the data to a stored dtype
    (e.g. bool or float64 sources); ``drop_origin`` ingests an OME-Zarr image
    whose level 0 is translated, ignoring (and recording) the translation;
    ``shard`` writes every scale of the precomputed layer as shards (far fewer
    files, see :mod:`precomputed.sharding`).
    """

    voxel_size: tuple[float, float, float] | None = None
    unit: str = "nm"
    profile: str | None = None
    axes: str | None = None
    dataset_key: str | None = None
    format: str | None = None
    chunk_size: tuple[int, int, int] | None = None
    compress: str = "none"
    overwrite: bool = False
    workers: int | None = None
    scheduler: str | None = None
    task_bytes: int = DEFAULT_TASK_BYTES
    progress: bool | None = None
    series: int | None = None
    timepoint: int | None = None
    cast: str | None = None
    drop_origin: bool = False
    shard: bool = False
    command: str | None = field(default=None, compare=False)


def validate_id(dataset_id: str) -> str:
    """Dataset ids are 1-128 characters of ``[A-Za-z0-9._-]``, not ``.`` or ``..``."""
    if not isinstance(dataset_id, str) or not ID_PATTERN.fullmatch(dataset_id) or dataset_id in (".", ".."):
        raise InvalidDatasetId(f"invalid dataset id {dataset_id!r}: use 1-128 characters of A-Z a-z 0-9 . _ -")
    return dataset_id


def local_root(root: str | os.PathLike[str]) -> Path:
    """The local folder of a store root (``file://`` URLs accepted)."""
    text = os.fspath(root)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise InvalidOption(
            f"store root {text}: ingest writes to a local folder (or file://); remote roots (gs://, s3://) "
            "are not supported by ingest yet: ingest locally, then copy the root"
        )
    return Path(text).expanduser().absolute()


def _chunk_size(options: IngestOptions) -> Sourced:
    if options.chunk_size is None:
        return Sourced(DEFAULT_CHUNK_SIZE, "default", "default chunk size 64x64x64")
    size = tuple(int(v) for v in options.chunk_size)
    if len(size) != 3 or not all(8 <= v <= 1024 for v in size):
        raise InvalidOption(f"--chunk-size must be three integers between 8 and 1024, got {options.chunk_size}")
    return Sourced(size, "user", f"--chunk-size {','.join(map(str, size))}")


def _check_dtype(reader: VolumeReader) -> None:
    name = np.dtype(reader.dtype).name
    if name not in SUPPORTED_DTYPES:
        hint = ""
        if np.dtype(reader.dtype).kind == "f":
            why = " (Neuroglancer has no float64)" if name == "float64" else ""
            hint = f"; pass --cast float32 to convert it{why}"
        raise InvalidSource(f"{reader.paths[0]}: dtype {name} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}{hint}")


def ingest(source: str | os.PathLike[str] | list[str], root: str | os.PathLike[str], dataset_id: str, options: IngestOptions | None = None) -> dict[str, Any]:
    """Ingest a raw dataset and return its catalog record.

    Parameters
    ----------
    source
        A TIFF stack (folder, glob or list of slices), a multi-page / OME /
        ImageJ TIFF, an HDF5 file, a ``.npy`` file or a Zarr / OME-Zarr store.
        With a distributed scheduler every worker must read it at this path.
    root
        The store root: a local folder, ``file://`` URL, ``s3://`` or ``gs://``
        bucket prefix (see :mod:`precomputed.ingest_bucket`).
    dataset_id
        The record's id, ``[A-Za-z0-9._-]``.
    options
        :class:`IngestOptions`.

    Raises
    ------
    PrecomputedError
        Every user error, with a one-line message; see :mod:`precomputed.errors`.
    """
    options = options or IngestOptions()
    validate_id(dataset_id)
    bucket = is_remote(root)
    if bucket:
        if options.shard:
            raise InvalidOption(f"store root {root}: --shard writes to local roots only for now; ingest without it, or locally")
        catalog = Catalog(str(root))
    else:
        catalog = Catalog(local_root(root))
        catalog.lock()  # creates the root, or says why it cannot
    if dataset_id in catalog and not options.overwrite:
        raise DatasetExists(f"dataset {dataset_id!r} is catalogued already in {catalog.url}; pass --overwrite to replace it")
    if options.task_bytes < 1 << 20:
        raise InvalidOption("task_bytes must be at least 1 MiB")

    spec = make_spec(
        source if isinstance(source, (list, tuple)) else os.fspath(source),
        axes=options.axes,
        dataset_key=options.dataset_key,
        format=options.format,
        series=options.series,
        timepoint=options.timepoint,
        cast=options.cast,
        drop_origin=options.drop_origin,
    )
    with open_reader(spec) as reader:
        _check_dtype(reader)
        voxel_size = resolve_voxel_size(user=options.voxel_size, unit=options.unit, from_file=reader.voxel_size, profile=options.profile)
        chunk = _chunk_size(options)
        mips = plan_pyramid(reader.shape, voxel_size.value, chunk.value)
        voxel_bytes = reader.channels * np.dtype(reader.dtype).itemsize
        passes = plan_passes(mips, chunk.value, voxel_bytes=voxel_bytes, task_bytes=options.task_bytes)
        if options.shard:  # boxes that hold shards of many chunks (sharding.widen_passes)
            passes = sharding.widen_passes(passes, mips, chunk.value, voxel_bytes=voxel_bytes, task_bytes=options.task_bytes)
        plan = {
            "spec": asdict(spec),
            "shape": reader.shape,
            "channels": reader.channels,
            "dtype": np.dtype(reader.dtype).name,
            "voxel_size": voxel_size.value,
            "chunk_size": chunk.value,
            "compress": options.compress,
            "mips": [asdict(m) for m in mips],
            "boxes": [p.box_size for p in passes],
            "shard": options.shard,
        }
        run = Run(reader, spec, dataset_id, options, plan, mips, passes, voxel_size, chunk)
        if bucket:
            from .ingest_bucket import ingest_into_bucket

            return ingest_into_bucket(run, catalog)
        root_path = catalog.root
        staging = root_path / STAGING / dataset_id
        staging.mkdir(parents=True, exist_ok=True)
        # the lock lives beside the staging folder, which is removed on commit
        lock = FileLock(str(staging.parent / f"{dataset_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise DatasetExists(f"another ingest of {dataset_id!r} into {root_path} is running") from exc
        try:
            return _ingest_locked(run, catalog, staging)
        finally:
            lock.release()


def _ingest_locked(run: Run, catalog: Catalog, staging: Path) -> dict[str, Any]:
    dataset_id, options = run.dataset_id, run.options
    fingerprint = run.fingerprint
    resuming = reuse_or_reset(staging, fingerprint, "ingest")
    layout = Layout(zarr=str(staging / "image.zarr"), layer=str(staging / "image"), tasks=str(staging / "tasks"))
    try:
        if not resuming:
            (staging / "tasks").mkdir()
            run.create_stores(layout)
            (staging / "plan.json").write_text(json.dumps({"fingerprint": fingerprint, "plan": run.plan}, indent=1, default=str))
        else:
            log.info("resuming the ingest of %s from %s", dataset_id, staging)
        record = write_stores(run, layout)
    except PrecomputedError:
        raise
    except OSError as exc:
        what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise StoreError(
            f"ingest of {dataset_id!r} stopped: {what} ({getattr(exc, 'filename', None) or 'while writing the stores'}); "
            "nothing was catalogued; rerun the same command to resume"
        ) from exc
    _commit(catalog, dataset_id, staging, record, options.overwrite)
    return record


def _commit(catalog: Catalog, dataset_id: str, staging: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Move the staged stores into place and write the record, as one step under the catalog lock.

    If writing the record fails, the previous stores are moved back.
    """
    problems = record_errors(record)
    if problems:
        raise RuntimeError(f"internal: the new record of {dataset_id!r} fails the schema: {problems[0]}")
    root = catalog.root
    final_zarr = root / "zarr" / f"{dataset_id}.zarr"
    final_dir = root / "precomputed" / dataset_id
    trash = root / STAGING / f".trash-{dataset_id}-{os.getpid()}"
    with catalog.lock():
        if dataset_id in catalog and not overwrite:
            raise DatasetExists(f"dataset {dataset_id!r} was catalogued by another process meanwhile; pass --overwrite to replace it")
        try:
            old = catalog.get(dataset_id) if dataset_id in catalog else None
        except PrecomputedError:
            old = None
        if old is not None:
            record["created"] = old.get("created", record["created"])
        trash.mkdir(parents=True, exist_ok=True)
        moved = []
        for path in (final_zarr, final_dir):
            if path.exists():
                os.replace(path, trash / path.name)
                moved.append(path)
        final_zarr.parent.mkdir(parents=True, exist_ok=True)
        final_dir.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "image.zarr", final_zarr)
        os.replace(staging / "image", final_dir / "image")
        try:
            catalog.put(record)
        except BaseException:
            os.replace(final_zarr, staging / "image.zarr")
            os.replace(final_dir / "image", staging / "image")
            for path in moved:
                if path == final_dir:
                    shutil.rmtree(final_dir, ignore_errors=True)
                os.replace(trash / path.name, path)
            raise
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
