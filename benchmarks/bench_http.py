"""Blocks over HTTP on loopback, against the in-process read and a static file server.

    python benchmarks/bench_http.py [--root ROOT] [--duration 60] [--clients 32]

Serves ROOT (default: the dataset of bench_blocks.py, made if missing) with
the documented production command, gunicorn with threaded workers, and
measures in one run:

* hot 128^3 uint8 block through ``blockio.connect`` (keep-alive, streamed
  into the array) against the same hot read in process, and against a 2 MiB
  static file from ``python -m http.server --protocol HTTP/1.1``;
* cold reads (server cache off) against cold reads in process;
* ``--clients`` concurrent clients (processes x threads) for ``--duration``
  seconds on random blocks: errors, blocks/s, p50 and p99 latency.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_blocks import ensure_dataset  # noqa: E402

B = 128


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 30) -> None:
    import urllib3

    http = urllib3.PoolManager(retries=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if http.request("GET", url, timeout=1).status < 500:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def serve(root: Path, port: int, cache_bytes: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BLOCKIO_ROOT=str(root), BLOCKIO_CACHE_BYTES=str(cache_bytes))
    cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "blockio.serving.app:create_app()"]
    proc = subprocess.Popen(cmd, env=env)
    wait_up(f"http://127.0.0.1:{port}/healthz")
    return proc


def per_call_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(runs)


def _client_worker(args: tuple[str, int, float, int]) -> tuple[int, int, list[float]]:
    url, threads, duration, seed = args
    import threading

    from blockio.client import connect

    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.time() + duration

    def loop(k: int) -> None:
        nonlocal errors
        remote = connect(url, retries=0)
        rng = np.random.default_rng([seed, k])
        while time.time() < stop:
            off = tuple(int(v) for v in rng.integers(0, 512 - B + 1, 3))
            t0 = time.perf_counter()
            try:
                remote.read_block("bench", off, (B, B, B))
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
            except Exception:  # noqa: BLE001 - every failure counts as an error here
                with lock:
                    errors += 1

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(lat), errors, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="blockio-bench-")) / "root"
    ensure_dataset(root, 512)

    from blockio.client import connect
    from blockio.store import Store

    off = (128, 128, 128)
    local = Store(root)
    hot_local = per_call_ms(lambda: local.read_block("bench", off, (B, B, B)), 50)

    port = free_port()
    server = serve(root, port, 512 << 20)
    static_dir = Path(tempfile.mkdtemp())
    (static_dir / "block.bin").write_bytes(np.random.default_rng(0).integers(0, 255, B**3, dtype=np.uint8).tobytes())
    sport = free_port()
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(sport), "--bind", "127.0.0.1", "--protocol", "HTTP/1.1", "--directory", str(static_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{sport}/block.bin")
        remote = connect(f"http://127.0.0.1:{port}")
        hot_http = per_call_ms(lambda: remote.read_block("bench", off, (B, B, B)), 50)
        import urllib3

        pool = urllib3.PoolManager()
        static_ms = per_call_ms(lambda: pool.request("GET", f"http://127.0.0.1:{sport}/block.bin").data, 50)
        gbs = B**3 / (hot_http / 1e3) / 1e9
        print(f"hot 128^3 uint8: HTTP {hot_http:.2f} ms ({gbs:.2f} GB/s) | in process {hot_local:.2f} ms | overhead {hot_http - hot_local:+.2f} ms (goal <= +1.5) | static 2 MiB file (http.server) {static_ms:.2f} ms ({hot_http / static_ms:.2f}x)")

        rng = np.random.default_rng(1)
        offsets = [tuple(int(v) for v in rng.integers(0, 512 - B + 1, 3)) for _ in range(30)]
        cold_local_store = Store(root, cache_bytes=0)
        it = iter(offsets * 10)
        cold_local = per_call_ms(lambda: cold_local_store.read_block("bench", next(it), (B, B, B)), 20)
        server.terminate()
        server.wait()
        server = serve(root, port, 0)
        remote = connect(f"http://127.0.0.1:{port}")
        it = iter(offsets * 10)
        cold_http = per_call_ms(lambda: remote.read_block("bench", next(it), (B, B, B)), 20)
        print(f"cold 128^3 uint8: HTTP {cold_http:.2f} ms | in process {cold_local:.2f} ms | ratio {cold_http / cold_local:.2f}x (goal <= 1.3)")
        server.terminate()
        server.wait()

        server = serve(root, port, 512 << 20)
        procs = 4
        threads = max(1, args.clients // procs)
        with multiprocessing.get_context("spawn").Pool(procs) as pool_:
            results = pool_.map(_client_worker, [(f"http://127.0.0.1:{port}", threads, args.duration, i) for i in range(procs)])
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        lat = sorted(x for r in results for x in r[2])
        p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99)] * 1e3 if lat else float("nan")
        print(f"{procs * threads} clients x {args.duration:.0f} s: {ok} blocks, {errors} errors, {ok / args.duration:.0f} blocks/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    finally:
        server.terminate()
        static.terminate()


if __name__ == "__main__":
    main()
