"""Prediction layers: segmentation write and the inference runner, with anchors in the same run.

    python benchmarks/bench_predictions.py [--shape 512,512,128] [--workers 2]

On the synthetic demo volume (uint8 image, uint32 ground truth):

* segmentation write of the labels: CloudVolume's own whole-volume write at
  mip 0 (compressed_segmentation, no gzip) as the anchor; ours at mip 0 only,
  with the pyramid and properties, and with meshes too;
* ``run_inference`` with a threshold model (negligible cost), 128^3 blocks
  and a 16-voxel halo: the runner's own passes (predict, components, face
  union, relabel, write) and end to end, against reading the same haloed
  windows through the block API on the same number of workers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="512,512,128")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    from cloudvolume import CloudVolume

    import precomputed.segmentation as seg
    from blockio.inference.models import threshold_model
    from blockio.inference.plan import RunPlan
    from blockio.inference.run import run_inference
    from blockio.store import Store
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    base = Path(tempfile.mkdtemp(prefix="blockio-bench-"))
    synth = make_em_volume(shape, voxel_size=(8, 8, 40), seed=0)
    np.save(base / "img.npy", synth.image)
    root = base / "root"
    ingest(base / "img.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), progress=False, workers=args.workers))
    chunk = json.loads((root / "catalog.json").read_text())["datasets"]["em"]["chunk_size"]
    labels = np.ascontiguousarray(synth.labels)
    mb = labels.nbytes / 1e6
    print(f"volume {list(shape)} (x, y, z): labels {mb:.0f} MB uint32, image {synth.image.nbytes / 1e6:.0f} MB uint8, {args.workers} workers")

    info = CloudVolume.create_new_info(1, "segmentation", "uint32", "compressed_segmentation", [8, 8, 40], [0, 0, 0], list(shape), chunk_size=chunk)
    vol = CloudVolume(f"file://{base / 'cv'}", info=info, progress=False, compress=False)
    vol.commit_info()
    t = time.perf_counter()
    vol[:, :, :] = labels.T
    anchor = time.perf_counter() - t
    print(f"segmentation write: CloudVolume whole volume, mip 0: {mb / anchor:.0f} MB/s (anchor)")
    w = seg.SegmentationWriter.create(root, "em", "blocks")
    t = time.perf_counter()
    seg._write_array(w, labels, (0, 0, 0), None)
    dt = time.perf_counter() - t
    print(f"  ours, mip 0 blocks: {mb / dt:.0f} MB/s ({anchor / dt:.2f}x)")
    for meshes in (False, True):
        t = time.perf_counter()
        seg.write_segmentation(root, "em", f"full{int(meshes)}", labels, meshes=meshes, provenance={"bench": True}, workers=args.workers)
        dt = time.perf_counter() - t
        print(f"  ours, pyramid + properties{' + meshes' if meshes else ''}: {mb / dt:.1f} MB/s ({anchor / dt:.2f}x)")

    block, halo = (128, 128, 128), (16, 16, 16)
    run = RunPlan(str(root), "em", "x", None, "", "", shape, block, halo, 0, "percentile", 0.5, False)

    def read(i: int) -> int:
        win = run.window(i)
        return int(Store(root, cache_bytes=0).read_block("em", win.start, win.size, boundary="reflect", normalize="percentile").nbytes)

    t = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as ex:
        list(ex.map(read, range(run.tasks)))
    ta = time.perf_counter() - t
    img_mb = synth.image.nbytes / 1e6
    print(f"inference: reading the {run.tasks} haloed windows through the block API: {img_mb / ta:.0f} MB/s (anchor)")
    original = seg.SegmentationWriter.finalize
    spent: dict[str, float] = {}

    def timed(self, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = original(self, **kw)
        spent["finalize"] = time.perf_counter() - t0
        return out

    seg.SegmentationWriter.finalize = timed  # type: ignore[method-assign]
    for meshes in (False, True):
        t = time.perf_counter()
        run_inference(root, "em", threshold_model(0.5), f"t{int(meshes)}", block=block, overlap=halo, workers=args.workers, overwrite=True, meshes=meshes, progress=False)
        total = time.perf_counter() - t
        passes = total - spent["finalize"]
        print(f"  run_inference (threshold){' + meshes' if meshes else ''}: runner passes {img_mb / passes:.1f} MB/s ({ta / passes:.2f}x of the anchor), "
              f"end to end {img_mb / total:.1f} MB/s ({ta / total:.2f}x); the writer's finalize {spent['finalize']:.1f} s")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
