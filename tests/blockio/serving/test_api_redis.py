"""The service with a shared Redis cache that dies mid-run: no failed request."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from blockio.client import connect
from blockio.serving.app import create_app
from tests.live_server import LiveServer
from tests.redis_server import RedisServer, redis_server, redis_server_factory  # noqa: F401

pytestmark = pytest.mark.redis


def test_redis_stopped_mid_run_fails_no_request(served_root: Path, served_volume: np.ndarray, redis_server: RedisServer) -> None:  # noqa: F811
    # two apps = two server processes' worth of state sharing one Redis; memory cache off so Redis matters
    servers = [LiveServer(create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_REDIS_URL": redis_server.url, "BLOCKIO_CACHE_BYTES": 0})) for _ in range(2)]
    failures: list[str] = []
    done = 0
    lock = threading.Lock()
    halfway = threading.Event()

    def client(k: int) -> None:
        nonlocal done
        remote = connect(servers[k % 2].url, retries=0)
        rng = np.random.default_rng(k)
        for _ in range(60):
            x, y, z = (int(rng.integers(0, 60)), int(rng.integers(0, 40)), int(rng.integers(0, 16)))
            try:
                block = remote.read_block("v", (x, y, z), (32, 32, 8))
                if not np.array_equal(block, served_volume[z : z + 8, y : y + 32, x : x + 32]):
                    raise AssertionError("wrong data")
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
            with lock:
                done += 1
                if done == 120:
                    halfway.set()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    halfway.wait(30)
    redis_server.stop()
    for t in threads:
        t.join()
    for s in servers:
        s.stop()
    assert done == 240 and failures == []
    stats = [s.server.app.extensions["blockio.store"].cache_stats()["redis"] for s in servers]  # type: ignore[attr-defined]
    assert sum(st["hits"] for st in stats) > 0  # Redis served while it was up
    assert sum(st["errors"] for st in stats) > 0  # ... and its loss was noticed, not raised
