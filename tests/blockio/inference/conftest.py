"""Fixtures of the inference tests: a small catalogued root, a small disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from precomputed.ingest import IngestOptions, ingest
from precomputed.synthetic import make_em_volume

SMALL_SHAPE = (64, 64, 16)  # (x, y, z)


def make_small_root(path: Path) -> Path:
    """A root with dataset 'em': synthetic EM of 64 x 64 x 16 voxels in 16^3 chunks."""
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "image.npy", make_em_volume(SMALL_SHAPE, seed=1).image)
    root = path / "root"
    ingest(path / "image.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(16, 16, 16), progress=False, workers=1))
    return root
