"""The work of one ingest task: read a box, summarise it, write its mips.

Module-level functions of picklable arguments, so the same task runs on
Dask's threads, processes or a distributed cluster. A task writes its
chunks' checksums as a manifest fragment (see :mod:`precomputed.checksum_writes`),
then a *done marker* (its statistics, as ``.npz``) atomically after both
stores hold its chunks; a rerun skips tasks with a marker, which makes a killed ingest
resumable and its result bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import checksum_writes, image_layer, omezarr, stats
from .atomic import atomic_write, replace_bytes
from .hashing import file_sha256
from .pyramid import Mip, downsample_average
from .readers import open_reader
from .readers.base import SourceSpec, VolumeReader
from .tasks import Box

__all__ = ["BoxJob", "HashJob", "load_summaries", "run_box", "run_hash", "thread_handle", "write_marker"]


@dataclass(frozen=True)
class BoxJob:
    """Read ``box`` of ``read_mip`` and write ``write_mips`` to both stores."""

    box: Box
    read_mip: int
    write_mips: tuple[int, ...]
    mips: tuple[Mip, ...]
    spec: SourceSpec | None  # set for pass 0: read the raw source
    zarr_path: str
    layer_path: str
    compress: str
    marker: str
    summarise: bool


@dataclass(frozen=True)
class HashJob:
    """SHA-256 of some source files; the digests are cached in ``marker``."""

    paths: tuple[str, ...]
    marker: str


_local = threading.local()


def thread_handle(kind: str, key: Any, make: Any) -> Any:
    """A handle (reader, CloudVolume, zarr array) cached per thread and process."""
    # one handle per thread: CloudVolume and file handles are not shared across threads or forks
    cache = _local.__dict__.setdefault("handles", {})
    pid_key = (os.getpid(), kind, key)
    if pid_key not in cache:
        cache[pid_key] = make()
    return cache[pid_key]


def _reader(spec: SourceSpec) -> VolumeReader:
    return thread_handle("reader", spec, lambda: open_reader(spec))  # type: ignore[no-any-return]


def write_marker(path: str, arrays: dict[str, Any]) -> None:
    """Write a task's done marker (``.npz``) so that it appears whole or not at all."""
    # rename makes the marker appear whole or not at all; no fsync: the chunks it vouches for are
    # not fsynced either, so it would buy nothing after a machine crash and costs ~20 ms a task
    with atomic_write(path, durable=False) as fh:
        np.savez(fh, **arrays)


def load_summaries(marker: str) -> list[stats.Summary]:
    """The per-channel statistics a pass-0 task left in its done marker."""
    with np.load(marker) as data:
        n = int(data["channels"])
        return [stats.Summary.from_arrays(data, f"c{i}_") for i in range(n)]


def run_box(job: BoxJob) -> None:
    """Do one box unless its marker says it is done.

    Statistics go to the marker, not the return value: the caller merges
    markers one at a time, so memory does not grow with the number of tasks
    (an exact 16-bit histogram is 512 KiB per task).
    """
    if os.path.exists(job.marker):
        return
    if job.spec is not None:
        block = _reader(job.spec).read(job.box.start, job.box.stop)
    else:
        level = thread_handle("zarr-r", (job.zarr_path, job.read_mip), lambda: omezarr.open_level(job.zarr_path, job.read_mip, "r"))
        block = omezarr.read_box(level, job.box.start, job.box.stop)
    summaries = [stats.block_summary(block[c]) for c in range(block.shape[0])] if job.summarise else []
    box = job.box
    digests: dict[str, dict[str, str]] = {}
    for level_no in job.write_mips:
        mip = job.mips[level_no]
        if level_no != job.read_mip:
            block = downsample_average(block, mip.factor)
            box = box.scaled(mip.factor, mip.shape)
        if block.shape[1:] != box.shape[::-1]:
            raise RuntimeError(f"internal: mip {level_no} block {block.shape} does not fill box {box}")
        zarr_array = thread_handle("zarr-w", (job.zarr_path, level_no), lambda n=level_no: omezarr.open_level(job.zarr_path, n))
        omezarr.write_box(zarr_array, box.start, block)
        vol = thread_handle("cv", (job.layer_path, level_no, job.compress), lambda n=level_no: image_layer.open_layer(job.layer_path, n, compress=job.compress))
        digests[vol.key] = image_layer.write_box(vol, box.start, block)
    # the fragment before the marker: a task with a marker has its checksums recorded
    checksum_writes.write_fragment(job.layer_path, os.path.basename(job.marker).removesuffix(".npz"), digests)
    arrays: dict[str, Any] = {"channels": np.array(len(summaries))}
    for i, s in enumerate(summaries):
        arrays.update(s.to_arrays(f"c{i}_"))
    write_marker(job.marker, arrays)


def run_hash(job: HashJob) -> list[str]:
    """SHA-256 of each file of the job (cached in its marker)."""
    if os.path.exists(job.marker):
        with open(job.marker, encoding="ascii") as fh:
            digests = fh.read().split()
        if len(digests) == len(job.paths):
            return digests
    digests = [file_sha256(p) for p in job.paths]
    replace_bytes(job.marker, "\n".join(digests).encode("ascii"), durable=False)
    return digests
