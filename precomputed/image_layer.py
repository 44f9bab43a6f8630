"""The Neuroglancer precomputed image layer, written with CloudVolume.

Every mip of the pyramid gets a scale in ``info`` with the same voxel size,
zero offset and shape as the OME-Zarr level of the same number. Chunks are
``raw`` encoded and, by default, stored uncompressed: that is the fastest
thing to write and to serve (the OME-Zarr copy is the compressed one).
``compress="gzip"`` stores ``*.gz`` chunks instead, which Neuroglancer reads
when the file server sends ``Content-Encoding: gzip``. CloudVolume writes
``info``; the chunks are written by :mod:`precomputed.chunk_writer`, each
atomically and with its checksum for the layer's manifest
(:mod:`precomputed.checksums`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from cloudvolume import CloudVolume

from .chunk_writer import COMPRESSIONS, ScaleWriter
from .errors import InvalidOption
from .pyramid import Mip

__all__ = ["COMPRESSIONS", "create_image_layer", "edit_info", "open_layer", "write_box"]

Xyz = tuple[int, int, int]


def _url(path: str) -> str:
    return path if "://" in path else f"file://{path}"


def create_image_layer(
    path: str,
    *,
    mips: list[Mip],
    channels: int,
    dtype: np.dtype[Any],
    chunk_size: Xyz,
    layer_type: str = "image",
    encoding: str = "raw",
    root: str | None = None,
) -> dict[str, Any]:
    """Write the layer's ``info`` with one scale per mip; returns it.

    ``root``: the bucket root URL when ``path`` is a key under it; the
    ``info`` is then made by CloudVolume in a temporary folder and uploaded
    byte for byte (what it would write to a local layer).
    """
    if root is not None:
        return _create_in_bucket(path, root, mips=mips, channels=channels, dtype=dtype, chunk_size=chunk_size, layer_type=layer_type, encoding=encoding)
    base = mips[0]
    info = CloudVolume.create_new_info(
        num_channels=channels,
        layer_type=layer_type,
        data_type=np.dtype(dtype).name,
        encoding=encoding,
        resolution=[_num(v) for v in base.voxel_size],
        voxel_offset=[0, 0, 0],
        volume_size=list(base.shape),
        chunk_size=list(chunk_size),
    )
    vol = CloudVolume(_url(path), info=info, progress=False)
    for mip in mips[1:]:
        vol.add_scale(_cumulative(mips, mip.level), chunk_size=list(chunk_size))
    for mip in mips:
        scale = vol.info["scales"][mip.level]
        if tuple(scale["size"]) != tuple(mip.shape) or tuple(scale["resolution"]) != tuple(mip.voxel_size):
            raise InvalidOption(
                f"CloudVolume planned mip {mip.level} as size {scale['size']} at {scale['resolution']} nm, "
                f"the OME-Zarr pyramid as {list(mip.shape)} at {list(mip.voxel_size)} nm"
            )
    vol.commit_info()
    written: dict[str, Any] = vol.info
    return written


def _create_in_bucket(path: str, root: str, **kwargs: Any) -> dict[str, Any]:
    import json
    import tempfile
    from pathlib import Path

    from .bucket import root_storage

    with tempfile.TemporaryDirectory(prefix="blockio-info-") as tmp:
        info = create_image_layer(tmp, **kwargs)
        data = (Path(tmp) / "info").read_bytes()
    json.loads(data)  # CloudVolume wrote JSON
    root_storage(root).put(f"{path}/info", data, content_type="application/json")
    return info


def edit_info(path: str, change: Any, *, root: str | None = None) -> None:
    """Apply ``change(info dict)`` to the layer's ``info`` and write it as CloudVolume's ``commit_info`` does.

    On a bucket root (``root`` its URL, ``path`` a key) CloudVolume commits in
    a temporary folder and the bytes are uploaded, so they equal a local layer's.
    """
    if root is None:
        vol = CloudVolume(_url(path), progress=False)
        change(vol.info)
        vol.commit_info()
        return
    import tempfile
    from pathlib import Path

    from .bucket import root_storage

    storage = root_storage(root)
    with tempfile.TemporaryDirectory(prefix="blockio-info-") as tmp:
        (Path(tmp) / "info").write_bytes(storage.get(f"{path}/info") or b"{}")
        vol = CloudVolume(_url(tmp), progress=False)
        change(vol.info)
        vol.commit_info()
        storage.put(f"{path}/info", (Path(tmp) / "info").read_bytes(), content_type="application/json")


def _num(v: float) -> float | int:
    # integral sizes as ints, so scale keys read "8_8_40" as CloudVolume names them
    return int(v) if float(v).is_integer() else float(v)


def _cumulative(mips: list[Mip], level: int) -> list[int]:
    total = np.ones(3, dtype=np.int64)
    for mip in mips[1 : level + 1]:
        total *= np.array(mip.factor)
    return [int(v) for v in total]


def open_layer(path: str, mip: int, *, compress: str = "none", root: str | None = None) -> ScaleWriter:
    """Open one mip of the layer for chunk-aligned, atomic, checksummed writes (``root``: a bucket's URL)."""
    return ScaleWriter.open(path, mip, compress=compress, root=root)


def write_box(vol: ScaleWriter, start: Xyz, block: npt.NDArray[Any]) -> dict[str, str]:
    """Write a C-order ``[c, z, y, x]`` block at ``start`` (x, y, z), chunk-aligned.

    Returns ``{chunk grid name: digest}`` for the checksum manifest of scale ``vol.key``.
    """
    return vol.write_box(start, block)
