"""The wire format of a cached chunk: a small binary header, then raw C-order bytes.

Never a pickle, so a value read back can only ever become a numeric array::

    b"BKC1"  uint16 header length  uint8 len(dtype)  uint8 ndim
    dtype.str (ASCII, e.g. "<u2")  shape as ndim little-endian uint64
    zero padding to a multiple of 16 bytes (keeps the data aligned)
    raw bytes

Chunks are C-order ``[c, z, y, x]`` of any numeric dtype.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAGIC", "cacheable", "decode_chunk", "encode_chunk"]

MAGIC = b"BKC1"
_HEAD = struct.Struct("<4sHBB")  # magic, header length, len(dtype.str), ndim
_KINDS = "biufc"  # numeric dtypes only: a value must never become objects
_ALIGN = 16


def cacheable(dtype: np.dtype[Any]) -> bool:
    """True for the dtypes the format carries: bool, integer, float, complex (no records)."""
    return dtype.kind in _KINDS and dtype.fields is None


def encode_chunk(chunk: npt.NDArray[Any]) -> bytes:
    """A chunk as header + raw C-order bytes (see :mod:`blockio.cache.wire`).

    Raises
    ------
    ValueError
        If the dtype is not numeric (bool, integer, float or complex).
    """
    dtype = chunk.dtype
    if not cacheable(dtype):
        raise ValueError(f"only numeric chunks can be cached in Redis, got dtype {dtype}")
    text = dtype.str.encode("ascii")
    size = _HEAD.size + len(text) + 8 * chunk.ndim
    size += -size % _ALIGN
    head = bytearray(size)
    _HEAD.pack_into(head, 0, MAGIC, size, len(text), chunk.ndim)
    head[_HEAD.size : _HEAD.size + len(text)] = text
    struct.pack_into(f"<{chunk.ndim}Q", head, _HEAD.size + len(text), *chunk.shape)
    raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
    return b"".join((head, raw.data))  # one copy: join reads the array's buffer


def decode_chunk(value: bytes) -> npt.NDArray[Any]:
    """The read-only array of a value written by :func:`encode_chunk` (no copy).

    Raises
    ------
    ValueError
        If the value is not a well-formed chunk (wrong magic, unknown or
        non-numeric dtype, size that does not match the shape).
    """
    try:
        magic, size, n_text, ndim = _HEAD.unpack_from(value)
        if magic != MAGIC:
            raise ValueError(f"value does not start with {MAGIC!r}")
        dtype = np.dtype(bytes(value[_HEAD.size : _HEAD.size + n_text]).decode("ascii"))
        shape = struct.unpack_from(f"<{ndim}Q", value, _HEAD.size + n_text)
    except (struct.error, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cached chunk header: {exc}") from exc
    if not cacheable(dtype):
        raise ValueError(f"cached chunk has non-numeric dtype {dtype}")
    count = math.prod(shape)
    if size < _HEAD.size + n_text + 8 * ndim or len(value) - size != count * dtype.itemsize:
        raise ValueError(f"cached chunk holds {len(value) - size} data bytes, shape {shape} of {dtype} needs {count * dtype.itemsize}")
    out = np.frombuffer(value, dtype=dtype, count=count, offset=size).reshape(shape)
    out.flags.writeable = False  # already so for bytes; also for a bytearray or memoryview
    return out
