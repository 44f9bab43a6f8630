"""Caches of decoded chunks: an in-process LRU bounded in bytes, Redis shared
between processes and hosts, and the tiered cache that puts them in front of
storage.

``redis`` itself is imported only when a :class:`RedisCache` connects.
"""

from __future__ import annotations

from blockio.cache.memory import DEFAULT_CACHE_BYTES, ChunkCache, ChunkKey, MemoryCache, TieredCache
from blockio.cache.redis_cache import RedisCache
from blockio.cache.wire import decode_chunk, encode_chunk

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "ChunkCache",
    "ChunkKey",
    "MemoryCache",
    "RedisCache",
    "TieredCache",
    "decode_chunk",
    "encode_chunk",
]
