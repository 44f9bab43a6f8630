"""Caches of decoded chunks in front of storage.

Tier 1, :class:`MemoryCache`: an LRU of decoded chunks bounded in bytes,
shared by every read of a process, so overlapping blocks reuse chunks.
Tier 2 (optional, :mod:`blockio.cache.redis_cache`): Redis, shared by processes
and hosts. :class:`TieredCache` looks in each tier in turn and promotes what
a lower tier had. Every tier also reads and writes many chunks at once
(``get_many`` / ``put_many``), so a block's chunks cost one call per tier.

Keys carry the layer's version, so rewriting a layer makes its old entries
unreachable (they age out of the LRU); :meth:`MemoryCache.invalidate` drops
them at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_CACHE_BYTES", "ChunkCache", "ChunkKey", "MemoryCache", "TieredCache"]

DEFAULT_CACHE_BYTES = 512 << 20


@dataclass(frozen=True)
class ChunkKey:
    """Identifies one decoded chunk of one version of a layer."""

    dataset: str
    layer: str
    version: str
    source: str
    mip: int
    index: tuple[int, int, int]

    def text(self) -> str:
        """A flat string form (Redis keys)."""
        x, y, z = self.index
        return f"{self.dataset}/{self.layer}/{self.version}/{self.source}/{self.mip}/{x}_{y}_{z}"


class ChunkCache(Protocol):
    """What a cache tier provides."""

    name: str

    def get(self, key: ChunkKey) -> npt.NDArray[Any] | None: ...

    def put(self, key: ChunkKey, chunk: npt.NDArray[Any]) -> None: ...

    def get_many(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, npt.NDArray[Any]]: ...

    def put_many(self, chunks: Mapping[ChunkKey, npt.NDArray[Any]]) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class MemoryCache:
    """A thread-safe LRU of decoded chunks, bounded in bytes.

    Stored arrays are made read-only: readers copy out of them, never into.
    """

    name = "memory"

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[ChunkKey, npt.NDArray[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0

    def get(self, key: ChunkKey) -> npt.NDArray[Any] | None:
        """The cached chunk (read-only), or ``None``."""
        return self.get_many((key,)).get(key)

    def get_many(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, npt.NDArray[Any]]:
        """``{key: chunk}`` for the keys held (misses left out), under one lock."""
        found: dict[ChunkKey, npt.NDArray[Any]] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                chunk = self._items.get(key)
                if chunk is None:
                    self._misses += 1
                    continue
                self._items.move_to_end(key)
                self._hits += 1
                found[key] = chunk
        return found

    def put(self, key: ChunkKey, chunk: npt.NDArray[Any]) -> None:
        """Hold a read-only copy of ``chunk`` (unless it alone exceeds the budget)."""
        self.put_many({key: chunk})

    def put_many(self, chunks: Mapping[ChunkKey, npt.NDArray[Any]]) -> None:
        """Hold several chunks; the least recently used go when the budget is exceeded."""
        owned = {key: _read_only(chunk) for key, chunk in chunks.items() if chunk.nbytes <= self.max_bytes}
        with self._lock:
            for key, chunk in owned.items():
                old = self._items.pop(key, None)
                if old is not None:
                    self._bytes -= old.nbytes
                self._items[key] = chunk
                self._bytes += chunk.nbytes
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
                self._evictions += 1

    def invalidate(self, dataset: str, layer: str | None = None) -> int:
        """Drop every entry of a dataset (or one of its layers); returns how many."""
        with self._lock:
            doomed = [k for k in self._items if k.dataset == dataset and (layer is None or k.layer == layer)]
            for k in doomed:
                self._bytes -= self._items.pop(k).nbytes
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "items": len(self._items),
                "evictions": self._evictions,
            }


class TieredCache:
    """Tiers in order (memory first); a hit in a lower tier is copied up."""

    name = "tiered"

    def __init__(self, tiers: Sequence[ChunkCache]) -> None:
        self.tiers = list(tiers)

    def get(self, key: ChunkKey) -> npt.NDArray[Any] | None:
        """The chunk from the first tier that has it (copied up), or ``None``."""
        return self.get_many((key,)).get(key)

    def get_many(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, npt.NDArray[Any]]:
        """``{key: chunk}`` from the tiers in order; each tier is asked once, for what the ones above lacked.

        What a lower tier had is put into every tier above it in one batch.
        """
        found: dict[ChunkKey, npt.NDArray[Any]] = {}
        remaining = list(dict.fromkeys(keys))
        for i, tier in enumerate(self.tiers):
            if not remaining:
                break
            hits = tier.get_many(remaining)
            if hits:
                for upper in self.tiers[:i]:
                    upper.put_many(hits)
                found.update(hits)
                remaining = [k for k in remaining if k not in hits]
        return found

    def put(self, key: ChunkKey, chunk: npt.NDArray[Any]) -> None:
        """Put a chunk into every tier."""
        self.put_many({key: chunk})

    def put_many(self, chunks: Mapping[ChunkKey, npt.NDArray[Any]]) -> None:
        """Put several chunks into every tier, one batch per tier."""
        if chunks:
            for tier in self.tiers:
                tier.put_many(chunks)

    def invalidate(self, dataset: str, layer: str | None = None) -> None:
        for tier in self.tiers:
            drop = getattr(tier, "invalidate", None)
            if drop is not None:
                drop(dataset, layer)

    def stats(self) -> dict[str, Any]:
        return {tier.name: tier.stats() for tier in self.tiers}


def _read_only(chunk: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if chunk.flags.writeable or not chunk.flags.c_contiguous:
        # our own read-only copy: a caller's array must never change under the cache
        chunk = np.array(chunk, order="C", copy=True)
        chunk.flags.writeable = False
    return chunk
