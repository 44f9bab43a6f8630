"""SegmentationOptions: write_segmentation's options as one frozen object, or as keywords."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from precomputed import SegmentationOptions
from precomputed.errors import InvalidOption
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.segmentation_options import with_overrides


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("segopts")
    np.save(base / "v.npy", np.zeros((16, 32, 32), np.uint8))
    ingest(base / "v.npy", base / "root", "v", IngestOptions(chunk_size=(16, 16, 16), progress=False, workers=1))
    return base / "root"


def test_options_object_and_keywords_write_the_same_layer(template: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(template, root)
    labels = np.zeros((8, 8, 8), np.uint32)
    labels[2:6, 2:6, 2:6] = 4
    options = SegmentationOptions(offset=(16, 8, 4), meshes=False, class_names={4: "cell"}, provenance={"model": "m"})
    a = write_segmentation(root, "v", "a", labels, options=options)
    b = write_segmentation(root, "v", "b", labels, offset=(16, 8, 4), meshes=False, class_names={4: "cell"}, provenance={"model": "m"})
    c = write_segmentation(root, "v", "c", labels, options=options, meshes=True)  # a keyword replaces a field
    assert a["provenance"] == b["provenance"] == {"model": "m"} and "mesh" not in a and "mesh" not in b and c["mesh"] == "mesh"
    assert [(root / r["path"] / "segment_properties/info").read_text() for r in (a, b)][0] == (root / b["path"] / "segment_properties/info").read_text()


def test_options_are_checked_and_frozen() -> None:
    with pytest.raises(InvalidOption, match="mip 0"):
        SegmentationOptions(mip=1)
    with pytest.raises(InvalidOption, match="provenance must be a dict"):
        SegmentationOptions(provenance=[1])  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SegmentationOptions().meshes = False  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword arguments: mesh"):
        with_overrides(None, {"mesh": False})
