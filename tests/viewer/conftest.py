"""Fixtures of the viewer tests: a small demo-like root, the app with the review page, a live server."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

import viewer
from blockio.serving.app import create_app
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume

SHAPE_XYZ = (128, 128, 32)
VOXEL_SIZE = (8.0, 8.0, 40.0)


def merged_labels(labels: np.ndarray, pairs: int = 4) -> np.ndarray:
    """``labels`` with ``pairs`` pairs of ids merged (id 2k+1 takes 2k+2): a second 'model' for compare."""
    out = labels.copy()
    for k in range(pairs):
        out[out == 2 * k + 2] = 2 * k + 1
    return out


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with dataset 'demo' (synthetic EM, 128x128x32 voxels of 8x8x40 nm) and, when the
    segmentation writer exists, prediction layers 'pred' (the ground truth) and 'pred2' (a few ids merged)."""
    tmp = tmp_path_factory.mktemp("viewer")
    volume = make_em_volume(SHAPE_XYZ, voxel_size=VOXEL_SIZE, seed=3)
    np.save(tmp / "demo.npy", volume.image)
    root = tmp / "root"
    ingest(tmp / "demo.npy", root, "demo", IngestOptions(voxel_size=VOXEL_SIZE, chunk_size=(64, 64, 16), progress=False, workers=1))
    write_segmentation(root, "demo", "pred", volume.labels, provenance={"model": "ground truth", "note": "synthetic labels"})
    write_segmentation(root, "demo", "pred2", merged_labels(volume.labels), provenance={"model": "merged", "note": "four pairs merged"})
    return root


@pytest.fixture
def root_copy(demo_root: Path, tmp_path: Path) -> Path:
    """A private copy of the demo root, for tests that change the catalog or write reviews."""
    dest = tmp_path / "root"
    shutil.copytree(demo_root, dest, ignore=shutil.ignore_patterns(".cache", "reviews.json*", "review"))
    return dest


def make_app(root: Path, **config: Any) -> Flask:
    app = create_app({"BLOCKIO_ROOT": str(root), "TESTING": True, **config})
    viewer.init_app(app)
    return app


@pytest.fixture
def app(root_copy: Path) -> Flask:
    return make_app(root_copy)


def sign_in(app: Flask, client: FlaskClient, name: str = "rev", role: str = "reviewer") -> str:
    """Add a user and sign ``client`` in through the sign-in form; its CSRF token then goes with every request
    (``X-CSRF-Token``, as the page's script sends it). Returns the user's token."""
    token = app.extensions["blockio.users"].add(name, role)[1]
    form = client.get("/signin").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert found, "the sign-in form carries a CSRF token"
    resp = client.post("/signin", data={"csrf_token": found.group(1), "token": token, "next": "/"})
    assert resp.status_code == 303, resp.text
    client.environ_base["HTTP_X_CSRF_TOKEN"] = client.get("/session.json").get_json()["csrf_token"]
    return str(token)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client signed in as a reviewer (the page's verdict routes need one)."""
    signed_in = app.test_client()
    sign_in(app, signed_in)
    return signed_in
