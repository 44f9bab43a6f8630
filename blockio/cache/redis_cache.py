"""A Redis tier of the chunk cache, shared by processes and hosts.

:class:`RedisCache` stores decoded chunks (C-order ``[c, z, y, x]``, any
numeric dtype) under ``prefix + ChunkKey.text()``, in the header-plus-raw-bytes
format of :mod:`blockio.cache.wire` (never a pickle). ``get_many`` is one
``MGET`` and ``put_many`` one pipeline, so a block costs one round trip.

The cache is bounded in bytes by the server's ``maxmemory`` with
``allkeys-lru`` eviction. It is an accelerator, never a dependency:
``get``/``put`` never raise. When Redis is down, hung, full or returns
garbage, ``get`` answers ``None`` and ``put`` does nothing; the failure is
counted and logged (one warning per 30 s), and Redis is skipped for a
back-off interval (see :mod:`blockio.cache.backoff`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy.typing as npt

from blockio.cache.backoff import Backoff, LogThrottle
from blockio.cache.memory import ChunkKey
from blockio.cache.wire import cacheable, decode_chunk, encode_chunk

__all__ = ["RedisCache", "decode_chunk", "encode_chunk"]

log = logging.getLogger(__name__)

INFO_EVERY_S = 1.0
POOL_CONNECTIONS = 64
SCAN_BATCH = 500


_instances: weakref.WeakSet[RedisCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # a lock held by another thread at fork time would stay held forever in the child;
    # redis-py's pool itself notices the new pid and opens fresh connections
    for cache in list(_instances):
        cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RedisCache:
    """Decoded chunks in Redis, bounded in bytes, safe to lose.

    Parameters
    ----------
    url
        ``redis://[[user]:password@]host:port/db``, ``rediss://...`` or
        ``unix:///path/to/socket``.
    max_bytes
        If given, ``CONFIG SET maxmemory`` to it (with ``allkeys-lru``) at the
        first contact, and never store a single chunk larger than it. This
        configures the whole server; where CONFIG is not permitted (managed
        Redis) the server's own settings apply and an info line says so.
    ttl_s
        Expiry of every entry in seconds; ``None`` keeps entries until evicted.
    socket_timeout_s
        Connect and read timeout of every Redis call.
    prefix
        Prepended to every key, so several stores can share one server.

    Notes
    -----
    Thread safe; after ``fork`` the child opens its own connections.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        ttl_s: int | None = 3600,
        socket_timeout_s: float = 0.05,
        prefix: str = "blockio:",
    ) -> None:
        import redis

        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0 (or None), got {max_bytes}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 seconds (or None), got {ttl_s}")
        if not socket_timeout_s > 0:
            raise ValueError(f"socket_timeout_s must be > 0, got {socket_timeout_s}")
        self.url = _redact(url)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.socket_timeout_s = float(socket_timeout_s)
        self.prefix = prefix
        # no retries inside redis-py: the back-off below replaces them, and a retry would
        # multiply the time a dead server costs each read
        self._pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            timeout=4 * self.socket_timeout_s,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._oom_error: type[Exception] = redis.exceptions.OutOfMemoryError
        self._response_error: type[Exception] = redis.exceptions.ResponseError
        self._lock = threading.Lock()
        self._down = Backoff()  # every call: Redis unreachable, hung or broken
        self._full = Backoff()  # writes only: Redis refuses them (OOM, permissions)
        self._configured = max_bytes is None
        self._counts = dict.fromkeys(("hits", "misses", "errors", "puts", "bytes_written", "skipped", "not_stored"), 0)
        self._throttle = LogThrottle(log)
        self._info: dict[str, Any] = {}
        self._info_at = -math.inf
        _instances.add(self)

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, max_bytes={self.max_bytes}, ttl_s={self.ttl_s})"

    # -- chunk access ----------------------------------------------------------
    def get(self, key: ChunkKey) -> npt.NDArray[Any] | None:
        """The cached chunk (read-only, C-order ``[c, z, y, x]``), or ``None``.

        ``None`` also when Redis is unreachable, slow, in back-off or returns
        a malformed value; never raises.
        """
        if not self._allow(write=False):
            return None
        try:
            self._configure()
            value = self._client.get(self._name(key))
        except Exception as exc:  # a cache must never fail a read: whatever Redis does is a miss
            self._failed(exc, "get", write=False)
            return None
        self._succeeded(write=False)
        return self._decode(key, value)

    def get_many(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, npt.NDArray[Any]]:
        """The cached chunks among ``keys`` in one ``MGET``: ``{key: chunk}``, misses left out.

        Empty when Redis is unreachable, slow or in back-off; a malformed
        value is a miss. Never raises.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted or not self._allow(write=False):
            return {}
        try:
            self._configure()
            values = self._client.mget([self._name(k) for k in wanted])
        except Exception as exc:  # a cache must never fail a read: whatever Redis does is a miss
            self._failed(exc, "get_many", write=False)
            return {}
        self._succeeded(write=False)
        found = {}
        for key, value in zip(wanted, values):
            chunk = self._decode(key, value)
            if chunk is not None:
                found[key] = chunk
        return found

    def put(self, key: ChunkKey, chunk: npt.NDArray[Any]) -> None:
        """Store a chunk with the TTL; does nothing when Redis cannot take it. Never raises."""
        self._put({key: chunk}, "put")

    def put_many(self, chunks: Mapping[ChunkKey, npt.NDArray[Any]]) -> None:
        """Store several chunks with the TTL in one pipeline (one round trip). Never raises."""
        self._put(chunks, "put_many")

    def _put(self, chunks: Mapping[ChunkKey, npt.NDArray[Any]], op: str) -> None:
        fit = {k: c for k, c in chunks.items() if cacheable(c.dtype) and (self.max_bytes is None or c.nbytes <= self.max_bytes)}
        if len(fit) < len(chunks):
            with self._lock:
                self._counts["not_stored"] += len(chunks) - len(fit)
        if not fit or not self._allow(write=True):
            return
        try:
            values = {self._name(k): encode_chunk(c) for k, c in fit.items()}
            self._configure()
            if len(values) == 1:
                ((name, value),) = values.items()
                self._client.set(name, value, ex=self.ttl_s)
            else:
                pipe = self._client.pipeline(transaction=False)
                for name, value in values.items():
                    pipe.set(name, value, ex=self.ttl_s)
                pipe.execute()
        except Exception as exc:  # a cache must never fail a read: a failed put only loses a copy
            self._failed(exc, op, write=True)
            return
        self._succeeded(write=True)
        with self._lock:
            self._counts["puts"] += len(values)
            self._counts["bytes_written"] += sum(len(v) for v in values.values())

    def invalidate(self, dataset: str, layer: str | None = None) -> int:
        """Delete every entry of a dataset (or one of its layers); returns how many.

        Uses SCAN + UNLINK in batches, so a large cache is not blocked. Tried
        even during back-off (it is rare and explicit); never raises, returns
        what was deleted before a failure.
        """
        parts = [self.prefix, dataset, *([layer] if layer is not None else [])]
        pattern = "".join(_glob_escape(p) + ("/" if i else "") for i, p in enumerate(parts)) + "*"
        deleted = 0
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= SCAN_BATCH:
                    deleted += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.unlink(*batch))
        except Exception as exc:  # never raises: keys carry the layer version, so leftovers are only unreachable
            self._failed(exc, "invalidate", write=False)
            return deleted
        self._succeeded(write=False)
        return deleted

    def stats(self) -> dict[str, Any]:
        """Counters of this process and the server's memory state.

        ``hits``, ``misses``, ``errors`` (failed or malformed Redis calls),
        ``puts``, ``bytes_written``, ``skipped`` (calls not made during
        back-off), ``not_stored`` (chunks larger than ``max_bytes``), ``available`` (Redis
        answered the last call), and from ``INFO`` (refreshed at most once a
        second; ``None`` when unreachable) ``used_memory``, ``maxmemory``,
        ``maxmemory_policy``, ``evicted_keys``.
        """
        now = time.monotonic()
        with self._lock:
            stale = now - self._info_at >= INFO_EVERY_S
            if stale:
                self._info_at = now  # one refresh at a time
        if stale and self._allow(write=False, count=False):
            try:
                memory = self._client.info("memory")
                counts = self._client.info("stats")
            except Exception as exc:  # stats must answer while Redis is down
                self._failed(exc, "info", write=False)
            else:
                self._succeeded(write=False)
                info = {k: memory.get(k) for k in ("used_memory", "maxmemory", "maxmemory_policy")}
                info["evicted_keys"] = counts.get("evicted_keys")
                with self._lock:
                    self._info = info
        with self._lock:
            available = self._down.failures == 0
            out: dict[str, Any] = {**self._counts, "available": available}
            info = self._info if available else {}
        for k in ("used_memory", "maxmemory", "maxmemory_policy", "evicted_keys"):
            out[k] = info.get(k)
        return out

    def close(self) -> None:
        """Close the pool's connections (they reopen on the next call)."""
        self._pool.disconnect()

    # -- internals -------------------------------------------------------------
    def _name(self, key: ChunkKey) -> str:
        return self.prefix + key.text()

    def _decode(self, key: ChunkKey, value: object) -> npt.NDArray[Any] | None:
        if value is None:
            self._count("misses")
            return None
        try:
            if not isinstance(value, bytes):
                raise ValueError(f"expected bytes, got {type(value).__name__}")
            chunk = decode_chunk(value)
            if chunk.ndim != 4:  # every cached chunk is [c, z, y, x]; another shape would fail the read
                raise ValueError(f"expected a [c, z, y, x] chunk, got shape {list(chunk.shape)}")
        except ValueError as exc:
            # storage supplies the chunk and the put that follows overwrites the bad value
            self._count("errors")
            self._warn("Redis cache at %s returned a malformed value for %s: %s", self.url, self._name(key), exc)
            return None
        self._count("hits")
        return chunk

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _allow(self, *, write: bool, count: bool = True) -> bool:
        now = time.monotonic()
        with self._lock:
            ok = self._down.allow(now) and (not write or self._full.allow(now))
            if not ok and count:
                self._counts["skipped"] += 1
            return ok

    def _configure(self) -> None:
        if self._configured:
            return
        try:
            self._client.config_set("maxmemory", str(self.max_bytes))
            self._client.config_set("maxmemory-policy", "allkeys-lru")
        except self._response_error as exc:  # managed Redis forbids CONFIG: its own limits apply
            log.info("Redis cache at %s: cannot set maxmemory (%s); the server's own maxmemory and policy apply", self.url, exc)
        else:
            log.info("Redis cache at %s: maxmemory %d bytes, allkeys-lru", self.url, self.max_bytes)
        self._configured = True

    def _failed(self, exc: Exception, op: str, *, write: bool) -> None:
        now = time.monotonic()
        # an error reply (OOM, WRONGTYPE, NOPERM) comes from a live server, which costs no
        # timeout: a full server still serves reads, so only writes back off
        answered = isinstance(exc, self._response_error)
        with self._lock:
            self._counts["errors"] += 1
            if not answered:
                wait = self._down.failed(now)
                self._configured = self.max_bytes is None  # a restarted server forgot CONFIG SET
            elif write:
                wait = self._full.failed(now)
            else:
                wait = 0.0
        if not answered:
            what = "is unavailable, reads go to storage"
        elif isinstance(exc, self._oom_error):
            what = "is full, writes skipped"
        else:
            what = "refused a command"
        retry = f"; retrying in {wait:.0f} s" if wait else ""
        self._warn("Redis cache at %s %s (%s failed: %s: %s)%s", self.url, what, op, type(exc).__name__, exc, retry)

    def _succeeded(self, *, write: bool) -> None:
        with self._lock:
            if self._down.failures == 0 and (not write or self._full.failures == 0):
                return
            failures = self._down.succeeded() + (self._full.succeeded() if write else 0)
        log.info("Redis cache at %s is back after %d failed calls", self.url, failures)

    def _warn(self, message: str, *args: Any) -> None:
        with self._lock:
            suppressed = self._throttle.admit(time.monotonic())
        self._throttle.emit(suppressed, message, *args)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
