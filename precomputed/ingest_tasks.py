"""The work of one ingest task: read a box, summarise it, write its mips.

Module-level functions of picklable arguments, so the same task runs on
Dask's threads, processes or a distributed cluster. A task writes its
chunks' checksums as a manifest fragment (see :mod:`precomputed.checksum_writes`),
then a *done marker* (its statistics, as ``.npz``) atomically after both
stores hold its chunks; a rerun skips tasks with a marker, which makes a killed ingest
resumable and its result bit-identical to an uninterrupted one.

On a bucket root a job's ``root`` is the root's URL and its paths are keys
under it: the task opens the root in its own process and writes chunks,
fragment and marker as objects (see :mod:`precomputed.bucket`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from . import checksum_writes, image_layer, omezarr, stats
from .atomic import atomic_write, replace_bytes
from .hashing import file_sha256
from .pyramid import Mip, downsample_average
from .readers import open_reader
from .readers.base import SourceSpec, VolumeReader
from .tasks import Box

__all__ = ["BoxJob", "HashJob", "load_summaries", "marker_exists", "read_marker", "run_box", "run_hash", "thread_handle", "write_marker"]


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
    root: str | None = None  # a bucket root's URL: the paths above are keys under it


@dataclass(frozen=True)
class HashJob:
    """SHA-256 of some source files; the digests are cached in ``marker``."""

    paths: tuple[str, ...]
    marker: str
    root: str | None = None  # a bucket root's URL: ``marker`` is a key under it


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
    return cast(VolumeReader, thread_handle("reader", spec, lambda: open_reader(spec)))


def marker_exists(path: str, root: str | None = None) -> bool:
    """Whether a task's done marker exists (a file, or an object under the bucket root ``root``)."""
    if root is None:
        return os.path.exists(path)
    from .bucket import root_storage

    return root_storage(root).exists(path)


def write_marker(path: str, arrays: dict[str, Any], root: str | None = None) -> None:
    """Write a task's done marker (``.npz``) so that it appears whole or not at all."""
    if root is not None:  # an object PUT is atomic
        import io

        from .bucket import root_storage

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        root_storage(root).put(path, buffer.getvalue(), durable=False)
        return
    # rename makes the marker appear whole or not at all; no fsync: the chunks it vouches for are
    # not fsynced either, so it would buy nothing after a machine crash and costs ~20 ms a task
    with atomic_write(path, durable=False) as fh:
        np.savez(fh, **arrays)


def read_marker(marker: str, root: str | None = None) -> Any:
    """Open a done marker (``.npz``) for reading: ``with read_marker(...) as data``."""
    if root is None:
        return np.load(marker)
    import io

    from .bucket import root_storage

    data = root_storage(root).get(marker)
    if data is None:
        raise FileNotFoundError(root_storage(root).url_for(marker))
    return np.load(io.BytesIO(data))


def load_summaries(marker: str, root: str | None = None) -> list[stats.Summary]:
    """The per-channel statistics a pass-0 task left in its done marker."""
    with read_marker(marker, root) as data:
        n = int(data["channels"])
        return [stats.Summary.from_arrays(data, f"c{i}_") for i in range(n)]


def run_box(job: BoxJob) -> None:
    """Do one box unless its marker says it is done.

    Statistics go to the marker, not the return value: the caller merges
    markers one at a time, so memory does not grow with the number of tasks
    (an exact 16-bit histogram is 512 KiB per task).
    """
    if marker_exists(job.marker, job.root):
        return
    if job.spec is not None:
        block = _reader(job.spec).read(job.box.start, job.box.stop)
    else:
        level = thread_handle("zarr-r", (job.root, job.zarr_path, job.read_mip), lambda: omezarr.open_level(job.zarr_path, job.read_mip, "r", root=job.root))
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
        zarr_array = thread_handle("zarr-w", (job.root, job.zarr_path, level_no), lambda n=level_no: omezarr.open_level(job.zarr_path, n, root=job.root))
        omezarr.write_box(zarr_array, box.start, block)
        vol = thread_handle("cv", (job.root, job.layer_path, level_no, job.compress), lambda n=level_no: image_layer.open_layer(job.layer_path, n, compress=job.compress, root=job.root))
        digests[vol.key] = image_layer.write_box(vol, box.start, block)
    # the fragment before the marker: a task with a marker has its checksums recorded
    checksum_writes.write_fragment(job.layer_path, os.path.basename(job.marker).removesuffix(".npz"), digests, root=job.root)
    arrays: dict[str, Any] = {"channels": np.array(len(summaries))}
    for i, s in enumerate(summaries):
        arrays.update(s.to_arrays(f"c{i}_"))
    write_marker(job.marker, arrays, job.root)


def run_hash(job: HashJob) -> list[str]:
    """SHA-256 of each file of the job (cached in its marker)."""
    if job.root is not None:
        from .bucket import root_storage

        storage = root_storage(job.root)
        cached = storage.get(job.marker)
        if cached is not None and len(cached.decode("ascii").split()) == len(job.paths):
            return cached.decode("ascii").split()
        digests = [file_sha256(p) for p in job.paths]
        storage.put(job.marker, "\n".join(digests).encode("ascii"), durable=False)
        return digests
    if os.path.exists(job.marker):
        with open(job.marker, encoding="ascii") as fh:
            digests = fh.read().split()
        if len(digests) == len(job.paths):
            return digests
    digests = [file_sha256(p) for p in job.paths]
    replace_bytes(job.marker, "\n".join(digests).encode("ascii"), durable=False)
    return digests
