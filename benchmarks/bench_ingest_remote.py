"""Ingest into S3 against CloudVolume's own whole-volume upload, in the same run, on one local moto server.

    python benchmarks/bench_ingest_remote.py                 # 1 GiB uint16
    python benchmarks/bench_ingest_remote.py --size 0.125    # a quick run

A uint16 volume (EM-like texture tiled from the synthetic generator, plus
noise) is saved as ``.npy``; moto's S3 server runs in a process of its own on
a free loopback port. Then, in this process:

- **blockio**: ``precomputed.ingest.ingest`` of the ``.npy`` into
  ``s3://bench/blockio`` (64^3 chunks, raw uncompressed precomputed chunks,
  the whole pyramid in both stores, statistics, checksums, the catalog);
- **anchor**: ``CloudVolume(...).commit_info()`` and ``vol[:, :, :] = array``
  of the same array held in memory, same chunk size and encoding (raw,
  uncompressed), mip 0 only, into ``s3://bench/cloudvolume``.

Prints seconds, MB/s of source data and the ratio anchor time / blockio time
(>= 1 means blockio is as fast as the anchor).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SLICE = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_volume(path: Path, gib: float) -> np.ndarray:
    from precomputed.synthetic import make_em_volume

    nz = max(8, int(gib * (1 << 30) / (SLICE * SLICE * 2)))
    tile = make_em_volume((512, 512, 32), seed=1).image.astype(np.uint16) * 64
    rng = np.random.default_rng(0)
    vol = np.empty((nz, SLICE, SLICE), dtype=np.uint16)
    for z in range(nz):
        vol[z] = np.tile(tile[z % tile.shape[0]], (2, 2)) + rng.integers(0, 64, size=(SLICE, SLICE), dtype=np.uint16)
    np.save(path, vol)
    return vol


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto's server did not start")


def anchor(vol: np.ndarray, url: str) -> float:
    from cloudvolume import CloudVolume

    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint16", encoding="raw", resolution=[8, 8, 40], voxel_offset=[0, 0, 0], volume_size=list(vol.shape[::-1]), chunk_size=[64, 64, 64]
    )
    started = time.perf_counter()
    cv = CloudVolume(url, info=info, progress=False, compress=False, parallel=1)
    cv.commit_info()
    cv[:, :, :] = vol.T  # C-order [z, y, x] -> Fortran (x, y, z), no copy
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=float, default=1.0, help="volume size in GiB (default 1)")
    parser.add_argument("--workers", type=int, default=None, help="ingest workers (default: CPU count)")
    args = parser.parse_args()

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    moto = start_moto(port)
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory(prefix="bench-ingest-remote-") as tmp:
            src = Path(tmp) / "vol.npy"
            vol = make_volume(src, args.size)
            mb = vol.nbytes / 1e6
            print(f"volume (x, y, z) {list(vol.shape[::-1])} uint16, {mb:.0f} MB; moto at {endpoint}")

            from precomputed.ingest import IngestOptions, ingest
            from precomputed.storage import open_root

            open_root("s3://bench/cloudvolume")  # the credential guard for CloudVolume in this process
            t_anchor = anchor(vol, "s3://bench/cloudvolume")
            print(f"anchor  CloudVolume upload (mip 0, raw):         {t_anchor:7.1f} s  {mb / t_anchor:7.1f} MB/s")
            started = time.perf_counter()
            ingest(src, "s3://bench/blockio", "bench", IngestOptions(voxel_size=(8, 8, 40), progress=False, workers=args.workers))
            t_ours = time.perf_counter() - started
            print(f"blockio ingest (both stores, every mip, stats):  {t_ours:7.1f} s  {mb / t_ours:7.1f} MB/s")
            print(f"ratio (anchor time / blockio time): {t_anchor / t_ours:.2f}x  (goal >= 0.8x)")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
