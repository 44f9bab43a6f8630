"""Errors raised while reading blocks.

The tree::

    BlockioError
     ├── StoreNotFound (FileNotFoundError)   the root holds no catalog.json (a mistyped root)
     ├── DatasetNotFound (KeyError)          no such catalog record
     ├── LayerNotFound (KeyError)            no such layer in a record
     ├── DatasetUnavailable (ValueError)     the record fails the schema; names the field
     ├── InvalidRequest (ValueError)         a malformed offset, size, mip, option
     │    └── OutOfBounds                    the box leaves the volume with boundary="error"
     └── ChunkError (OSError)                a chunk that cannot be read; names the chunk
          └── MissingChunk                   a chunk never written, in a layer that forbids fill

The REST layer maps these to status codes in one place.
"""

from __future__ import annotations

__all__ = [
    "BlockioError",
    "ChunkError",
    "DatasetNotFound",
    "DatasetUnavailable",
    "InvalidRequest",
    "LayerNotFound",
    "MissingChunk",
    "OutOfBounds",
    "StoreNotFound",
]


class BlockioError(Exception):
    """Base class of every error raised by the ``blockio`` package."""

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else ""


class StoreNotFound(BlockioError, FileNotFoundError):
    """The store root does not exist or holds no ``catalog.json``; names the root."""

    status = 404
    code = "store_not_found"


class DatasetNotFound(BlockioError, KeyError):
    """No catalog record with this id."""


class LayerNotFound(BlockioError, KeyError):
    """The dataset has no layer of this name."""


class DatasetUnavailable(BlockioError, ValueError):
    """The dataset's record is malformed; the message names the field."""


class InvalidRequest(BlockioError, ValueError):
    """A malformed request: offset, size, mip, boundary, normalize, dtype, ..."""


class OutOfBounds(InvalidRequest):
    """The requested box leaves the volume and ``boundary="error"``; names the valid bounds."""


class ChunkError(BlockioError, OSError):
    """A chunk file is truncated, corrupt or unreadable; names the chunk. Never read as zeros."""


class MissingChunk(ChunkError):
    """A chunk was never written and the layer does not allow reading it as the fill value."""
