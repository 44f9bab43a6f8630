"""/metrics in one process and summed over every gunicorn worker (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from flask.testing import FlaskClient

from blockio.serving.metrics import requests_per_worker

SENT = 40
_HEALTHZ = re.compile(r'^blockio_http_requests_total\{[^}]*route="/healthz"[^}]*\} ([0-9.e+]+)$', re.M)


def _healthz_total(text: str) -> float:
    return sum(float(v) for v in _HEALTHZ.findall(text))


def test_one_process_counts_every_request(client: FlaskClient) -> None:
    for _ in range(7):
        assert client.get("/healthz").status_code == 200
    text = client.get("/metrics").text
    assert _healthz_total(text) == 7
    assert 'blockio_cache_hits{tier="memory"}' in text


class Gunicorn:
    """gunicorn with the shipped config on a free loopback port, its metric files in ``folder``."""

    def __init__(self, root: Path, folder: Path, workers: int) -> None:
        with socket.socket() as s:  # each worker binds its own socket (reuse_port), so a fixed port
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        env = {**os.environ, "BLOCKIO_ROOT": str(root), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:blockio.serving.gunicorn_conf", "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "blockio.serving:create_app()"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.workers = workers
        self.wait_for_workers(set())

    def get(self, path: str) -> tuple[int, str]:
        """One request on a new connection (so the kernel picks the worker each time)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def worker_pids(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.proc.pid).children()}

    def wait_for_workers(self, gone: set[int]) -> None:
        """Until every worker is up and answering, none of them in ``gone``."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            pids = self.worker_pids()
            if len(pids) == self.workers and not pids & gone:
                try:
                    if self.get("/not-a-route")[0] == 404:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn workers did not come up within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[Gunicorn, Path]]:
    (tmp_path / "root").mkdir()
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by an earlier run")  # the config wipes it at start
    server = Gunicorn(tmp_path / "root", folder, workers=2)
    yield server, folder
    server.stop()


def _scrape_from_every_worker(server: Gunicorn, folder: Path, before: dict[int, float]) -> list[float]:
    """``/healthz`` totals of scrapes on new connections, until each worker has answered one (at most 200)."""
    totals = []
    for _ in range(200):
        status, text = server.get("/metrics")
        assert status == 200
        totals.append(_healthz_total(text))
        scrapes = requests_per_worker(folder, "/metrics")
        if sum(1 for pid, n in scrapes.items() if n > before.get(pid, 0.0)) >= server.workers:
            break
    return totals


def test_two_workers_count_every_request_whichever_answers(gunicorn: tuple[Gunicorn, Path]) -> None:
    server, folder = gunicorn
    for _ in range(SENT):
        assert server.get("/healthz")[0] == 200
    served = requests_per_worker(folder, "/healthz")
    assert sum(served.values()) == SENT
    assert len(served) == 2, f"one worker served every request: {served}"  # the kernel spread them (reuse_port)
    totals = _scrape_from_every_worker(server, folder, {})
    assert len([n for n in requests_per_worker(folder, "/metrics").values() if n]) == 2
    assert set(totals) == {SENT}

    # a worker killed: gunicorn starts another; what the dead one counted still counts
    victim = sorted(server.worker_pids())[0]
    assert list(folder.glob(f"gauge_livesum_{victim}.db"))  # its cache gauges
    os.kill(victim, signal.SIGKILL)
    server.wait_for_workers({victim})
    assert not list(folder.glob(f"gauge_livesum_{victim}.db"))  # removed by the config's child_exit
    before = requests_per_worker(folder, "/metrics")
    totals = _scrape_from_every_worker(server, folder, before)
    assert set(totals) == {SENT}
