"""xy and xz thumbnails of a dataset's image layer, as PNG, cached on disk.

A thumbnail is the middle section of the lowest useful mip: the coarsest mip
whose plane is still at least :data:`MIN_PIXELS` voxels on its longer side
(mip 0 when the volume is smaller). Intensities are windowed to the catalog's
1st-99th percentiles, and the slow axis is resampled to the voxels' physical
aspect (an xz section of 40 nm sections is stretched, not squashed).

Files live under ``ROOT/.cache/thumbnails/<id>/`` and are named by a hash of
the layer's version, so a rewritten layer gets new thumbnails and the old
ones are removed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest, LayerNotFound
from blockio.store import Store
from precomputed.catalog import layer_version

__all__ = ["MAX_PIXELS", "MIN_PIXELS", "PLANES", "choose_mip", "thumbnail_png"]

PLANES = ("xy", "xz")
MIN_PIXELS = 128
MAX_PIXELS = 256
CACHE_DIR = Path(".cache") / "thumbnails"


def choose_mip(record: dict[str, Any], plane: str) -> int:
    """The coarsest mip whose ``plane`` is at least :data:`MIN_PIXELS` on its longer side."""
    axes = (0, 1) if plane == "xy" else (0, 2)
    best = 0
    for level, mip in enumerate(record["mips"]):
        if max(mip["shape"][a] for a in axes) >= MIN_PIXELS:
            best = level
    return best


def _version(record: dict[str, Any], layer: str) -> str:
    return layer_version(record, layer)


def _cache_key(store: Store, record: dict[str, Any], layer: str, plane: str, mip: int) -> str:
    key = "|".join([record["id"], layer, _version(record, layer), plane, str(mip), str(MIN_PIXELS)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    # a key of the root's storage: the same cache on a folder and in a bucket
    name: str = store.storage.join(*CACHE_DIR.parts, record["id"], f"{layer}.{plane}.{digest}.png")
    return name


def _resample(section: npt.NDArray[Any], aspect: float) -> npt.NDArray[Any]:
    """Nearest-neighbour resampling of a [rows, cols] section to physical aspect, at most MAX_PIXELS a side."""
    rows, cols = section.shape
    height = rows * aspect
    scale = min(1.0, MAX_PIXELS / max(height, cols))
    out_rows = max(1, round(height * scale))
    out_cols = max(1, round(cols * scale))
    ri = np.minimum((np.arange(out_rows) + 0.5) * rows / out_rows, rows - 1).astype(int)
    ci = np.minimum((np.arange(out_cols) + 0.5) * cols / out_cols, cols - 1).astype(int)
    return section[np.ix_(ri, ci)]


def _render(store: Store, record: dict[str, Any], layer: str, plane: str, mip: int) -> bytes:
    sx, sy, sz = record["mips"][mip]["shape"]
    vx, vy, vz = record["mips"][mip]["voxel_size"]
    if plane == "xy":
        block = store.read_block(record["id"], (0, 0, sz // 2), (sx, sy, 1), mip=mip, layer=layer)
        section, aspect = np.asarray(block).reshape(-1, sy, sx)[0], vy / vx
    else:
        block = store.read_block(record["id"], (0, sy // 2, 0), (sx, 1, sz), mip=mip, layer=layer)
        section, aspect = np.asarray(block).reshape(-1, sz, sx)[0], vz / vx
    percentiles = record["stats"].get("percentiles", {})
    lo = float(percentiles.get("1", record["stats"].get("min") or 0.0))
    hi = float(percentiles.get("99", record["stats"].get("max") or 1.0))
    if not hi > lo:
        hi = lo + 1.0
    grey = np.clip((section.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(_resample(grey, aspect))))


def thumbnail_png(store: Store, dataset: str, plane: str, *, layer: str = "image") -> bytes:
    """The PNG thumbnail of ``plane`` (``xy`` or ``xz``), from the cache or made now.

    Raises
    ------
    DatasetNotFound, LayerNotFound
        For an unknown dataset or layer.
    InvalidRequest
        For another plane, or a layer that is not an image.
    """
    if plane not in PLANES:
        raise InvalidRequest(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    record = store.info(dataset)
    if layer not in record["layers"]:
        raise LayerNotFound(f"dataset {dataset!r} has no layer {layer!r}")
    if record["layers"][layer]["type"] != "image":
        raise InvalidRequest(f"layer {layer!r} is not an image layer")
    mip = choose_mip(record, plane)
    key = _cache_key(store, record, layer, plane, mip)
    cached = store.storage.get(key)
    if cached is not None:
        return cached
    data = _render(store, record, layer, plane, mip)
    # a cache: each put lands whole, a lost thumbnail is only rendered again
    store.storage.put(key, data, content_type="image/png", durable=False)
    # thumbnails of older versions of this layer and plane are stale
    for old in store.storage.list(key.rsplit("/", 1)[0] + f"/{layer}.{plane}."):
        if old != key and old.endswith(".png"):
            store.storage.delete(old)
    return data
