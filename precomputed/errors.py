"""Errors raised while writing stores.

The tree::

    PrecomputedError
     ├── InvalidSource (ValueError)        the raw data cannot be ingested as given
     │    └── UnsupportedFormat            no reader for this file or folder
     ├── SourceNotFound (FileNotFoundError)
     ├── InvalidAxes (ValueError)          an --axes string that is not a volume layout
     ├── InvalidOption (ValueError)        a bad voxel size, unit, chunk size, profile, ...
     ├── InvalidDatasetId (ValueError)
     ├── DatasetExists (FileExistsError)   refuse to replace a dataset without overwrite
     ├── DatasetNotFound (KeyError)
     │    └── LayerNotFound                the dataset has no layer of that name
     ├── RootNotWritable (PermissionError)
     ├── CatalogError (ValueError)         catalog.json is malformed or a record is invalid
     ├── InvalidKey (ValueError)           a storage key that is not a relative POSIX path
     ├── StoreError (OSError)              writing a store failed (disk full, I/O error)
     │    └── WriteFailed                  a write into a live layer failed and was rolled back
     └── CorruptChunk (OSError)            a chunk's bytes fail a check: length, structure, checksum
          ├── ChecksumMismatch             the bytes differ from what the writer recorded
          └── UnlistedChunk                a checksummed layer has no entry for the chunk

Every message is one line a user can act on; the CLI prints it without a traceback.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ChecksumMismatch",
    "CorruptChunk",
    "DatasetExists",
    "DatasetNotFound",
    "InvalidAxes",
    "InvalidDatasetId",
    "InvalidKey",
    "InvalidOption",
    "InvalidSource",
    "LayerNotFound",
    "PrecomputedError",
    "RootNotWritable",
    "SourceNotFound",
    "StoreError",
    "UnlistedChunk",
    "UnsupportedFormat",
    "WriteFailed",
]


class PrecomputedError(Exception):
    """Base class of every error raised by the ``precomputed`` package."""


class InvalidSource(PrecomputedError, ValueError):
    """The raw dataset cannot be ingested as given (mixed shapes, bad dtype, ...)."""


class UnsupportedFormat(InvalidSource):
    """No reader recognises this file or folder."""


class SourceNotFound(PrecomputedError, FileNotFoundError):
    """A source file or folder does not exist or cannot be opened."""


class InvalidAxes(PrecomputedError, ValueError):
    """An axes string that does not describe a 3-D volume (e.g. ``zyx``, ``czyx``)."""


class InvalidOption(PrecomputedError, ValueError):
    """A bad option value: voxel size, unit, chunk size, profile name, ..."""


class InvalidDatasetId(PrecomputedError, ValueError):
    """A dataset id with characters other than ``[A-Za-z0-9._-]``."""


class DatasetExists(PrecomputedError, FileExistsError):
    """The dataset id is catalogued already and overwrite was not asked for."""


class DatasetNotFound(PrecomputedError, KeyError):
    """No catalog record with this id."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class LayerNotFound(DatasetNotFound):
    """The dataset has no layer of this name."""


class RootNotWritable(PrecomputedError, PermissionError):
    """The store root cannot be created or written."""


class CatalogError(PrecomputedError, ValueError):
    """catalog.json is malformed, or a record fails the schema."""


class InvalidKey(PrecomputedError, ValueError):
    """A storage key with a leading or trailing ``/``, an empty, ``.`` or ``..`` segment, a NUL or a backslash."""


class StoreError(PrecomputedError, OSError):
    """Writing a store failed: disk full, I/O error, unreadable chunk."""


class WriteFailed(StoreError):
    """A write into a live layer failed (disk full, I/O error) and was rolled back: nothing changed."""


class CorruptChunk(PrecomputedError, OSError):
    """A chunk's bytes fail a check before or after decoding; never read as zeros.

    ``chunk`` is the chunk's name inside its layer (``<scale key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>``).
    """

    def __init__(self, chunk: str, reason: str) -> None:
        super().__init__(f"chunk {chunk} is corrupt: {reason}")
        self.chunk = chunk
        self.reason = reason

    def __str__(self) -> str:  # OSError formats a 2-tuple of args as "[Errno chunk] reason"
        return f"chunk {self.chunk} is corrupt: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:  # pickles across Dask workers with both fields
        return (type(self), (self.chunk, self.reason))


class ChecksumMismatch(CorruptChunk):
    """The chunk's bytes differ from the checksum its writer recorded (a bit flip, garbage)."""


class UnlistedChunk(CorruptChunk):
    """The layer has a checksum manifest without an entry for this chunk: written outside our writers."""
