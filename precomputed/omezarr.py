"""The OME-Zarr multiscale image store (NGFF 0.5 on Zarr v3).

Arrays are C-order ``[z, y, x]`` (``[c, z, y, x]`` with several channels),
one array per mip named ``"0"``, ``"1"``, ... with ``dimension_names``; the
NGFF ``multiscales`` metadata is written by ``ome-zarr`` and each level's
scale is the mip's voxel size in nanometres, so Neuroglancer, TensorStore,
napari and CloudVolume's zarr datasource place it exactly where the
precomputed layer is. Chunks are compressed with Blosc (LZ4, byte shuffle,
level 1): zarr-python's Zstandard codec holds the GIL and did not scale past
one core here, Blosc does, and Neuroglancer, TensorStore and CloudVolume
(with the ``blosc`` package) all decode it. A ``crc32c`` codec after Blosc
appends each chunk's CRC-32C, so zarr-python, TensorStore and CloudVolume
refuse a chunk with a flipped bit instead of decoding it (Blosc keeps no
checksum of its own); it costs ~25 GB/s of CRC over the compressed bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from .pyramid import Mip

__all__ = ["create_image", "open_group", "open_level", "validate_image", "write_box"]

Xyz = tuple[int, int, int]


def _store(path: str, root: str | None) -> Any:
    """``path`` itself on a local root; on a bucket root (``root`` its URL) a store over the key ``path``."""
    if root is None:
        return path
    from .bucket import root_storage
    from .zarr_store import StorageStore

    return StorageStore(root_storage(root), path)


def open_group(path: str, mode: Literal["r", "r+", "a", "w", "w-"] = "r+", *, root: str | None = None) -> zarr.Group:
    """Open the image group (a folder, or the key ``path`` under the bucket root ``root``)."""
    return zarr.open_group(_store(path, root), mode=mode, zarr_format=3)


def _axes(channels: int) -> list[dict[str, str]]:
    space = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    return ([{"name": "c", "type": "channel"}] if channels > 1 else []) + space


def create_image(
    path: str,
    *,
    name: str,
    mips: list[Mip],
    channels: int,
    dtype: np.dtype[Any],
    chunk_size: Xyz,
    window: tuple[float, float] | None = None,
    root: str | None = None,
) -> zarr.Group:
    """Create the group, one empty array per mip, and the NGFF metadata.

    ``window`` (start, end) goes into ``omero`` channel metadata so viewers
    open with a sensible contrast. ``root``: the bucket root URL when
    ``path`` is a key under it (see :mod:`precomputed.bucket`).
    """
    # ome-zarr is imported here: it costs 0.6 s, which every task process would pay at import
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = open_group(path, "w", root=root)
    cx, cy, cz = chunk_size
    lead = (channels,) if channels > 1 else ()
    datasets = []
    for mip in mips:
        x, y, z = mip.shape
        group.create_array(
            str(mip.level),
            shape=lead + (z, y, x),
            chunks=(1,) * len(lead) + (cz, cy, cx),
            dtype=dtype,
            compressors=(BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"), Crc32cCodec()),
            fill_value=0,
            dimension_names=[a["name"] for a in _axes(channels)],
        )
        vx, vy, vz = mip.voxel_size
        datasets.append(
            {
                "path": str(mip.level),
                "coordinateTransformations": [{"type": "scale", "scale": [1.0] * len(lead) + [vz, vy, vx]}],
            }
        )
    write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=_axes(channels), name=name)
    if window is not None:
        set_window(group, channels, dtype, window)
    return group


def set_window(group: zarr.Group, channels: int, dtype: np.dtype[Any], window: tuple[float, float]) -> None:
    """Record a display window (``omero`` metadata) from the intensity statistics."""
    if np.issubdtype(dtype, np.integer):
        lo, hi = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    else:
        lo, hi = float(window[0]), float(window[1])
    ome: dict[str, Any] = dict(cast(Mapping[str, Any], group.attrs["ome"]))
    ome["omero"] = {
        "channels": [
            {
                "active": True,
                "color": "FFFFFF",
                "label": f"channel {i}",
                "window": {"min": lo, "max": hi, "start": float(window[0]), "end": float(window[1])},
            }
            for i in range(channels)
        ],
        "rdefs": {"model": "greyscale" if channels == 1 else "color"},
    }
    group.attrs["ome"] = ome


def open_level(path: str, level: int, mode: str = "r+", *, root: str | None = None) -> zarr.Array[Any]:
    """Open one mip's array (``root``: the bucket root URL when ``path`` is a key under it)."""
    # write_empty_chunks: every chunk is written, so output files do not depend on the data, and
    # zarr skips its per-chunk comparison with the fill value (a fifth of its write time here)
    if root is None:
        array = zarr.open_array(f"{path}/{level}", mode=mode, zarr_format=3)
    else:
        array = zarr.open_array(_store(path, root), path=str(level), mode=mode, zarr_format=3)
    return array.with_config({"write_empty_chunks": True})


def write_box(array: zarr.Array[Any], start: Xyz, block: npt.NDArray[Any]) -> None:
    """Write a C-order ``[c, z, y, x]`` block at ``start`` (x, y, z)."""
    x0, y0, z0 = start
    c, z, y, x = block.shape
    region = (slice(z0, z0 + z), slice(y0, y0 + y), slice(x0, x0 + x))
    if array.ndim == 4:
        array[(slice(0, c),) + region] = block
    else:
        array[region] = block[0]


def read_box(array: zarr.Array[Any], start: Xyz, stop: Xyz) -> npt.NDArray[Any]:
    """Read ``[start, stop)`` (x, y, z) as a C-order ``[c, z, y, x]`` array."""
    region = tuple(slice(a, b) for a, b in zip(reversed(start), reversed(stop)))
    data = np.asarray(array[(slice(None),) + region] if array.ndim == 4 else array[region])
    return data if array.ndim == 4 else data[None]


def validate_image(path: str) -> None:
    """Validate the NGFF metadata with ``ome-zarr-models``; raises on any violation."""
    from ome_zarr_models.v05 import Image

    Image.from_zarr(zarr.open_group(path, mode="r", zarr_format=3))
