"""Sharded against unsharded precomputed layers: objects, ingest time, cold block reads, in one run.

    python benchmarks/bench_shards.py [--size 512] [--voxel-size 8,8,8] [--block 128] [--blocks 20]

Ingests one synthetic uint8 EM-like volume (size^3) twice into a temporary
root, once unsharded (the anchor) and once with ``shard=True``, both with the
default 64^3 chunks and 64 MiB tasks, then reads the same random unaligned
block^3 blocks from each, cold: a new Store per block (no chunk cache, no
cached shard index), the OS page cache warm for both. TensorStore's cold
reads of both layers (a new handle per block, no cache pool) are a second
anchor. Prints the figures and the ratios sharded / unsharded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def count_objects(layer: Path) -> int:
    """Files of a layer's scale folders (chunks or shards), info and checksum manifests aside."""
    return sum(1 for p in layer.iterdir() if p.is_dir() and p.name != "checksums" for _ in p.iterdir())


def cold_store_ms(root: Path, dataset: str, offsets: list[tuple[int, int, int]], block: int) -> float:
    from blockio.store import Store

    times = []
    for off in offsets:
        store = Store(root, cache_bytes=0)
        t0 = time.perf_counter()
        store.read_block(dataset, off, (block, block, block))
        times.append((time.perf_counter() - t0) * 1e3)
        store.close()
    return statistics.median(times)


def cold_tensorstore_ms(layer: Path, offsets: list[tuple[int, int, int]], block: int) -> float:
    import tensorstore as ts

    times = []
    for x, y, z in offsets:
        t0 = time.perf_counter()
        arr = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "scale_index": 0}).result()
        arr[x : x + block, y : y + block, z : z + block].read().result()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--voxel-size", default="8,8,8", help="x,y,z nm; 4,4,40 gives the anisotropic 2x2x1 pyramid")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=20)
    args = ap.parse_args()

    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    voxel = tuple(float(v) for v in args.voxel_size.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vol = make_em_volume((args.size, args.size, args.size), voxel_size=voxel, seed=2).image  # type: ignore[arg-type]
        np.save(base / "src.npy", vol)
        root = base / "root"
        seconds = {}
        for name, shard in (("plain", False), ("sharded", True)):
            t0 = time.perf_counter()
            ingest(base / "src.npy", root, name, IngestOptions(voxel_size=voxel, progress=False, shard=shard))  # type: ignore[arg-type]
            seconds[name] = time.perf_counter() - t0
        objects = {name: count_objects(root / "precomputed" / name / "image") for name in seconds}
        rng = np.random.default_rng(4)
        hi = args.size - args.block
        offsets = [tuple(int(v) for v in rng.integers(0, hi + 1, size=3)) for _ in range(args.blocks)]
        ours = {name: cold_store_ms(root, name, offsets, args.block) for name in seconds}  # type: ignore[arg-type]
        anchor = {name: cold_tensorstore_ms(root / "precomputed" / name / "image", offsets, args.block) for name in seconds}  # type: ignore[arg-type]

    print(f"volume {args.size}^3 uint8, voxel size {voxel} nm, 64^3 chunks, cold unaligned {args.block}^3 blocks (median of {args.blocks})")
    print(f"{'':24}{'unsharded':>12}{'sharded':>12}{'sharded/unsharded':>20}")
    print(f"{'objects (all mips)':24}{objects['plain']:>12}{objects['sharded']:>12}{objects['sharded'] / objects['plain']:>20.3f}")
    print(f"{'ingest s':24}{seconds['plain']:>12.2f}{seconds['sharded']:>12.2f}{seconds['sharded'] / seconds['plain']:>20.2f}")
    print(f"{'cold block ms (Store)':24}{ours['plain']:>12.1f}{ours['sharded']:>12.1f}{ours['sharded'] / ours['plain']:>20.2f}")
    print(f"{'cold block ms (TS)':24}{anchor['plain']:>12.1f}{anchor['sharded']:>12.1f}{anchor['sharded'] / anchor['plain']:>20.2f}")
    print(f"{'Store / TensorStore':24}{ours['plain'] / anchor['plain']:>12.2f}{ours['sharded'] / anchor['sharded']:>12.2f}")


if __name__ == "__main__":
    main()
