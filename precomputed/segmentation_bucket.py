"""Segmentation layers on ``s3://`` and ``gs://`` roots: staged in place, published by one catalog write.

As for ingest (:mod:`precomputed.ingest_bucket`), nothing is renamed:

``.staging/<id>/<name>/writer.json``
    The plan and the keys of this layer version (any process reopens it).
``.staging/<id>/<name>/tasks/*``
    Done markers of the finalize tasks.
``precomputed/<id>/<name>~<tag>``, ``<image zarr>/labels/<name>~<tag>``
    The layer and its OME-Zarr labels, written by the blocks and the tasks.

:func:`finalize_in_bucket` builds the pyramid, counts, meshes and segment
properties (the format code writes files: they are made in temporary folders
and uploaded), lists the label image in the ``labels`` group, then publishes
the layer with one conditional catalog write that points its ``path`` and
``zarr`` at the new prefixes. Readers see the old layer or the new one. The
replaced prefixes and the staging objects are deleted afterwards. A killed
finalize resumes with ``SegmentationWriter.open(root, id, name).finalize(...)``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checksum_writes, image_layer, labels, segment_properties
from . import meshes as mesh_format
from .bucket import delete_prefix, new_tag, root_storage, upload_folder, versioned
from .catalog import Catalog, new_version, now
from .errors import DatasetExists, DatasetNotFound, InvalidOption
from .geometry import xyz, xyz_float
from .pyramid import Mip

if TYPE_CHECKING:
    from .segmentation import SegmentationWriter

__all__ = ["create_in_bucket", "finalize_in_bucket", "open_in_bucket"]

log = logging.getLogger(__name__)

STAGING = ".staging"
Xyz = tuple[int, int, int]


def _staging(dataset_id: str, name: str) -> str:
    return f"{STAGING}/{dataset_id}/{name}"


def _live_prefixes(record: dict[str, Any]) -> set[str]:
    return {str(v) for meta in record["layers"].values() for k, v in meta.items() if k in ("path", "zarr")}


def create_in_bucket(cls: type[SegmentationWriter], url: str, dataset_id: str, name: str, *, dtype: str, overwrite: bool, chunk_size: Xyz | None) -> SegmentationWriter:
    """:meth:`SegmentationWriter.create` on a bucket root: a new version's prefixes, empty stores, ``writer.json``."""
    from .segmentation import _Plan

    storage = root_storage(url)
    record = Catalog(url).get(dataset_id)
    if not overwrite and name in record["layers"]:
        raise DatasetExists(f"dataset {dataset_id!r} has a layer {name!r} already; pass overwrite=True to replace it")
    image_chunk: Xyz = xyz(int(v) for v in record["chunk_size"])
    chunk: Xyz = image_chunk if chunk_size is None else xyz(int(v) for v in chunk_size)
    if len(chunk) != 3 or not all(8 <= v <= 1024 for v in chunk):
        raise InvalidOption(f"chunk_size must be three integers between 8 and 1024, got {chunk_size}")
    mips = tuple(Mip(k, xyz(m["shape"]), xyz_float(float(v) for v in m["voxel_size"]), xyz(m["factor"])) for k, m in enumerate(record["mips"]))
    plan = _Plan(dtype, chunk, image_chunk, mips)
    staging = _staging(dataset_id, name)
    earlier = storage.get(f"{staging}/writer.json")
    if earlier is not None:  # an earlier staged version: its stores go too, unless the catalog names them
        keys = json.loads(earlier).get("bucket", {})
        for prefix in {keys.get("layer"), keys.get("labels")} - _live_prefixes(record) - {None}:
            delete_prefix(storage, str(prefix))
    delete_prefix(storage, staging)
    tag = new_tag()
    keys = {
        "root": url,
        "staging": staging,
        "tag": tag,
        "layer": versioned(f"precomputed/{dataset_id}/{name}", tag),
        "labels": f"{record['stores']['zarr']}/labels/{versioned(name, tag)}",
    }
    image_layer.create_image_layer(
        keys["layer"], mips=list(mips), channels=1, dtype=np.dtype(dtype), chunk_size=chunk, layer_type="segmentation", encoding="compressed_segmentation", root=url
    )

    def extras(info: dict[str, Any]) -> None:
        info["mesh"] = mesh_format.MESH_DIR
        info["segment_properties"] = segment_properties.PROPERTIES_DIR

    image_layer.edit_info(keys["layer"], extras, root=url)
    labels.create_labels(keys["labels"], name=name, mips=list(mips), dtype=np.dtype(dtype), chunk_size=image_chunk, root=url)
    # written last: its presence means the staged layer is complete enough to reopen
    text = json.dumps({"overwrite": overwrite, **asdict(plan), "bucket": keys}, indent=1)
    storage.put(f"{staging}/writer.json", text.encode(), content_type="application/json")
    return cls(url, dataset_id, name, plan, keys)


def open_in_bucket(cls: type[SegmentationWriter], url: str, dataset_id: str, name: str) -> SegmentationWriter:
    """:meth:`SegmentationWriter.open` on a bucket root."""
    from .segmentation import _Plan

    data = root_storage(url).get(f"{_staging(dataset_id, name)}/writer.json")
    if data is None:
        raise DatasetNotFound(f"no staged segmentation layer {name!r} of {dataset_id!r} in {url}; create it first")
    doc = json.loads(data)
    return cls(url, dataset_id, name, _Plan.from_json(doc), dict(doc["bucket"]))


def finalize_in_bucket(
    writer: SegmentationWriter,
    *,
    provenance: dict[str, Any],
    names: Mapping[int, str],
    meshes: bool,
    workers: int | None,
    scheduler: str | None,
    progress: bool | None,
    task_bytes: int,
) -> dict[str, Any]:
    """:meth:`SegmentationWriter.finalize` on a bucket root; returns the layer's catalog record."""
    keys = writer.bucket or {}
    url, layer_key = keys["root"], keys["layer"]
    storage = root_storage(url)
    ids, counts, fragments = writer._build(meshes, workers=workers, scheduler=scheduler, progress=progress, task_bytes=task_bytes)
    checksum_writes.merge_fragments(layer_key, root=url)
    with tempfile.TemporaryDirectory(prefix="blockio-seg-") as tmp:
        segment_properties.write_properties(tmp, segment_properties.properties_info(ids, counts, dict(names)))
        upload_folder(storage, tmp, layer_key)
    if meshes:
        with tempfile.TemporaryDirectory(prefix="blockio-mesh-") as tmp:
            mesh_format.write_mesh_info(tmp)
            mesh_format.write_manifests(tmp, fragments, segments=ids)
            upload_folder(storage, tmp, f"{layer_key}/{mesh_format.MESH_DIR}")
    else:
        delete_prefix(storage, f"{layer_key}/{mesh_format.MESH_DIR}")
    image_layer.edit_info(layer_key, lambda info: info.update({"mesh": mesh_format.MESH_DIR}) if meshes else info.pop("mesh", None), root=url)
    labels.label_properties(keys["labels"], dict(names), ids, root=url)
    layer = {
        "type": "segmentation",
        "path": layer_key,
        "zarr": keys["labels"],
        "version": new_version(),
        "dtype": writer.dtype.name,
        "encoding": "compressed_segmentation",
        "fill_missing": True,
        "segment_properties": segment_properties.PROPERTIES_DIR,
        "segments": len(ids),
        "provenance": provenance,
    }
    if meshes:
        layer["mesh"] = mesh_format.MESH_DIR
    return _publish(writer, layer)


def _publish(writer: SegmentationWriter, layer: dict[str, Any]) -> dict[str, Any]:
    keys = writer.bucket or {}
    url, name = keys["root"], writer.name
    storage = root_storage(url)
    doc = json.loads(storage.get(f"{keys['staging']}/writer.json") or b"{}")
    catalog = Catalog(url)
    group, _, label_name = keys["labels"].rpartition("/")
    listed = labels.ensure_labels_group(group, root=url)
    if label_name not in listed:  # the label image is whole already: listing it first is harmless
        labels.set_labels(group, [*listed, label_name], root=url)
    replaced: list[dict[str, Any] | None] = [None]

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise DatasetNotFound(f"dataset {writer.dataset_id!r} was removed from the catalog meanwhile")
        old = current["layers"].get(name)
        if old is not None and not doc.get("overwrite", False):
            raise DatasetExists(f"dataset {writer.dataset_id!r} got a layer {name!r} meanwhile; create it with overwrite=True to replace it")
        replaced[0] = old
        return {**current, "layers": {**current["layers"], name: layer}, "updated": now()}

    catalog.update(writer.dataset_id, change)
    old = replaced[0]
    if old is not None:
        for prefix in {str(old.get("path", "")), str(old.get("zarr", ""))} - {layer["path"], layer["zarr"], ""}:
            delete_prefix(storage, prefix)
        old_group, _, old_label = str(old.get("zarr", "")).rpartition("/")
        if old_group == group and old_label != label_name:
            labels.set_labels(group, [n for n in labels.ensure_labels_group(group, root=url) if n != old_label], root=url)
    delete_prefix(storage, keys["staging"])
    return layer
