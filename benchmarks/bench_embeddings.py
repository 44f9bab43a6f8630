"""k-NN over a million vectors in both index engines, and ``blockio embed`` against its model alone.

    python benchmarks/bench_embeddings.py                     # 1,000,000 x 64-d, 30 queries, the embed run on a 512 x 512 x 128 volume
    python benchmarks/bench_embeddings.py --n 100000 --volume 256,256,64   # a quick run

Search. ``--n`` vectors of ``--dim`` dimensions, drawn from a mixture of
2,000 Gaussian clusters (embeddings of real data are clustered; on
structureless i.i.d. noise an IVF index needs far more probes, see
``--data noise``). The anchor, in the same run, is numpy's brute force
(``|x|^2 - 2 x.q`` with the norms precomputed, then ``argpartition``).
Measured: sqlite-vec's exact scan (goal at most 50 ms; its answers are
checked equal to numpy's) and LanceDB with its IVF_FLAT index at the default
probes (goal at most 10 ms at recall@10 of at least 0.95 against exact).
Medians of ``--queries`` queries, each a stored vector plus noise.

Embed. ``blockio embed`` (the default feature model, 32^3 cells, Dask
threads, Zarr + SQLite index + catalog) on a synthetic EM volume, against
the same model called over the same windows in one loop, reading the
windows with ``Store.read_block`` as the run does (goal: at least 0.8x).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _data(n: int, dim: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.standard_normal((n, dim), dtype=np.float32)
    centres = rng.standard_normal((2000, dim), dtype=np.float32) * 3
    return (centres[rng.integers(0, 2000, n)] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def _median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def bench_search(args: argparse.Namespace, folder: Path) -> None:
    from blockio.embeddings.lance_index import LanceIndex
    from blockio.embeddings.rows import Rows
    from blockio.embeddings.sqlite_index import SqliteIndex

    rng = np.random.default_rng(0)
    x = _data(args.n, args.dim, args.data, rng)
    queries = x[rng.integers(0, args.n, args.queries)] + 0.3 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    norms = (x.astype(np.float32) ** 2).sum(axis=1)
    exact, t_numpy = [], []
    for q in queries:
        t = time.perf_counter()
        d = norms - 2 * (x @ q)
        top = np.argpartition(d, 10)[:10]
        top = top[np.argsort(d[top])]
        t_numpy.append(time.perf_counter() - t)
        exact.append(set(top.tolist()))
    anchor = _median_ms(t_numpy)
    print(f"{args.n:,} x {args.dim}-d ({args.data}), k=10, median of {args.queries} queries")
    print(f"  numpy brute force (anchor)      {anchor:8.2f} ms")
    rows = Rows.build(np.arange(args.n), x)

    t = time.perf_counter()
    sqlite = SqliteIndex(folder / "index.sqlite", "bench", dim=args.dim)
    for lo in range(0, args.n, 100_000):
        sqlite.add(rows.take(np.arange(lo, min(lo + 100_000, args.n))))
    built = time.perf_counter() - t
    sqlite.knn(queries[0], 10)  # the file into the page cache
    times, same = [], 0
    for q, want in zip(queries, exact):
        t = time.perf_counter()
        hits = sqlite.knn(q, 10)
        times.append(time.perf_counter() - t)
        same += {h.key for h in hits} == want
    ms = _median_ms(times)
    print(f"  sqlite-vec exact                {ms:8.2f} ms  {ms / anchor:5.2f}x numpy  (goal <= 50 ms; {same}/{len(queries)} answers equal numpy's; {built:.0f} s to add)")

    t = time.perf_counter()
    lance = LanceIndex(str(folder / "index.lance"), "bench", dim=args.dim)
    lance.add(rows)
    added = time.perf_counter() - t
    t = time.perf_counter()
    lance.build_ann()
    indexed = time.perf_counter() - t
    for nprobes in sorted({lance.nprobes, 2 * lance.nprobes}):
        lance.nprobes = nprobes
        lance.knn(queries[0], 10)
        times, recall = [], []
        for q, want in zip(queries, exact):
            t = time.perf_counter()
            hits = lance.knn(q, 10)
            times.append(time.perf_counter() - t)
            recall.append(len({h.key for h in hits} & want) / 10)
        ms = _median_ms(times)
        print(f"  LanceDB IVF_FLAT nprobes={nprobes:<4}    {ms:8.2f} ms  {ms / anchor:5.2f}x numpy  recall@10 {np.mean(recall):.3f}  (goal <= 10 ms at >= 0.95; {added:.0f} s to add, {indexed:.0f} s to index)")


def bench_embed(args: argparse.Namespace, folder: Path) -> None:
    from blockio.embeddings.models import multiscale_features
    from blockio.embeddings.plan import EmbedPlan
    from blockio.embeddings.run import run_embedding
    from blockio.store import Store
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    shape = tuple(int(v) for v in args.volume.split(","))
    np.save(folder / "em.npy", make_em_volume(shape, seed=0).image)  # type: ignore[arg-type]
    root = folder / "root"
    ingest(folder / "em.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(64, 64, 64), progress=False))
    t = time.perf_counter()
    entry = run_embedding(root, "em", name="bench", cell=(32, 32, 32), block=(128, 128, 128), progress=False)
    embed_s = time.perf_counter() - t
    store = Store(root, cache_bytes=0)
    record = store.info("em")
    halo = (multiscale_features.halo,) * 3
    plan = EmbedPlan(str(root), "em", "x", "", "", "", shape, (32, 32, 32), (128, 128, 128), halo, 0, "zscore", None, (8.0, 8.0, 40.0), (1.0, 1.0, 1.0))  # type: ignore[arg-type]
    t = time.perf_counter()
    for i in range(plan.tasks):
        win = plan.window(i)
        block = store.read_block("em", win.start, win.size, boundary="reflect", normalize="zscore", dtype=np.float32)
        multiscale_features(block[np.newaxis], cell=(32, 32, 32), voxel_size=tuple(record["voxel_size"]))
    alone_s = time.perf_counter() - t
    print(f"blockio embed on {list(shape)} (x, y, z), {entry['count']} cells of 32^3, {plan.tasks} tasks")
    print(f"  model alone over the same windows (anchor)  {alone_s:7.2f} s")
    print(f"  blockio embed (Dask, Zarr, index, catalog)  {embed_s:7.2f} s  speed {alone_s / embed_s:.2f}x the model alone (goal >= 0.8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--data", choices=("clusters", "noise"), default="clusters")
    parser.add_argument("--volume", default="512,512,128", help="x,y,z of the embed run's volume")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-embeddings-"))
    try:
        if not args.skip_search:
            bench_search(args, folder)
        if not args.skip_embed:
            bench_embed(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
