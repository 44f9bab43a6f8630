"""How gunicorn spreads keep-alive connections over its workers.

    python benchmarks/bench_workers.py [--workers 2] [--connections 48] [--requests 50]

Serves an empty root twice, each time with ``--workers`` gthread workers:

* **shared socket**: the old production command (``-k gthread --threads 8``,
  gunicorn's defaults otherwise: the master's one listening socket);
* **shipped config**: ``-c python:blockio.serving.gunicorn_conf`` (a socket
  per worker with ``SO_REUSEPORT``, keep-alive 5 s, 100 connections a worker).

Each time it opens ``--connections`` keep-alive connections at once, sends
``--requests`` ``GET /healthz`` on each, and counts the requests each worker
answered from the workers' metric files (``PROMETHEUS_MULTIPROC_DIR``). It
prints the share of the busiest worker: 1/workers is an even spread, 1.0 one
worker doing everything. It also checks ``/metrics`` counts every request.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from blockio.serving.metrics import requests_per_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the server answers (a 404 of a route the counts leave out) or dies."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/openapi-not-here")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 60 s")


def hammer(port: int, connections: int, requests: int) -> int:
    """``connections`` keep-alive clients, opened together, ``requests`` each; returns the requests answered."""
    barrier = threading.Barrier(connections)
    answered = [0] * connections

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.connect()
        barrier.wait()
        for _ in range(requests):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                answered[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(answered)


def scraped_total(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    pattern = re.compile(r'^blockio_http_requests_total\{[^}]*route="/healthz"[^}]*\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


def run(label: str, args: list[str], ns: argparse.Namespace, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp, prefix="metrics-"))
    port = free_port()
    env = {**os.environ, "BLOCKIO_ROOT": str(tmp / "root"), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    cmd = [sys.executable, "-m", "gunicorn", *args, "-w", str(ns.workers), "-b", f"127.0.0.1:{port}", "blockio.serving:create_app()"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        t0 = time.perf_counter()
        answered = hammer(port, ns.connections, ns.requests)
        seconds = time.perf_counter() - t0
        per_worker = requests_per_worker(folder, "/healthz")
        total = sum(per_worker.values())
        busiest = max(per_worker.values()) / total if total else 0.0
        counts = ", ".join(f"{int(v)}" for v in sorted(per_worker.values(), reverse=True))
        print(
            f"{label:15s} {answered} answered in {seconds:.1f} s; per worker: {counts} "
            f"({len(per_worker)} of {ns.workers} workers served); busiest share {busiest:.2f} "
            f"(even {1 / ns.workers:.2f}); /metrics counts {scraped_total(port):.0f}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setup")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as name:
        tmp = Path(name)
        (tmp / "root").mkdir()
        for _ in range(ns.rounds):
            run("shared socket", ["-k", "gthread", "--threads", "8"], ns, tmp)
            run("shipped config", ["-c", "python:blockio.serving.gunicorn_conf"], ns, tmp)


if __name__ == "__main__":
    main()
