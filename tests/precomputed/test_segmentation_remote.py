"""Segmentation layers written straight into s3:// and gs:// roots equal those written locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.catalog import Catalog
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import SegmentationWriter, write_segmentation
from precomputed.storage import open_root
from tests.cloud_servers import gcs_root, gcs_server, s3_root, s3_server  # noqa: F401
from tests.precomputed.test_ingest_remote import bucket_tree, local_tree

pytestmark = pytest.mark.cloud

OPTIONS = IngestOptions(chunk_size=(32, 32, 32), voxel_size=(8, 8, 40), task_bytes=4 << 20, progress=False, workers=2)


def _labels(shape_zyx: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.indices(shape_zyx)
    return (1 + (x // 40) + 10 * (y // 50) + 100 * (z // 8)).astype(np.uint32)


def _layer_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("path", "zarr", "version")}


@pytest.mark.parametrize("root_fixture", ["s3_root", "gcs_root"])
def test_write_segmentation_into_a_bucket_equals_local(request: pytest.FixtureRequest, root_fixture: str, tmp_path: Path) -> None:
    url = request.getfixturevalue(root_fixture)
    rng = np.random.default_rng(5)
    np.save(tmp_path / "v.npy", rng.integers(0, 255, size=(16, 100, 120), dtype=np.uint8))
    local_root = tmp_path / "local"
    ingest(tmp_path / "v.npy", local_root, "v", OPTIONS)
    ingest(tmp_path / "v.npy", url, "v", OPTIONS)
    labels = _labels((16, 100, 120))
    want = write_segmentation(local_root, "v", "pred", labels, provenance={"model": "test"})
    got = write_segmentation(url, "v", "pred", labels, provenance={"model": "test"})
    storage = open_root(url)
    assert got["path"].startswith("precomputed/v/pred~") and "/labels/pred~" in got["zarr"]
    assert _layer_fields(got) == _layer_fields(want)
    assert bucket_tree(storage, got["path"]) == local_tree(local_root, want["path"])
    assert bucket_tree(storage, got["zarr"]) == local_tree(local_root, want["zarr"])
    assert Catalog(url).get("v")["layers"]["pred"] == got
    assert not list(storage.list(".staging/"))
    # replacing the layer publishes the new prefixes and deletes the old ones
    again = write_segmentation(url, "v", "pred", labels + 1, provenance={"model": "test"}, overwrite=True)
    assert not list(storage.list(got["path"] + "/")) and not list(storage.list(got["zarr"] + "/"))
    group = Catalog(url).get("v")["stores"]["zarr"] + "/labels"
    import zarr

    from precomputed.zarr_store import StorageStore

    listed = zarr.open_group(StorageStore(storage, group), mode="r").attrs["ome"]["labels"]
    assert listed == [again["zarr"].rsplit("/", 1)[-1]]


def test_killed_finalize_in_s3_resumes(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    """A finalize that stopped after some tasks is finished by reopening the staged layer."""
    rng = np.random.default_rng(5)
    np.save(tmp_path / "v.npy", rng.integers(0, 255, size=(16, 100, 120), dtype=np.uint8))
    ingest(tmp_path / "v.npy", s3_root, "v", OPTIONS)
    labels = _labels((16, 100, 120))
    writer = SegmentationWriter.create(s3_root, "v", "pred")
    writer.write_block((0, 0, 0), labels)
    reopened = SegmentationWriter.open(s3_root, "v", "pred")
    assert reopened.layer_path == writer.layer_path
    layer = reopened.finalize(provenance={"model": "test"}, meshes=True)
    assert Catalog(s3_root).get("v")["layers"]["pred"] == layer
    assert any(k.endswith(":0") for k in open_root(s3_root).list(layer["path"] + "/mesh/"))
