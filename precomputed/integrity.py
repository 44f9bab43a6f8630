"""Reading a precomputed chunk safely: inflate with a cap, checksum, check, decode, check.

The one call a layer reader makes per chunk file::

    verifier = ChunkVerifier("file:///data/precomputed/em1/image")   # once per layer
    block = verifier.decode("8_8_40/0-64_0-64_0-64", file_bytes, gzipped=name.endswith(".gz"))

Every failure raises :class:`~precomputed.errors.CorruptChunk` (or its
:class:`~precomputed.errors.ChecksumMismatch` / :class:`~precomputed.errors.UnlistedChunk`)
naming the chunk; nothing is ever read as zeros. The checks live in
:mod:`precomputed.chunk_checks`, the manifests in :mod:`precomputed.checksums`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .checksums import LayerChecksums
from .chunk_checks import chunk_shape, decode_chunk, gunzip_capped, max_payload_bytes
from .errors import CorruptChunk

__all__ = ["ChunkVerifier"]


class ChunkVerifier:
    """Validates and decodes the chunk files of one precomputed layer.

    Parameters
    ----------
    layer
        Local path or ``file://`` URL of the layer (its ``info`` is read from it
        unless ``info`` is given).
    info
        The layer's ``info`` (e.g. CloudVolume's ``meta.info``) for remote layers.
    read, unlisted
        As in :class:`~precomputed.checksums.LayerChecksums`.
    """

    def __init__(self, layer: str, info: Mapping[str, Any] | None = None, *, read: Callable[[str], bytes | None] | None = None, unlisted: str = "error") -> None:
        path = layer[len("file://") :] if layer.startswith("file://") else layer
        if info is None:
            with open(os.path.join(path, "info"), encoding="utf-8") as fh:
                info = json.load(fh)
        self.dtype = np.dtype(info["data_type"])
        self.channels = int(info["num_channels"])
        self._scales = {str(s["key"]): s for s in info["scales"]}
        self.checksums = LayerChecksums(path, read=read, unlisted=unlisted)

    def decode(self, chunk: str, data: bytes | bytearray | memoryview, *, gzipped: bool = False) -> npt.NDArray[Any]:
        """The chunk ``<scale key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`` as a C-order ``[c, z, y, x]`` array.

        ``data`` is the file's bytes; ``gzipped`` for a ``.gz`` file (HTTP and
        CloudFiles readers that inflate themselves pass the payload instead).

        Raises
        ------
        CorruptChunk
            Damaged gzip, a checksum mismatch or unlisted chunk, a payload of
            the wrong length or structure, or a decoded array of the wrong shape.
        """
        key, _, name = chunk.rpartition("/")
        scale = self._scales.get(key)
        if scale is None:
            raise CorruptChunk(chunk, f"the layer has no scale {key!r}")
        shape = chunk_shape(name)
        encoding = str(scale["encoding"])
        block_size = tuple(int(v) for v in scale.get("compressed_segmentation_block_size", (8, 8, 8)))
        payload = gunzip_capped(data, limit=max_payload_bytes(encoding, shape, self.dtype, self.channels, block_size), chunk=chunk) if gzipped else data
        verified = self.checksums.verify(chunk, payload)
        # a verified payload is the writer's own bytes: the structural checks stay, the per-index scan goes
        return decode_chunk(payload, encoding=encoding, shape=shape, dtype=self.dtype, channels=self.channels, chunk=chunk, block_size=block_size, thorough=not verified)
