"""Block writes into a live segmentation layer, all-or-nothing in both stores.

``write_block(root, id, layer, offset, block)`` is what ``PUT
/api/datasets/<id>/layers/<layer>/block`` runs. Under the layer's lock
(``ROOT/.locks/<id>.<layer>.lock``):

1. The new contents of every chunk the block touches are computed in memory,
   at every mip: mip 0 is the old chunks with the block laid over them; each
   mip above is the mode downsampling of the mip below (its new part over
   its old part), over whole chunks of both the precomputed layer and the
   OME-Zarr ``labels/<name>`` copy (whose chunks are the image's).
   Old chunks are read through :class:`~precomputed.integrity.ChunkVerifier`,
   so a damaged one stops the write instead of crashing a decoder.
2. Every new chunk file is written under a temporary name beside its
   target (:class:`~precomputed.file_swap.FileSwap`). A full disk or any
   other I/O error here changes nothing.
3. The checksum manifest of each scale accepts the old and the new digests,
   the files are renamed into place, the catalog gets the layer's new
   version, and the manifests then keep only the new digests. A failure
   before the catalog is written puts every chunk and manifest back.

Segment properties and meshes are not recomputed per block: the layer
record lists them under ``stale``. A killed process can leave the layer
half swapped; each chunk file is still whole (renames are atomic).

On an ``s3://`` or ``gs://`` root the same steps run over the root's storage
(:mod:`precomputed.block_writes_bucket`): a lease object for the lock, new
chunk objects PUT in place after the old ones are backed up, the same
rollback on failure.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .catalog import Catalog, new_version, now
from .checksum_writes import update_checksums
from .checksums import Manifest, load_manifest, manifest_path
from .chunk_writer import ScaleWriter
from .errors import InvalidOption, LayerNotFound, PrecomputedError, WriteFailed
from .file_swap import FileSwap, recover
from .geometry import VoxelBox, Xyz, chunk_grid, projection, xyz
from .storage import Storage, is_remote, open_root

__all__ = ["LOCK_TIMEOUT_S", "journal_path", "layer_lock", "write_block"]

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 60.0
Array = npt.NDArray[Any]


def layer_lock(root: Path, dataset_id: str, layer: str) -> Any:
    """The file lock every writer of a live layer holds (``ROOT/.locks/<id>.<layer>.lock``)."""
    from filelock import FileLock

    locks = root / ".locks"
    locks.mkdir(exist_ok=True)
    return FileLock(str(locks / f"{dataset_id}.{layer}.lock"), timeout=LOCK_TIMEOUT_S)


class _LocalLayer:
    """What a block write needs of a layer in a local root: file lock, file swap, manifests on disk."""

    def __init__(self, root: Path, layer_key: str) -> None:
        self.root = root
        self.path = str(root / layer_key)

    def target(self, key: str) -> str:
        return str(self.root / key)

    def lock(self, dataset_id: str, layer: str, timeout_s: float) -> Any:
        return layer_lock(self.root, dataset_id, layer)

    def recover(self, version: str | None) -> None:
        recover(journal_path(self.path))

    def swap(self, version: str) -> FileSwap:
        return FileSwap(journal=journal_path(self.path))

    def manifest(self, scale: str) -> Manifest | None:
        return load_manifest(self.path, scale)

    def protect_manifest(self, swap: Any, scale: str) -> None:
        swap.protect(manifest_path(self.path, scale))

    def set_checksums(self, scale: str, entries: dict[str, Any]) -> None:
        update_checksums(self.path, scale, entries)


def _layer_of(root: str | os.PathLike[str], storage: Storage, dataset_id: str, layer: str, layer_key: str) -> Any:
    if storage.is_local:
        return _LocalLayer(Path(storage.local_path() or root), layer_key)
    from .block_writes_bucket import BucketLayer

    return BucketLayer(storage, dataset_id, layer, layer_key)


@dataclass(frozen=True)
class _Level:
    """One mip of the layer: its precomputed scale and, when there is one, the key of its OME-Zarr array."""

    mip: int
    scale: ScaleWriter
    factor: Xyz
    zarr: str | None
    storage: Storage
    layer_key: str

    @property
    def bounds(self) -> VoxelBox:
        return VoxelBox.from_offset_size(self.scale.offset, self.scale.size)

    def zarr_meta(self) -> bytes:
        data = self.storage.get(f"{self.zarr}/zarr.json")
        if data is None:
            raise FileNotFoundError(self.storage.url_for(f"{self.zarr}/zarr.json"))
        return data

    def zarr_chunk(self) -> Xyz | None:
        if self.zarr is None:
            return None
        meta = json.loads(self.zarr_meta())
        z, y, x = meta["chunk_grid"]["configuration"]["chunk_shape"][-3:]
        return (int(x), int(y), int(z))


def _hull(a: VoxelBox, b: VoxelBox) -> VoxelBox:
    return VoxelBox(xyz(min(p, q) for p, q in zip(a.start, b.start)), xyz(max(p, q) for p, q in zip(a.stop, b.stop)))


def _check_block(block: Array, dtype: np.dtype[Any]) -> None:
    if block.ndim != 3:
        raise InvalidOption(f"a block must be 3-D [z, y, x], got shape {list(block.shape)}")
    if block.size == 0:
        raise InvalidOption(f"a block must hold at least one voxel, got shape {list(block.shape)}")
    if block.dtype.kind not in "iu":
        raise InvalidOption(f"labels must be integers, got {block.dtype.name}")
    if int(block.min()) < 0 or int(block.max()) > np.iinfo(dtype).max:
        raise InvalidOption(f"label ids must lie in 0..{np.iinfo(dtype).max} for this {dtype.name} layer")


def _levels(root: str | os.PathLike[str], storage: Storage, record: dict[str, Any], meta: dict[str, Any]) -> list[_Level]:
    key = str(meta["path"])
    compress = "gzip" if meta.get("compression") == "gzip" else "none"
    info = storage.get(f"{key}/info")
    if info is None:
        raise FileNotFoundError(storage.url_for(f"{key}/info"))
    scales = json.loads(info)["scales"]
    if any(s.get("sharding") for s in scales):  # a shard is rewritten whole, by the writer that owns its box
        raise InvalidOption(f"layer {meta['path']} is sharded: block writes go to unsharded layers; write the layer again with write_segmentation")
    remote = not storage.is_local
    if remote and compress == "gzip":
        raise InvalidOption(f"layer {meta['path']} is gzip-compressed on a bucket root: block writes there go to uncompressed layers for now")
    labels = str(meta["zarr"]) if meta.get("zarr") else None
    if labels is not None and not storage.exists(f"{labels}/zarr.json"):
        log.warning("layer %s lists an OME-Zarr copy %s that does not exist; writing the precomputed layer only", meta["path"], labels)
        labels = None
    layer = key if remote else str(Path(storage.local_path() or root) / key)
    out = []
    for mip in range(len(scales)):
        factor = xyz(int(f) for f in record["mips"][mip].get("factor", (1, 1, 1))) if mip else (1, 1, 1)
        scale = ScaleWriter.open(layer, mip, compress=compress, root=str(root) if remote else None)
        out.append(_Level(mip, scale, factor, None if labels is None else f"{labels}/{mip}", storage, key))
    return out


def _read(level: _Level, box: VoxelBox, verifier: Any) -> Array:
    """``box`` of the live layer as ``[c, z, y, x]``; chunks never written are background (0).

    The chunks are fetched as one batch (concurrent GETs on a bucket), each under
    its plain name or as a ``.gz`` file.
    """
    scale = level.scale
    out = np.zeros((scale.channels, *reversed(box.size)), dtype=scale.dtype)
    grid = [(scale.chunk_name(chunk_box.start), chunk_box) for _, chunk_box in chunk_grid(box, scale.chunk_size, level.bounds)]
    prefix = f"{level.layer_key}/{scale.key}"
    found = level.storage.get_many([f"{prefix}/{name}{suffix}" for name, _ in grid for suffix in ("", ".gz")])
    for name, chunk_box in grid:
        for suffix in ("", ".gz"):
            data = found.get(f"{prefix}/{name}{suffix}")
            if data is None:
                continue
            chunk = verifier.decode(f"{scale.key}/{name}", data, gzipped=bool(suffix))
            dst, src = projection(box, chunk_box)
            out[(slice(None), *dst)] = chunk[(slice(None), *src)]
            break
    return out


def _new_levels(levels: list[_Level], box: VoxelBox, block: Array, verifier: Any) -> list[tuple[VoxelBox, VoxelBox, Array]]:
    """Per mip ``(touched box, box of the new data, new data [c, z, y, x])``, whole chunks of both stores."""
    out: list[tuple[VoxelBox, VoxelBox, Array]] = []
    touched = box
    for level in levels:
        bounds = level.bounds
        if level.mip:
            touched = touched.scaled(level.factor, bounds.stop)
        region = touched.aligned(level.scale.chunk_size, bounds)
        zchunk = level.zarr_chunk()
        if zchunk is not None:
            region = _hull(region, touched.aligned(zchunk, bounds))
        if level.mip == 0:
            data = _read(level, region, verifier)
            data[(slice(None), *box.slices_zyx(region.start))] = block.astype(level.scale.dtype, copy=False)[None]
        else:
            from .pyramid import downsample_mode

            below, below_box, below_data = levels[level.mip - 1], out[-1][1], out[-1][2]
            source = region.upscaled(level.factor, below.bounds.stop)
            under = _read(below, source, verifier)
            dst, src = projection(source, below_box)
            under[(slice(None), *dst)] = below_data[(slice(None), *src)]
            data = downsample_mode(under, level.factor)
            if data.shape[1:] != tuple(reversed(region.size)):
                raise RuntimeError(f"internal: mip {level.mip} downsampled to {data.shape}, the region is {region}")
        out.append((touched, region, data))
    return out


def _stage_precomputed(swap: Any, place: Any, level: _Level, touched: VoxelBox, region: VoxelBox, data: Array) -> dict[str, str]:
    from cloudfiles import compression

    from .checksums import digest

    scale = level.scale
    digests: dict[str, str] = {}
    suffix = ".gz" if scale.compress == "gzip" else ""
    for _, chunk_box in chunk_grid(touched.aligned(scale.chunk_size, level.bounds), scale.chunk_size, level.bounds):
        payload = scale.encode(data[(slice(None), *chunk_box.slices_zyx(region.start))])
        name = scale.chunk_name(chunk_box.start)
        digests[name] = digest(payload)
        swap.stage(place(f"{level.layer_key}/{scale.key}/{name}{suffix}"), compression.compress(payload, "gzip") if suffix else payload)
    return digests


def _stage_zarr(swap: Any, place: Any, level: _Level, zchunk: Xyz, touched: VoxelBox, region: VoxelBox, data: Array) -> int:
    """Encode the touched chunks of one OME-Zarr level with its own codecs, in memory, and stage them."""
    import zarr
    from zarr.core.buffer import cpu
    from zarr.storage import MemoryStore

    from . import omezarr

    aligned = touched.aligned(zchunk, level.bounds)
    files: dict[str, Any] = {"zarr.json": cpu.Buffer.from_bytes(level.zarr_meta())}
    array = zarr.open_array(store=MemoryStore(store_dict=files), mode="r+").with_config({"write_empty_chunks": True})
    omezarr.write_box(array, aligned.start, np.ascontiguousarray(data[(slice(None), *aligned.slices_zyx(region.start))]))
    count = 0
    for key, buffer in files.items():
        if key != "zarr.json":
            swap.stage(place(f"{level.zarr}/{key}"), buffer.to_bytes())
            count += 1
    return count


def journal_path(layer: str | os.PathLike[str]) -> Path:
    """Where a block write into ``layer`` journals its commit (see :func:`precomputed.file_swap.recover`)."""
    return Path(layer) / ".write-journal.json"


def write_block(root: str | os.PathLike[str], dataset_id: str, layer: str, offset: Xyz, block: Array) -> dict[str, Any]:
    """Write a C-order ``[z, y, x]`` block of ids at ``offset`` (x, y, z, mip 0) into a segmentation layer.

    Every mip of the precomputed layer and of its OME-Zarr labels copy is
    updated, or none is.

    Returns
    -------
    ``{"dataset", "layer", "offset", "shape_zyx", "version", "aligned", "chunks"}``:
    the layer's new version, whether the block was chunk-aligned, and the
    chunk files written per store.

    Raises
    ------
    DatasetNotFound, LayerNotFound
        No such dataset or layer.
    InvalidOption
        Not a segmentation layer, a block that is not 3-D integers in the
        layer's range, or leaves the layer's bounds.
    CorruptChunk
        An old chunk the block overlaps is damaged (nothing is written).
    WriteFailed
        The disk is full or another I/O error; every file is as before.
    """
    remote = is_remote(root)
    root_path = Path(root) if not remote else None
    catalog = Catalog(root if remote else Path(root))
    record = catalog.get(dataset_id)
    if layer not in record["layers"]:
        raise LayerNotFound(f"dataset {dataset_id!r} has no layer {layer!r} (layers: {', '.join(sorted(record['layers']))})")
    if record["layers"][layer]["type"] != "segmentation":
        raise InvalidOption(f"layer {layer!r} is an {record['layers'][layer]['type']} layer: only segmentation layers take writes")
    block = np.asarray(block)
    offset = xyz(int(v) for v in offset)
    storage = open_root(root if remote else Path(root))
    if root_path is not None:
        lock = layer_lock(root_path, dataset_id, layer)
    else:
        from .block_writes_bucket import BucketLayer

        lock = BucketLayer(storage, dataset_id, layer, "").lock(dataset_id, layer, LOCK_TIMEOUT_S)
    try:
        with lock:
            return _write_locked(catalog, storage, root, dataset_id, layer, offset, block)
    except TimeoutError as exc:  # filelock's Timeout and the bucket lease's alike
        raise WriteFailed(f"layer {layer!r} of {dataset_id!r} stayed locked by another write for {LOCK_TIMEOUT_S:.0f} s; nothing was changed, retry") from exc
    except PrecomputedError:
        raise
    except OSError as exc:
        what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        where = getattr(exc, "filename", None) or "the layer"
        raise WriteFailed(f"the write into layer {layer!r} of {dataset_id!r} failed: {what} ({where}); nothing was changed") from exc


def _write_locked(catalog: Catalog, storage: Storage, root: str | os.PathLike[str], dataset_id: str, layer: str, offset: Xyz, block: Array) -> dict[str, Any]:
    from .integrity import ChunkVerifier

    record = catalog.get(dataset_id)  # again, under the lock: the layer may have been replaced meanwhile
    meta = record["layers"].get(layer)
    if meta is None:
        raise LayerNotFound(f"dataset {dataset_id!r} lost layer {layer!r} meanwhile")
    target = _layer_of(root, storage, dataset_id, layer, str(meta["path"]))
    # a write killed mid-commit left a journal: put its old files back before anything reads them
    target.recover(meta.get("version"))
    levels = _levels(root, storage, record, meta)
    _check_block(block, levels[0].scale.dtype)
    box = VoxelBox.from_offset_size(offset, tuple(reversed(block.shape)))
    if not levels[0].bounds.contains(box):
        raise InvalidOption(f"block {box} (x, y, z) leaves the layer, whose bounds are {levels[0].bounds}")
    aligned = box.aligned(levels[0].scale.chunk_size, levels[0].bounds) == box
    key = str(meta["path"])
    if storage.is_local:
        verifier = ChunkVerifier(levels[0].scale.layer)
    else:
        verifier = ChunkVerifier(key, info=json.loads(storage.get(f"{key}/info") or b"{}"), read=lambda rel: storage.get(f"{key}/{rel}"))
    new = _new_levels(levels, box, block, verifier)
    version = new_version()
    counts = {"precomputed": 0, "zarr": 0}
    with target.swap(version) as swap:
        digests: dict[str, dict[str, str]] = {}
        for level, (touched, region, data) in zip(levels, new):
            digests[level.scale.key] = _stage_precomputed(swap, target.target, level, touched, region, data)
            counts["precomputed"] += len(digests[level.scale.key])
            zchunk = level.zarr_chunk()
            if level.zarr is not None and zchunk is not None:
                counts["zarr"] += _stage_zarr(swap, target.target, level, zchunk, touched, region, data)
        manifests = {key: m for key in digests if (m := target.manifest(key)) is not None}
        for key, manifest in manifests.items():
            # while the files are swapped, readers in other processes may see either version of a chunk
            target.protect_manifest(swap, key)
            target.set_checksums(key, {n: tuple(dict.fromkeys((*manifest.chunks.get(n, ()), d))) for n, d in digests[key].items()})
        swap.commit()

        def bump(old: dict[str, Any] | None) -> dict[str, Any]:
            if old is None or layer not in old["layers"]:
                raise LayerNotFound(f"dataset {dataset_id!r} lost layer {layer!r} during the write")
            entry = dict(old["layers"][layer])
            entry["version"] = version
            entry["stale"] = sorted(set(entry.get("stale", [])) | {"mesh", "segment_properties"})
            return {**old, "layers": {**old["layers"], layer: entry}, "updated": now()}

        catalog.update(dataset_id, bump)
    for key in manifests:
        try:
            target.set_checksums(key, digests[key])
        except OSError as exc:  # the write is done; the manifest still accepts both digests, which is correct
            log.warning("layer %s scale %s: the checksum manifest keeps the old digests too: %s", meta["path"], key, exc)
    return {"dataset": dataset_id, "layer": layer, "offset": list(box.start), "shape_zyx": list(block.shape), "version": version, "aligned": aligned, "chunks": counts}
