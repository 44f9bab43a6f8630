"""The block API: read any block of any catalogued layer at any mip.

>>> store = open_store("blockio-data")
>>> block = store.read_block("demo", offset=(0, 0, 0), size=(128, 128, 64))
>>> block.shape            # C-order [z, y, x]
(64, 128, 128)

Reads go through CloudVolume (see :mod:`blockio.layers.reader`) and a cache of
decoded chunks (see :mod:`blockio.cache.memory`). A root is a folder or a
bucket prefix (``s3://bucket/prefix``, ``gs://bucket/prefix``), opened with
:func:`precomputed.storage.open_root`; on a bucket the catalog is read again
at most every :data:`~blockio.catalog_view.REMOTE_CATALOG_TTL_S` seconds (a bucket has no cheap
modification time to look at before every read).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox, check_bounds, chunk_grid, grid_boxes, parse_xyz
from blockio.cache.memory import ChunkCache, ChunkKey, MemoryCache, TieredCache
from blockio.catalog_view import CatalogView
from blockio.config import Settings
from blockio.errors import (
    InvalidRequest,
    LayerNotFound,
    OutOfBounds,
)
from blockio.layers.reader import SOURCES, LayerReader
from blockio.limits import check_block_size
from blockio.normalize import normalize as apply_normalization
from precomputed.catalog import layer_version
from precomputed.errors import InvalidOption as PrecomputedInvalidOption
from precomputed.geometry import projection

__all__ = ["Store", "open_store"]

Xyz = tuple[int, int, int]


DEFAULT_MAX_BLOCK_VOXELS = 512**3



def open_store(
    root: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    cache_bytes: int | None = None,
    redis_url: str | None = None,
    max_block_voxels: int | None = None,
    max_block_bytes: int | None = None,
) -> Store:
    """Open the store root (default ``settings.root``: ``$BLOCKIO_ROOT`` or ``./blockio-data``).

    Parameters
    ----------
    settings
        The :class:`~blockio.config.Settings` (default ``Settings.from_env()``);
        the options below override its fields.
    cache_bytes
        Byte budget of the in-process chunk cache (default 512 MiB); 0 disables it.
    redis_url
        A shared Redis cache behind it (``""`` for none).
    max_block_voxels, max_block_bytes
        Largest block a read may ask for (default 512^3 voxels, 256 MiB in the layer's dtype).

    root
        A folder, ``file://`` URL, ``s3://bucket[/prefix]`` (endpoint from
        ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, or written in as
        ``s3://http://host:port/bucket/prefix``) or ``gs://bucket[/prefix]``.

    Raises
    ------
    StoreNotFound
        A root (folder or bucket prefix) that holds no ``catalog.json`` (a
        mistyped root is not an empty store).
    """
    from blockio.roots import require_store

    settings = settings if settings is not None else Settings.from_env()
    root = root or settings.root
    require_store(root)
    return Store(root, settings=settings, cache_bytes=cache_bytes, redis_url=redis_url, max_block_voxels=max_block_voxels, max_block_bytes=max_block_bytes)


class Store:
    """The datasets of one store root and their blocks.

    Attributes
    ----------
    storage
        The root's :class:`~precomputed.storage.Storage`.
    root
        A local root's folder (``Path``); a bucket root's URL (``str``) as given.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        settings: Settings | None = None,
        cache_bytes: int | None = None,
        redis_url: str | None = None,
        max_block_voxels: int | None = None,
        max_block_bytes: int | None = None,
    ) -> None:
        from precomputed.catalog import Catalog
        from precomputed.storage import open_root

        # the options override the settings' fields; the settings come from the environment only when not given
        settings = settings if settings is not None else Settings.from_env()
        self.settings = settings.replace(
            **{k: v for k, v in (("cache_bytes", cache_bytes), ("max_block_voxels", max_block_voxels), ("max_block_bytes", max_block_bytes)) if v is not None},
            **({"redis_url": redis_url or None} if redis_url is not None else {}),
        )
        try:
            self.storage = open_root(root)
        except PrecomputedInvalidOption as exc:  # http://, mem://, a bucket URL without a bucket
            raise InvalidRequest(str(exc)) from exc
        folder = self.storage.local_path()
        self.root: Path | str = folder if folder is not None else self.storage.url
        self._catalog = CatalogView(Catalog(self.root), remote=not self.storage.is_local)
        self.memory_cache = MemoryCache(self.settings.cache_bytes)
        tiers: list[ChunkCache] = [self.memory_cache]
        redis_url = self.settings.redis_url
        if redis_url:
            from blockio.cache.redis_cache import RedisCache

            tiers.append(RedisCache(redis_url))
        self.cache = TieredCache(tiers)
        # one reader per (dataset, layer, source), closed when its layer's version changes
        self._readers: dict[tuple[str, str, str], tuple[str, LayerReader]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.max_block_voxels = self.settings.max_block_voxels
        self.max_block_bytes = self.settings.max_block_bytes

    # -- catalog -------------------------------------------------------------
    def datasets(self) -> list[str]:
        """Ids of every catalogued dataset, sorted."""
        return sorted(self._catalog.records())

    def info(self, dataset: str) -> dict[str, Any]:
        """The dataset's catalog record (validated)."""
        return self._catalog.record(dataset)

    def layers(self, dataset: str) -> dict[str, Any]:
        """``{name: layer record}`` of a dataset."""
        return dict(self.info(dataset)["layers"])

    # -- readers -------------------------------------------------------------
    def _layer(self, dataset: str, layer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        record = self.info(dataset)
        if layer not in record["layers"]:
            raise LayerNotFound(f"dataset {dataset!r} has no layer {layer!r} (layers: {', '.join(sorted(record['layers']))})")
        return record, record["layers"][layer]

    def reader(self, dataset: str, layer: str = "image", source: str = "precomputed") -> LayerReader:
        """The (cached) :class:`LayerReader` of a layer in one of its stores."""
        record, meta = self._layer(dataset, layer)
        return self._reader(dataset, layer, source, record, meta)

    def _reader(self, dataset: str, layer: str, source: str, record: dict[str, Any], meta: dict[str, Any]) -> LayerReader:
        if source not in SOURCES:
            raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        version = layer_version(record, layer)
        if os.getpid() != self._pid:
            # handles opened before a fork are not used after it
            self._readers = {}
            self._pid = os.getpid()
        key = (dataset, layer, source)
        held = self._readers.get(key)
        if held is not None and held[0] == version:
            return held[1]
        if source == "zarr":
            # the image's copy is the dataset's OME-Zarr image; a segmentation layer's, its labels/<name>
            copy = record["stores"]["zarr"] if layer == "image" else meta.get("zarr")
            if not copy:
                raise InvalidRequest(f"layer {layer!r} has no OME-Zarr copy; read it with source='precomputed'")
            path = str(copy)
        else:
            path = str(meta["path"])
        reader = LayerReader(self.layer_url(path), source, fill_missing=bool(meta.get("fill_missing", False)))
        with self._lock:
            old = self._readers.get(key)
            self._readers[key] = (version, reader)
        if old is not None:
            old[1].close()  # its layer was rewritten; a read still using it finishes in its own thread
        return reader

    def layer_url(self, path: str) -> str:
        """The URL of a store inside the root (``precomputed/<id>/image``): ``file://...`` or the bucket's own URL."""
        key = self.storage.join(path)
        return self.storage.url_for(key) if self.storage.is_local else f"{self.storage.url}/{key}"

    def reader_count(self) -> int:
        """How many layer readers are open: at most one per (dataset, layer, source)."""
        return len(self._readers)

    def close(self) -> None:
        """Close every layer reader (their fetch threads end); later reads open new ones."""
        with self._lock:
            readers, self._readers = self._readers, {}
        for _, reader in readers.values():
            reader.close()

    def bounds(self, dataset: str, mip: int = 0, layer: str = "image") -> VoxelBox:
        """(x, y, z) bounds of a layer at a mip."""
        return self.reader(dataset, layer).bounds(mip)

    # -- blocks --------------------------------------------------------------
    def read_block(
        self,
        dataset: str,
        offset: Xyz | str,
        size: Xyz | str,
        *,
        mip: int = 0,
        layer: str = "image",
        boundary: str = "error",
        normalize: str | None = None,
        dtype: Any = None,
        source: str = "precomputed",
        return_mask: bool = False,
    ) -> Any:
        """Read the block ``[offset, offset + size)`` of a layer.

        Parameters
        ----------
        offset, size
            (x, y, z) voxels at ``mip``.
        boundary
            ``"error"`` (default; the message names the valid bounds),
            ``"zero"`` (outside reads as 0), ``"clip"`` (the in-bounds part
            only), ``"reflect"`` (mirrored at the edge).
        normalize
            ``None``, ``"zscore"``, ``"minmax"`` or ``"percentile"``, from the
            catalog's statistics; gives float32.
        dtype
            Cast the result (after normalisation).
        source
            ``"precomputed"`` (default) or ``"zarr"``.
        return_mask
            Also return a boolean ``[z, y, x]`` mask of voxels inside the volume.

        Returns
        -------
        ndarray
            C-order ``[z, y, x]`` (``[c, z, y, x]`` with several channels).
            With ``boundary="clip"`` a tuple ``(block, offset)`` with the
            clipped block's (x, y, z) offset; ``return_mask=True`` appends the
            mask to what is returned.
        """
        offset = parse_xyz(offset, "offset")
        size = parse_xyz(size, "size", positive=True)
        record, meta = self._layer(dataset, layer)
        if normalize and meta["type"] != "image":
            raise InvalidRequest(f"layer {layer!r} is a {meta['type']} layer: normalisation applies to images only")
        out_dtype = _dtype(dtype)
        reader = self._reader(dataset, layer, source, record, meta)  # the record just looked up, not again
        # the same limits as the REST API, in bytes of this layer's dtype; before any chunk is read
        check_block_size(size, channels=reader.channels, dtype=np.float32 if normalize else reader.dtype, max_voxels=self.max_block_voxels, max_bytes=self.max_block_bytes)
        bounds = reader.bounds(mip)
        box = VoxelBox.from_offset_size(offset, size)
        check_bounds(box, bounds, boundary, mip)
        inner = box.intersect(bounds)
        if inner.empty and boundary in ("clip", "reflect"):
            raise OutOfBounds(f"box {box} (x, y, z) does not overlap the volume at mip {mip}, whose bounds are {bounds}")
        version = layer_version(record, layer)
        data = self._assemble(reader, dataset, layer, version, source, mip, inner) if not inner.empty else None
        if data is not None and normalize:
            data = apply_normalization(data, normalize, record["stats"])
        if boundary == "clip":
            result_box = inner
            out = data
        else:
            result_box = box
            out = self._place(data, box, inner, boundary, reader.channels, reader.dtype if not normalize else np.dtype(np.float32))
        assert out is not None  # noqa: S101 - inner is non-empty for clip
        if out_dtype is not None:
            out = out.astype(out_dtype, copy=False)
        if out.shape[0] == 1:
            out = out[0]
        extras: list[Any] = []
        if boundary == "clip":
            extras.append(result_box.start)
        if return_mask:
            mask = np.zeros(tuple(reversed(result_box.size)), dtype=bool)
            mask[inner.slices_zyx(result_box.start)] = True
            extras.append(mask)
        return (out, *extras) if extras else out

    def _assemble(self, reader: LayerReader, dataset: str, layer: str, version: str, source: str, mip: int, box: VoxelBox) -> npt.NDArray[Any]:
        out = np.empty((reader.channels, *reversed(box.size)), dtype=reader.dtype)
        grid = list(chunk_grid(box, reader.chunk_size(mip), reader.bounds(mip)))
        keys = {index: ChunkKey(dataset, layer, version, source, mip, index) for index, _ in grid}
        cached = self.cache.get_many(list(keys.values()))  # one call per tier for the whole block
        missing: list[tuple[tuple[int, int, int], VoxelBox]] = []
        for index, chunk_box in grid:
            chunk = cached.get(keys[index])
            if chunk is not None and (chunk.shape != (reader.channels, *reversed(chunk_box.size)) or chunk.dtype != reader.dtype):
                # a cached value of another shape or dtype (a foreign writer, a stale format) is a miss, never a failed read
                logging.getLogger(__name__).warning("cached chunk %s is %s %s, not %s: read from storage", keys[index].text(), chunk.dtype, list(chunk.shape), [reader.channels, *reversed(chunk_box.size)])
                chunk = None
            if chunk is None:
                missing.append((index, chunk_box))
            else:
                dst, src = projection(box, chunk_box)
                out[(slice(None), *dst)] = chunk[(slice(None), *src)]
        if missing:
            fetched = reader.fetch(mip, missing)
            new: dict[ChunkKey, npt.NDArray[Any]] = {}
            for index, chunk_box in missing:
                chunk = fetched[index]
                dst, src = projection(box, chunk_box)
                if chunk is None:  # never written, and the layer allows the fill value
                    out[(slice(None), *dst)] = 0
                    continue
                new[keys[index]] = chunk
                out[(slice(None), *dst)] = chunk[(slice(None), *src)]
            self.cache.put_many(new)
        return out

    @staticmethod
    def _place(data: npt.NDArray[Any] | None, box: VoxelBox, inner: VoxelBox, boundary: str, channels: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        if data is not None and inner == box:
            return data
        if boundary == "reflect" and data is not None:
            pad = [(0, 0)] + [
                (i0 - b0, b1 - i1) for b0, b1, i0, i1 in zip(reversed(box.start), reversed(box.stop), reversed(inner.start), reversed(inner.stop))
            ]
            return np.pad(data, pad, mode="symmetric")
        out = np.zeros((channels, *reversed(box.size)), dtype=data.dtype if data is not None else dtype)
        if data is not None:
            out[(slice(None), *inner.slices_zyx(box.start))] = data
        return out

    def iter_blocks(self, dataset: str, block: Xyz | str, overlap: Xyz | str = (0, 0, 0), *, mip: int = 0, layer: str = "image") -> Iterator[VoxelBox]:
        """The grid of (x, y, z) block boxes covering a mip, for blockwise inference.

        Consecutive boxes overlap by ``overlap``; the last box along an axis is
        moved back to end at the volume's edge, so every box has the full
        block size (unless the volume is smaller than a block).
        """
        block = parse_xyz(block, "block", positive=True)
        overlap = parse_xyz(overlap, "overlap")
        bounds = self.reader(dataset, layer).bounds(mip)
        return grid_boxes(bounds, block, overlap)

    def cache_stats(self) -> dict[str, Any]:
        """Hits, misses, bytes held and evictions per cache tier."""
        return self.cache.stats()

    def embeddings(self, dataset: str, name: str) -> Any:
        """Embedding set ``name`` of a dataset: ``knn(...)``, ``vector_at(...)`` (:class:`blockio.embeddings.EmbeddingSet`)."""
        from blockio.embeddings.query import EmbeddingSet

        return EmbeddingSet(self, dataset, name)


def _dtype(dtype: Any) -> np.dtype[Any] | None:
    if dtype is None or dtype == "":
        return None
    try:
        out: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise InvalidRequest(f"unknown dtype {dtype!r}") from None
    if out.kind not in "uif" or out.itemsize > 8:
        raise InvalidRequest(f"dtype must be an integer or float type, got {out.name}")
    return out
