"""Fixtures of the blockio tests: a small catalogued store, the app, a client, a live server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from blockio.serving.app import create_app
from precomputed.ingest import IngestOptions, ingest

SERVED_SHAPE_ZYX = (24, 80, 100)


@pytest.fixture(scope="session")
def served_volume() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 60000, size=SERVED_SHAPE_ZYX, dtype=np.uint16)


@pytest.fixture(scope="session")
def served_root(tmp_path_factory: pytest.TempPathFactory, served_volume: np.ndarray) -> Path:
    """A root with dataset 'v' (uint16) and 'g' (gzip-compressed precomputed chunks)."""
    tmp = tmp_path_factory.mktemp("served")
    np.save(tmp / "v.npy", served_volume)
    opts = IngestOptions(voxel_size=(4, 4, 40), chunk_size=(32, 32, 16), progress=False, workers=1)
    ingest(tmp / "v.npy", tmp / "root", "v", opts)
    ingest(tmp / "v.npy", tmp / "root", "g", IngestOptions(voxel_size=(4, 4, 40), chunk_size=(32, 32, 16), progress=False, workers=1, compress="gzip"))
    return tmp / "root"


@pytest.fixture
def app(served_root: Path) -> Flask:
    return create_app({"BLOCKIO_ROOT": str(served_root), "TESTING": True})
