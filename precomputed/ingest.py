"""Ingest: a raw dataset into OME-Zarr + precomputed, recorded in the catalog.

The stores are built in a staging folder, ``ROOT/.staging/<id>/``, by
chunk-aligned Dask tasks (see :mod:`precomputed.tasks`). Only when every task
is done are they moved into place and the catalog record written, under the
catalog lock. A killed or failed run leaves the catalog untouched; running
the same command again resumes from the tasks' done markers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from . import checksum_writes, image_layer, omezarr, sharding, stats
from .catalog import Catalog, record_errors
from .errors import (
    DatasetExists,
    InvalidDatasetId,
    InvalidOption,
    InvalidSource,
    PrecomputedError,
    StoreError,
)
from .execution import run_tasks
from .hashing import expand_files
from .imputation import VoxelSize, resolve_voxel_size
from .ingest_record import build_record
from .ingest_tasks import BoxJob, HashJob, load_summaries, run_box, run_hash
from .pyramid import plan_pyramid
from .readers import make_spec, open_reader
from .readers.base import Sourced, VolumeReader
from .staging import reuse_or_reset
from .tasks import plan_passes

__all__ = ["DEFAULT_CHUNK_SIZE", "IngestOptions", "ingest", "local_root", "validate_id"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = (64, 64, 64)
DEFAULT_TASK_BYTES = 64 << 20
ID_PATTERN = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")  # \Z: "$" would let a trailing newline through
SUPPORTED_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32")
STAGING = ".staging"
PLAN_VERSION = 1


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


def _fingerprint(reader: VolumeReader, plan: dict[str, Any]) -> str:
    files = expand_files(reader.paths)
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    text = json.dumps({"version": PLAN_VERSION, "files": stamp, "plan": plan}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_jobs(reader: VolumeReader, staging: Path) -> tuple[list[Path], list[HashJob]]:
    files = expand_files(reader.paths)
    batch: list[Path] = []
    jobs: list[HashJob] = []
    size = 0
    for f in files:
        batch.append(f)
        size += f.stat().st_size
        if size >= 256 << 20 or len(batch) >= 256:
            jobs.append(HashJob(tuple(map(str, batch)), str(staging / "tasks" / f"hash-{len(jobs)}.txt")))
            batch, size = [], 0
    if batch:
        jobs.append(HashJob(tuple(map(str, batch)), str(staging / "tasks" / f"hash-{len(jobs)}.txt")))
    return files, jobs


def _run(job: Any) -> Any:
    # one entry point for every task kind, so a pass runs hashing and boxes together
    return run_hash(job) if isinstance(job, HashJob) else run_box(job)


def ingest(source: str | os.PathLike[str] | list[str], root: str | os.PathLike[str], dataset_id: str, options: IngestOptions | None = None) -> dict[str, Any]:
    """Ingest a raw dataset and return its catalog record.

    Parameters
    ----------
    source
        A TIFF stack (folder, glob or list of slices), a multi-page / OME /
        ImageJ TIFF, an HDF5 file, a ``.npy`` file or a Zarr / OME-Zarr store.
    root
        The store root (a local folder or ``file://`` URL).
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
    root_path = local_root(root)
    catalog = Catalog(root_path)
    catalog.lock()  # creates the root, or says why it cannot
    if dataset_id in catalog and not options.overwrite:
        raise DatasetExists(f"dataset {dataset_id!r} is catalogued already in {root_path}; pass --overwrite to replace it")
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
        staging = root_path / STAGING / dataset_id
        staging.mkdir(parents=True, exist_ok=True)
        # the lock lives beside the staging folder, which is removed on commit
        lock = FileLock(str(staging.parent / f"{dataset_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise DatasetExists(f"another ingest of {dataset_id!r} into {root_path} is running") from exc
        try:
            return _ingest_locked(reader, spec, catalog, dataset_id, options, staging, plan, mips, passes, voxel_size, chunk)
        finally:
            lock.release()


def _ingest_locked(reader: VolumeReader, spec: Any, catalog: Catalog, dataset_id: str, options: IngestOptions, staging: Path, plan: dict[str, Any], mips: list[Any], passes: list[Any], voxel_size: VoxelSize, chunk: Sourced) -> dict[str, Any]:
    started = time.monotonic()
    fingerprint = _fingerprint(reader, plan)
    resuming = reuse_or_reset(staging, fingerprint, "ingest")
    zarr_path = str(staging / "image.zarr")
    layer_path = str(staging / "image")
    try:
        if not resuming:
            (staging / "tasks").mkdir()
            omezarr.create_image(zarr_path, name=dataset_id, mips=mips, channels=reader.channels, dtype=reader.dtype, chunk_size=chunk.value)
            image_layer.create_image_layer(layer_path, mips=mips, channels=reader.channels, dtype=reader.dtype, chunk_size=chunk.value)
            if options.shard:  # each shard inside one task's box: the tasks write whole shards
                voxel_bytes = reader.channels * np.dtype(reader.dtype).itemsize
                sharding.apply_specs(layer_path, sharding.pass_specs(mips, passes, chunk.value, voxel_bytes=voxel_bytes, compress=options.compress == "gzip"))
            (staging / "plan.json").write_text(json.dumps({"fingerprint": fingerprint, "plan": plan}, indent=1, default=str))
        else:
            log.info("resuming the ingest of %s from %s", dataset_id, staging)
        files, hash_jobs = _hash_jobs(reader, staging)
        summaries: list[stats.Summary] | None = None
        digests: list[str] = []
        for p in passes:
            jobs: list[Any] = [
                BoxJob(
                    box=box,
                    read_mip=p.read_mip,
                    write_mips=p.write_mips,
                    mips=tuple(mips),
                    spec=spec if p.index == 0 else None,
                    zarr_path=zarr_path,
                    layer_path=layer_path,
                    compress=options.compress,
                    marker=str(staging / "tasks" / f"p{p.index}-{i}.npz"),
                    summarise=p.index == 0,
                )
                for i, box in enumerate(p.boxes)
            ]
            if p.index == 0:
                jobs += hash_jobs
            log.info("pass %d/%d: read mip %d, write mips %s, %d tasks of %s voxels (%.1f s)", p.index + 1, len(passes), p.read_mip, list(p.write_mips), len(p.boxes), "x".join(map(str, p.box_size)), time.monotonic() - started)
            results = run_tasks(_run, jobs, scheduler=options.scheduler, workers=options.workers, progress=options.progress, desc=f"{dataset_id} pass {p.index + 1}/{len(passes)}")
            if p.index == 0:
                for job, result in zip(jobs, results):
                    if isinstance(job, HashJob):
                        digests.extend(result)
                    else:
                        part = load_summaries(job.marker)
                        summaries = part if summaries is None else [stats.merge(a, b) for a, b in zip(summaries, part)]
        checksum_writes.merge_fragments(layer_path)  # one checksum manifest per scale, from the tasks' fragments
    except PrecomputedError:
        raise
    except OSError as exc:
        what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise StoreError(
            f"ingest of {dataset_id!r} stopped: {what} ({getattr(exc, 'filename', None) or 'while writing the stores'}); "
            "nothing was catalogued; rerun the same command to resume"
        ) from exc
    if summaries is None:
        raise RuntimeError("internal: no statistics collected")
    log.info("all tasks done (%.1f s)", time.monotonic() - started)
    channel_stats = [stats.finish(s) for s in summaries]
    total = summaries[0]
    for s in summaries[1:]:
        total = stats.merge(total, s)
    record_stats = stats.finish(total)
    if reader.channels > 1:
        record_stats["channels"] = channel_stats
    window = (record_stats["percentiles"].get("1", record_stats["min"]), record_stats["percentiles"].get("99", record_stats["max"]))
    import zarr  # local: only the window update needs the group handle here

    omezarr.set_window(zarr.open_group(zarr_path, mode="r+", zarr_format=3), reader.channels, reader.dtype, window)
    record = build_record(reader, spec, dataset_id, options, mips, voxel_size, chunk, record_stats, files, digests)
    _commit(catalog, dataset_id, staging, record, options.overwrite)
    elapsed = time.monotonic() - started
    log.info("ingested %s: %d bytes in %.1f s", dataset_id, record["source"]["bytes"], elapsed)
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
