"""Chunk reads from one sharded precomputed scale, by byte range.

A sharded scale (``neuroglancer_uint64_sharded_v1``) keeps its chunks in
``<key>/<n>.shard`` files: a fixed *shard index* (``2^minishard_bits`` pairs
of uint64 byte ranges) at the start, the chunk data, and one *minishard
index* per minishard (``[key deltas; offset deltas; sizes]``, uint64, raw or
gzip) at the end. CloudVolume's ``ShardingSpecification`` says which shard
and minishard hold a chunk (its compressed Morton code, shifted and hashed);
this module reads only the bytes it needs:

1. the shard index of each shard a block touches (cached),
2. the minishard indices holding the block's chunks (cached),
3. the chunks' bytes, adjacent ranges of one shard merged into one read.

Local files are read with ``pread``; other storage with one batched
CloudFiles ranged ``get`` per step. Every offset read from an index is
checked against the file before it is used: a damaged index raises
:class:`~blockio.errors.ChunkError` naming the shard file, never a crash or a
chunk of zeros. The chunk bytes then go through the layer's
:class:`~precomputed.integrity.ChunkVerifier` like any chunk file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox
from blockio.errors import ChunkError
from precomputed.geometry import xyz

__all__ = ["ShardedScale"]

Xyz = tuple[int, int, int]
SHARD_INDEX_CACHE = 512
MINISHARD_INDEX_CACHE = 1024


@dataclass(frozen=True)
class _Entry:
    """Where one chunk lies: its shard file and byte range."""

    shard: str
    start: int
    stop: int


class _Lru:
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            if key not in self._data:
                return False, None
            self._data.move_to_end(key)
            return True, self._data[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


class ShardedScale:
    """The chunks of one sharded scale: locate, range-read, check.

    Parameters
    ----------
    key
        The scale's key (its folder in the layer).
    spec
        Its ``sharding`` object from ``info``.
    bounds, chunk_size
        (x, y, z) bounds and chunk size of the scale.
    local_base
        The layer's folder for local layers; ``None`` for other storage.
    cloudpath
        The layer's URL (CloudFiles reads it when not local).
    where
        How errors name the layer.
    """

    def __init__(self, *, key: str, spec: Mapping[str, Any], bounds: VoxelBox, chunk_size: Xyz, local_base: str | None, cloudpath: str, where: str) -> None:
        from cloudvolume.datasource.precomputed.sharding import ShardingSpecification

        self.key = key
        self.where = where
        try:
            self.spec = ShardingSpecification.from_dict(dict(spec))
        except Exception as exc:  # SpecViolation, TypeError, KeyError for a malformed spec
            raise ChunkError(f"scale {key} of {where} has an invalid sharding spec: {exc}") from exc
        self.grid: Xyz = xyz(-(-n // c) for n, c in zip(bounds.size, chunk_size))
        self.gzip_data = self.spec.data_encoding == "gzip"
        self._index_bytes = int(self.spec.index_length())
        self._local = None if local_base is None else os.path.join(local_base, key)
        self._cloudpath = cloudpath
        self._indices = _Lru(SHARD_INDEX_CACHE)
        self._minishards = _Lru(MINISHARD_INDEX_CACHE)
        total = max(1, self.grid[0] * self.grid[1] * self.grid[2])
        # a minishard index lists at most every chunk of the scale: 24 bytes each
        self._minishard_cap = 24 * total + 64

    def _shard_of(self, code: int) -> tuple[str, int]:
        loc = self.spec.compute_shard_location(code)
        return f"{loc.shard_number}.shard", int(loc.minishard_number)

    def _name(self, shard: str) -> str:
        return f"shard {self.key}/{shard} of {self.where}"

    # -- reads ------------------------------------------------------------------
    def _read(self, requests: Sequence[tuple[str, int, int]], pool: Executor | None = None) -> dict[tuple[str, int, int], bytes | None]:
        """``{(shard, start, stop): bytes, or None for a shard that does not exist}``; short reads are errors."""
        out: dict[tuple[str, int, int], bytes | None] = {}
        if not requests:
            return out
        if self._local is not None:
            results: list[bytes | None] | None = None
            if pool is not None and len(requests) > 2:  # pread releases the GIL
                try:
                    results = list(pool.map(lambda r: self._pread(*r), requests))
                except RuntimeError:  # the pool was closed meanwhile: read in this thread
                    results = None
            if results is None:
                results = [self._pread(*r) for r in requests]
            out.update(zip(requests, results))
        else:
            out.update(self._ranged_get(requests))
        for (shard, start, stop), data in out.items():
            if data is not None and len(data) != stop - start:
                raise ChunkError(f"{self._name(shard)} is truncated: bytes {start}-{stop} were asked for, {start + len(data)} is its end")
        return out

    def _pread(self, shard: str, start: int, stop: int) -> bytes | None:
        assert self._local is not None  # noqa: S101 - only called for local layers
        try:
            fd = os.open(os.path.join(self._local, shard), os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ChunkError(f"{self._name(shard)} cannot be read: {exc.strerror or exc}") from exc
        try:
            end = os.fstat(fd).st_size
            if stop <= end:  # checked first: a damaged index must not make pread allocate its range
                return os.pread(fd, stop - start, start)
        except OSError as exc:
            raise ChunkError(f"{self._name(shard)} cannot be read: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        raise ChunkError(f"{self._name(shard)} is truncated or its index is damaged: bytes {start}-{stop} were asked for, {end} is its end")

    def _ranged_get(self, requests: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes | None]:
        from cloudfiles import CloudFiles

        cf = CloudFiles(f"{self._cloudpath.rstrip('/')}/{self.key}", progress=False)
        try:
            results = cf.get([{"path": shard, "start": start, "end": stop} for shard, start, stop in requests], raw=True)
        except Exception as exc:  # I/O errors come in several types per backend
            raise ChunkError(f"shards of scale {self.key} of {self.where} cannot be read: {exc}") from exc
        out: dict[tuple[str, int, int], bytes | None] = {}
        for result in results:
            start, stop = result["byte_range"]
            key = (str(result["path"]).rsplit("/", 1)[-1], int(start), int(stop))
            if result.get("error") is not None:
                raise ChunkError(f"{self._name(key[0])} cannot be read: {result['error']}")
            content = result.get("content")
            out[key] = None if content is None else bytes(content)
        return out

    # -- indices ------------------------------------------------------------------
    def _shard_indices(self, shards: Sequence[str]) -> dict[str, npt.NDArray[np.uint64] | None]:
        """The decoded shard index (``[2^minishard_bits, (start, stop)]`` absolute offsets) of each shard."""
        found: dict[str, npt.NDArray[np.uint64] | None] = {}
        wanted = []
        for shard in shards:
            hit, value = self._indices.get(shard)
            if hit:
                found[shard] = value
            else:
                wanted.append((shard, 0, self._index_bytes))
        for (shard, _, _), data in self._read(wanted).items():
            index = None if data is None else self._decode_index(shard, data)
            self._indices.put(shard, index)
            found[shard] = index
        return found

    def _decode_index(self, shard: str, data: bytes) -> npt.NDArray[np.uint64]:
        index = np.frombuffer(data, dtype="<u8").reshape(-1, 2).astype(np.uint64) + np.uint64(self._index_bytes)
        bad = index[:, 0] > index[:, 1]
        if bad.any():
            i = int(np.argmax(bad))
            raise ChunkError(f"{self._name(shard)}: its shard index is damaged (minishard {i} ends before it starts)")
        return index

    def _minishard_indices(self, wanted: Mapping[tuple[str, int], tuple[int, int]]) -> dict[tuple[str, int], dict[int, tuple[int, int]]]:
        """``{(shard, minishard): {chunk code: (start, stop)}}`` for byte ranges from the shard indices."""
        found: dict[tuple[str, int], dict[int, tuple[int, int]]] = {}
        requests = []
        for (shard, minishard), (start, stop) in wanted.items():
            hit, value = self._minishards.get((shard, start, stop))
            if hit:
                found[(shard, minishard)] = value
            else:
                requests.append((shard, start, stop))
        got = self._read(requests)
        for (shard, minishard), (start, stop) in wanted.items():
            if (shard, minishard) in found:
                continue
            data = got.get((shard, start, stop))
            if data is None:
                raise ChunkError(f"{self._name(shard)} disappeared while it was read")
            table = self._decode_minishard(shard, minishard, data)
            self._minishards.put((shard, start, stop), table)
            found[(shard, minishard)] = table
        return found

    def _decode_minishard(self, shard: str, minishard: int, data: bytes) -> dict[int, tuple[int, int]]:
        if self.spec.minishard_index_encoding == "gzip":
            from precomputed.chunk_checks import gunzip_capped
            from precomputed.errors import CorruptChunk

            try:
                data = gunzip_capped(data, limit=self._minishard_cap, chunk=f"{self.key}/{shard}")
            except CorruptChunk as exc:
                raise ChunkError(f"{self._name(shard)}: the index of minishard {minishard} is damaged: {exc.reason}") from exc
        if len(data) % 24:
            raise ChunkError(f"{self._name(shard)}: the index of minishard {minishard} is damaged ({len(data)} bytes, not rows of 3 x uint64)")
        rows = np.frombuffer(data, dtype="<u8").reshape(3, -1)
        codes = np.cumsum(rows[0], dtype=np.uint64)
        sizes = rows[2]
        # offsets are deltas from the end of the previous chunk, after the shard index
        starts = np.cumsum(rows[1], dtype=np.uint64)
        starts[1:] += np.cumsum(sizes[:-1], dtype=np.uint64)
        starts += np.uint64(self._index_bytes)
        with np.errstate(over="ignore"):
            stops = starts + sizes
        if (stops < starts).any():
            raise ChunkError(f"{self._name(shard)}: the index of minishard {minishard} is damaged (a byte range overflows)")
        return {int(c): (int(a), int(b)) for c, a, b in zip(codes, starts, stops)}

    # -- chunks -------------------------------------------------------------------
    def locate(self, chunks: Sequence[tuple[Xyz, VoxelBox]]) -> list[_Entry | None]:
        """Where each chunk lies (``None``: never written), reading the indices it needs."""
        from precomputed.sharding import chunk_codes

        codes = [int(v) for v in chunk_codes(np.array([index for index, _ in chunks], dtype=np.int64).reshape(-1, 3), self.grid)]
        places = [self._shard_of(code) for code in codes]
        indices = self._shard_indices(sorted({shard for shard, _ in places}))
        wanted: dict[tuple[str, int], tuple[int, int]] = {}
        for shard, minishard in places:
            index = indices[shard]
            if index is None:
                continue
            if minishard >= len(index):
                raise ChunkError(f"{self._name(shard)}: its shard index has {len(index)} entries, minishard {minishard} is asked for")
            start, stop = int(index[minishard, 0]), int(index[minishard, 1])
            if stop > start:
                wanted[(shard, minishard)] = (start, stop)
        tables = self._minishard_indices(wanted)
        out: list[_Entry | None] = []
        for code, (shard, minishard) in zip(codes, places):
            span = tables.get((shard, minishard), {}).get(code)
            out.append(None if span is None else _Entry(shard, span[0], span[1]))
        return out

    def get_many(self, chunks: Sequence[tuple[Xyz, VoxelBox]], *, pool: Executor | None = None) -> list[bytes | None]:
        """The stored bytes of each chunk (``data_encoding`` still applied), ``None`` when never written.

        Adjacent chunks of one shard are read in one range on a bucket;
        ``pool`` reads the chunks of local shards in parallel.

        Raises
        ------
        ChunkError
            A shard or minishard index is damaged, or a shard is shorter than its index says.
        """
        entries = self.locate(chunks)
        runs: dict[str, list[list[int]]] = defaultdict(list)  # per shard: [start, stop] of merged ranges
        for entry in sorted((e for e in entries if e is not None), key=lambda e: (e.shard, e.start)):
            shard_runs = runs[entry.shard]
            # merged on a bucket, where each request costs a round trip; locally one pread per chunk
            # (in parallel, and no copy out of a merged run) is faster
            if shard_runs and entry.start <= shard_runs[-1][1] and self._local is None:
                shard_runs[-1][1] = max(shard_runs[-1][1], entry.stop)
            else:
                shard_runs.append([entry.start, entry.stop])
        requests = [(shard, a, b) for shard, spans in runs.items() for a, b in spans]
        got = self._read(requests, pool)
        out: list[bytes | None] = []
        for place in entries:
            if place is None:
                out.append(None)
                continue
            for a, b in runs[place.shard]:
                if a <= place.start and place.stop <= b:
                    data = got[(place.shard, a, b)]
                    if data is None:
                        raise ChunkError(f"{self._name(place.shard)} disappeared while it was read")
                    out.append(data[place.start - a : place.stop - a])
                    break
        return out
