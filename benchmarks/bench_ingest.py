"""Ingest throughput and peak memory, against CloudVolume alone in the same run.

    python benchmarks/bench_ingest.py --sizes 1            # throughput + anchors
    python benchmarks/bench_ingest.py --sizes 1,2,4,8 --no-anchors   # memory vs volume size

For each size a uint16 TIFF stack of 1024x1024 slices is written to the work
folder (EM-like texture tiled from the synthetic generator), then ingested by
``blockio ingest`` in a subprocess while the RSS of its whole process tree
is sampled every 20 ms. Anchors, on the 1 GiB array held in memory:
CloudVolume's own whole-volume write at raw encoding, uncompressed and with
its default gzip. Reports MB/s of source data and ratios.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

SLICE = 1024  # x = y


def make_stack(folder: Path, gib: float) -> tuple[Path, int]:
    from precomputed.synthetic import make_em_volume

    nz = int(gib * (1 << 30) / (SLICE * SLICE * 2))
    stack = folder / f"stack-{gib:g}g"
    if stack.exists() and len(list(stack.glob("*.tif"))) == nz:
        return stack, nz
    shutil.rmtree(stack, ignore_errors=True)
    stack.mkdir(parents=True)
    tile = make_em_volume((512, 512, 32), seed=1).image.astype(np.uint16) * 64
    rng = np.random.default_rng(0)
    for z in range(nz):
        plane = np.tile(tile[z % tile.shape[0]], (2, 2))
        plane += rng.integers(0, 64, size=plane.shape, dtype=np.uint16)
        tifffile.imwrite(stack / f"z{z:05d}.tif", plane, resolution=(1e7 / 8, 1e7 / 8), resolutionunit="CENTIMETER")
    return stack, nz


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_ingest(stack: Path, root: Path, extra: list[str]) -> tuple[float, int]:
    shutil.rmtree(root, ignore_errors=True)
    cmd = [sys.executable, "-m", "blockio.cli", "ingest", str(stack), "--id", "bench", "--root", str(root), "--voxel-size", "8,8,40", "--quiet", *extra]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed with {proc.returncode}")
    return elapsed, peak


def anchors(stack: Path, nz: int, work: Path) -> dict[str, float]:
    from cloudvolume import CloudVolume

    vol = np.empty((nz, SLICE, SLICE), dtype=np.uint16)
    for z, f in enumerate(sorted(stack.glob("*.tif"))):
        vol[z] = tifffile.imread(f)
    out = {}
    for name, compress in (("cloudvolume raw, no compression", False), ("cloudvolume raw, default gzip", None)):
        path = work / f"anchor-{compress}"
        shutil.rmtree(path, ignore_errors=True)
        info = CloudVolume.create_new_info(1, "image", "uint16", "raw", [8, 8, 40], [0, 0, 0], [SLICE, SLICE, nz], chunk_size=[64, 64, 64])
        cv = CloudVolume(f"file://{path}", info=info, compress=compress, progress=False)
        cv.commit_info()
        t0 = time.perf_counter()
        cv[:, :, :] = vol.T
        out[name] = vol.nbytes / (time.perf_counter() - t0) / 1e6
        shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1", help="comma-separated GiB sizes (default 1)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder; needs ~3.5x the largest size free)")
    ap.add_argument("--no-anchors", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated stacks")
    ap.add_argument("ingest_args", nargs="*", help="extra arguments for blockio ingest (after --)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="blockio-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}; cores: {psutil.cpu_count()}")
    rows = []
    for gib in [float(s) for s in args.sizes.split(",")]:
        stack, nz = make_stack(work, gib)
        nbytes = nz * SLICE * SLICE * 2
        elapsed, peak = run_ingest(stack, work / "root", args.ingest_args)
        mbs = nbytes / elapsed / 1e6
        rows.append((gib, mbs, peak))
        print(f"ingest {gib:g} GiB ({SLICE}x{SLICE}x{nz} uint16 TIFF stack, both stores, full pyramid, stats): "
              f"{elapsed:.1f} s, {mbs:.0f} MB/s, peak RSS of the process tree {peak / (1 << 30):.2f} GiB", flush=True)
        shutil.rmtree(work / "root", ignore_errors=True)
        if not args.no_anchors and gib == min(float(s) for s in args.sizes.split(",")):
            for name, anchor in anchors(stack, nz, work).items():
                print(f"  anchor {name}: {anchor:.0f} MB/s; ingest / anchor = {mbs / anchor:.2f}x", flush=True)
        if not args.keep:
            shutil.rmtree(stack, ignore_errors=True)
    if len(rows) > 1:
        print("peak RSS by input size: " + ", ".join(f"{g:g} GiB -> {p / (1 << 30):.2f} GiB" for g, _, p in rows))


if __name__ == "__main__":
    main()
