"""Segmentation layers: both stores, the pyramid, properties, meshes, the record, resumption."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import dask
import numpy as np
import numpy.typing as npt
import pytest
import tensorstore as ts
import zarr
from cloudvolume import CloudVolume
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from precomputed.catalog import Catalog, record_errors
from precomputed.errors import (
    DatasetExists,
    DatasetNotFound,
    InvalidDatasetId,
    InvalidOption,
)
from precomputed.ingest import IngestOptions, ingest
from precomputed.pyramid import downsample_mode
from precomputed.segmentation import SegmentationWriter, write_segmentation

SHAPE_ZYX = (24, 80, 100)
VOXEL = (8, 8, 40)
SMALL_TASKS = 1 << 20  # pass-0 boxes of 64x64x24: four boxes, so meshes cross box seams


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("seg")
    root = base / "root"
    image = np.random.default_rng(0).integers(0, 255, SHAPE_ZYX).astype(np.uint8)
    np.save(base / "v.npy", image)
    options = IngestOptions(voxel_size=VOXEL, chunk_size=(32, 32, 32), progress=False, workers=2)
    ingest(base / "v.npy", root, "v", options)
    ingest(base / "v.npy", root, "w", options)
    return root


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(template, root)
    return root


def _labels(dtype: Any = np.uint32) -> npt.NDArray[Any]:
    z, y, x = np.mgrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    sphere = ((x - 50) * 8) ** 2 + ((y - 40) * 8) ** 2 + ((z - 12) * 40) ** 2 < 300**2
    labels = np.where(sphere, 7, 0).astype(dtype)
    labels[:, :, :10] = 3
    # speckled ids in a corner exercise the mode's ties and odd edges
    labels[:, 60:, 80:] = np.random.default_rng(1).integers(0, 4, (SHAPE_ZYX[0], 20, 20)) + 10
    return labels


def _pyramid(labels: npt.NDArray[Any], record: dict[str, Any]) -> list[npt.NDArray[Any]]:
    levels = [labels]
    for mip in record["mips"][1:]:
        levels.append(downsample_mode(levels[-1][None], tuple(mip["factor"]))[0])
    return levels


def _tensorstore(path: Path, mip: int) -> npt.NDArray[Any]:
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}", "scale_index": mip}).result()
    return np.asarray(store.read().result())[..., 0].T


def _cloudvolume(path: Path, mip: int) -> npt.NDArray[Any]:
    return np.asarray(CloudVolume(f"file://{path}", mip=mip, progress=False, fill_missing=True)[:, :, :])[..., 0].T


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _write_staged(root: Path, labels: npt.NDArray[Any], name: str = "pred", **kw: Any) -> SegmentationWriter:
    writer = SegmentationWriter.create(root, "v", name, **kw)
    writer.write_block((0, 0, 0), labels)  # the far end is the volume edge: aligned
    return writer


def test_stores_equal_labels_at_every_mip(store: Path) -> None:
    labels = _labels()
    layer = write_segmentation(store, "v", "pred", labels, provenance={"model": "unet"}, class_names={7: "cell"})
    record = Catalog(store).get("v")
    path = store / layer["path"]
    info = json.loads((path / "info").read_text())
    image_info = json.loads((store / "precomputed/v/image/info").read_text())
    assert info["type"] == "segmentation" and info["data_type"] == "uint32" and info["num_channels"] == 1
    assert info["mesh"] == "mesh" and info["segment_properties"] == "segment_properties"
    assert [(s["size"], s["resolution"], s["voxel_offset"]) for s in info["scales"]] == [(s["size"], s["resolution"], s["voxel_offset"]) for s in image_info["scales"]]
    assert all(s["encoding"] == "compressed_segmentation" and s["compressed_segmentation_block_size"] == [8, 8, 8] for s in info["scales"])
    for mip, want in enumerate(_pyramid(labels, record)):
        np.testing.assert_array_equal(_tensorstore(path, mip), want)
        np.testing.assert_array_equal(_cloudvolume(path, mip), want)
        np.testing.assert_array_equal(zarr.open_array(str(store / layer["zarr"] / str(mip)), mode="r")[...], want)


def test_labels_at_an_offset_leave_background(store: Path) -> None:
    part = _labels()[5:20, 10:50, 33:70]
    layer = write_segmentation(store, "v", "pred", part, offset=(33, 10, 5), meshes=False)
    want = np.zeros(SHAPE_ZYX, np.uint32)
    want[5:20, 10:50, 33:70] = part
    np.testing.assert_array_equal(_tensorstore(store / layer["path"], 0), want)
    assert "mesh" not in layer and not (store / layer["path"] / "mesh").exists()


def test_blocks_from_dask_tasks_equal_the_whole_array(store: Path, template: Path, tmp_path: Path) -> None:
    labels = _labels()
    writer = SegmentationWriter.create(store, "v", "pred")
    assert writer.chunk_size == (32, 32, 32) and writer.shape_xyz == (100, 80, 24)
    assert writer.bounds.stop == (100, 80, 24) and len(writer.mips) == 3

    def put(w: SegmentationWriter, x: int, y: int) -> None:
        block = labels[:, y : y + 32, x : x + 32]
        (w if x % 64 else SegmentationWriter.open(store, "v", "pred")).write_block((x, y, 0), block)

    tasks = [dask.delayed(put)(pickle.loads(pickle.dumps(writer)), x, y) for x in range(0, 100, 32) for y in range(0, 80, 32)]
    dask.compute(*tasks, scheduler="threads", num_workers=4)
    writer.finalize(provenance={}, task_bytes=SMALL_TASKS, workers=3)

    other = tmp_path / "other"
    shutil.copytree(template, other)
    _write_staged(other, labels).finalize(provenance={}, task_bytes=SMALL_TASKS, scheduler="sync")
    assert _files(store / "precomputed/v/pred") == _files(other / "precomputed/v/pred")
    assert _files(store / "zarr/v.zarr/labels") == _files(other / "zarr/v.zarr/labels")


def test_uint64_ids_above_2_32(store: Path) -> None:
    labels = _labels(np.uint64)
    labels[labels == 7] = 2**40 + 7
    layer = write_segmentation(store, "v", "big", labels, dtype="uint64", meshes=False)
    assert layer["dtype"] == "uint64"
    np.testing.assert_array_equal(_tensorstore(store / layer["path"], 0), labels)
    props = json.loads((store / layer["path"] / "segment_properties/info").read_text())
    assert str(2**40 + 7) in props["inline"]["ids"]


def test_segment_properties_count_every_id(store: Path) -> None:
    labels = _labels()
    writer = _write_staged(store, labels)
    layer = writer.finalize(provenance={}, class_names={7: "cell", 99: "absent"}, meshes=False, task_bytes=SMALL_TASKS)
    props = json.loads((store / layer["path"] / "segment_properties/info").read_text())
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert props["@type"] == "neuroglancer_segment_properties"
    inline = props["inline"]
    assert inline["ids"] == [str(i) for i in ids] and layer["segments"] == len(ids)
    by_id = {p["id"]: p for p in inline["properties"]}
    assert by_id["label"]["type"] == "label" and by_id["voxels"]["type"] == "number" and by_id["voxels"]["data_type"] == "uint32"
    assert by_id["voxels"]["values"] == counts.tolist()
    assert by_id["label"]["values"] == [("cell" if i == 7 else f"segment {i}") for i in ids]


def _components(vertices: npt.NDArray[Any], faces: npt.NDArray[Any]) -> int:
    unique, inverse = np.unique(np.round(vertices, 2), axis=0, return_inverse=True)
    f = inverse.ravel()[faces]
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(unique), len(unique)))
    return int(connected_components(graph, directed=False)[0])


def test_meshes_are_whole_across_task_boxes(store: Path) -> None:
    labels = _labels()
    layer = _write_staged(store, labels).finalize(provenance={}, task_bytes=SMALL_TASKS)
    path = store / layer["path"]
    assert json.loads((path / "mesh/info").read_text()) == {"@type": "neuroglancer_legacy_mesh"}
    fragments = json.loads((path / "mesh/7:0").read_text())["fragments"]
    assert len(fragments) == 4 and all(f.startswith("7:0:") for f in fragments)
    assert not (path / "mesh/0:0").exists()
    mesh = CloudVolume(f"file://{path}", progress=False).mesh.get(7)
    assert _components(mesh.vertices, mesh.faces) == 1
    z, y, x = np.nonzero(labels == 7)
    lo = np.array([x.min(), y.min(), z.min()]) * VOXEL
    hi = (np.array([x.max(), y.max(), z.max()]) + 1) * VOXEL
    # voxel-centred surfaces sit within half a voxel of the segment's outer faces
    np.testing.assert_allclose(mesh.vertices.min(axis=0), lo, atol=max(VOXEL) / 2 + 1)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), hi, atol=max(VOXEL) / 2 + 1)
    with pytest.raises(ValueError):
        CloudVolume(f"file://{path}", progress=False).mesh.get(0)


def test_omezarr_labels_validate(store: Path) -> None:
    from ome_zarr_models.v05 import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    labels = _labels()
    write_segmentation(store, "v", "a", labels, meshes=False)
    write_segmentation(store, "v", "b", labels, meshes=False, class_names={3: "edge"})
    image = zarr.open_group(str(store / "zarr/v.zarr"), mode="r")
    Image.from_zarr(image)
    assert dict(image["labels"].attrs["ome"])["labels"] == ["a", "b"]
    label = ImageLabel.from_zarr(image["labels/b"])
    assert label.attributes.ome.image_label is not None
    meta = dict(image["labels/b"].attrs["ome"])
    assert meta["image-label"]["properties"] == [{"label-value": 3, "class": "edge"}]
    assert image["labels/b/0"].chunks == image["0"].chunks and image["labels/b/2"].shape == image["2"].shape


def test_catalog_record(store: Path) -> None:
    before = Catalog(store).get("w")
    image_before = Catalog(store).get("v")["layers"]["image"]
    layer = write_segmentation(store, "v", "pred", _labels(), provenance={"model": "unet", "checkpoint": "c1"}, meshes=False)
    record = Catalog(store).get("v")
    assert record_errors(record) == []
    assert record["layers"]["pred"] == layer and record["layers"]["image"] == image_before
    assert layer["type"] == "segmentation" and layer["path"] == "precomputed/v/pred" and layer["fill_missing"] is True
    assert layer["segments"] == 6 and layer["provenance"] == {"model": "unet", "checkpoint": "c1"}
    assert Catalog(store).get("w") == before
    again = write_segmentation(store, "v", "pred", _labels(), overwrite=True, meshes=False)
    assert again["version"] > layer["version"]
    assert not (store / ".staging/v/pred").exists()


def test_bad_inputs(store: Path) -> None:
    labels = _labels()
    with pytest.raises(DatasetNotFound):
        SegmentationWriter.create(store, "nope", "pred")
    for name in ("image", "a/b", "", ".."):
        with pytest.raises(InvalidOption, match="layer name"):
            SegmentationWriter.create(store, "v", name)
    with pytest.raises(InvalidDatasetId):
        SegmentationWriter.create(store, "v/x", "pred")
    with pytest.raises(InvalidOption, match="dtype"):
        SegmentationWriter.create(store, "v", "pred", dtype="int32")
    with pytest.raises(InvalidOption, match="mip 0"):
        write_segmentation(store, "v", "pred", labels, mip=1)
    with pytest.raises(InvalidOption, match="do not fit"):
        write_segmentation(store, "v", "pred", np.zeros((24, 80, 101), np.uint32))
    with pytest.raises(InvalidOption, match="3-D"):
        write_segmentation(store, "v", "pred", np.zeros((80, 100), np.uint32))
    with pytest.raises(InvalidOption, match="integers"):
        write_segmentation(store, "v", "pred", labels.astype(np.float32))
    with pytest.raises(InvalidOption, match="non-negative"):
        write_segmentation(store, "v", "pred", labels.astype(np.int32) - 1)
    writer = SegmentationWriter.create(store, "v", "pred")
    with pytest.raises(InvalidOption, match=r"chunk size \(32, 32, 32\)"):
        writer.write_block((16, 0, 0), labels[:, :32, 16:48])
    with pytest.raises(InvalidOption, match=r"chunk size \(32, 32, 32\)"):
        writer.write_block((0, 0, 0), labels[:, :32, :40])
    with pytest.raises(InvalidOption, match="outside"):
        writer.write_block((96, 0, 0), np.zeros((24, 32, 32), np.uint32))
    with pytest.raises(InvalidOption, match="uint64"):
        writer.write_block((0, 0, 0), np.full((24, 32, 32), 2**33, np.uint64))
    with pytest.raises(DatasetNotFound):
        SegmentationWriter.open(store, "v", "never")
    write_segmentation(store, "v", "pred", labels, meshes=False)
    with pytest.raises(DatasetExists):
        SegmentationWriter.create(store, "v", "pred")


def test_rerun_after_deleting_markers_is_identical(store: Path, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = _labels()
    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    _write_staged(reference, labels).finalize(provenance={}, task_bytes=SMALL_TASKS)

    def killed(self: SegmentationWriter, layer: dict[str, Any]) -> dict[str, Any]:
        raise KeyboardInterrupt

    _write_staged(store, labels)
    with monkeypatch.context() as m:
        m.setattr(SegmentationWriter, "_commit", killed)
        with pytest.raises(KeyboardInterrupt):
            SegmentationWriter.open(store, "v", "pred").finalize(provenance={}, task_bytes=SMALL_TASKS)
    staging = store / ".staging/v/pred"
    markers = sorted((staging / "tasks").glob("*.npz"))
    assert len(markers) > 2
    for marker in markers[::2]:
        marker.unlink()
    # a task killed half-way: some of its outputs gone too
    next(iter(sorted((staging / "layer/16_16_40").iterdir()))).unlink()
    next(iter(sorted((staging / "layer/mesh").glob("7:0:*")))).unlink()
    with pytest.raises(InvalidOption, match="finalised"):
        SegmentationWriter.open(store, "v", "pred").write_block((0, 0, 0), labels)
    SegmentationWriter.open(store, "v", "pred").finalize(provenance={}, task_bytes=SMALL_TASKS)
    assert _files(store / "precomputed/v/pred") == _files(reference / "precomputed/v/pred")
    assert _files(store / "zarr/v.zarr/labels") == _files(reference / "zarr/v.zarr/labels")
