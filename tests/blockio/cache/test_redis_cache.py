"""The Redis chunk cache against a real redis-server: values, bounds, failures, recovery."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from blockio.cache.memory import ChunkKey
from blockio.cache.redis_cache import RedisCache, decode_chunk, encode_chunk
from tests.blockio.cache.conformance import ChunkCacheContract
from tests.redis_server import RedisServer, redis_server, redis_server_factory  # noqa: F401

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install blockio[redis])")

pytestmark = pytest.mark.redis

LOGGER = "blockio.cache.redis_cache"


def key(dataset: str = "d", layer: str = "image", index: tuple[int, int, int] = (0, 0, 0), version: str = "v1") -> ChunkKey:
    return ChunkKey(dataset, layer, version, "precomputed", 0, index)


@pytest.fixture
def cache(redis_server: RedisServer) -> Iterator[RedisCache]:  # noqa: F811
    c = RedisCache(redis_server.url)
    yield c
    c.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:  # noqa: F811
    c = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    yield c
    c.close()


def _recover(cache: RedisCache, k: ChunkKey, chunk: npt.NDArray[Any], within_s: float = 5.0) -> float:
    """Seconds until a put then get of ``k`` works again."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        cache.put(k, chunk)
        got = cache.get(k)
        if got is not None:
            np.testing.assert_array_equal(got, chunk)
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"the cache did not recover within {within_s} s: {cache.stats()}")


class TestRedisCacheContract(ChunkCacheContract):
    @pytest.fixture
    def cache(self, redis_server: RedisServer) -> Iterator[RedisCache]:  # noqa: F811
        c = RedisCache(redis_server.url)
        yield c
        c.close()


# -- values ----------------------------------------------------------------------


CHUNKS = {
    "uint8": np.arange(4 * 5 * 6, dtype=np.uint8).reshape(1, 4, 5, 6),
    "uint16-3ch": np.arange(3 * 2 * 3 * 4, dtype=np.uint16).reshape(3, 2, 3, 4) * 1000,
    "uint32": np.arange(2 * 3 * 4, dtype=np.uint32).reshape(1, 2, 3, 4) + 2**31,
    "uint64": (np.arange(2 * 2 * 5, dtype=np.uint64) + np.uint64(2**63 + 12345)).reshape(1, 2, 2, 5),
    "int16": -np.arange(30, dtype=np.int16).reshape(1, 2, 3, 5),
    "float32-2ch": np.linspace(-1, 1, 2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4),
    "float64": np.array([np.nan, np.inf, -0.0, 1e300], dtype=np.float64).reshape(1, 1, 2, 2),
    "big-endian": np.arange(8, dtype=">u2").reshape(1, 2, 2, 2),
    "bool": (np.arange(8) % 3 == 0).reshape(1, 2, 2, 2),
    "non-contiguous": np.arange(2 * 6 * 6 * 6, dtype=np.uint16).reshape(2, 6, 6, 6)[:, ::2, 1:, ::-1],
    "fortran": np.asfortranarray(np.arange(60, dtype=np.int32).reshape(1, 3, 4, 5)),
    "empty": np.zeros((1, 0, 4, 4), dtype=np.uint8),
}


@pytest.mark.parametrize("name", sorted(CHUNKS))
def test_round_trip(cache: RedisCache, name: str) -> None:
    chunk = CHUNKS[name]
    k = key(index=(1, 2, 3))
    assert cache.get(k) is None
    cache.put(k, chunk)
    got = cache.get(k)
    assert got is not None
    assert got.dtype == chunk.dtype and got.shape == chunk.shape
    np.testing.assert_array_equal(got, chunk)
    assert got.flags.c_contiguous and not got.flags.writeable
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["puts"], stats["errors"]) == (1, 1, 1, 0)
    assert stats["bytes_written"] >= chunk.nbytes and stats["available"] is True


def test_result_is_read_only_and_owns_no_caller_memory(cache: RedisCache) -> None:
    chunk = np.arange(64, dtype=np.uint16).reshape(1, 4, 4, 4)
    cache.put(key(), chunk)
    chunk[...] = 0  # the caller's array changing later changes nothing cached
    got = cache.get(key())
    assert got is not None and got.flags.aligned
    with pytest.raises(ValueError, match="read-only"):
        got[0, 0, 0, 0] = 7
    np.testing.assert_array_equal(got.ravel(), np.arange(64))


def test_value_is_header_plus_raw_bytes_not_pickle(cache: RedisCache, client: Any) -> None:
    chunk = np.arange(24, dtype=np.uint16).reshape(1, 2, 3, 4)
    cache.put(key(), chunk)
    value = client.get("blockio:" + key().text())
    assert value.startswith(b"BKC1") and b"pickle" not in value
    assert value.endswith(chunk.tobytes()) and len(value) - chunk.nbytes <= 64


def test_decode_rejects_malformed_values() -> None:
    good = encode_chunk(np.arange(8, dtype=np.uint32).reshape(1, 2, 2, 2))
    for bad in (b"", b"nonsense", b"XXXX" + good[4:], good[:-1], good + b"\0"):
        with pytest.raises(ValueError):
            decode_chunk(bad)
    objects = bytearray(good)
    objects[8:11] = b"|O8"  # a header asking for Python objects must never be honoured
    with pytest.raises(ValueError):
        decode_chunk(bytes(objects))
    with pytest.raises(ValueError, match="numeric"):
        encode_chunk(np.array(["a"], dtype=object))


def test_ttl_is_set(redis_server: RedisServer, client: Any) -> None:  # noqa: F811
    chunk = np.ones((1, 2, 2, 2), np.uint8)
    RedisCache(redis_server.url).put(key(index=(0, 0, 0)), chunk)
    RedisCache(redis_server.url, ttl_s=60).put(key(index=(1, 0, 0)), chunk)
    RedisCache(redis_server.url, ttl_s=None).put(key(index=(2, 0, 0)), chunk)
    assert 3590 <= client.ttl("blockio:" + key(index=(0, 0, 0)).text()) <= 3600
    assert 50 <= client.ttl("blockio:" + key(index=(1, 0, 0)).text()) <= 60
    assert client.ttl("blockio:" + key(index=(2, 0, 0)).text()) == -1  # no expiry


def test_prefix_separates_caches(redis_server: RedisServer, client: Any) -> None:  # noqa: F811
    a, b = RedisCache(redis_server.url, prefix="a:"), RedisCache(redis_server.url, prefix="b:")
    a.put(key(), np.zeros((1, 1, 1, 1), np.uint8))
    assert b.get(key()) is None and a.get(key()) is not None
    assert client.keys("*") == [("a:" + key().text()).encode()]


def test_invalidate_removes_only_that_dataset_or_layer(cache: RedisCache, client: Any) -> None:
    chunk = np.zeros((1, 2, 2, 2), np.uint8)
    for i in range(3):
        cache.put(key("a", "image", (i, 0, 0)), chunk)
        cache.put(key("a", "pred", (i, 0, 0)), chunk)
        cache.put(key("ab", "image", (i, 0, 0)), chunk)  # shares a prefix with "a"
        cache.put(key("a", "pred2", (i, 0, 0)), chunk)  # shares a prefix with "pred"
    for i in range(1200):  # more than one SCAN / UNLINK batch
        cache.put(key("big", "image", (i, 0, 0)), chunk)
    client.set("other:a/image/x", b"not ours")

    assert cache.invalidate("a", "pred") == 3
    assert cache.get(key("a", "pred")) is None and cache.get(key("a", "pred2")) is not None
    assert cache.get(key("a", "image")) is not None
    assert cache.invalidate("a") == 6
    assert cache.get(key("a", "image")) is None and cache.get(key("a", "pred2")) is None
    assert cache.get(key("ab", "image")) is not None
    assert cache.invalidate("big") == 1200
    assert cache.invalidate("nothing") == 0
    assert sorted(client.keys("*")) == sorted([b"other:a/image/x"] + [("blockio:" + key("ab", "image", (i, 0, 0)).text()).encode() for i in range(3)])
    assert cache.stats()["errors"] == 0


def test_many_chunks_cost_one_mget_and_one_pipeline(cache: RedisCache, client: Any) -> None:
    chunks = {key(index=(i, 0, 0)): np.full((1, 2, 2, 2), i, np.uint8) for i in range(20)}
    chunks[key(index=(20, 0, 0))] = np.zeros((1, 1, 1, 1), dtype=[("a", "u1")])  # not cacheable: skipped, not failed
    client.config_resetstat()
    cache.put_many(chunks)
    found = cache.get_many([*chunks, key(index=(99, 0, 0))])
    assert sorted(k.index[0] for k in found) == list(range(20))
    commands = client.info("commandstats")
    assert commands["cmdstat_mget"]["calls"] == 1 and "cmdstat_get" not in commands
    assert commands["cmdstat_set"]["calls"] == 20
    stats = cache.stats()
    assert (stats["puts"], stats["hits"], stats["misses"], stats["not_stored"], stats["errors"]) == (20, 20, 2, 1, 0)


def test_many_chunks_against_a_dead_server_cost_one_failure(cache: RedisCache, redis_server: RedisServer) -> None:  # noqa: F811
    redis_server.stop()
    chunks = {key(index=(i, 0, 0)): np.zeros((1, 2, 2, 2), np.uint8) for i in range(10)}
    cache.put_many(chunks)  # never raises
    assert cache.get_many(list(chunks)) == {}  # in back-off: not even tried
    assert cache._counts["errors"] == 1 and cache._counts["skipped"] == 1


# -- bounds ------------------------------------------------------------------------


def test_max_bytes_configures_the_server_and_skips_larger_chunks(cache: RedisCache, redis_server: RedisServer, client: Any) -> None:  # noqa: F811
    bounded = RedisCache(redis_server.url, max_bytes=3 << 20)
    small = np.zeros((1, 16, 16, 16), np.uint8)
    big = np.zeros((1, 128, 128, 256), np.uint8)  # 4 MiB > max_bytes
    bounded.put(key(index=(0, 0, 0)), small)
    bounded.put(key(index=(1, 0, 0)), big)
    assert client.config_get("maxmemory")["maxmemory"] == str(3 << 20)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert bounded.get(key(index=(0, 0, 0))) is not None and bounded.get(key(index=(1, 0, 0))) is None
    stats = bounded.stats()
    assert stats["puts"] == 1 and stats["not_stored"] == 1 and stats["errors"] == 0
    assert stats["maxmemory"] == 3 << 20 and stats["used_memory"] > 0 and stats["maxmemory_policy"] == "allkeys-lru"


def test_config_set_refused_is_not_an_error(redis_server: RedisServer, client: Any, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    client.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"])
    cache = RedisCache(f"redis://reader:pw@127.0.0.1:{redis_server.port}/0", max_bytes=1 << 20)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cache.put(key(), np.zeros((1, 2, 2, 2), np.uint8))
    assert cache.get(key()) is not None and cache.stats()["errors"] == 0
    assert any("cannot set maxmemory" in r.getMessage() and "pw" not in r.getMessage() for r in caplog.records)
    assert client.config_get("maxmemory")["maxmemory"] == str(64 << 20)  # the server's own setting stays
    assert "pw" not in repr(cache) and "***" in repr(cache)


def test_eviction_keeps_the_server_within_maxmemory(redis_server_factory: Callable[..., RedisServer]) -> None:  # noqa: F811
    server = redis_server_factory(maxmemory="4mb")
    cache = RedisCache(server.url)
    chunk = np.random.default_rng(0).integers(0, 255, (1, 16, 64, 64), dtype=np.uint8)  # 64 KiB
    for i in range(200):  # 12.5 MiB into 4 MiB
        cache.put(key(index=(i, 0, 0)), chunk)
    stats = cache.stats()
    assert stats["puts"] == 200 and stats["errors"] == 0
    assert stats["evicted_keys"] > 0 and stats["used_memory"] <= stats["maxmemory"] == 4 << 20
    assert cache.get(key(index=(199, 0, 0))) is not None  # the newest survive
    assert sum(cache.get(key(index=(i, 0, 0))) is None for i in range(200)) > 100


def test_full_server_skips_writes_but_still_serves_reads(cache: RedisCache, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    chunk = np.zeros((1, 16, 64, 64), np.uint8)
    cache.put(key(index=(0, 0, 0)), chunk)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # below what is used: every write is refused with OOM
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t0 = time.perf_counter()
        for i in range(1, 50):
            cache.put(key(index=(i, 0, 0)), chunk)  # never raises
        assert time.perf_counter() - t0 < 0.5
        assert cache.get(key(index=(0, 0, 0))) is not None  # reads go on
    stats = cache.stats()
    assert stats["errors"] == 1 and stats["puts"] == 1 and stats["skipped"] == 48 and stats["available"] is True
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and "full" in warnings_[0].getMessage()


def test_malformed_value_is_a_miss_not_a_failure(cache: RedisCache, client: Any) -> None:
    client.set("blockio:" + key(index=(0, 0, 0)).text(), b"garbage")
    client.rpush("blockio:" + key(index=(1, 0, 0)).text(), b"a list")  # WRONGTYPE for GET
    good = np.ones((1, 2, 2, 2), np.uint16)
    cache.put(key(index=(2, 0, 0)), good)
    assert cache.get(key(index=(0, 0, 0))) is None
    assert cache.get(key(index=(1, 0, 0))) is None
    assert cache.get(key(index=(2, 0, 0))) is not None  # no back-off: the server is fine
    cache.put(key(index=(0, 0, 0)), good)  # storage's copy overwrites the bad value
    assert cache.get(key(index=(0, 0, 0))) is not None
    stats = cache.stats()
    assert stats["errors"] == 2 and stats["available"] is True and stats["skipped"] == 0


# -- failures --------------------------------------------------------------------


def test_redis_killed_mid_run_then_restarted(cache: RedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    chunk = np.arange(4096, dtype=np.uint16).reshape(1, 16, 16, 16)
    cache.put(key(), chunk)
    assert cache.get(key()) is not None
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t0 = time.perf_counter()
        for i in range(100):
            assert cache.get(key(index=(i, 0, 0))) is None
            cache.put(key(index=(i, 0, 0)), chunk)
        elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"200 calls against a dead Redis took {elapsed:.3f} s"
    stats = cache.stats()
    assert stats["available"] is False and stats["errors"] >= 1 and stats["skipped"] >= 190
    assert stats["used_memory"] is None
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "unavailable" in warned[0].getMessage()

    redis_server.start()
    waited = _recover(cache, key(), chunk)
    assert waited < 3.0
    assert cache.stats()["available"] is True


def test_hung_redis_costs_one_timeout_then_nothing(redis_server: RedisServer) -> None:  # noqa: F811
    cache = RedisCache(redis_server.url, socket_timeout_s=0.05)
    chunk = np.zeros((1, 8, 8, 8), np.uint8)
    cache.put(key(), chunk)
    redis_server.pause()  # accepts connections, never answers
    try:
        t0 = time.perf_counter()
        assert cache.get(key()) is None
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(100):
            assert cache.get(key(index=(i, 0, 0))) is None
            cache.put(key(index=(i, 0, 0)), chunk)
        rest = time.perf_counter() - t0
    finally:
        redis_server.resume()
    assert first < 0.5, f"one read against a hung Redis took {first:.3f} s"
    assert rest < 0.2, f"200 calls in back-off took {rest:.3f} s"
    assert cache.stats()["errors"] == 1
    _recover(cache, key(), chunk)


def test_back_off_doubles_and_is_capped(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from blockio.cache import redis_cache

    clock = [1000.0]
    monkeypatch.setattr(redis_cache.time, "monotonic", lambda: clock[0])
    cache = RedisCache(redis_server.url)
    redis_server.stop()

    def errors() -> int:  # the counter itself: stats() would probe Redis with INFO
        return int(cache._counts["errors"])

    waits = []
    for n in range(1, 9):
        assert cache.get(key()) is None
        assert errors() == n  # the first round probes and fails; later rounds are in back-off
        wait = 0.0
        while True:
            clock[0] += 0.25
            wait += 0.25
            cache.get(key())
            if errors() > n:
                break
        waits.append(wait)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_created_while_redis_is_down(redis_server: RedisServer) -> None:  # noqa: F811
    redis_server.stop()
    cache = RedisCache(redis_server.url, max_bytes=8 << 20)  # does not raise
    assert cache.get(key()) is None
    cache.put(key(), np.zeros((1, 2, 2, 2), np.uint8))
    assert cache.stats()["available"] is False
    redis_server.start()
    _recover(cache, key(), np.ones((1, 2, 2, 2), np.uint8))
    assert cache.stats()["maxmemory"] == 8 << 20  # configured once it could be


def test_threads_share_one_cache(cache: RedisCache) -> None:
    failures: list[str] = []

    def work(t: int) -> None:
        for i in range(50):
            chunk = np.full((1, 4, 4, 4), t * 1000 + i, np.uint32)
            cache.put(key(index=(t, i, 0)), chunk)
            got = cache.get(key(index=(t, i, 0)))
            if got is None or not np.array_equal(got, chunk):
                failures.append(f"thread {t} chunk {i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    stats = cache.stats()
    assert (stats["puts"], stats["hits"], stats["errors"]) == (400, 400, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_reconnects(cache: RedisCache) -> None:
    chunk = np.arange(8, dtype=np.uint8).reshape(1, 2, 2, 2)
    cache.put(key(index=(0, 0, 0)), chunk)
    assert cache.get(key(index=(0, 0, 0))) is not None  # the parent holds a pooled connection
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: none of ours run here
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            got = cache.get(key(index=(0, 0, 0)))
            cache.put(key(index=(1, 0, 0)), chunk)
            ok = got is not None and np.array_equal(got, chunk) and cache.stats()["errors"] == 0
            code = 0 if ok and cache._pool.pid == os.getpid() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the child's exit did not break the parent's connection
    assert cache.get(key(index=(1, 0, 0))) is not None
    assert cache.stats()["errors"] == 0


def test_bad_options_raise() -> None:
    options: list[dict[str, Any]] = [{"max_bytes": 0}, {"ttl_s": 0}, {"socket_timeout_s": 0}]
    for bad in options:
        with pytest.raises(ValueError):
            RedisCache("redis://127.0.0.1:1/0", **bad)


# -- through the block API ---------------------------------------------------------


def test_store_reads_through_redis(tmp_path: Path, root: Path, redis_server: RedisServer) -> None:  # noqa: F811
    from blockio.store import Store
    from precomputed.ingest import IngestOptions, ingest

    vol = np.random.default_rng(1).integers(0, 60000, size=(20, 40, 50), dtype=np.uint16)  # [z, y, x]
    np.save(tmp_path / "v.npy", vol)
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(chunk_size=(16, 16, 16), voxel_size=(4, 4, 30), progress=False, workers=2))
    offset, size = (5, 3, 2), (40, 30, 15)  # (x, y, z), spans several chunks
    expected = vol[2:17, 3:33, 5:45]

    first = Store(root, redis_url=redis_server.url)
    np.testing.assert_array_equal(first.read_block("v", offset, size), expected)
    np.testing.assert_array_equal(first.read_block("v", offset, size), expected)
    stats = first.cache_stats()
    assert stats["memory"]["hits"] > 0 and stats["redis"]["puts"] > 0 and stats["redis"]["errors"] == 0

    # a new process-like Store: empty memory, warm Redis, no chunk files on disk
    layer = root / "precomputed" / "v" / "image"
    scales = [p for p in layer.iterdir() if p.is_dir()]
    assert scales
    for p in scales:
        p.rename(p.with_name(p.name + ".hidden"))
    try:
        second = Store(root, redis_url=redis_server.url)
        np.testing.assert_array_equal(second.read_block("v", offset, size), expected)
        assert second.cache_stats()["redis"]["hits"] > 0 and second.cache_stats()["redis"]["misses"] == 0
    finally:
        for p in scales:
            p.with_name(p.name + ".hidden").rename(p)

    # Redis dies mid-run: every read still succeeds from storage
    third = Store(root, cache_bytes=0, redis_url=redis_server.url)
    blocks = [((x, y, 0), (16, 16, 20)) for x in (0, 10, 30) for y in (0, 20)]
    failed = 0
    t0 = time.perf_counter()
    for i in range(30):
        if i == 10:
            redis_server.stop()
        (x, y, z), s = blocks[i % len(blocks)]
        try:
            got = third.read_block("v", (x, y, z), s)
        except Exception:  # counting failed reads is the point
            failed += 1
            continue
        np.testing.assert_array_equal(got, vol[z : z + s[2], y : y + s[1], x : x + s[0]])
    assert failed == 0
    assert time.perf_counter() - t0 < 5.0
    redis_stats = third.cache_stats()["redis"]
    assert redis_stats["hits"] > 0 and redis_stats["errors"] >= 1 and redis_stats["available"] is False
