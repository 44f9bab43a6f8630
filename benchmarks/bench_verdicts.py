"""Storing a verdict stays fast at 100,000 stored verdicts, on SQLite and on PostgreSQL.

    python benchmarks/bench_verdicts.py                       # both engines, 100,000 verdicts, 300 POSTs each
    python benchmarks/bench_verdicts.py --engines sqlite --stored 20000

For each engine: a tiny dataset, a reviewer's token, ``--stored`` verdicts
put in the table in bulk, then ``--posts`` real HTTP ``POST
/api/datasets/<id>/reviews`` requests (a werkzeug server on a loopback port,
one keep-alive client) and a ``GET`` of the newest page. The anchor, in the
same run, is the same POST against an empty table: the ratio says how much
100,000 stored verdicts cost. Target: median POST at most 20 ms. PostgreSQL
is a server of the benchmark's own (``initdb`` in a temp folder, as in the
tests), or ``--database-url``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_MS = 20.0


def make_root(folder: Path) -> Path:
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.segmentation import write_segmentation

    np.save(folder / "v.npy", np.zeros((16, 32, 32), dtype=np.uint8))
    root = folder / "root"
    ingest(folder / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(root, "v", "pred", np.zeros((16, 32, 32), dtype=np.uint32), provenance={"model": "bench"}, meshes=False)
    return root


@contextmanager
def serving(app: object) -> Iterator[int]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join()


def fill(app: object, n: int) -> float:
    """Put ``n`` verdicts in the table in batches; seconds taken."""
    from precomputed.catalog import now

    log = app.extensions["viewer.reviews"]  # type: ignore[attr-defined]
    start = time.perf_counter()
    batch = 5000
    for first in range(0, n, batch):
        rows = [
            {"id": uuid.uuid4().hex, "time": now(), "dataset": "v", "layer": "pred", "segment": i + 1, "position": None,
             "verdict": "correct", "note": "bulk", "reviewer": "bulk"}
            for i in range(first, min(n, first + batch))
        ]
        log.table.insert(rows)
    return time.perf_counter() - start


def time_posts(port: int, token: str, posts: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times = []
    for i in range(posts + 5):
        body = json.dumps({"layer": "pred", "segment": 10**9 + i, "verdict": "false_merge", "note": "bench"})
        start = time.perf_counter()
        conn.request("POST", "/api/datasets/v/reviews", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 201:
            raise SystemExit(f"POST answered {resp.status}")
        if i >= 5:  # the first verifies the token (scrypt) and warms the pools
            times.append(elapsed * 1000)
    conn.close()
    return times


def time_get(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", "/api/datasets/v/reviews?per_page=100")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return (time.perf_counter() - start) * 1000


def run_engine(name: str, root: Path, url: str | None, stored: int, posts: int) -> dict[str, float]:
    from blockio.serving.app import create_app

    config = {"BLOCKIO_ROOT": str(root), "BLOCKIO_RATE_PER_S": "0"}
    if url:
        config["BLOCKIO_DATABASE_URL"] = url
    app = create_app(config)
    token = app.extensions["blockio.users"].add(f"bench-{uuid.uuid4().hex[:6]}", "reviewer")[1]
    with serving(app) as port:
        empty = time_posts(port, token, posts)
        filled_s = fill(app, stored)
        full = time_posts(port, token, posts)
        get_ms = statistics.median(time_get(port) for _ in range(20))
    total = app.extensions["viewer.reviews"].count()
    app.extensions["blockio.database"].close()
    out = {
        "empty_median": statistics.median(empty),
        "median": statistics.median(full),
        "p95": sorted(full)[int(0.95 * len(full)) - 1],
        "fill_s": filled_s,
        "get_ms": get_ms,
        "total": float(total),
    }
    ok = "ok" if out["median"] <= TARGET_MS else "OVER TARGET"
    print(
        f"{name:10s} {total:>7d} stored: POST median {out['median']:.2f} ms, p95 {out['p95']:.2f} ms "
        f"(anchor, empty table: {out['empty_median']:.2f} ms; ratio {out['median'] / out['empty_median']:.2f}); "
        f"GET newest 100: {get_ms:.2f} ms; bulk fill {filled_s:.1f} s; target <= {TARGET_MS:g} ms: {ok}",
        flush=True,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--database-url", help="a PostgreSQL database to use instead of starting one")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for engine in args.engines.split(","):
            root = make_root(Path(tempfile.mkdtemp(dir=folder)))
            if engine == "sqlite":
                results[engine] = run_engine("SQLite", root, None, args.stored, args.posts)
            elif engine == "postgres":
                if args.database_url:
                    results[engine] = run_engine("PostgreSQL", root, args.database_url, args.stored, args.posts)
                    continue
                from tests.postgres_server import PostgresServer

                pg_dir = Path(tempfile.mkdtemp(prefix="blockio-pg-bench-"))
                server = PostgresServer(pg_dir).start()
                try:
                    results[engine] = run_engine("PostgreSQL", root, server.new_database(), args.stored, args.posts)
                finally:
                    server.stop()
                    import shutil

                    shutil.rmtree(pg_dir, ignore_errors=True)
            else:
                raise SystemExit(f"unknown engine {engine!r}: sqlite or postgres")
    return 0 if all(r["median"] <= TARGET_MS for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
