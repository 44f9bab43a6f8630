"""Writing one scale of a precomputed layer chunk by chunk, each chunk atomically.

CloudVolume's file backend opens a chunk with ``open(path, "wb")`` and
writes into it, so a killed writer leaves a truncated chunk and a reader can
catch one half-written. Here each chunk is encoded with CloudVolume's own
codecs (the same bytes it would write, ``.gz`` with CloudFiles' gzip),
checksummed in memory and written to a temp file renamed over the chunk
(:func:`precomputed.atomic.replace_bytes`). :meth:`ScaleWriter.write_box`
returns the digests for the layer's checksum manifest.

On a bucket root (``root`` set, ``layer`` a key under it) the chunks of a
box are uploaded concurrently through the root's storage (each object PUT is
atomic); gzip chunks keep CloudVolume's object store convention: the key
without ``.gz``, ``Content-Encoding: gzip``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .atomic import replace_bytes
from .checksums import digest
from .errors import InvalidOption
from .geometry import xyz

__all__ = ["COMPRESSIONS", "ScaleWriter"]

COMPRESSIONS = ("none", "gzip")
Xyz = tuple[int, int, int]


@dataclass(frozen=True)
class ScaleWriter:
    """Chunk-aligned writes into one scale (mip) of a local precomputed layer."""

    layer: str
    key: str
    encoding: str
    dtype: np.dtype[Any]
    channels: int
    size: Xyz
    offset: Xyz
    chunk_size: Xyz
    block_size: Xyz
    compress: str
    root: str | None = None  # a bucket root's URL: ``layer`` is then a key under it

    @classmethod
    def open(cls, layer: str, mip: int, *, compress: str = "none", root: str | None = None) -> ScaleWriter:
        """The writer of scale ``mip`` as the layer's ``info`` describes it."""
        if compress not in COMPRESSIONS:
            raise InvalidOption(f"unknown compression {compress!r}; choose one of {', '.join(COMPRESSIONS)}")
        path = layer[len("file://") :] if layer.startswith("file://") else layer
        if root is None:
            with open(os.path.join(path, "info"), encoding="utf-8") as fh:
                info = json.load(fh)
        else:
            from .bucket import root_storage

            data = root_storage(root).get(f"{layer}/info")
            if data is None:
                raise FileNotFoundError(f"{root_storage(root).url_for(layer)}/info")
            info = json.loads(data)
        scale = info["scales"][mip]
        if root is not None and scale.get("sharding"):
            raise InvalidOption(f"layer {layer} on {root} is sharded: sharded writes go to local roots only")
        writer = cls(
            layer=path,
            key=scale["key"],
            encoding=scale["encoding"],
            dtype=np.dtype(info["data_type"]),
            channels=int(info["num_channels"]),
            size=xyz(int(v) for v in scale["size"]),
            offset=xyz(int(v) for v in scale["voxel_offset"]),
            chunk_size=xyz(int(v) for v in scale["chunk_sizes"][0]),
            block_size=xyz(int(v) for v in scale.get("compressed_segmentation_block_size", (8, 8, 8))),
            compress=compress,
            root=root,
        )
        return writer

    def chunk_name(self, start: Xyz) -> str:
        """The grid name ``x0-x1_y0-y1_z0-z1`` of the chunk at ``start`` (x, y, z), clipped to the volume."""
        stop = [min(s + c, o + n) for s, c, o, n in zip(start, self.chunk_size, self.offset, self.size)]
        return "_".join(f"{a}-{b}" for a, b in zip(start, stop))

    def encode(self, chunk: npt.NDArray[Any]) -> bytes:
        """The payload of a C-order ``[c, z, y, x]`` chunk, as CloudVolume encodes it."""
        if self.encoding == "raw":
            # C-order [c, z, y, x] bytes are Fortran (x, y, z, c) bytes: what encode_raw writes
            return np.ascontiguousarray(chunk, dtype=self.dtype).tobytes()
        from cloudvolume import chunks as cv_chunks

        return bytes(cv_chunks.encode(np.asarray(chunk, dtype=self.dtype).T, self.encoding, self.block_size))

    def write_box(self, start: Xyz, block: npt.NDArray[Any]) -> dict[str, str]:
        """Write a chunk-aligned C-order ``[c, z, y, x]`` block at ``start`` (x, y, z).

        Returns ``{chunk grid name: digest}`` of the chunks written.
        """
        from cloudfiles import compression

        # read now, not at open: a writer cached per thread outlives a layer made anew at its path
        from .sharding import scale_sharding, write_shards

        spec = scale_sharding(self.layer, self.key) if self.root is None else None
        if spec is not None:  # a sharded scale: the block covers whole shards
            return write_shards(self, spec, start, block)
        _, z, y, x = block.shape
        stop = tuple(s + n for s, n in zip(start, (x, y, z)))
        end = tuple(o + n for o, n in zip(self.offset, self.size))
        if any((s - o) % c for s, o, c in zip(start, self.offset, self.chunk_size)) or any(
            (b - o) % c and b != e for b, o, c, e in zip(stop, self.offset, self.chunk_size, end)
        ) or any(b > e for b, e in zip(stop, end)):
            raise RuntimeError(f"internal: block [{start}, {stop}) is not chunk-aligned in scale {self.key} of {self.layer}")
        digests = {}
        suffix = ".gz" if self.compress == "gzip" else ""
        folder = os.path.join(self.layer, self.key)
        cx, cy, cz = self.chunk_size
        uploads: dict[str, bytes] = {}
        for z0 in range(start[2], stop[2], cz):
            for y0 in range(start[1], stop[1], cy):
                for x0 in range(start[0], stop[0], cx):
                    a, b, c = x0 - start[0], y0 - start[1], z0 - start[2]
                    payload = self.encode(block[:, c : c + cz, b : b + cy, a : a + cx])
                    name = self.chunk_name((x0, y0, z0))
                    digests[name] = digest(payload)
                    data = compression.compress(payload, "gzip") if suffix else payload
                    if self.root is not None:
                        uploads[name] = data
                        continue
                    try:
                        replace_bytes(os.path.join(folder, name + suffix), data, durable=False)
                    except FileNotFoundError:
                        # a cached writer outlives its folder when a staged layer is made anew
                        os.makedirs(folder, exist_ok=True)
                        replace_bytes(os.path.join(folder, name + suffix), data, durable=False)
        if uploads:
            self.upload(uploads)
        return digests

    def upload(self, chunks: dict[str, bytes]) -> None:
        """Put ``{chunk name: stored bytes}`` into this scale of a bucket layer, concurrently."""
        from .bucket import root_storage

        if self.root is None:
            raise RuntimeError("internal: upload() is for layers on a bucket root")
        storage = root_storage(self.root)
        prefix = f"{self.layer}/{self.key}"
        if self.compress != "gzip":
            storage.put_many({f"{prefix}/{name}": data for name, data in chunks.items()}, durable=False)
            return
        from cloudfiles import CloudFiles

        from .errors import StoreError

        # CloudVolume's convention on object stores: no .gz suffix, Content-Encoding: gzip
        files = CloudFiles(storage.url_for(prefix), progress=False, green=False, num_threads=32)
        try:
            files.puts([{"path": name, "content": data} for name, data in chunks.items()], compress="gzip", raw=True, content_type="application/octet-stream")
        except Exception as exc:
            raise StoreError(f"{storage.url_for(prefix)}: chunks cannot be written: {type(exc).__name__}: {exc}") from exc
