"""Meshes of segmentation layers: every listed segment has one, even a segment too small to mesh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume

from precomputed.ingest import IngestOptions, ingest
from precomputed.meshes import EMPTY_FRAGMENT, empty_fragment_name
from precomputed.segmentation import write_segmentation

SHAPE_ZYX = (24, 80, 100)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    image = np.random.default_rng(0).integers(0, 255, SHAPE_ZYX).astype(np.uint8)
    np.save(tmp_path / "v.npy", image)
    root = tmp_path / "root"
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 32), progress=False, workers=2))
    return root


def _tiny_segments() -> np.ndarray:
    labels = np.zeros(SHAPE_ZYX, np.uint32)
    labels[2:20, 10:60, 10:60] = 1  # a cell with a real surface
    labels[5, 5, 5] = 2  # one voxel: 2x2x1 mode pooling drops it from mip 1
    labels[0, 0, 0] = 3  # one voxel in the volume's corner
    labels[7, 70, 90] = 4
    labels[10, 70, 63:65] = 5  # two voxels across the 64-voxel task seam
    labels[23, 79, 99] = 6  # the far corner
    return labels


def test_every_listed_segment_has_a_mesh(root: Path) -> None:
    layer = write_segmentation(root, "v", "pred", _tiny_segments(), provenance={"test": "tiny"})
    path = root / layer["path"]
    ids = [int(i) for i in json.loads((path / "segment_properties/info").read_text())["inline"]["ids"]]
    assert ids == [1, 2, 3, 4, 5, 6]
    vol = CloudVolume(f"file://{path}", progress=False)
    meshes = {segid: vol.mesh.get(segid) for segid in ids}  # raised for 2..6 before
    assert len(meshes[1].vertices) > 0 and len(meshes[1].faces) > 0
    for segid in (2, 3, 4, 6):
        assert len(meshes[segid].vertices) == 0 and len(meshes[segid].faces) == 0
        assert json.loads((path / f"mesh/{segid}:0").read_text()) == {"fragments": [empty_fragment_name(segid)]}
        assert (path / "mesh" / empty_fragment_name(segid)).read_bytes() == EMPTY_FRAGMENT
    assert set(vol.mesh.get(ids, fuse=False)) == set(ids)
    assert len(vol.mesh.get(ids).vertices) == len(meshes[1].vertices) + len(meshes[5].vertices)
    assert not (path / "mesh/0:0").exists()


def test_a_layer_of_only_tiny_segments(root: Path) -> None:
    labels = np.zeros(SHAPE_ZYX, np.uint32)
    labels[3, 3, 3] = 9
    layer = write_segmentation(root, "v", "dust", labels)
    mesh = CloudVolume(f"file://{root / layer['path']}", progress=False).mesh.get(9)
    assert len(mesh.vertices) == 0
