"""Cold block reads from S3: ours against TensorStore's s3 driver and CloudVolume.download, one moto server, one run.

    python benchmarks/bench_remote.py [--size 384] [--block 128] [--count 20]
    py-spy record -f raw -o remote.txt -- python benchmarks/bench_remote.py --only-ours   # where our time goes

Starts moto's S3 server in a process of its own on a free loopback port (so
its Python does not share a GIL with the readers), ingests a synthetic uint8
volume (size^3, 64^3 chunks) locally, copies the root into a bucket through
``precomputed.storage``, then reads unaligned 128^3 blocks at random offsets
with every cache off (each block touches 3 x 3 x 3 = 27 chunks):

* blockio ``read_block`` on the precomputed layer and on the OME-Zarr;
* TensorStore ``zarr3`` on our OME-Zarr and ``neuroglancer_precomputed`` on
  our layer, both over its ``s3`` kvstore (``endpoint``, environment credentials);
* ``CloudVolume.download`` on our precomputed layer.

Each reader opens its layer once beforehand (metadata read), so the time is
the chunk traffic and decoding. Prints ms per block (median of the repeats,
the same offsets for every reader) and ratios to the anchors.
``--only-ours`` skips the anchors and reads our cold blocks for a while
(every fetch thread shows in py-spy's profile, which pyinstrument's would not).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Xyz = tuple[int, int, int]


CPU: dict[str, float] = {}


def timeit(fn: Callable[[Xyz], object], offsets: list[Xyz], repeat: int = 3, name: str = "") -> float:
    """Median over repeats of the mean ms per call (this process's CPU ms per call in ``CPU[name]``)."""
    runs, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for off in offsets:
            fn(off)
        runs.append((time.perf_counter() - t0) / len(offsets) * 1e3)
        cpu.append((time.process_time() - c0) / len(offsets) * 1e3)
    CPU[name] = statistics.median(cpu)
    return statistics.median(runs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto's S3 server did not start")


def build(tmp: Path, size: int) -> Path:
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    vol = make_em_volume((size, size, size), voxel_size=(8, 8, 8), seed=2).image
    np.save(tmp / "src.npy", vol)
    ingest(tmp / "src.npy", tmp / "root", "bench", IngestOptions(voxel_size=(8, 8, 8), progress=False))
    return tmp / "root"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--only-ours", action="store_true", help="no anchors: read our cold blocks for ~10 s, to profile")
    args = ap.parse_args()

    proc, endpoint = start_moto()
    try:
        os.environ.update(AWS_ENDPOINT_URL_S3=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        os.environ.pop("AWS_SESSION_TOKEN", None)
        run(args, endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(args: argparse.Namespace, endpoint: str) -> None:
    import boto3
    import tensorstore as ts
    from cloudvolume import CloudVolume

    from blockio.store import Store
    from precomputed.storage import open_root

    local = build(Path(tempfile.mkdtemp(prefix="blockio-bench-remote-")), args.size)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-remote")
    url = "s3://bench-remote/root"
    src, dst = open_root(local), open_root(url)
    keys = list(src.list(""))
    t0 = time.perf_counter()
    dst.put_many({k: src.get(k) or b"" for k in keys})
    print(f"copied {len(keys)} files into {url} at {endpoint} in {time.perf_counter() - t0:.1f} s")

    b = args.block
    rng = np.random.default_rng(0)
    offsets: list[Xyz] = []
    while len(offsets) < args.count:  # unaligned on every axis: 27 chunks of 64^3 per block
        o = tuple(int(v) for v in rng.integers(1, args.size - b, 3))
        if all(v % 64 for v in o):
            offsets.append(o)  # type: ignore[arg-type]
    print(f"{args.count} cold unaligned {b}^3 uint8 blocks ({b**3 / 2**20:.1f} MiB, 27 chunks each) from a {args.size}^3 volume on moto S3")

    store = Store(url, cache_bytes=0)
    store.read_block("bench", (0, 0, 0), (8, 8, 8))
    store.read_block("bench", (0, 0, 0), (8, 8, 8), source="zarr")
    kv = {"driver": "s3", "bucket": "bench-remote", "endpoint": endpoint, "aws_region": "us-east-1", "aws_credentials": {"type": "environment"}}
    nocache = {"cache_pool": {"total_bytes_limit": 0}}
    ts_zarr = ts.open({"driver": "zarr3", "kvstore": {**kv, "path": "root/zarr/bench.zarr/0/"}, "context": nocache}).result()
    ts_pre = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {**kv, "path": "root/precomputed/bench/image/"}, "context": nocache}).result()
    cv = CloudVolume(dst.url_for("precomputed/bench/image"), progress=False, fill_missing=False)

    def ours(source: str) -> Callable[[Xyz], object]:
        return lambda o: store.read_block("bench", o, (b, b, b), source=source)

    if args.only_ours:
        end = time.perf_counter() + 10
        while time.perf_counter() < end:
            print(f"blockio precomputed {timeit(ours('precomputed'), offsets, repeat=1):7.2f} ms")
        return

    ref = store.read_block("bench", offsets[0], (b, b, b))
    o = offsets[0]
    assert np.array_equal(ref, ts_zarr[o[2] : o[2] + b, o[1] : o[1] + b, o[0] : o[0] + b].read().result())  # noqa: S101
    assert np.array_equal(ref, np.asarray(cv.download(_bbox(o, b)))[..., 0].T)  # noqa: S101

    t_pre = timeit(ours("precomputed"), offsets, name="pre")
    t_zarr = timeit(ours("zarr"), offsets, name="zarr")
    t_tsz = timeit(lambda o: ts_zarr[o[2] : o[2] + b, o[1] : o[1] + b, o[0] : o[0] + b].read().result(), offsets, name="tsz")
    t_tsp = timeit(lambda o: ts_pre[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b].read().result(), offsets, name="tsp")
    t_cv = timeit(lambda o: cv.download(_bbox(o, b)), offsets, name="cv")
    print(f"(reader CPU ms per block in this process in brackets; moto's server runs in its own process on {os.cpu_count()} cores)")
    print(f"blockio precomputed     {t_pre:7.2f} ms [{CPU['pre']:6.1f}]")
    print(f"blockio OME-Zarr        {t_zarr:7.2f} ms [{CPU['zarr']:6.1f}]")
    print(f"TensorStore zarr3       {t_tsz:7.2f} ms [{CPU['tsz']:6.1f}]   ours/TS: precomputed {t_pre / t_tsz:.2f}x, OME-Zarr {t_zarr / t_tsz:.2f}x (goal <= 1.2)")
    print(f"TensorStore precomputed {t_tsp:7.2f} ms [{CPU['tsp']:6.1f}]   ours/TS precomputed {t_pre / t_tsp:.2f}x")
    print(f"CloudVolume.download    {t_cv:7.2f} ms [{CPU['cv']:6.1f}]   CloudVolume/ours {t_cv / t_pre:.1f}x faster (goal >= 3)")



def _bbox(o: Xyz, b: int) -> object:
    from cloudvolume import Bbox

    return Bbox(o, tuple(v + b for v in o))


if __name__ == "__main__":
    main()
