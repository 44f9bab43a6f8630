"""Fixtures of the serving tests: a root with an empty segmentation layer to PUT blocks into, a client that may write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.serving.app import create_app
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

TOKEN = "s3cret"
"""The write token of ``wclient``."""
WRITE_SHAPE_ZYX = (16, 64, 96)


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as a ``.npy`` body."""
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def make_write_root(root: Path, folder: Path) -> Path:
    """A root with dataset 'v' (zeros, 96 x 64 x 16 voxels in 32 x 32 x 16 chunks) and an empty unsharded layer 'pred'; the source goes in ``folder``."""
    np.save(folder / "v.npy", np.zeros(WRITE_SHAPE_ZYX, dtype=np.uint8))
    ingest(folder / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(root, "v", "pred", np.zeros(WRITE_SHAPE_ZYX, dtype=np.uint32), provenance={"model": "test"}, meshes=False)
    return root


@pytest.fixture
def seg_root(tmp_path: Path) -> Path:
    return make_write_root(tmp_path / "root", tmp_path)


@pytest.fixture
def wclient(seg_root: Path) -> FlaskClient:
    """A client of an app on ``seg_root`` whose write token is ``TOKEN``."""
    return create_app({"BLOCKIO_ROOT": str(seg_root), "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()
