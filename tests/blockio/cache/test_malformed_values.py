"""A Redis value of the wrong shape is a cache miss (logged), never a failed read."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from blockio.cache.wire import encode_chunk
from blockio.store import Store
from tests.redis_server import RedisServer, redis_server, redis_server_factory  # noqa: F401

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install blockio[redis])")

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    "wrong",
    [np.zeros((4, 4, 4), np.uint16), np.zeros((1, 2, 2, 2), np.uint16), np.zeros((1, 16, 32, 32), np.float64)],
    ids=["3-d", "small-4-d", "other-dtype"],
)
def test_wrong_shaped_values_are_misses(served_root: Path, served_volume: np.ndarray, redis_server: RedisServer, wrong: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    store = Store(served_root, cache_bytes=0, redis_url=redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    try:
        store.read_block("v", (0, 0, 0), (64, 64, 16))  # fills Redis with the block's chunks
        names = client.keys("blockio:v/*")
        assert names
        for name in names:
            client.set(name, encode_chunk(wrong))
        with caplog.at_level(logging.WARNING):
            got = store.read_block("v", (0, 0, 0), (64, 64, 16))
        np.testing.assert_array_equal(got, served_volume[0:16, 0:64, 0:64])
        assert "read from storage" in caplog.text or "malformed value" in caplog.text
    finally:
        client.close()
