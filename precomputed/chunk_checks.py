"""Checks of a precomputed chunk's bytes before and after any decoder sees them.

Decoders trust their input: CloudVolume reads a zero-length chunk as zeros,
and the ``compressed_segmentation`` decoder (C++) follows the offsets in a
damaged chunk past its buffer, which crashes the process with a segmentation
fault. So every chunk is checked here first:

``raw``
    exactly ``x * y * z * channels * itemsize`` bytes for the chunk's shape
    (edge chunks are clipped to the volume, so the shape comes from the name).
``compressed_segmentation``
    the whole structure of the Neuroglancer format: per channel a uint32
    offset; per ``block_size`` block a 64-bit header (24-bit lookup table
    offset, 8-bit encoded bit count in {0, 1, 2, 4, 8, 16, 32}, 32-bit
    encoded values offset, both in uint32 words from the channel's start);
    every encoded values range and every lookup table entry an encoded value
    points at inside the buffer.
``*.gz`` files
    are inflated with a cap (the largest valid payload), so a damaged or
    hostile file cannot make the reader allocate without bound; the gzip
    trailer's CRC-32 and length are checked on the way.

After decoding, the array's shape and dtype are checked too. Every failure
raises :class:`~precomputed.errors.CorruptChunk` naming the chunk.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import CorruptChunk
from .geometry import xyz

__all__ = [
    "CSEG_BITS",
    "check_chunk",
    "check_compressed_segmentation",
    "check_raw",
    "chunk_shape",
    "decode_chunk",
    "gunzip_capped",
    "max_payload_bytes",
]

Xyz = tuple[int, int, int]
CSEG_BITS = (0, 1, 2, 4, 8, 16, 32)
_NAME = re.compile(r"(?:^|/)(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)(?:\.gz)?$")


def chunk_shape(chunk: str) -> Xyz:
    """(x, y, z) shape of a chunk from its name ``[<key>/]x0-x1_y0-y1_z0-z1``."""
    m = _NAME.search(chunk)
    if m is None:
        raise CorruptChunk(chunk, "its name is not x0-x1_y0-y1_z0-z1")
    x0, x1, y0, y1, z0, z1 = (int(v) for v in m.groups())
    if x1 <= x0 or y1 <= y0 or z1 <= z0:
        raise CorruptChunk(chunk, "its name spans no voxels")
    return (x1 - x0, y1 - y0, z1 - z0)


def max_payload_bytes(encoding: str, shape: Xyz, dtype: Any, channels: int, block_size: Sequence[int] = (8, 8, 8)) -> int:
    """The largest payload a valid chunk of this shape can have (the inflate cap)."""
    itemsize = np.dtype(dtype).itemsize
    voxels = shape[0] * shape[1] * shape[2]
    if encoding == "compressed_segmentation":
        blocks = _grid_blocks(shape, block_size)
        block_voxels = int(np.prod(block_size))
        # per block: header, 32-bit values, a table of every value
        per_block = 2 + block_voxels + block_voxels * (itemsize // 4)
        return int(4 * (channels + channels * blocks * per_block))
    if encoding == "raw":
        return int(voxels * channels * itemsize)
    # other encodings are not written here; allow a generous margin over raw
    return int(2 * voxels * channels * itemsize + (1 << 16))


def gunzip_capped(data: bytes | bytearray | memoryview, *, limit: int, chunk: str) -> bytes:
    """Inflate a ``.gz`` chunk file, refusing more than ``limit`` bytes of output."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(bytes(data), limit + 1)
    except zlib.error as exc:
        raise CorruptChunk(chunk, f"its gzip stream is damaged ({exc})") from exc
    if len(out) > limit:
        raise CorruptChunk(chunk, f"it inflates to more than {limit} bytes, the most a valid chunk holds")
    if not inflater.eof:
        raise CorruptChunk(chunk, "its gzip stream is truncated")
    if inflater.unused_data:
        raise CorruptChunk(chunk, f"{len(inflater.unused_data)} bytes follow its gzip stream")
    return out


def check_raw(data: bytes | bytearray | memoryview, *, shape: Xyz, dtype: Any, channels: int, chunk: str) -> None:
    """A ``raw`` chunk has exactly the bytes of its (possibly edge-clipped) shape."""
    want = shape[0] * shape[1] * shape[2] * channels * np.dtype(dtype).itemsize
    if len(data) != want:
        raise CorruptChunk(chunk, f"{len(data)} bytes, a raw {'x'.join(map(str, shape))} (x, y, z) chunk of {channels} x {np.dtype(dtype).name} has {want}")


def _grid(shape: Xyz, block_size: Sequence[int]) -> Xyz:
    return xyz(-(-n // b) for n, b in zip(shape, block_size))


def _grid_blocks(shape: Xyz, block_size: Sequence[int]) -> int:
    gx, gy, gz = _grid(shape, block_size)
    return gx * gy * gz


def check_compressed_segmentation(
    data: bytes | bytearray | memoryview,
    *,
    shape: Xyz,
    dtype: Any,
    channels: int,
    block_size: Sequence[int],
    chunk: str,
    check_indices: bool = True,
) -> None:
    """Check every offset, bit count and range of a ``compressed_segmentation`` chunk.

    With ``check_indices`` the encoded values are unpacked too (vectorised:
    0.14 ms for a 64^3 chunk of 16-bit indices against 0.21 ms to decode it,
    ~0.06 ms at least for small chunks) so that no lookup table index points
    past the buffer: the decoder would read it.
    """
    if len(data) % 4:
        raise CorruptChunk(chunk, f"{len(data)} bytes, not whole uint32 words")
    words = np.frombuffer(data, dtype="<u4")
    total = words.size
    wpv = np.dtype(dtype).itemsize // 4  # words per lookup table entry
    if wpv not in (1, 2):
        raise CorruptChunk(chunk, f"compressed_segmentation stores uint32 or uint64, the layer says {np.dtype(dtype).name}")
    nblocks = _grid_blocks(shape, block_size)
    block_voxels = int(np.prod(block_size))
    if total < channels:
        raise CorruptChunk(chunk, f"{len(data)} bytes cannot hold the offsets of {channels} channel(s)")
    for c in range(channels):
        base = int(words[c])
        if base < channels or base + 2 * nblocks > total:
            raise CorruptChunk(chunk, f"channel {c} starts at word {base}, its {nblocks} block headers do not fit {total} words")
        header = words[base : base + 2 * nblocks].reshape(nblocks, 2)
        lut = (header[:, 0] & 0xFFFFFF).astype(np.int64) + base
        bits = (header[:, 0] >> 24).astype(np.int64)
        values = header[:, 1].astype(np.int64) + base
        bad = ~np.isin(bits, CSEG_BITS)
        if bad.any():
            i = int(np.argmax(bad))
            raise CorruptChunk(chunk, f"block {i} of channel {c} encodes {int(bits[i])} bits a value; the format allows {', '.join(map(str, CSEG_BITS))}")
        value_words = -(-block_voxels * bits // 32)
        over = values + value_words > total
        if over.any():
            i = int(np.argmax(over))
            raise CorruptChunk(chunk, f"the encoded values of block {i} of channel {c} end past the buffer ({int(values[i] + value_words[i])} > {total} words)")
        # each table holds at least entry 0; with check_indices, up to the largest index used
        entries = _largest_indices(words, values, bits, block_voxels) + 1 if check_indices else np.ones(nblocks, dtype=np.int64)
        over = lut + entries * wpv > total
        if over.any():
            i = int(np.argmax(over))
            raise CorruptChunk(chunk, f"the lookup table of block {i} of channel {c} ends past the buffer ({int(lut[i] + entries[i] * wpv)} > {total} words)")


def _largest_indices(words: npt.NDArray[np.uint32], values: npt.NDArray[np.int64], bits: npt.NDArray[np.int64], block_voxels: int) -> npt.NDArray[np.int64]:
    largest = np.zeros(values.shape, dtype=np.int64)
    for b in CSEG_BITS[1:]:
        which = np.flatnonzero(bits == b)
        if which.size == 0:
            continue
        n = -(-block_voxels * b // 32)
        packed = words[values[which, None] + np.arange(n)]  # (blocks, n words), a copy
        if b >= 8:
            # whole-byte indices: a view as uint8 / uint16 / uint32 is the unpacked values
            largest[which] = packed.view(f"<u{b // 8}").reshape(which.size, -1)[:, :block_voxels].max(axis=1)
            continue
        per = 32 // b
        unpacked = (packed[:, :, None] >> (np.arange(per, dtype=np.uint32) * b)) & np.uint32((1 << b) - 1)
        largest[which] = unpacked.reshape(which.size, -1)[:, :block_voxels].max(axis=1)
    return largest


def check_chunk(
    data: bytes | bytearray | memoryview,
    *,
    encoding: str,
    shape: Xyz,
    dtype: Any,
    channels: int,
    chunk: str,
    block_size: Sequence[int] = (8, 8, 8),
    thorough: bool = True,
) -> None:
    """Everything that can be checked before decoding; a zero-length chunk always fails.

    ``thorough=False`` skips the lookup table index scan of ``compressed_segmentation``
    (for a payload whose checksum matched the writer's).
    """
    if len(data) == 0:
        raise CorruptChunk(chunk, "the file is empty (a chunk never written has no file)")
    if encoding == "raw":
        check_raw(data, shape=shape, dtype=dtype, channels=channels, chunk=chunk)
    elif encoding == "compressed_segmentation":
        check_compressed_segmentation(data, shape=shape, dtype=dtype, channels=channels, block_size=block_size, chunk=chunk, check_indices=thorough)


def decode_chunk(
    data: bytes | bytearray | memoryview,
    *,
    encoding: str,
    shape: Xyz,
    dtype: Any,
    channels: int,
    chunk: str,
    block_size: Sequence[int] = (8, 8, 8),
    thorough: bool = True,
) -> npt.NDArray[Any]:
    """Check, decode with CloudVolume's codecs, check the result: a C-order ``[c, z, y, x]`` view.

    Raises
    ------
    CorruptChunk
        The bytes fail a check, the codec rejects them, or the decoded array
        has another shape or dtype than the chunk's.
    """
    from cloudvolume import chunks as cv_chunks

    check_chunk(data, encoding=encoding, shape=shape, dtype=dtype, channels=channels, chunk=chunk, block_size=block_size, thorough=thorough)
    want = (*shape, channels)
    try:
        arr = np.asarray(cv_chunks.decode(bytes(data), encoding=encoding, shape=want, dtype=np.dtype(dtype), block_size=tuple(block_size), background_color=0))
    except Exception as exc:  # codecs raise ValueError, DecodingError, RuntimeError, ...
        raise CorruptChunk(chunk, f"the {encoding} decoder rejects it: {exc}") from exc
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    if arr.shape != want or arr.dtype != np.dtype(dtype):
        raise CorruptChunk(chunk, f"it decodes to {arr.dtype.name} {arr.shape}, the chunk is {np.dtype(dtype).name} {want} (x, y, z, c)")
    return arr.T  # Fortran (x, y, z, c) -> C-order [c, z, y, x], no copy
