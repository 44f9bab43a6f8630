"""One planned ingest and the passes that write it, on any root (see :mod:`precomputed.ingest`).

:class:`Run` holds the plan; :func:`write_stores` runs its passes into a
:class:`Layout` (local staging folders, or keys under a bucket root) and
returns the catalog record. The caller stages, resumes and commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checksum_writes, image_layer, omezarr, sharding, stats
from .execution import run_tasks
from .hashing import expand_files
from .imputation import VoxelSize
from .ingest_record import build_record
from .ingest_tasks import BoxJob, HashJob, load_summaries, run_box, run_hash
from .readers.base import Sourced, VolumeReader

if TYPE_CHECKING:
    from .ingest import IngestOptions

__all__ = ["Layout", "Run", "write_stores"]

log = logging.getLogger(__name__)

PLAN_VERSION = 1


def _fingerprint(reader: VolumeReader, plan: dict[str, Any]) -> str:
    files = expand_files(reader.paths)
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    text = json.dumps({"version": PLAN_VERSION, "files": stamp, "plan": plan}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_jobs(reader: VolumeReader, tasks: str, root: str | None = None) -> tuple[list[Path], list[HashJob]]:
    files = expand_files(reader.paths)
    batch: list[Path] = []
    jobs: list[HashJob] = []
    size = 0
    for f in files:
        batch.append(f)
        size += f.stat().st_size
        if size >= 256 << 20 or len(batch) >= 256:
            jobs.append(HashJob(tuple(map(str, batch)), f"{tasks}/hash-{len(jobs)}.txt", root))
            batch, size = [], 0
    if batch:
        jobs.append(HashJob(tuple(map(str, batch)), f"{tasks}/hash-{len(jobs)}.txt", root))
    return files, jobs


@dataclass(frozen=True)
class Layout:
    """Where one ingest run writes: local paths, or keys under the bucket root ``root`` (its URL)."""

    zarr: str
    layer: str
    tasks: str
    root: str | None = None


def _run(job: Any) -> Any:
    # one entry point for every task kind, so a pass runs hashing and boxes together
    return run_hash(job) if isinstance(job, HashJob) else run_box(job)


@dataclass(frozen=True)
class Run:
    """One ingest, planned: what every kind of root needs to write it."""

    reader: VolumeReader
    spec: Any
    dataset_id: str
    options: IngestOptions
    plan: dict[str, Any]
    mips: list[Any]
    passes: list[Any]
    voxel_size: VoxelSize
    chunk: Sourced

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.reader, self.plan)

    def create_stores(self, layout: Layout) -> None:
        """The empty OME-Zarr image and precomputed layer (``info``) of the plan."""
        reader, chunk = self.reader, self.chunk.value
        omezarr.create_image(layout.zarr, name=self.dataset_id, mips=self.mips, channels=reader.channels, dtype=reader.dtype, chunk_size=chunk, root=layout.root)
        image_layer.create_image_layer(layout.layer, mips=self.mips, channels=reader.channels, dtype=reader.dtype, chunk_size=chunk, root=layout.root)
        if self.options.shard:  # each shard inside one task's box: the tasks write whole shards
            voxel_bytes = reader.channels * np.dtype(reader.dtype).itemsize
            sharding.apply_specs(layout.layer, sharding.pass_specs(self.mips, self.passes, chunk, voxel_bytes=voxel_bytes, compress=self.options.compress == "gzip"))


def write_stores(run: Run, layout: Layout) -> dict[str, Any]:
    """Run every pass into the created stores, merge the checksums, set the window; returns the new record."""
    started = time.monotonic()
    reader, dataset_id, options = run.reader, run.dataset_id, run.options
    files, hash_jobs = _hash_jobs(reader, layout.tasks, layout.root)
    summaries: list[stats.Summary] | None = None
    digests: list[str] = []
    for p in run.passes:
        jobs: list[Any] = [
            BoxJob(
                box=box,
                read_mip=p.read_mip,
                write_mips=p.write_mips,
                mips=tuple(run.mips),
                spec=run.spec if p.index == 0 else None,
                zarr_path=layout.zarr,
                layer_path=layout.layer,
                compress=options.compress,
                marker=f"{layout.tasks}/p{p.index}-{i}.npz",
                summarise=p.index == 0,
                root=layout.root,
            )
            for i, box in enumerate(p.boxes)
        ]
        if p.index == 0:
            jobs += hash_jobs
        log.info("pass %d/%d: read mip %d, write mips %s, %d tasks of %s voxels (%.1f s)", p.index + 1, len(run.passes), p.read_mip, list(p.write_mips), len(p.boxes), "x".join(map(str, p.box_size)), time.monotonic() - started)
        results = run_tasks(_run, jobs, scheduler=options.scheduler, workers=options.workers, progress=options.progress, desc=f"{dataset_id} pass {p.index + 1}/{len(run.passes)}")
        if p.index == 0:
            for job, result in zip(jobs, results):
                if isinstance(job, HashJob):
                    digests.extend(result)
                else:
                    part = load_summaries(job.marker, layout.root)
                    summaries = part if summaries is None else [stats.merge(a, b) for a, b in zip(summaries, part)]
    checksum_writes.merge_fragments(layout.layer, root=layout.root)  # one checksum manifest per scale, from the tasks' fragments
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
    omezarr.set_window(omezarr.open_group(layout.zarr, "r+", root=layout.root), reader.channels, reader.dtype, window)
    record = build_record(reader, run.spec, dataset_id, options, run.mips, run.voxel_size, run.chunk, record_stats, files, digests)
    log.info("ingested %s: %d bytes in %.1f s", dataset_id, record["source"]["bytes"], time.monotonic() - started)
    return record
