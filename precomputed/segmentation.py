"""Prediction layers: precomputed segmentation layers in a dataset's image grid.

A layer is created empty in a staging folder, ``ROOT/.staging/<id>/<name>/``::

    writer.json     the plan: dtype, chunk sizes, mips (so any process can reopen it)
    layer/          the precomputed layer (compressed_segmentation, every mip)
    labels.zarr/    the OME-Zarr label image (NGFF 0.5 ``image-label``)
    tasks/          done markers of :meth:`SegmentationWriter.finalize`

filled with chunk-aligned mip-0 blocks (:meth:`~SegmentationWriter.write_block`,
from any process), then finalised: chunk-aligned Dask tasks read the level
below from the staged layer and write the mode-downsampled pyramid to both
stores; pass-0 tasks also count voxels per id and mesh their box (see
:mod:`precomputed.meshes`). Only then are the stores moved to
``ROOT/precomputed/<id>/<name>/`` and ``ROOT/zarr/<id>.zarr/labels/<name>``
and the catalog record updated, as one step under the catalog lock. Chunks
never written read as 0 (background): the record says ``fill_missing``.

A killed :meth:`~SegmentationWriter.finalize` resumes with
``SegmentationWriter.open(root, id, name).finalize(...)``: tasks with a done
marker are skipped, the others redone, and the files are bit-identical to an
uninterrupted run. :meth:`SegmentationWriter.create` always starts afresh.
On a bucket root the staged layer is written in place under versioned
prefixes and published by one catalog write (:mod:`precomputed.segmentation_bucket`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cloudvolume import CloudVolume
from filelock import FileLock, Timeout

from . import checksum_writes, image_layer, labels, segment_properties, segmentation_commit, sharding
from . import meshes as mesh_format
from .catalog import Catalog, new_version
from .errors import DatasetExists, DatasetNotFound, InvalidOption
from .geometry import xyz, xyz_float
from .ingest import local_root, validate_id
from .ingest_tasks import thread_handle
from .pyramid import Mip
from .storage import is_remote
from .tasks import Box

__all__ = ["SegmentationWriter", "write_segmentation"]

log = logging.getLogger(__name__)

DTYPES = ("uint32", "uint64")
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")  # \Z: "$" would let a trailing newline through
DEFAULT_TASK_BYTES = 64 << 20
Xyz = tuple[int, int, int]
Root = str | os.PathLike[str]


def validate_name(name: str) -> str:
    """Layer names are 1-128 characters of ``[A-Za-z0-9._-]``, not ``image``, ``.`` or ``..``."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in (".", "..", "image"):
        raise InvalidOption(f"invalid layer name {name!r}: use 1-128 characters of A-Z a-z 0-9 . _ - (not 'image')")
    return name


def _version() -> str:
    # never the same twice: two writes of one layer in the same second still get different versions
    return new_version()


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    dtype: str
    chunk_size: Xyz
    zarr_chunk_size: Xyz  # the image's, which the OME-Zarr labels share
    mips: tuple[Mip, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Plan:
        mips = tuple(Mip(m["level"], tuple(m["shape"]), tuple(m["voxel_size"]), tuple(m["factor"])) for m in data["mips"])
        return cls(data["dtype"], tuple(data["chunk_size"]), tuple(data["zarr_chunk_size"]), mips)


class SegmentationWriter:
    """Create, fill (chunk-aligned blocks, from any process) and finalise one layer.

    Instances hold no open handles and pickle as their root, id, name and
    plan, so Dask tasks can take one along; :meth:`open` reopens the staged
    layer by ``(root, dataset_id, name)`` as well.
    """

    def __init__(self, root: Path | str, dataset_id: str, name: str, plan: _Plan, bucket: dict[str, str] | None = None) -> None:
        self.root = root  # a folder; on a bucket root its URL, with the keys in ``bucket``
        self.dataset_id = dataset_id
        self.name = name
        self._plan = plan
        self.bucket = bucket

    @property
    def url(self) -> str | None:
        """The bucket root's URL; None on a local root."""
        return None if self.bucket is None else self.bucket["root"]

    # paths ------------------------------------------------------------------
    @staticmethod
    def _staging_of(root: Path, dataset_id: str, name: str) -> Path:
        return segmentation_commit.staging_folder(root, dataset_id, name)

    @property
    def staging(self) -> Path:
        """``ROOT/.staging/<id>/<name>/`` (local roots)."""
        return self._staging_of(Path(self.root), self.dataset_id, self.name)

    @property
    def layer_path(self) -> str:
        """The staged precomputed layer (a key under the root on a bucket)."""
        return self.bucket["layer"] if self.bucket else str(self.staging / "layer")

    @property
    def _zarr_path(self) -> str:
        return self.bucket["labels"] if self.bucket else str(self.staging / "labels.zarr")

    # the grid ---------------------------------------------------------------
    @property
    def bounds(self) -> Box:
        """``[start, stop)`` of mip 0, (x, y, z) voxels: the image's bounds."""
        return Box((0, 0, 0), self.shape_xyz)

    @property
    def shape_xyz(self) -> Xyz:
        """Mip-0 shape, (x, y, z) voxels."""
        return self._plan.mips[0].shape

    @property
    def chunk_size(self) -> Xyz:
        """(x, y, z) chunk size of the precomputed layer; blocks align to it."""
        return self._plan.chunk_size

    @property
    def mips(self) -> list[Mip]:
        """The image's pyramid, which the layer repeats exactly."""
        return list(self._plan.mips)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self._plan.dtype)

    # life cycle ---------------------------------------------------------------
    @classmethod
    def create(cls, root: Root, dataset_id: str, name: str, *, dtype: str = "uint32", overwrite: bool = False, chunk_size: Xyz | None = None) -> SegmentationWriter:
        """Create an empty staged layer in the image grid of ``dataset_id``.

        Parameters
        ----------
        root
            The store root (local folder or ``file://`` URL).
        dataset_id, name
            The catalogued dataset and the new layer's name (``[A-Za-z0-9._-]``,
            not ``image``).
        dtype
            ``uint32`` or ``uint64`` segment ids.
        overwrite
            Replace a layer of that name when finalised.
        chunk_size
            (x, y, z) chunk size of the precomputed layer; default the image's.

        Raises
        ------
        DatasetNotFound, DatasetExists, InvalidDatasetId, InvalidOption
        """
        validate_id(dataset_id)
        validate_name(name)
        if str(dtype) not in DTYPES:
            raise InvalidOption(f"segmentation dtype must be one of {', '.join(DTYPES)}, got {dtype}")
        if is_remote(root):
            from .segmentation_bucket import create_in_bucket

            return create_in_bucket(cls, str(root), dataset_id, name, dtype=str(dtype), overwrite=overwrite, chunk_size=chunk_size)
        root_path = local_root(root)
        segmentation_commit.resume_commit(root_path, dataset_id, name)  # a killed commit lands before anything is discarded
        record = Catalog(root_path).get(dataset_id)
        if not overwrite and (name in record["layers"] or (root_path / "precomputed" / dataset_id / name).exists()):
            raise DatasetExists(f"dataset {dataset_id!r} has a layer {name!r} already; pass overwrite=True to replace it")
        image_chunk: Xyz = xyz(int(v) for v in record["chunk_size"])
        chunk = image_chunk if chunk_size is None else tuple(int(v) for v in chunk_size)
        if len(chunk) != 3 or not all(8 <= v <= 1024 for v in chunk):
            raise InvalidOption(f"chunk_size must be three integers between 8 and 1024, got {chunk_size}")
        mips = tuple(Mip(k, xyz(m["shape"]), xyz_float(float(v) for v in m["voxel_size"]), xyz(m["factor"])) for k, m in enumerate(record["mips"]))
        plan = _Plan(str(dtype), chunk, image_chunk, mips)
        writer = cls(root_path, dataset_id, name, plan)
        staging = writer.staging
        if staging.exists():
            log.info("discarding the staged layer %s", staging)
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        image_layer.create_image_layer(
            writer.layer_path, mips=list(mips), channels=1, dtype=np.dtype(dtype), chunk_size=chunk, layer_type="segmentation", encoding="compressed_segmentation"
        )
        vol = CloudVolume(f"file://{writer.layer_path}", progress=False)
        vol.info["mesh"] = mesh_format.MESH_DIR
        vol.info["segment_properties"] = segment_properties.PROPERTIES_DIR
        vol.commit_info()
        labels.create_labels(writer._zarr_path, name=name, mips=list(mips), dtype=np.dtype(dtype), chunk_size=image_chunk)
        # written last: its presence means the staged layer is complete enough to reopen
        (staging / "writer.json").write_text(json.dumps({"overwrite": overwrite, **asdict(plan)}, indent=1))
        return writer

    @classmethod
    def open(cls, root: Root, dataset_id: str, name: str) -> SegmentationWriter:
        """Reopen a staged layer (in another process, a Dask task, after a kill)."""
        if is_remote(root):
            from .segmentation_bucket import open_in_bucket

            return open_in_bucket(cls, str(root), validate_id(dataset_id), validate_name(name))
        root_path = local_root(root)
        path = cls._staging_of(root_path, validate_id(dataset_id), validate_name(name)) / "writer.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise DatasetNotFound(f"no staged segmentation layer {name!r} of {dataset_id!r} in {root_path}; create it first") from exc
        return cls(root_path, dataset_id, name, _Plan.from_json(data))

    def __repr__(self) -> str:
        return f"SegmentationWriter({str(self.root)!r}, {self.dataset_id!r}, {self.name!r})"

    # writing ------------------------------------------------------------------
    def write_block(self, offset_xyz: Xyz, block_zyx: npt.NDArray[Any]) -> None:
        """Write a C-order ``[z, y, x]`` block of ids at ``offset_xyz`` (x, y, z) of mip 0.

        The offset and the block's far end must lie on the chunk grid (the far
        end may also be the volume's edge). Ids must be non-negative integers
        that fit the layer's dtype; 0 is background.

        Raises
        ------
        InvalidOption
            A misaligned, out-of-bounds or badly typed block.
        """
        block = np.asarray(block_zyx)
        if block.ndim != 3:
            raise InvalidOption(f"a block must be a 3-D [z, y, x] array, got shape {block.shape}")
        offset = tuple(int(v) for v in offset_xyz)
        size = block.shape[::-1]
        shape, chunk = self.shape_xyz, self.chunk_size
        stop = tuple(o + s for o, s in zip(offset, size))
        if len(offset) != 3 or any(o < 0 for o in offset) or any(b > n for b, n in zip(stop, shape)):
            raise InvalidOption(f"block [{offset}, {stop}) (x, y, z) is outside the volume [(0, 0, 0), {shape})")
        if any(o % c for o, c in zip(offset, chunk)) or any(b % c and b != n for b, c, n in zip(stop, chunk, shape)):
            raise InvalidOption(
                f"block [{offset}, {stop}) (x, y, z) is not aligned to the chunk size {chunk}: offsets and far ends must be "
                f"multiples of it (or the volume edge {shape})"
            )
        if self.bucket is None and (self.staging / "tasks").exists():
            raise InvalidOption(f"layer {self.name!r} is being finalised; create it again to write new blocks")
        self.check_ids(block)
        data = np.ascontiguousarray(block, dtype=self.dtype)
        vol = thread_handle("seg-write", (self.url, self.layer_path, 0), partial(image_layer.open_layer, self.layer_path, 0, root=self.url))
        # a fragment per call: a block written twice is settled from the file on disk at finalize
        checksum_writes.write_fragment(self.layer_path, None, {vol.key: image_layer.write_box(vol, offset, data[None])}, root=self.url)

    def check_ids(self, block: npt.NDArray[Any]) -> None:
        if block.dtype == bool or not np.issubdtype(block.dtype, np.integer):
            raise InvalidOption(f"segment ids must be integers, got dtype {block.dtype}")
        if block.size == 0:
            return
        limit = np.iinfo(self.dtype).max
        lo, hi = int(block.min()), int(block.max())
        if lo < 0:
            raise InvalidOption(f"segment ids must be non-negative, got {lo}")
        if hi > limit:
            raise InvalidOption(f"segment id {hi} does not fit the layer's {self.dtype} (max {limit}); create it with dtype='uint64'")

    # finalising ---------------------------------------------------------------
    def finalize(
        self,
        *,
        provenance: dict[str, Any],
        class_names: Mapping[int, str] | None = None,
        meshes: bool = True,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        task_bytes: int = DEFAULT_TASK_BYTES,
        shard: bool = False,
    ) -> dict[str, Any]:
        """Build the pyramid, segment properties, meshes and OME-Zarr labels; catalog the layer.

        Parameters
        ----------
        provenance
            Where the labels come from (model, checkpoint, command, ...); stored in the record.
        class_names
            ``{id: name}`` labels for the segment properties; others read ``segment N``.
        meshes
            Mesh every segment at mip 1 (mip 0 if it is the only one), as legacy precomputed meshes.
        workers, scheduler, progress
            As in :func:`precomputed.execution.run_tasks`.
        task_bytes
            Upper bound on a task's mip-0 box in bytes (the mesh box is the same).
        shard
            Store every scale as shards (:mod:`precomputed.sharding`): mips 1 and
            up are written as whole shards by the tasks, mip 0 is packed into
            shards of at most ``task_bytes`` of chunk data after them.

        Returns
        -------
        The layer's catalog record.
        """
        if not isinstance(provenance, dict):
            raise InvalidOption(f"provenance must be a dict, got {type(provenance).__name__}")
        names = segment_properties.check_class_names(class_names)
        json.dumps(provenance, allow_nan=False)  # fail before hours of work, not at the catalog write
        if self.bucket is not None:
            if shard:
                raise InvalidOption(f"store root {self.url}: sharded segmentation layers are written to local roots only for now")
            from .segmentation_bucket import finalize_in_bucket

            return finalize_in_bucket(self, provenance=provenance, names=names, meshes=meshes, workers=workers, scheduler=scheduler, progress=progress, task_bytes=task_bytes)
        staging = self.staging
        lock = FileLock(str(staging / "finalize.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise DatasetExists(f"layer {self.name!r} of {self.dataset_id!r} is being finalised by another process") from exc
        try:
            if segmentation_commit.read_journal(staging) is not None:  # killed while committing: finish that
                return segmentation_commit.finish_commit(Path(self.root), self.dataset_id, self.name)
            ids, counts, fragments = self._build(meshes, workers=workers, scheduler=scheduler, progress=progress, task_bytes=task_bytes, shard=shard)
            if shard:  # mip 0 was written in blocks of any alignment: packed last, its chunk bytes unchanged
                sharding.pack_scale(self.layer_path, 0, sharding.spec_for_scale(self.layer_path, 0, target_bytes=task_bytes))
            checksum_writes.merge_fragments(self.layer_path)
            segment_properties.write_properties(self.layer_path, segment_properties.properties_info(ids, counts, names))
            vol = CloudVolume(f"file://{self.layer_path}", progress=False)
            mesh_dir = os.path.join(self.layer_path, mesh_format.MESH_DIR)
            if meshes:
                mesh_format.write_mesh_info(mesh_dir)
                mesh_format.write_manifests(mesh_dir, fragments, segments=ids)
                vol.info["mesh"] = mesh_format.MESH_DIR
            else:
                shutil.rmtree(mesh_dir, ignore_errors=True)
                vol.info.pop("mesh", None)
            vol.commit_info()
            labels.label_properties(self._zarr_path, names, ids)
            layer = {
                "type": "segmentation",
                "path": f"precomputed/{self.dataset_id}/{self.name}",
                "zarr": f"zarr/{self.dataset_id}.zarr/labels/{self.name}",
                "version": _version(),
                "dtype": self._plan.dtype,
                "encoding": "compressed_segmentation",
                "fill_missing": True,
                "segment_properties": segment_properties.PROPERTIES_DIR,
                "segments": len(ids),
                "provenance": provenance,
            }
            if meshes:
                layer["mesh"] = mesh_format.MESH_DIR
            return self._commit(layer)
        finally:
            lock.release()

    def _build(self, with_meshes: bool, *, workers: int | None, scheduler: str | None, progress: bool | None, task_bytes: int, shard: bool = False) -> tuple[Any, Any, dict[int, list[str]]]:
        """Run every pass; returns the merged ids, voxel counts and mesh fragments per id."""
        from .segmentation_passes import build_passes

        return build_passes(self, with_meshes, workers=workers, scheduler=scheduler, progress=progress, task_bytes=task_bytes, shard=shard)

    def _commit(self, layer: dict[str, Any]) -> dict[str, Any]:
        """Move both stores into place and write the record (:mod:`precomputed.segmentation_commit`)."""
        return segmentation_commit.commit_layer(Path(self.root), self.dataset_id, self.name, layer)


# the whole-array writer builds on SegmentationWriter; re-exported so callers keep one import
from .segmentation_write import write_segmentation  # noqa: E402
