"""Block reads: hot and cold, against CloudVolume and TensorStore in the same run.

    python benchmarks/bench_blocks.py [--root ROOT] [--size 512] [--block 128]

Ingests a synthetic uint8 volume (size^3, EM-like) unless ROOT already has a
dataset ``bench``, then times 128^3 block reads at random chunk-aligned and
unaligned offsets:

* hot: the same blocks again, served from the chunk cache; anchors:
  CloudVolume with ``lru_bytes`` and TensorStore with a ``cache_pool``;
* cold: cache off; anchors: ``CloudVolume.download`` and TensorStore without
  cache, on the precomputed layer; and on the OME-Zarr store, CloudVolume's
  zarr datasource (its 100 ms thread-queue poll) against ours.

Prints ms per block (median of the runs) and ratios ours / anchor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def timeit(fn: Callable[[tuple[int, int, int]], object], offsets: list[tuple[int, int, int]], repeat: int = 3) -> float:
    """Median over repeats of the mean ms per call."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for off in offsets:
            fn(off)
        runs.append((time.perf_counter() - t0) / len(offsets) * 1e3)
    return statistics.median(runs)


def ensure_dataset(root: Path, size: int) -> None:
    from blockio.store import Store

    if "bench" in Store(root).datasets() and (root / "precomputed/bench/image/checksums").is_dir():
        return
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    vol = make_em_volume((size, size, size), voxel_size=(8, 8, 8), seed=2).image
    root.parent.mkdir(parents=True, exist_ok=True)
    src = root.parent / "bench-src.npy"
    np.save(src, vol)
    ingest(src, root, "bench", IngestOptions(voxel_size=(8, 8, 8), progress=False, overwrite=True))
    src.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="blockio-bench-")) / "root"
    ensure_dataset(root, args.size)

    import tensorstore as ts
    from cloudvolume import CloudVolume

    from blockio.store import Store

    b = args.block
    rng = np.random.default_rng(0)
    hi = args.size - b
    offsets = [tuple(int(v) for v in rng.integers(0, hi + 1, 3)) for _ in range(args.count)]
    layer = root / "precomputed/bench/image"
    zarr_path = root / "zarr/bench.zarr"
    print(f"{args.count} blocks of {b}^3 uint8 ({b**3 / 2**20:.1f} MiB) from a {args.size}^3 volume, random offsets")

    def ours(store: Store, source: str = "precomputed") -> Callable[[tuple[int, int, int]], object]:
        return lambda o: store.read_block("bench", o, (b, b, b), source=source)

    # hot ---------------------------------------------------------------
    hot = Store(root)
    for o in offsets:
        hot.read_block("bench", o, (b, b, b))
    cv_lru = CloudVolume(f"file://{layer}", progress=False, lru_bytes=1 << 30, fill_missing=False)
    for o in offsets:
        cv_lru[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b]
    ts_hot = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "context": {"cache_pool": {"total_bytes_limit": 1 << 30}}, "recheck_cached_data": False}).result()
    for o in offsets:
        ts_hot[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b].read().result()
    in_ram = hot.read_block("bench", (0, 0, 0), (args.size, args.size, args.size))
    t_ours = timeit(ours(hot), offsets)
    t_np = timeit(lambda o: in_ram[o[2] : o[2] + b, o[1] : o[1] + b, o[0] : o[0] + b].copy(), offsets)
    t_cv = timeit(lambda o: cv_lru[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b], offsets)
    t_ts = timeit(lambda o: ts_hot[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b].read().result(), offsets)
    print(f"hot  : blockio {t_ours:6.2f} ms | numpy copy from RAM {t_np:6.2f} ms ({t_ours / t_np:.2f}x, goal <= 2) | CloudVolume lru_bytes {t_cv:6.2f} ms ({t_ours / t_cv:.2f}x) | TensorStore cache_pool {t_ts:6.2f} ms ({t_ours / t_ts:.2f}x)")

    # cold --------------------------------------------------------------
    cold = Store(root, cache_bytes=0)
    cv = CloudVolume(f"file://{layer}", progress=False, fill_missing=False)
    ts_cold = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "context": {"cache_pool": {"total_bytes_limit": 0}}}).result()
    ts_zarr = ts.open({"driver": "zarr3", "kvstore": f"file://{zarr_path}/0", "context": {"cache_pool": {"total_bytes_limit": 0}}}).result()
    plain_cv = CloudVolume(f"file://{layer}")  # as a user would open it
    t_ours = timeit(ours(cold), offsets)
    t_user = timeit(lambda o: plain_cv[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b], offsets)
    t_cv = timeit(lambda o: cv[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b], offsets)
    t_ts = timeit(lambda o: ts_cold[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b].read().result(), offsets)
    t_tsz = timeit(lambda o: ts_zarr[o[2] : o[2] + b, o[1] : o[1] + b, o[0] : o[0] + b].read().result(), offsets)
    print(f"cold : blockio {t_ours:6.2f} ms | CloudVolume(path) as a user opens it {t_user:6.2f} ms ({t_user / t_ours:.1f}x faster, goal >= 3) | "
          f"CloudVolume download, progress off {t_cv:6.2f} ms ({t_cv / t_ours:.1f}x) | TensorStore precomputed {t_ts:6.2f} ms ({t_ours / t_ts:.2f}x) | "
          f"TensorStore on our OME-Zarr {t_tsz:6.2f} ms ({t_ours / t_tsz:.2f}x, goal <= 1)   [page cache warm]")

    cvz = CloudVolume(f"zarr://file://{zarr_path}", progress=False, fill_missing=False)
    few = offsets[:10]
    t_ours = timeit(ours(cold, "zarr"), few)
    t_cv = timeit(lambda o: cvz[o[0] : o[0] + b, o[1] : o[1] + b, o[2] : o[2] + b], few, repeat=1)
    print(f"zarr : blockio {t_ours:6.2f} ms | CloudVolume zarr datasource {t_cv:6.2f} ms ({t_ours / t_cv:.3f}x)")

    # what integrity costs on the cold path: the same reads with the chunk checks
    # (length / structure and the checksum manifest) switched off, interleaved run by run
    from unittest import mock

    from blockio.layers.reader import LayerReader

    unchecked = Store(root, cache_bytes=0)
    with mock.patch.object(LayerReader, "_make_verifier", lambda self: None):
        unchecked.read_block("bench", offsets[0], (b, b, b))  # its reader opens without a verifier
    checked_runs, unchecked_runs = [], []
    for _ in range(5):
        checked_runs.append(timeit(ours(cold), offsets, repeat=1))
        unchecked_runs.append(timeit(ours(unchecked), offsets, repeat=1))
    t_on, t_off = statistics.median(checked_runs), statistics.median(unchecked_runs)
    print(f"check: cold with chunk checks + checksums {t_on:6.2f} ms | checks off {t_off:6.2f} ms ({t_on / t_off:.3f}x, goal <= 1.05)")
    print(f"cache: {hot.cache_stats()}")


if __name__ == "__main__":
    main()
