"""Errors raised while reading blocks and serving them: the one exception tree.

Each class carries its HTTP ``status`` and a stable ``code`` (class
attributes). The REST layer answers with that status and puts the code in the
JSON error body; :func:`blockio.connect` raises the class named by the code,
so a remote error keeps its class (and its ``status`` and ``code``).

The tree::

    BlockioError                              500 internal
     ├── StoreNotFound (FileNotFoundError)    404 store_not_found      the root holds no catalog.json (a mistyped root)
     ├── DatasetNotFound (KeyError)           404 dataset_not_found    no such catalog record
     ├── LayerNotFound (KeyError)             404 layer_not_found      no such layer in a record
     ├── DatasetUnavailable (ValueError)      503 dataset_unavailable  the record fails the schema; names the field
     ├── ReviewsUnavailable (ValueError)      503 reviews_unavailable  the users/verdicts database cannot be used, or an old reviews.json is malformed
     ├── InvalidRequest (ValueError)          400 invalid_request      a malformed offset, size, mip, option, body
     │    ├── OutOfBounds                     400 out_of_bounds        the box leaves the volume with boundary="error"
     │    ├── TransformError                  400 invalid_transform    a bad argument to a block transform
     │    └── TooLarge                        413 too_large            a block or body over the configured limits
     ├── Unauthorized (PermissionError)       401 unauthorized         no valid ``Authorization: Bearer`` token
     ├── Forbidden (PermissionError)          403 forbidden            the action is disabled or not allowed
     ├── Conflict (FileExistsError)           409 conflict             the thing exists already
     ├── Busy (TimeoutError)                  503 busy                 every block worker is busy (Retry-After)
     ├── RateLimited                          429 rate_limited         this user sent too many requests (Retry-After)
     ├── InvalidSettings (ValueError)         500 invalid_settings     a BLOCKIO_* setting that cannot be used
     └── StorageError (OSError)               500 storage_error        the store cannot be read or written
          ├── ChunkError                      500 chunk_error          a chunk that cannot be read; names the chunk
          │    └── MissingChunk               500 missing_chunk        a chunk never written, in a layer that forbids fill
          └── WriteFailed                     507 write_failed         a write failed (disk full, I/O error); nothing changed

Errors of the writing side (:mod:`precomputed.errors`) that reach a reader
or the API are translated by :func:`from_precomputed` with the one table
:data:`PRECOMPUTED_ERRORS`.
"""

from __future__ import annotations

from typing import ClassVar

import precomputed.errors as _p

__all__ = [
    "ERRORS",
    "PRECOMPUTED_ERRORS",
    "BlockioError",
    "Busy",
    "ChunkError",
    "Conflict",
    "DatasetNotFound",
    "DatasetUnavailable",
    "Forbidden",
    "InvalidRequest",
    "InvalidSettings",
    "LayerNotFound",
    "MissingChunk",
    "OutOfBounds",
    "RateLimited",
    "ReviewsUnavailable",
    "StorageError",
    "StoreNotFound",
    "TooLarge",
    "TransformError",
    "Unauthorized",
    "WriteFailed",
    "error_class",
    "from_precomputed",
]


class BlockioError(Exception):
    """Base class of every error raised by the ``blockio`` package."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    #: extra response headers of this error (``Retry-After``, ``WWW-Authenticate``)
    headers: ClassVar[dict[str, str]] = {}

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else ""


class StoreNotFound(BlockioError, FileNotFoundError):
    """The store root does not exist or holds no ``catalog.json``; names the root."""

    status = 404
    code = "store_not_found"


class DatasetNotFound(BlockioError, KeyError):
    """No catalog record with this id."""

    status = 404
    code = "dataset_not_found"


class LayerNotFound(BlockioError, KeyError):
    """The dataset has no layer of this name."""

    status = 404
    code = "layer_not_found"


class DatasetUnavailable(BlockioError, ValueError):
    """The dataset's record is malformed; the message names the field."""

    status = 503
    code = "dataset_unavailable"


class ReviewsUnavailable(BlockioError, ValueError):
    """The users and verdicts database cannot be used (unreachable, locked, not configured), or an old ``ROOT/reviews.json`` to import is malformed (it is never written over)."""

    status = 503
    code = "reviews_unavailable"


class InvalidRequest(BlockioError, ValueError):
    """A malformed request: offset, size, mip, boundary, normalize, dtype, body, ..."""

    status = 400
    code = "invalid_request"


class OutOfBounds(InvalidRequest):
    """The requested box leaves the volume and ``boundary="error"``; names the valid bounds."""

    code = "out_of_bounds"


class TransformError(InvalidRequest):
    """An invalid argument to a transform (bad shape, size, sigma or range)."""

    code = "invalid_transform"


class TooLarge(InvalidRequest):
    """A block (or request body) over the configured voxel or byte limit."""

    status = 413
    code = "too_large"


class Unauthorized(BlockioError, PermissionError):
    """The request needs a valid ``Authorization: Bearer <token>`` header."""

    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(BlockioError, PermissionError):
    """The action is disabled on this server or not allowed to this caller."""

    status = 403
    code = "forbidden"


class Conflict(BlockioError, FileExistsError):
    """The dataset (or layer) exists already and replacing it was not asked for."""

    status = 409
    code = "conflict"


class Busy(BlockioError, TimeoutError):
    """Every block worker stayed busy for the queue timeout; retry shortly."""

    status = 503
    code = "busy"
    headers = {"Retry-After": "1"}


class RateLimited(BlockioError):
    """This user (or address) sent state-changing requests faster than the configured rate; retry later."""

    status = 429
    code = "rate_limited"
    headers = {"Retry-After": "1"}


class InvalidSettings(BlockioError, ValueError):
    """A setting (``BLOCKIO_*`` or a :class:`blockio.config.Settings` field) that cannot be used."""

    code = "invalid_settings"


class StorageError(BlockioError, OSError):
    """The store root cannot be read or written (I/O error, permissions, disk full)."""

    code = "storage_error"


class WriteFailed(StorageError):
    """A write into a layer failed (disk full, I/O error) and was rolled back: nothing changed."""

    status = 507
    code = "write_failed"


class ChunkError(StorageError):
    """A chunk file is truncated, corrupt or unreadable; names the chunk. Never read as zeros."""

    code = "chunk_error"


class MissingChunk(ChunkError):
    """A chunk was never written and the layer does not allow reading it as the fill value."""

    code = "missing_chunk"


def _tree(cls: type[BlockioError]) -> list[type[BlockioError]]:
    return [cls, *(c for sub in cls.__subclasses__() if sub.__module__ == __name__ for c in _tree(sub))]


#: every class of the tree, base first; their codes are unique
ERRORS: tuple[type[BlockioError], ...] = tuple(_tree(BlockioError))

_BY_CODE: dict[str, type[BlockioError]] = {cls.code: cls for cls in ERRORS}


def error_class(code: str, status: int) -> type[BlockioError]:
    """The class of an error answer: by its ``code``, else the nearest class for its ``status``.

    A code this version does not know (a newer server, a plain HTTP error
    such as a 404 for an unknown route) becomes :class:`InvalidRequest` for a
    4xx answer and :class:`BlockioError` otherwise; never chosen from the message.
    """
    found = _BY_CODE.get(code)
    if found is not None:
        return found
    return InvalidRequest if 400 <= status < 500 else BlockioError


#: the writing side's errors as readers see them; a subclass not listed maps as its nearest listed base
PRECOMPUTED_ERRORS: dict[type[Exception], type[BlockioError]] = {
    _p.PrecomputedError: BlockioError,
    _p.InvalidSource: InvalidRequest,
    _p.SourceNotFound: InvalidRequest,
    _p.InvalidAxes: InvalidRequest,
    _p.InvalidOption: InvalidRequest,
    _p.InvalidDatasetId: InvalidRequest,
    _p.DatasetExists: Conflict,
    _p.DatasetNotFound: DatasetNotFound,
    _p.LayerNotFound: LayerNotFound,
    _p.RootNotWritable: StorageError,
    _p.CatalogError: DatasetUnavailable,
    _p.InvalidKey: InvalidRequest,
    _p.StoreError: StorageError,
    _p.WriteFailed: WriteFailed,
    _p.CorruptChunk: ChunkError,
}


def from_precomputed(exc: BaseException) -> BlockioError:
    """The :class:`BlockioError` a ``precomputed`` error stands for (its message kept).

    Any other exception becomes a plain :class:`BlockioError` (500).
    """
    for cls in type(exc).__mro__:
        target = PRECOMPUTED_ERRORS.get(cls)
        if target is not None:
            break
    else:
        target = BlockioError
    out = target(str(exc))
    out.__cause__ = exc
    return out
