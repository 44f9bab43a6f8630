"""``blockio demo``: the whole product on data it makes itself.

1. A synthetic serial-section EM volume with ground-truth cells
   (:mod:`precomputed.synthetic`), written as a TIFF stack whose tags carry
   the voxel size, so ingest reads it from the files.
2. Ingest as dataset ``demo``.

Predictions and the review page join as they land; until then the demo exits
after ingest.
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np

__all__ = ["DEMO_ID", "run_demo"]

log = logging.getLogger(__name__)
DEMO_ID = "demo"
DEMO_VOXEL_SIZE = (8.0, 8.0, 40.0)


def run_demo(*, root: str, shape: tuple[int, int, int] = (512, 512, 128), seed: int = 0, serve: bool = True, progress: bool | None = None) -> int:
    """Make the demo data, ingest it; returns the exit status."""
    from precomputed.ingest import IngestOptions, ingest, local_root
    from precomputed.synthetic import make_em_volume, write_tiff_stack

    root_path = local_root(root)
    sources = root_path / "sources" / DEMO_ID
    t0 = time.monotonic()
    print(f"making a synthetic EM volume, shape (x, y, z) {list(shape)}, voxel size {list(DEMO_VOXEL_SIZE)} nm ...", flush=True)
    volume = make_em_volume(shape, voxel_size=DEMO_VOXEL_SIZE, seed=seed)
    if sources.exists():
        shutil.rmtree(sources)
    stack = sources / "tiff"
    write_tiff_stack(stack, volume.image, DEMO_VOXEL_SIZE)
    np.save(sources / "labels.npy", volume.labels)
    print(f"  wrote {volume.image.shape[0]} TIFF slices to {stack} ({time.monotonic() - t0:.1f} s)", flush=True)
    t1 = time.monotonic()
    record = ingest(str(stack), root_path, DEMO_ID, IngestOptions(overwrite=True, progress=progress, command="blockio demo"))
    mb = record["source"]["bytes"] / 1e6
    dt = time.monotonic() - t1
    print(f"  ingested '{DEMO_ID}': {len(record['mips'])} mips, voxel size {record['voxel_size']} nm "
          f"(from {record['provenance']['voxel_size']['source']}), {mb:.0f} MB in {dt:.1f} s ({mb / dt:.0f} MB/s)", flush=True)
    print(f"  OME-Zarr:    {root_path / record['stores']['zarr']}")
    print(f"  precomputed: {root_path / record['stores']['precomputed']}")
    print(f"  catalog:     {root_path / 'catalog.json'}   (blockio catalog show {DEMO_ID} --root {root})")
    if serve:
        print("the review page is not part of this release yet; nothing to serve")
    return 0
